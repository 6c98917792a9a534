"""Does the adapter's size bound the trade-off? The sweep's grid trained with wider bottlenecks, beside MMR.

    MLFLOW_TRACKING_URI=sqlite:////tmp/s9/mlflow.db python benchmarks/adapter_capacity.py --sweep RUN_ID \
        --bottlenecks 8,32,128

MMR re-ranking the backbone's top 100 has both metrics above the swept adapters at most weights (BENCHMARKS §7).
Either a residual bottleneck of 8 on the user's state (1,096 numbers) cannot express a diverse top-10, or the
training objective does not find one. This trains the sweep's grid as one packed run per bottleneck width with the
sweep's calibrated objective, exactly as `train_adapters` does (same init, batches, loss, Adam), and scores every
final adapter's full ranking on the test split beside MMR at λ = w_acc. Bottleneck 8 is the sweep's own adapter
(a check that this loop reproduces its curve). Not a library path: the generator and every stage assume 1,096
numbers, so only this probe trains other widths.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from padirec import tracking
from padirec.evaluation.baselines import MMR, Scorer
from padirec.evaluation.controllability import controllability_table
from padirec.evaluation.ranking import encode_instances
from padirec.evaluation.rerank import mmr_rerank
from padirec.metrics import topk_full_ranking
from padirec.models.adapter import adapter_layout, apply_adapters, init_adapter_flat, unflatten
from padirec.objectives import ObjectiveData
from padirec.training import adapter_losses, calibrate, candidate_batches, scalarized_loss


@torch.no_grad()
def mmr_teacher(backbone, data, states: torch.Tensor, instances, lams, candidates: int = 100, k: int = 10,
                alpha: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training instance's backbone top-`candidates` items `[N, C]` (its history masked) and MMR's list at
    each λ as positions into them `[K, N, k]`: what `--teacher mmr` adapters learn to rank first."""
    categories = torch.as_tensor(data.item_categories, dtype=torch.float32)
    history = torch.as_tensor(instances.histories)
    items, lists = [], [[] for _ in lams]
    for start in range(0, len(states), 1024):
        scores = backbone.score(states[start:start + 1024])
        scores.scatter_(1, history[start:start + 1024], float("-inf"))  # the history, and the padding item 0
        values, top = scores.topk(candidates, dim=-1)
        items.append(top)
        for j, lam in enumerate(lams):
            lists[j].append(mmr_rerank(values, categories[top], float(lam), k, alpha))
    return torch.cat(items), torch.stack([torch.cat(part) for part in lists])


