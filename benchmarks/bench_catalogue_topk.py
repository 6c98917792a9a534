"""The adapter step's top-k over the whole catalogue (`diversity_topk`): one `[K, B, items]` product against
`training.catalogue_top`'s chunks, on random item embeddings of each catalogue size.

    python benchmarks/bench_catalogue_topk.py [--items 401 1683 9825 40000] [--threads 1] [--repeats 5]

K = 17 adapters (the calibration's pack) × B = 256 states of width 64, k = 10, as in a packed sweep's batch.
Prints per catalogue size the mean ms of each and whether they pick the same items, as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from padirec.models import BackboneConfig, build_backbone
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
    return {"items": n_items, "one_product_ms": round(product, 1), "chunked_ms": round(chunked, 1),
            "speedup": round(product / chunked, 2), "same": same}


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
