"""Score the seed-mean curves of one or more reports side by side (BENCHMARKS §14): w-utility regret on one
normalisation, fixed-reference HV, Pearson against Retrain and Spearman with w_acc, on all tasks, on the tasks
off the sweep's grid (held out) and on the grid. Every curve of `curves.csv` is scored, the best-of-N ablation
rows included, which the report's main table leaves out.

    python benchmarks/compare_curves.py main=/tmp/e2e/heldout/curves.csv
    python benchmarks/compare_curves.py 1000=a/curves.csv 10=b/curves.csv --shared Retrain,Hypernetwork

Reports given together must share the sweep and the tasks: the methods named in `--shared` are taken from the
first; every other curve is labelled with its report's label.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from padirec.evaluation.controllability import controllability_table

METRICS = ("w_acc", "ndcg10", "alpha_ndcg10")


def read_curves(path: str) -> dict[str, dict[str, np.ndarray]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {m: {k: np.array([float(r[k]) for r in rows if r["method"] == m]) for k in METRICS}
            for m in dict.fromkeys(r["method"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="label=path/to/curves.csv")
    parser.add_argument("--grid-step", type=float, default=0.1, help="the sweep's grid (tasks off it: held out)")
    parser.add_argument("--shared", default="", help="methods taken once, from the first report")
    args = parser.parse_args()
    shared, curves = set(filter(None, args.shared.split(","))), {}
    for i, spec in enumerate(args.reports):
        label, path = spec.split("=", 1)
        for method, curve in read_curves(path).items():
            if method in shared:
                if i == 0:
                    curves[method] = curve
            else:
                curves[method if len(args.reports) == 1 else f"{method} [{label}]"] = curve
    w = curves["Retrain"]["w_acc"]
    held = np.abs(np.round(w / args.grid_step) * args.grid_step - w) > 1e-6
    for title, mask in ((f"all {len(w)} tasks", np.ones_like(held)), (f"held out ({held.sum()} tasks)", held),
                        (f"on the grid ({(~held).sum()} tasks)", ~held)):
        if not mask.any():
            continue
        table = controllability_table({m: {k: v[mask] for k, v in c.items()} for m, c in curves.items()})
        print(f"\n{title}\n\n| method | w-utility regret ↓ | HV at (0, 0) ↑ | r-a | r-d | ρ(NDCG@10, w_acc) | "
              "ρ(α-NDCG@10, w_acc) |\n| --- | --- | --- | --- | --- | --- | --- |")
        for m, t in table.items():
            print(f"| {m} | {t['regret']:.4f} | {t['hv']:.5f} | {t['r_a']:.4f} | {t['r_d']:.4f} | {t['rho_a']:.3f} | "
                  f"{t['rho_d']:.3f} |")


if __name__ == "__main__":
    main()
