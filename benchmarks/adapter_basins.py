"""Are the swept adapters the minimisers of their own weight's loss? One packed run, every adapter scored at every w.

    MLFLOW_TRACKING_URI=sqlite:////tmp/d6/dense600/mlflow.db python benchmarks/adapter_basins.py --sweep RUN_ID

PHN (one network for every w) has both metrics above Retrain's at 5-8 of 11 weights on GRU4Rec and the dense sets
(BENCHMARKS §7): either the α-DCG loss misleads, or the per-w adapters stop in poor local minima. This trains the
sweep's grid as one packed run with the sweep's calibrated objective (its scales, map, ideal; `--lr`, `--epochs`,
`--seed` may change), then scores each final adapter's raw training losses and its scalarised loss at every
weight of the grid. A weight whose own adapter is beaten at its own w by another adapter of the run found a worse
minimum than the loss has to offer there; "on both losses" says the other adapter is also lower on each
objective's raw loss, so no choice of weights could prefer the own one. Test NDCG@10 / α-NDCG@10 beside.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from padirec import tracking
from padirec.evaluation.ranking import encode_instances
from padirec.objectives import ObjectiveData
from padirec.training import mean_losses, scalarized_loss, train_adapters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a two-objective sweep's parent run id (its calibrated config)")
    parser.add_argument("--lr", type=float, default=None, help="default: the sweep's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the sweep's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracking.setup()
    from padirec.sweep.run import load_sweep_setting

    setting = load_sweep_setting(args.sweep)
    sweep, backbone, data = setting.config, setting.backbone, setting.data
    config = replace(sweep.adapter, seed=args.seed, keep="last", keep_last=1, lr=args.lr or sweep.adapter.lr,
                     epochs=args.epochs or sweep.adapter.epochs)
    weights = sweep.grid().astype(np.float32)
    if weights.shape[1] != 2:
        raise SystemExit("two objectives only: the grid is read as w_acc")
    result = train_adapters(backbone, data, weights, config, progress=True)
    params = torch.as_tensor(result.params[-1])
    train = data.train_instances()
    states = encode_instances(backbone, train)
    context = ObjectiveData.build(data, config.objectives, instances=train)
    raw = mean_losses(params, states, data, train, backbone, context, config)  # [K adapters, p], unscaled
    scaled = torch.as_tensor(raw / np.asarray(config.scales), dtype=torch.float32)
    # cross[i, j]: adapter j's scalarised loss at weight i
    cross = scalarized_loss(scaled[None], torch.as_tensor(weights)[:, None], config).numpy()
    ndcg, alpha = result.metrics["test_ndcg10"][-1], result.metrics["test_alpha_ndcg10"][-1]
    print(f"\nsweep {args.sweep}: {len(weights)} weights, lr {config.lr}, {config.epochs} epochs, seed {config.seed}")
    print("| w_acc | test NDCG@10 / α-NDCG@10 | raw losses (BCE, α-DCG) | lowest loss at this w | its test point "
          "| lower on both losses |\n| --- | --- | --- | --- | --- | --- |")
    beaten = dominated = 0
    for i, w in enumerate(weights[:, 0]):
        j = int(cross[i].argmin())
        both = j != i and bool(np.all(raw[j] < raw[i]))
        beaten, dominated = beaten + (j != i), dominated + both
        source = "own" if j == i else f"w_acc {weights[j, 0]:.2f}'s (−{cross[i, i] - cross[i, j]:.4f})"
        print(f"| {w:.2f} | {ndcg[i]:.3f} / {alpha[i]:.3f} | {raw[i, 0]:.3f}, {raw[i, 1]:.2f} | {source} "
              f"| {ndcg[j]:.3f} / {alpha[j]:.3f} | {'yes' if both else ''} |")
    print(f"\n{beaten} of {len(weights)} weights: another adapter of the run has a lower loss at their own w; "
          f"{dominated} of them lower on both raw losses")


if __name__ == "__main__":
    main()
