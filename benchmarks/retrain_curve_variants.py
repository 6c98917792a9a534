"""The Retrain curve of one backbone under several adapter-objective variants: monotone? even?

    python benchmarks/retrain_curve_variants.py --dataset ml-100k --data-dir ../shared/data/ml-100k \\
        --backbone /tmp/b.pt --variants none,initial,range --epochs 10 --keep-last 3

Each variant is `objective_scale[+scalarization][:keep[:diversity_topk]]` (e.g. `range:best:10`,
`even+tchebycheff:last:10`), optionally followed by `@field=value` of `AdapterConfig` (e.g.
`@map_refinements=1@augmentation=0.05`); `tchebycheff` alone stands for `range+tchebycheff`. The 11 weights w_acc =
0, 0.1, …, 1 are trained together (one packed run per seed of `--seeds`, the calibration shared, as in a sweep);
each w is answered by its chosen adapter (`params[-1]`), its test metrics averaged over the seeds. Printed per
variant: the mean test curve, Spearman of each metric with w_acc, the evenness (largest gap / mean gap in min–max
space), the scales used and the wall time (variants that differ only in `keep` share one calibration, timed with
the first). A missing `--backbone` file is pretrained (and saved there) first. `--rerankers` adds, per variant,
the hypervolume at (0, 0) of its test curve and at how many weights MMR and DPP (λ = w_acc, the report's) have both
test metrics above its point (issue 13's "no baseline above Retrain"), and the re-rankers' own hypervolume.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from padirec.cli.flags import add_flags, flag_values
from padirec.config import DataSpec, data_spec, load_data
from padirec.evaluation.baselines import DPP, MMR, Scorer
from padirec.evaluation.ranking import EvalSet, rank_metrics
from padirec.metrics import fixed_hypervolume, spearman
from padirec.models import load_backbone, save_backbone
from padirec.sweep.report import curve_evenness
from padirec.training import AdapterConfig, PretrainConfig, calibrate, pretrain_backbone, train_adapters


def variant_config(spec: str, base: AdapterConfig) -> AdapterConfig:
    spec, *settings = spec.split("@")
    scale, _, rest = spec.partition(":")
    keep, _, topk = rest.partition(":")
    scale, plus, scalarization = scale.partition("+")
    if scale == "tchebycheff":
        scale, plus, scalarization = "range", "+", "tchebycheff"
    extra = {key: type(getattr(base, key))(value) for key, _, value in (s.partition("=") for s in settings)}
    return replace(base, objective_scale=scale, scalarization=scalarization if plus else "linear",
                   keep=keep or base.keep, diversity_topk=int(topk) if topk else base.diversity_topk, **extra)


def curve_text(ndcg, alpha) -> tuple[str, str]:
    """A curve's NDCG@10 and α-NDCG@10 values, w_acc 0 … 1, as printed."""
    return " ".join(f"{v:.4f}" for v in ndcg), " ".join(f"{v:.3f}" for v in alpha)


def variant_parser(description: str) -> argparse.ArgumentParser:
    """The data, backbone, variant and adapter flags shared by the variant benchmarks."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser.add_argument_group("data"), DataSpec, section="data",
              flags={"kind": "--dataset", "path": "--data-dir", "categories_path": "--categories"})
    parser.add_argument("--backbone", required=True, help="backbone.pt (pretrained and saved there if missing)")
    parser.add_argument("--pretrain-epochs", type=int, default=200, help="cap when pretraining (patience 5)")
    parser.add_argument("--pretrain-backbone", default="sasrec", help="backbone kind when pretraining")
    parser.add_argument("--variants", default="none,initial,range",
                        help="comma-separated scale[+scalarization][:keep[:topk]]; scale: none|range|initial|even")
    parser.add_argument("--seeds", default="0", help="comma-separated adapter seeds; the curve is their mean")
    parser.add_argument("--per-seed", action="store_true", help="also print each seed's curve")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 beside another job)")
    parser.add_argument("--rerankers", action="store_true", help="count the weights where MMR / DPP beat the curve")
    add_flags(parser.add_argument_group("adapter"), AdapterConfig, ["epochs", "keep_last", "keep", "lr",
                                                                    "diversity_topk", "scale_epochs"],
              section="adapter")
    return parser


def backbone_and_data(args: argparse.Namespace, objectives: list[str] | None = None) -> tuple:
    """The backbone (pretrained and saved first if its file is missing), its data and the base AdapterConfig (of
    `objectives`, else the default pair)."""
    torch.set_num_threads(args.threads)
    values = flag_values(args)
    path = Path(args.backbone)
    if path.exists():
        backbone, extra = load_backbone(path)
        spec = data_spec(extra.get("data"), values.get("data"))
    else:
        spec = data_spec(values.get("data"))
        data = load_data(spec)
        started = time.time()
        pretrain = PretrainConfig(backbone=args.pretrain_backbone, epochs=args.pretrain_epochs, patience=5)
        backbone, info = pretrain_backbone(data, pretrain)
        save_backbone(backbone, path, extra={"data": spec.to_dict()})
        print(f"pretrained in {time.time() - started:.0f} s: {info}")
    data = load_data(spec)
    base = AdapterConfig(**values.get("adapter", {}), **({"objectives": objectives} if objectives else {}))
    bare = {k: float(v[0]) for k, v in rank_metrics(backbone, EvalSet.build(data, "test", objectives=base.objectives)
                                                      ).items()}
    print(f"data {spec.kind} {spec.path or ''}: {data.stats()}\nbackbone alone: {bare}")
    return backbone, data, base


def calibrated_variants(names: str, base: AdapterConfig, backbone, data):
    """(name, calibrated config, start time) per variant; variants that differ only in `keep` share one
    calibration, as they would share a sweep's (the pilot adapters keep their last epoch whatever `keep` says)."""
    calibrated = {}
    for name in names.split(","):
        started = time.time()
        config = variant_config(name.strip(), base)
        key = repr(replace(config, keep="last"))
        if key not in calibrated:
            calibrated[key] = calibrate(backbone, data, config)
        yield name, replace(calibrated[key], keep=config.keep), started


