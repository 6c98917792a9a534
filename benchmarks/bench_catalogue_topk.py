"""Full-catalogue scoring in chunks of `evaluation.ranking.SCORE_CHUNK` scores against one `[K, users, items]`
product: the adapter step's top-k (`diversity_topk`, `training.catalogue_top`) and the validation / report ranking
(`rank_metrics`, 256 users a chunk before), on a random backbone of each catalogue size.

    python benchmarks/bench_catalogue_topk.py [--items 401 1683 9825 40000] [--threads 1] [--repeats 5]

Top-k: K = 17 adapters (the calibration's pack) × B = 256 states of width 64, k = 10, as in a packed sweep's batch.
Ranking: the same 17 adapters on the validation split of a 2,000-user synthetic set with that many items.
Prints per catalogue size the mean ms of each way and whether they agree, as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from padirec.data import SyntheticConfig, make_synthetic, preprocess
from padirec.evaluation.ranking import EvalSet, encode_instances, rank_metrics
from padirec.models import BackboneConfig, build_backbone, init_adapter_flat
from padirec.training import catalogue_top


def mean_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1e3


def time_catalogue(n_items: int, repeats: int) -> dict:
    """Both ways on one catalogue size, and whether they pick the same items."""
    backbone = build_backbone(BackboneConfig(n_items=n_items, hidden=64)).requires_grad_(False).eval()
    h = torch.randn(17, 256, 64)
    product = mean_ms(lambda: backbone.score(h)[..., 1:].topk(10, dim=-1), repeats)
    chunked = mean_ms(lambda: catalogue_top(backbone, h, 10), repeats)
    same = torch.equal(catalogue_top(backbone, h, 10), backbone.score(h)[..., 1:].topk(10, dim=-1).indices + 1)
    data = preprocess(make_synthetic(SyntheticConfig(n_users=2000, n_items=n_items, n_categories=20, seed=0)))
    backbone = build_backbone(BackboneConfig(n_items=data.n_items, hidden=64)).requires_grad_(False).eval()
    valid = EvalSet.build(data, "valid")
    states = encode_instances(backbone, valid.instances)
    adapters = init_adapter_flat(0, 64).repeat(17, 1) + 0.05 * torch.randn(17, 1096)
    before = mean_ms(lambda: rank_metrics(backbone, valid, adapters, states, chunk=256), 1)
    sized = mean_ms(lambda: rank_metrics(backbone, valid, adapters, states), 1)
    agree = all(np.allclose(a, b, atol=1e-6) for a, b in zip(rank_metrics(backbone, valid, adapters, states).values(),
                                                           rank_metrics(backbone, valid, adapters, states, chunk=256)
                                                           .values(), strict=True))
    return {"items": n_items, "topk_one_product_ms": round(product, 1), "topk_chunked_ms": round(chunked, 1),
            "topk_same": same, "ranking_256_users_ms": round(before, 1), "ranking_sized_ms": round(sized, 1),
            "ranking_same": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[401, 1683, 9825, 40000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for n_items in args.items:
        print(json.dumps({**time_catalogue(n_items, args.repeats), "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
