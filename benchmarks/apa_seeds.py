"""Does preference alignment (TA-Rec's APA, `train-dit --preference-epochs`) raise utility? Issue 14.3, 5 seeds.

    MLFLOW_TRACKING_URI=sqlite:////tmp/e2e/mlflow.db PADIREC_DATA_DIR=/work/shared/data/ml-100k \\
        python benchmarks/apa_seeds.py --sweep SWEEP_RUN --model models:/padirec-dit/1 --seeds 5 --epochs 5

Per seed s the trained generator is aligned with `PreferenceConfig(seed=s)` (pairs drawn, batches ordered and
noise drawn with s) and both the plain and the aligned generator are sampled with seed s on the sweep's grid
(`--sampler`, default the serving default `ddim:1`; `--select N`: best of N on `--select-users` validation
users, as `generate --select`). The test split scores them beside Retrain (the sweep's adapters); the report's
Table 1 metrics (mean ± std over seeds) and paired Wilcoxon tests of the aligned generator against the others
are printed as Markdown. Nothing is logged: the aligned generators live in memory only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from padirec.contracts.artifacts import resolve_generator_file
from padirec.contracts.checkpoint import load_checkpoint
from padirec.contracts.dataset import dataset_arrays, dataset_objectives, download_dataset, read_dataset
from padirec.diffusion.generator import generator_from_checkpoint
from padirec.diffusion.preference import PreferenceConfig, align_checkpoint
from padirec.diffusion.sampling import parse_sampler
from padirec.evaluation.baselines import PaDiRec, Retrain, Scorer
from padirec.evaluation.controllability import (
    controllability_table,
    paired_tests,
    points_of,
    seed_curves,
    tables_markdown,
)
from padirec.evaluation.select import BestOf
from padirec.metrics import point_bounds
from padirec.objectives import resolve_objectives
from padirec.sweep.run import load_sweep_setting

ALIGNED, PLAIN = "PaDiRec (APA)", "PaDiRec (plain)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="the sweep's MLflow run id (its gathered dataset)")
    parser.add_argument("--model", required=True, help="the trained generator: dit.pt, run id or models:/ URI")
    parser.add_argument("--data-dir", help="where the backbone's dataset is (default: its recorded path)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="APA epochs")
    parser.add_argument("--beta", type=float, default=PreferenceConfig.beta)
    parser.add_argument("--lr", type=float, default=PreferenceConfig.lr)
    parser.add_argument("--sampler", default="ddim:1")
    parser.add_argument("--select", type=int, default=0, help="best of N samples per w (0: one sample)")
    parser.add_argument("--select-users", type=int, default=256)
    args = parser.parse_args()
    if args.seeds < 2 or args.epochs < 1:
        parser.error("--seeds must be >= 2 (paired tests) and --epochs >= 1")

    setting = load_sweep_setting(args.sweep, data_overrides={"path": args.data_dir} if args.data_dir else None)
    backbone, data = setting.backbone, setting.data
    table, metadata = read_dataset(download_dataset(args.sweep))
    arrays, objectives = dataset_arrays(table), dataset_objectives(metadata)
    metrics = points_of(arrays, objectives)
    maximise = [o.maximise for o in resolve_objectives(objectives)]
    checkpoint = load_checkpoint(resolve_generator_file(args.model))
    plain = generator_from_checkpoint(checkpoint)
    weights = np.unique(np.round(arrays["w"], 4), axis=0).astype(np.float32)
    label, sampler = parse_sampler(args.sampler)
    scorer = Scorer.build(backbone, data, "test", objectives)
    selector = Scorer.build(backbone, data, "valid", objectives).sample(args.select_users) if args.select else None
    bounds = point_bounds(metrics)

    def method(generator, seed: int, name: str):
        inner = PaDiRec(generator, sampler, args.select or 1, seed, name)
        return BestOf(inner, selector, bounds, name, objectives) if args.select else inner

    runs: dict[str, list] = {PLAIN: [], ALIGNED: []}
    started = time.perf_counter()
    for seed in range(args.seeds):
        config = PreferenceConfig(epochs=args.epochs, beta=args.beta, lr=args.lr, seed=seed)
        aligned = align_checkpoint(checkpoint, arrays["params"], arrays["w"], metrics, config, maximise=maximise)
        runs[PLAIN].append(method(plain, seed, PLAIN))
        runs[ALIGNED].append(method(generator_from_checkpoint(aligned), seed, ALIGNED))
        print(f"seed {seed}: aligned ({aligned.preference['metrics']}) after {time.perf_counter() - started:.0f} s",
              flush=True)
    per_seed = {"Retrain": seed_curves([Retrain(arrays)], weights, scorer, rows_are_seeds=True),
                **{name: seed_curves(r, weights, scorer) for name, r in runs.items()}}
    curves = {name: {"w_acc": weights[:, 0].astype(float), **({"w": weights} if len(objectives) > 2 else {}),
                     **{k: v.mean(0) for k, v in s.items()}} for name, s in per_seed.items()}
    table1 = controllability_table(curves, per_seed=per_seed, objectives=objectives)
    tests = paired_tests(per_seed, weights, name=ALIGNED, objectives=objectives)
    sampled = f"best of {args.select}, {label}" if args.select else label
    print(f"\n{len(weights)} tasks, {args.seeds} seeds, sampler {sampled}, APA {args.epochs} epochs "
          f"(β {args.beta:g}, lr {args.lr:g}); {time.perf_counter() - started:.0f} s\n")
    print("\n".join(tables_markdown(table1, tests)))


if __name__ == "__main__":
    main()