def reranker_points(backbone, data, weights: np.ndarray) -> dict[str, np.ndarray]:
    """MMR's and DPP's test points `[K, 2]` at λ = w_acc, as the report scores them."""
    scorer = Scorer.build(backbone, data, "test")
    points = {}
    for method in (MMR(), DPP()):
        metrics = method.metrics(weights, scorer)
        points[method.name] = np.stack([metrics["ndcg10"], metrics["alpha_ndcg10"]], 1)
        print(f"{method.name}: HV at (0, 0) {fixed_hypervolume(*points[method.name].T):.4f}; NDCG@10 "
              + "; α-NDCG@10 ".join(curve_text(*points[method.name].T)), flush=True)
    return points


def above_text(curve: np.ndarray, rerankers: dict[str, np.ndarray]) -> str:
    """The curve's hypervolume at (0, 0) and, per re-ranker, the weights where both its metrics are higher."""
    counts = [f"{name} {int(((points > curve).all(1)).sum())}" for name, points in rerankers.items()]
    return f"HV {fixed_hypervolume(*curve.T):.4f}; above: " + ", ".join(counts)


def main() -> None:
    args = variant_parser(__doc__).parse_args()
    backbone, data, base = backbone_and_data(args)
    w_acc = np.round(np.linspace(0, 1, 11), 4)
    weights = np.stack([w_acc, 1 - w_acc], 1).astype(np.float32)
    rerankers = reranker_points(backbone, data, weights) if args.rerankers else {}
    print("| variant | scales | Spearman NDCG | Spearman α-NDCG | evenness | NDCG@10 (w_acc 0 … 1) | α-NDCG@10 | s |"
          + (" re-rankers |" if rerankers else ""))
    print("| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if rerankers else ""))
    for name, config, started in calibrated_variants(args.variants, base, backbone, data):
        runs = [train_adapters(backbone, data, weights, replace(config, seed=int(seed)), progress=False)
                for seed in args.seeds.split(",")]
        ndcg, alpha = np.mean([r.chosen_points(config.objectives, "test") for r in runs], axis=0).T
        scales = ", ".join(f"{s:.3g}" for s in config.scales)  # calibrated once above, shared by every seed
        if config.weight_map:
            scales += "; map " + " ".join(f"{v:.3g}" for v in config.weight_map)
        if args.per_seed:
            for seed, run in zip(args.seeds.split(","), runs, strict=True):
                ndcg_s, alpha_s = run.chosen_points(config.objectives, "test").T
                print(f"  seed {seed}: evenness {curve_evenness(ndcg_s, alpha_s):.2f}; NDCG@10 "
                      + "; α-NDCG@10 ".join(curve_text(ndcg_s, alpha_s)))
        print(f"| {name} | {scales} | {spearman(w_acc, ndcg):.3f} | "
              f"{spearman(w_acc, alpha):.3f} | {curve_evenness(ndcg, alpha):.2f} | "
              f"{' | '.join(curve_text(ndcg, alpha))} | "
              f"{time.time() - started:.0f} |" + (f" {above_text(np.stack([ndcg, alpha], 1), rerankers)} |"
                                                 if rerankers else ""), flush=True)


if __name__ == "__main__":
    main()