def list_mle(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Plackett–Luce negative log-likelihood of the lists `order [..., B, k]` (positions) under `scores [..., B, C]`,
    averaged over the B rows."""
    taken = torch.zeros_like(scores, dtype=torch.bool)
    loss = scores.new_zeros(scores.shape[:-1])
    for i in range(order.shape[-1]):
        chosen = order[..., i : i + 1]
        loss = loss + torch.logsumexp(scores.masked_fill(taken, float("-inf")), -1) - scores.gather(-1, chosen)[..., 0]
        taken = taken.scatter(-1, chosen, True)
    return loss.mean(-1)


def train_width(backbone, data, weights: np.ndarray, config, bottleneck: int, teacher: str = "") -> torch.Tensor:
    """`train_adapters`' loop for K packed adapters of another bottleneck width: the final flat params `[K, size]`.
    `teacher="mmr"`: instead of the sweep's objective, each adapter learns MMR's list at λ = w_acc (ListMLE over
    the backbone's top 100)."""
    layout = adapter_layout(backbone.config.hidden, bottleneck)
    rng = np.random.default_rng(config.seed)
    train = data.train_instances()
    states = encode_instances(backbone, train)
    context = ObjectiveData.build(data, config.objectives, config.device, train)
    w = torch.as_tensor(weights)
    params = init_adapter_flat(config.init_seed, backbone.config.hidden, bottleneck).repeat(len(weights), 1)
    params.requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=config.lr)
    if teacher:
        pool, lists = mmr_teacher(backbone, data, states, train, weights[:, 0])
    for epoch in range(config.epochs):
        started, losses = time.perf_counter(), []
        for index, candidates in candidate_batches(data, train, config.n_negatives, config.batch_size, rng):
            index = torch.as_tensor(index)
            h = apply_adapters(states[index], unflatten(params, layout))
            if teacher:
                loss = list_mle(backbone.score(h, pool[index].expand(len(h), -1, -1)), lists[:, index]).sum()
            else:
                loss = scalarized_loss(adapter_losses(h, candidates, backbone, context, config, index,
                                                      states[index]), w, config).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"  bottleneck {bottleneck}: epoch {epoch + 1}/{config.epochs}, loss {np.mean(losses):.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return params.detach()


@torch.no_grad()
def test_points(scorer: Scorer, params: torch.Tensor, bottleneck: int) -> dict[str, np.ndarray]:
    """Test NDCG@10 / α-NDCG@10 (full ranking, history masked) of each adapter."""
    layout = adapter_layout(scorer.backbone.config.hidden, bottleneck)
    rows = []
    for flat in params:
        tops = [topk_full_ranking(scorer.backbone.score(apply_adapters(scorer.states[s:s + 256],
                                                                        unflatten(flat[None], layout))[0]),
                                  scorer.eval_set.excluded[s:s + 256], scorer.eval_set.k)
                for s in range(0, len(scorer.states), 256)]
        rows.append(scorer.list_metrics(torch.cat(tops)))
    return {k: np.array([r[k] for r in rows]) for k in ("ndcg10", "alpha_ndcg10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a two-objective sweep's parent run id (its calibrated config)")
    parser.add_argument("--bottlenecks", default="8,32,128")
    parser.add_argument("--epochs", type=int, default=None, help="default: the sweep's")
    parser.add_argument("--lr", type=float, default=None, help="default: the sweep's")
    parser.add_argument("--teacher", choices=["", "mmr"], default="", help="mmr: learn MMR's lists (λ = w_acc)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracking.setup()
    from padirec.sweep.run import load_sweep_setting

    setting = load_sweep_setting(args.sweep)
    sweep, backbone, data = setting.config, setting.backbone, setting.data  # loaded frozen, in eval mode
    config = replace(sweep.adapter, seed=0, lr=args.lr or sweep.adapter.lr, epochs=args.epochs or sweep.adapter.epochs)
    config = calibrate(backbone, data, config)  # recorded on the sweep run: nothing to compute
    weights = sweep.grid().astype(np.float32)
    if weights.shape[1] != 2:
        raise SystemExit("two objectives only: the grid is read as w_acc")
    scorer = Scorer.build(backbone, data, "test")
    curves = {"MMR": {"w_acc": weights[:, 0], **MMR().metrics(weights, scorer)}}
    for b in (int(x) for x in args.bottlenecks.split(",")):
        size = sum(s.size for s in adapter_layout(backbone.config.hidden, b))
        print(f"bottleneck {b} ({size} numbers per adapter), {len(weights)} weights, {config.epochs} epochs",
              flush=True)
        params = train_width(backbone, data, weights, config, b, args.teacher)
        curves[f"bottleneck {b}" + (f", learning {args.teacher.upper()}" if args.teacher else "")] = {
            "w_acc": weights[:, 0], **test_points(scorer, params, b)}
    print(f"\nsweep {args.sweep}, lr {config.lr}, {config.epochs} epochs, seed 0; test split\n")
    names = list(curves)
    print("| w_acc | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 1))
    for i, w in enumerate(weights[:, 0]):
        print(f"| {w:.1f} | " + " | ".join(f"{c['ndcg10'][i]:.4f} / {c['alpha_ndcg10'][i]:.3f}"
                                          for c in curves.values()) + " |")
    mmr = curves["MMR"]
    table = controllability_table(curves, reference=names[1])
    print("\n| curve | HV at (0, 0) | w-utility regret (over these curves) | weights where MMR is above on both |\n"
          "| --- | --- | --- | --- |")
    for name, c in curves.items():
        above = int(((mmr["ndcg10"] > c["ndcg10"]) & (mmr["alpha_ndcg10"] > c["alpha_ndcg10"])).sum())
        print(f"| {name} | {table[name]['hv']:.5f} | {table[name]['regret']:.4f} | {above} |")


if __name__ == "__main__":
    main()
