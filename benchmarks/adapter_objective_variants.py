"""Adapter-objective variants on one frozen backbone: test NDCG@10 / α-NDCG@10 per kept epoch.

    python benchmarks/adapter_objective_variants.py BACKBONE.pt --epochs 6 --keep-last 4 --diversity-topk 10

BACKBONE.pt is a backbone checkpoint (it names its data). Every other flag overrides the `AdapterConfig` field of
that name (one flag per field, typed as the field); a field whose flag is not given keeps its default. Each output
line starts with the overrides given, as a dict. Weights: w_acc 0, 0.1, 0.5, 1.
"""

import argparse
import time

import numpy as np
import torch

from padirec.cli.flags import add_flags, flag_values
from padirec.config import DataSpec, load_data
from padirec.models import load_backbone
from padirec.training import AdapterConfig, train_adapters


def parse_args(argv: list[str] | None = None, description: str | None = __doc__) -> tuple[str, dict]:
    """The backbone path, and the `AdapterConfig` overrides given (only those)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone", metavar="BACKBONE.pt", help="backbone checkpoint (e.g. from `padirec pretrain`)")
    add_flags(parser.add_argument_group("AdapterConfig overrides"), AdapterConfig, section="adapter")
    args = parser.parse_args(argv)
    return args.backbone, flag_values(args).get("adapter", {})


def main() -> None:
    backbone_path, overrides = parse_args()
    torch.set_num_threads(1)
    backbone, extra = load_backbone(backbone_path)
    data = load_data(DataSpec(**extra["data"]))
    weights = np.array([[0, 1], [0.1, 0.9], [0.5, 0.5], [1, 0]], dtype=np.float32)
    started = time.time()
    result = train_adapters(backbone, data, weights, AdapterConfig(**overrides), progress=False,
                            eval_splits=("test",))
    for e, slot in enumerate(result.slots):
        print(overrides, slot, result.epochs[e].tolist(), np.round(result.metrics["test_ndcg10"][e], 4),
              np.round(result.metrics["test_alpha_ndcg10"][e], 4), flush=True)
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
