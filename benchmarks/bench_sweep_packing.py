"""Adapters trained per minute: one adapter with the backbone in the loop vs K packed adapters.

Plain PyTorch (no Ray, no MLflow), so it runs on a GPU box too:

    python benchmarks/bench_sweep_packing.py --dataset ml-100k --data-dir ../shared/data/ml-100k [--device cuda]
    python benchmarks/bench_sweep_packing.py --synthetic-categories 600 --synthetic-extra-categories 3  # 4 per item

"naive" is what a per-trial adapter training does (and the authors' code): every step runs the
frozen backbone forward, then one adapter. "packed K" encodes the training instances once and
trains K adapters on the cached states with stacked parameters (`training.train_adapters`).
One epoch each, after a warm-up; validation/test evaluation excluded.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from padirec.cli.flags import add_flags, flag_values
from padirec.config import DataSpec, data_spec, load_data
from padirec.evaluation.ranking import to_tensors
from padirec.models import BackboneConfig, apply_adapters, build_backbone, init_adapter_flat, unflatten
from padirec.objectives import CategoryTable, objective_losses, weighted_loss
from padirec.training import AdapterConfig, candidate_batches, train_adapters


def naive_epoch(backbone, data, device: str, batch_size: int, rng) -> float:
    """One adapter, backbone forward inside every step (eval mode, no grad into the backbone)."""
    train = data.train_instances()
    histories, times = to_tensors(train, device)
    categories = CategoryTable.from_multi_hot(data.item_categories, device)
    params = init_adapter_flat(0).to(device)[None].requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=1e-3)
    w = torch.tensor([[0.5, 0.5]], device=device)
    started = time.perf_counter()
    for index, candidates in candidate_batches(data, train, 9, batch_size, rng):
        index, candidates = torch.as_tensor(index, device=device), candidates.to(device)
        with torch.no_grad():
            state = backbone.encode(histories[index], times[index])
        h = apply_adapters(state, unflatten(params))
        scores = torch.einsum("kbd,bcd->kbc", h, backbone.i_embeddings.weight[candidates])
        loss = weighted_loss(objective_losses(scores, candidates, categories), w).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def packed_epoch(backbone, data, K: int, device: str, batch_size: int, diversity_topk: int = 0) -> float:
    """K adapters for one epoch on cached states (includes encoding the instances once)."""
    weights = np.stack([np.linspace(0, 1, K), 1 - np.linspace(0, 1, K)], axis=1)
    config = AdapterConfig(epochs=1, keep_last=1, batch_size=batch_size, device=device,
                           diversity_topk=diversity_topk)
    result = train_adapters(backbone, data, weights, config, progress=False, eval_splits=())
    return result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser.add_argument_group("data"), DataSpec, section="data",
              flags={"kind": "--dataset", "path": "--data-dir", "categories_path": "--categories"})
    parser.add_argument("--backbone", default="sasrec")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--packs", default="1,8,21")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--diversity-topk", type=int, default=0, help="AdapterConfig.diversity_topk of the packed runs")
    parser.add_argument("--category-form", choices=["auto", "dense", "ids"], default="auto",
                        help="the α-DCG coverage over the dense multi-hot or padded category ids (CategoryTable)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive one-adapter epochs")
    args = parser.parse_args()
    ratios = {"auto": CategoryTable.SPARSE_RATIO, "dense": float("inf"), "ids": 0}
    CategoryTable.SPARSE_RATIO = ratios[args.category_form]

    spec = data_spec(flag_values(args).get("data"))
    data = load_data(spec)
    n_train = len(data.train_instances())
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=args.backbone, n_items=data.n_items)).to(args.device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(0)
    rows, naive = [], float("nan")
    if not args.no_naive:
        naive_epoch(backbone, data, args.device, args.batch_size, rng)  # warm-up
        naive = min(naive_epoch(backbone, data, args.device, args.batch_size, rng) for _ in range(args.repeats))
        rows.append({"method": "naive (backbone in the loop)", "K": 1, "epoch_s": naive,
                     "adapter_epochs_per_min": 60 / naive})
    packed_epoch(backbone, data, 1, args.device, args.batch_size)  # warm-up
    for K in [int(k) for k in args.packs.split(",")]:
        seconds = min(packed_epoch(backbone, data, K, args.device, args.batch_size, args.diversity_topk)
                      for _ in range(args.repeats))
        rows.append({"method": f"packed K={K}", "K": K, "epoch_s": seconds, "adapter_epochs_per_min": 60 * K / seconds})
    one = rows[-len(args.packs.split(","))]["epoch_s"]
    print(f"# {spec.kind}: {n_train} training instances, {data.n_items} items, {data.item_categories.shape[1]} "
          f"categories ({data.stats()['avg_categories_per_item']:.1f} per item), {args.backbone}, "
          f"batch {args.batch_size}, diversity_topk {args.diversity_topk}, category form {args.category_form} "
          f"(ids: {CategoryTable.from_multi_hot(data.item_categories).sparse}), device {args.device}, "
          f"torch threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}")
    print("| method | K | s / epoch | µs / instance | adapter-epochs / min | cost vs packed K=1 | cost vs naive |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        r["us_per_instance"] = 1e6 * r["epoch_s"] / n_train
        print(f"| {r['method']} | {r['K']} | {r['epoch_s']:.2f} | {r['us_per_instance']:.1f} | "
              f"{r['adapter_epochs_per_min']:.1f} | "
              f"{r['epoch_s'] / one:.2f}x | {r['epoch_s'] / naive:.2f}x |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
