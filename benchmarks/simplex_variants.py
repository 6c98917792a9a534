"""The Retrain surface over the simplex of three (or more) objectives under several adapter-objective variants:
does each knob move its own metric, and the further objective's at a fixed accuracy weight (the paper's Table 3)?

    python benchmarks/simplex_variants.py --dataset ml-100k --data-dir ../shared/data/ml-100k --backbone /tmp/b.pt \\
        --objectives accuracy,diversity,fairness --variants none,initial,tchebycheff --grid-step 0.2 --epochs 10

Variants and data flags as in `retrain_curve_variants.py` (whose front this shares). The grid's weights are trained
together (one packed run per seed of `--seeds`, the calibration shared, as in a sweep); each w is answered by its
chosen adapter, its test metrics averaged over the seeds. Printed per variant: Spearman ρ of each objective's
metric with its own weight over the whole grid (+1 is control; −1 for a gap, where lower is better), each
further objective's ρ with its weight at the fixed accuracy weights (`padirec sweep report`'s Table 3 rows), the
span of each metric over the grid, the scales and the wall time.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from retrain_curve_variants import backbone_and_data, calibrated_variants, variant_parser

from padirec.metrics import spearman
from padirec.objectives import resolve_objectives
from padirec.sweep.grid import simplex_grid
from padirec.sweep.report import fixed_accuracy_rows
from padirec.training import train_adapters


def main() -> None:
    parser = variant_parser(__doc__)
    parser.add_argument("--objectives", default="accuracy,diversity,fairness", help="names in objectives.REGISTRY")
    parser.add_argument("--grid-step", type=float, default=0.2, help="the simplex grid's step (0.2: 21 weights)")
    args = parser.parse_args()
    objectives = args.objectives.split(",")
    backbone, data, base = backbone_and_data(args, objectives)
    found = resolve_objectives(objectives)
    metrics = [o.metric for o in found]
    weights = simplex_grid(args.grid_step, len(objectives))
    print(f"{len(weights)} weights on the ({', '.join(objectives)}) simplex, seeds {args.seeds}")
    labels = [o.label for o in found]
    print(f"| variant | scales | {' | '.join(f'ρ({label}, own w)' for label in labels)} | "
          f"{' | '.join(f'{label} span' for label in labels)} | Table 3 ρ at each w_acc level | mean | s |")
    print("| --- " * (2 * len(labels) + 5) + "|")
    for name, config, started in calibrated_variants(args.variants, base, backbone, data):
        runs = [train_adapters(backbone, data, weights, replace(config, seed=int(seed)), progress=False)
                for seed in args.seeds.split(",")]
        points = np.mean([r.chosen_points(objectives, "test") for r in runs], axis=0)  # [K, p]
        curve = {"w": weights, **{m: points[:, j] for j, m in enumerate(metrics)}}
        own = [spearman(weights[:, j], curve[m]) for j, m in enumerate(metrics)]
        spans = [f"{curve[m].min():.4g}–{curve[m].max():.4g}" for m in metrics]
        rows = fixed_accuracy_rows({"Retrain": curve}, objectives)
        table3 = " ".join(f"{r['rho']:+.2f}" for r in rows)
        mean = f"{np.mean([r['rho'] for r in rows]):+.2f}" if rows else "—"
        scales = ", ".join(f"{s:.3g}" for s in config.scales)
        print(f"| {name} | {scales} | {' | '.join(f'{v:+.3f}' for v in own)} | {' | '.join(spans)} | {table3} | "
              f"{mean} | {time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
