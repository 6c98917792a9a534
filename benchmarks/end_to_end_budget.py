"""How long should the end-to-end baselines (CMR, PHN, YOTO) train, and which epoch should they keep?

    MLFLOW_TRACKING_URI=sqlite:////tmp/d250/mlflow.db python benchmarks/end_to_end_budget.py --sweep RUN_ID \
        --methods CMR,PHN,YOTO --budgets 0:last,2000:best,4000:best --seeds 2

The pipeline trained them 5 epochs: about 1,900 steps on ML-100K but 115 on dense 250, where CMR gave one adapter
for every w. Each budget `STEPS:KEEP` trains 5 epochs or STEPS steps, whichever is more, keeping the last epoch or
the best by validation w-utility (`hypernetworks.fit_end_to_end`). Printed per method, budget and seed: steps
trained and kept, seconds, Spearman of test NDCG@10 / α-NDCG@10 with w_acc, hypervolume at (0, 0) and the test
w-utility over the report's 11 tasks on the swept adapters' validation range (what the report's regret ranks).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from padirec import tracking
from padirec.contracts.dataset import dataset_arrays, download_dataset, read_dataset
from padirec.diffusion.generate import task_weights
from padirec.evaluation.baselines import Scorer
from padirec.evaluation.hypernetworks import END_TO_END, fit_end_to_end
from padirec.evaluation.select import ValidationUtility
from padirec.metrics import fixed_hypervolume, spearman
from padirec.sweep.report import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a two-objective sweep's parent run id")
    parser.add_argument("--methods", default="CMR,PHN,YOTO")
    parser.add_argument("--budgets", default="0:last,2000:best,4000:best", help="STEPS:KEEP,... (KEEP last|best)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--valid-users", type=int, default=1024, help="validation users each epoch is judged on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracking.setup()
    from padirec.sweep.run import load_sweep_setting

    setting = load_sweep_setting(args.sweep)
    backbone, data, adapter = setting.backbone, setting.data, setting.config.adapter
    arrays = dataset_arrays(read_dataset(download_dataset(args.sweep))[0])
    weights = task_weights(TASKS)
    test = Scorer.build(backbone, data, "test")
    test_utility = ValidationUtility(test, arrays, weights)  # the same judge, on the test split
    print("| method | min steps : keep | seed | steps / kept | s | Spearman NDCG / α | HV at (0, 0) | test w-utility |"
          "\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.methods.split(","):
        for budget in args.budgets.split(","):
            steps, keep = budget.split(":")
            for seed in range(args.seeds):
                config = replace(END_TO_END[name].config_type(), epochs=5, min_steps=int(steps), keep=keep,
                                 valid_users=args.valid_users, seed=seed)
                started = time.perf_counter()
                fitted = fit_end_to_end(name, backbone, data, adapter, config, arrays, weights, progress=False)
                seconds = time.perf_counter() - started
                metrics = test.per_task(fitted.adapters(weights))
                ndcg, alpha = metrics["ndcg10"], metrics["alpha_ndcg10"]
                print(f"| {name} | {steps} : {keep} | {seed} | {fitted.steps} / {fitted.kept_step} | {seconds:.0f} "
                      f"| {spearman(TASKS, ndcg):.3f} / {spearman(TASKS, alpha):.3f} "
                      f"| {fixed_hypervolume(ndcg, alpha):.4f} | {test_utility(fitted):.4f} |", flush=True)


if __name__ == "__main__":
    main()
