"""Would list-aware decoding close the gap to the re-rankers? MMR on each swept adapter's own list, against MMR on
the frozen backbone (issue 13: "no baseline has both metrics above Retrain's"; issue 14: MMR first on regret).

    MLFLOW_TRACKING_URI=sqlite:////tmp/f5/mlflow.db python benchmarks/adapter_rerank.py --sweep RUN_ID

An adapter moves the user's state, and the list is the top 10 of the moved scores, item by item; MMR builds the list
greedily, each pick judged by the categories it adds. This probe re-ranks each Retrain adapter's own top-100 with
the report's MMR (α-DCG coverage gain) at λ on a grid, on the validation and the test split, and prints:

- the fixed-reference hypervolume (test, at (0, 0)) of MMR on the backbone, of Retrain, and of every (adapter, λ);
- per task w, the test w-utility (min–max normalised over every test point here, as the report does) of: Retrain
  alone; MMR at λ = w_acc (the report's MMR); MMR at the λ of best validation utility; Retrain's adapter at w
  re-ranked at its best validation λ (`adapter+MMR`); any swept adapter and λ, the pair of best validation utility
  (`any adapter+MMR`). Choices are made on validation, so no row peeks at the test split.

Two objectives only (MMR is defined for the paper's pair); the sweep's seeds are averaged per (task, λ).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from padirec import tracking
from padirec.contracts.dataset import dataset_arrays, download_dataset, read_dataset
from padirec.evaluation.baselines import MMR, Retrain, Scorer
from padirec.metrics import hypervolume_points, point_bounds, w_utility_points
from padirec.models import apply_adapters, unflatten
from padirec.sweep.report import TASKS

SPLITS = ("valid", "test")
KEYS = ("ndcg10", "alpha_ndcg10")


def mmr_points(scorer: Scorer, lambdas: np.ndarray) -> np.ndarray:
    """`[L, 2]`: (NDCG@10, α-NDCG@10) of MMR at each λ on `scorer`'s states."""
    weights = np.stack([lambdas, 1 - lambdas], axis=1)
    metrics = MMR().metrics(weights, scorer)
    return np.stack([metrics[k] for k in KEYS], axis=-1)


def adapted(scorer: Scorer, flat: np.ndarray) -> Scorer:
    """`scorer` with its user states moved by one adapter (what the adapter's scores rank)."""
    params = unflatten(torch.as_tensor(flat[None].astype(np.float32)))
    return replace(scorer, states=apply_adapters(scorer.states, params)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a two-objective sweep's parent run id (gathered)")
    parser.add_argument("--lambdas", default=",".join(f"{x:.1f}" for x in np.linspace(0, 1, 11)))
    args = parser.parse_args()
    tracking.setup()
    from padirec.sweep.run import load_sweep_setting

    setting = load_sweep_setting(args.sweep)
    backbone, data = setting.backbone, setting.data
    arrays = dataset_arrays(read_dataset(download_dataset(args.sweep))[0])
    lambdas = np.array([float(x) for x in args.lambdas.split(",")])
    tasks = np.asarray(TASKS, dtype=np.float32)
    weights = np.stack([tasks, 1 - tasks], axis=1)
    adapters = Retrain(arrays).adapters(weights)  # per task [seeds, 1096]

    scorers = {s: Scorer.build(backbone, data, s) for s in SPLITS}
    mmr = {s: mmr_points(scorers[s], lambdas) for s in SPLITS}  # [L, 2]
    hybrid = {s: np.stack([np.mean([mmr_points(adapted(scorers[s], a), lambdas) for a in task], axis=0)
                           for task in adapters]) for s in SPLITS}  # [T, L, 2], seed means
    alone = {s: np.stack([scorers[s].per_task(adapters)[k] for k in KEYS], axis=-1) for s in SPLITS}  # [T, 2]

    every = np.concatenate([mmr["test"], hybrid["test"].reshape(-1, 2), alone["test"]])
    print(f"sweep {args.sweep}: {len(tasks)} tasks x {len(lambdas)} lambdas, {len(adapters[0])} seeds; "
          f"backbone {backbone.config.name}")
    print("HV at (0, 0), test: MMR on the backbone {:.5f}; Retrain {:.5f}; every (adapter, lambda) {:.5f}".format(
        hypervolume_points(mmr["test"], [0, 0]), hypervolume_points(alone["test"], [0, 0]),
        hypervolume_points(hybrid["test"].reshape(-1, 2), [0, 0])))

    valid_bounds = point_bounds(np.concatenate([mmr["valid"], hybrid["valid"].reshape(-1, 2), alone["valid"]]))
    test_bounds = point_bounds(every)
    pairs = hybrid["valid"].reshape(-1, 2)  # every (adapter, λ): row = task · L + λ index
    utilities, notes = [], []  # per task: each row's test utility and point; the choices made on validation
    for t, w in enumerate(weights):
        mmr_pick = int(np.argmax(w_utility_points(w, mmr["valid"], valid_bounds)))
        own_pick = int(np.argmax(w_utility_points(w, hybrid["valid"][t], valid_bounds)))
        any_pick = int(np.argmax(w_utility_points(w, pairs, valid_bounds)))
        points = {"Retrain": alone["test"][t], "MMR (λ = w_acc)": mmr["test"][np.argmin(np.abs(lambdas - w[0]))],
                  "MMR (valid λ)": mmr["test"][mmr_pick], "adapter+MMR (valid λ)": hybrid["test"][t, own_pick],
                  "any adapter+MMR (valid)": hybrid["test"].reshape(-1, 2)[any_pick]}
        utilities.append({n: (float(w_utility_points(w, pt, test_bounds)), pt) for n, pt in points.items()})
        notes.append(f"{lambdas[mmr_pick]:.1f} / {lambdas[own_pick]:.1f} | "
                     f"{tasks[any_pick // len(lambdas)]:.1f}, {lambdas[any_pick % len(lambdas)]:.1f}")
    names = list(utilities[0])
    print("\n| w_acc | " + " | ".join(names) + " | λ chosen (MMR / adapter+MMR) | (adapter's w_acc, λ) chosen |")
    print("| --- |" + " --- |" * (len(names) + 2))
    for w, row, note in zip(weights, utilities, notes):
        cells = " | ".join(f"{u:.3f} ({pt[0]:.4f} / {pt[1]:.3f})" for u, pt in row.values())
        print(f"| {w[0]:.1f} | {cells} | {note} |")
    table = np.array([[u for u, _ in row.values()] for row in utilities])  # [tasks, rows]
    regret = (table.max(1, keepdims=True) - table).mean(0)
    print(f"\nmean regret against the best of these {len(names)} per task: "
          + ", ".join(f"{n} {r:.4f}" for n, r in zip(names, regret)))


if __name__ == "__main__":
    main()
