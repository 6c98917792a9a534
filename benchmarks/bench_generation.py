"""Generated adapters vs Retrain (quality) and generation time per adapter (speed), plain PyTorch.

    python benchmarks/bench_generation.py --checkpoint dit.pt --backbone backbone.pt \
        --dataset adapters.parquet [--device cuda] [--samplers ddpm,ddim:50,ddim:20] [--seeds 3]
    python benchmarks/bench_generation.py --arch paper --samplers ddim:50 --batch 64   # speed only

`--arch paper` times an untrained DiT of the paper's size (Table 8: hidden 512, 4 layers, 8 heads,
FFN 2048): generation time does not depend on the weights. `--batch 0` skips the large batch.

Quality: for w_acc in {0, 0.1, ..., 1}, test NDCG@10 and α-NDCG@10 of the generated adapters
(mean over `--seeds` samples) against the sweep's own adapters at the same w (Retrain, read
from the gathered dataset): Pearson r-a, r-d and Avg.HV. Speed: wall time to generate a batch
of 1 and of `--batch` adapters, per sampler. Needs no Ray and no MLflow.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from padirec.config import DataSpec, load_data
from padirec.contracts.dataset import dataset_arrays, read_dataset
from padirec.diffusion import SamplerConfig
from padirec.diffusion.generate import generate_and_evaluate
from padirec.diffusion.generator import Generator, load_generator
from padirec.diffusion.model import DiT, DiTConfig
from padirec.diffusion.sampling import parse_sampler
from padirec.diffusion.schedule import DiffusionSchedule, ScheduleConfig
from padirec.evaluation import controllability_table, table_markdown
from padirec.evaluation.ranking import EvalSet
from padirec.models import ParamNormalizer, load_backbone
from padirec.models.adapter import ADAPTER_LAYOUT
from padirec.sweep import retrain_curve
from padirec.sweep.report import TASKS


def parse_samplers(text: str) -> dict[str, SamplerConfig]:
    """`ddim:20,ddim:50,ddpm` -> {"PaDiRec DDIM-20": ..., ...} (the report's sampler syntax)."""
    return {f"PaDiRec {label}": sampler for label, sampler in map(parse_sampler, text.split(","))}


def time_generation(generator, sampler: SamplerConfig, batch: int, device: str, repeats: int = 3) -> float:
    w = np.stack([np.linspace(0, 1, batch), 1 - np.linspace(0, 1, batch)], 1)
    generator.generate(w, sampler)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        generator.generate(w, sampler)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def untrained_generator(device: str, **dit: int) -> Generator:
    """A Generator with random weights and an identity normaliser: for timing only."""
    n = len(ADAPTER_LAYOUT)
    model = DiT(DiTConfig(**dit)).to(device).eval().requires_grad_(False)
    normalizer = ParamNormalizer(torch.zeros(n), torch.ones(n), -torch.ones(n), torch.ones(n)).to(device)
    return Generator(model, DiffusionSchedule(ScheduleConfig()).to(device), normalizer, "v", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="dit.pt (or --arch for an untrained DiT, speed only)")
    parser.add_argument("--arch", choices=["paper"], help="time an untrained paper-size DiT instead")
    parser.add_argument("--backbone", help="backbone.pt (quality part; skipped without it)")
    parser.add_argument("--dataset", help="gathered adapters.parquet (the Retrain curve)")
    parser.add_argument("--data-dir", help="override the data directory stored in the backbone checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samplers", default="ddpm,ddim:50,ddim:20")
    parser.add_argument("--guidance", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()

    if bool(args.checkpoint) == bool(args.arch):
        parser.error("give exactly one of --checkpoint and --arch")
    generator = load_generator(args.checkpoint, args.device) if args.checkpoint else untrained_generator(args.device)
    samplers = parse_samplers(args.samplers)
    for config in samplers.values():
        config.guidance = args.guidance
    report: dict = {"device": args.device, "threads": torch.get_num_threads(),
                    "dit": {k: getattr(generator.model.config, k) for k in ("hidden", "depth", "heads", "ffn")}}

    if args.backbone and args.dataset and args.checkpoint:
        backbone, extra = load_backbone(args.backbone, args.device)
        spec = DataSpec(**extra["data"])
        if args.data_dir:
            spec.path = args.data_dir
        data = load_data(spec)
        eval_set = EvalSet.build(data, "test")
        table, _ = read_dataset(args.dataset)
        retrain = retrain_curve(dataset_arrays(table))
        curves = {"Retrain": {"ndcg10": retrain["ndcg10"], "alpha_ndcg10": retrain["alpha_ndcg10"]}}
        for name, sampler in samplers.items():
            rows = [generate_and_evaluate(generator, backbone, data, TASKS, sampler, seed=s, eval_set=eval_set)
                    for s in range(args.seeds)]
            curves[name] = {k: np.mean([[r[k] for r in seed_rows] for seed_rows in rows], axis=0)
                            for k in ("ndcg10", "alpha_ndcg10")}
        report["quality"] = controllability_table(curves)
        print(f"guidance {args.guidance}, {args.seeds} samples per task")
        print(table_markdown(report["quality"]))
        print("| w_acc | " + " | ".join(f"{m} NDCG / α-NDCG" for m in curves) + " |")
        for i, w in enumerate(TASKS):
            print(f"| {w:.1f} | " + " | ".join(f"{c['ndcg10'][i]:.4f} / {c['alpha_ndcg10'][i]:.4f}"
                                              for c in curves.values()) + " |")
        report["curves"] = {m: {k: v.tolist() for k, v in c.items()} for m, c in curves.items()}

    print(f"\n| sampler | batch 1: ms / adapter | batch {args.batch}: adapters / s |\n| --- | --- | --- |")
    report["speed"] = {}
    for name, sampler in samplers.items():
        one = time_generation(generator, sampler, 1, args.device)
        many = time_generation(generator, sampler, args.batch, args.device, repeats=1) if args.batch else math.nan
        report["speed"][name] = {"batch1_ms": one * 1e3, f"batch{args.batch}_per_s": args.batch / many}
        print(f"| {name} | {one * 1e3:.1f} | {args.batch / many:.1f} |", flush=True)
    print(json.dumps(report, default=float))


if __name__ == "__main__":
    main()
