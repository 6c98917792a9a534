"""Is there a distribution to select from? The spread of generated adapters per w (issue 14.2).

    python benchmarks/bench_spread.py --generator models:/padirec-dit/1 [--samples 16] \
        [--samplers ddim:1,ddim:50,ddpm] [--json spread.json]

For the generator's sweep (its gathered dataset, its backbone and data), at every w of the sweep: draw
`--samples` adapters per sampler (each from its own noise) and measure, against the sweep's own adapters at
that w (the seeds and kept epochs Retrain trained):

- spread: the mean over parameters of the standard deviation across adapters, generated against trained;
- memorisation (DESIGN §7, p-diff): each generated adapter's L2 distance to its nearest training adapter, against
  the same for each training adapter to its nearest other one, and for a training adapter plus Gaussian noise of
  its w's spread;
- utility: validation NDCG@10 and α-NDCG@10 of every adapter (full ranking), w-utility on the training adapters'
  min–max scale; its std across the samples, and what picking the best of the N would gain over their mean
  (the headroom of best-of-N selection; Retrain's own best-of-seeds gain beside it).

Prints one Markdown row per sampler (means over the w of the grid). Plain PyTorch + MLflow reads; no Ray.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from padirec.config import data_spec, load_data
from padirec.contracts.artifacts import resolve_backbone_file, resolve_generator_file
from padirec.contracts.dataset import dataset_arrays, download_dataset, read_dataset
from padirec.diffusion.generator import load_generator
from padirec.diffusion.sampling import parse_sampler
from padirec.evaluation.ranking import EvalSet, encode_instances, rank_metrics
from padirec.metrics import minmax_bounds, w_utility
from padirec.models import load_backbone


def nearest(points: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """L2 distance of each point to its nearest reference row (itself excluded when they are the same set)."""
    d = torch.cdist(torch.as_tensor(points, dtype=torch.float64), torch.as_tensor(reference, dtype=torch.float64))
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return d.min(1).values.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", required=True, help="dit.pt, run id or models:/ URI")
    parser.add_argument("--samples", type=int, default=16, help="adapters drawn per w and sampler")
    parser.add_argument("--samplers", default="ddim:1,ddim:50,ddpm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the per-w figures here")
    args = parser.parse_args()

    generator = load_generator(resolve_generator_file(args.generator))
    meta = generator.metadata
    arrays = dataset_arrays(read_dataset(download_dataset(meta["sweep_run_id"]))[0])
    backbone, extra = load_backbone(resolve_backbone_file(meta["backbone_run_id"]))
    data = load_data(data_spec(extra.get("data")))
    valid = EvalSet.build(data, "valid")
    states = encode_instances(backbone, valid.instances)
    train, w_all = arrays["params"], arrays["w"]
    tasks = np.unique(w_all, axis=0)
    bounds = minmax_bounds(arrays["ndcg10"], arrays["alpha_ndcg10"])  # the training adapters' validation range
    train_loo = nearest(train, train, exclude_self=True)
    rng = np.random.default_rng(args.seed)

    masks = [np.all(np.isclose(w_all, w), axis=1) for w in tasks]  # the training adapters of each w
    rows, per_w = [], []
    retrain_gain = []
    for w, at_w in zip(tasks, masks):
        utility = w_utility(w, arrays["ndcg10"][at_w], arrays["alpha_ndcg10"][at_w], bounds)
        retrain_gain.append(float(utility.max() - utility.mean()))
    for spec in args.samplers.split(","):
        label, sampler = parse_sampler(spec)
        figures = []
        for k, (w, at_w) in enumerate(zip(tasks, masks)):
            generated = generator.generate(np.repeat(w[None], args.samples, 0), sampler, seed=args.seed + k)
            spread_train = train[at_w].std(0)
            noisy = train[at_w][rng.integers(0, at_w.sum(), args.samples)] + rng.normal(
                0, 1, (args.samples, train.shape[1])) * spread_train
            metrics = rank_metrics(backbone, valid, torch.as_tensor(generated), states=states)
            utility = w_utility(w, metrics["ndcg10"], metrics["alpha_ndcg10"], bounds)
            figures.append({
                "w_acc": float(w[0]), "spread_generated": float(generated.std(0).mean()),
                "spread_trained": float(spread_train.mean()),
                "nn_generated": float(np.median(nearest(generated, train))),
                "nn_trained": float(np.median(train_loo[at_w])), "nn_noise": float(np.median(nearest(noisy, train))),
                "utility_mean": float(utility.mean()), "utility_std": float(utility.std()),
                "best_of_n_gain": float(utility.max() - utility.mean())})
            print(f"{label} w_acc={w[0]:.2f}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures[-1].items()
                                                            if k != "w_acc"), flush=True)
        mean = {key: float(np.mean([f[key] for f in figures])) for key in figures[0] if key != "w_acc"}
        rows.append((label, mean))
        per_w.append({"sampler": label, "tasks": figures})

    print(f"\n{len(tasks)} weights, {args.samples} samples per w and sampler, {int(len(train) / len(tasks))} "
          f"training adapters per w; validation split, {data.n_users} users\n")
    print("| sampler | spread generated / trained | NN distance generated | trained (to another) | trained + noise |"
          " utility mean | utility std | best-of-N gain | Retrain best-of-seeds gain |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, m in rows:
        print(f"| {label} | {m['spread_generated']:.2e} / {m['spread_trained']:.2e} "
              f"({m['spread_generated'] / m['spread_trained']:.2f}) | {m['nn_generated']:.3f} | {m['nn_trained']:.3f}"
              f" | {m['nn_noise']:.3f} | {m['utility_mean']:.4f} | {m['utility_std']:.4f} | {m['best_of_n_gain']:.4f}"
              f" | {np.mean(retrain_gain):.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"generator": args.generator, "samples": args.samples, "per_w": per_w,
                       "retrain_best_of_seeds_gain": retrain_gain}, f, indent=1)


if __name__ == "__main__":
    main()
