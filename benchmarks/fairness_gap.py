"""Does the fairness weight close the user groups' NDCG@10 gap? Test NDCG_GAP@10 at a fixed w_acc as w_fair grows.

    python benchmarks/fairness_gap.py BACKBONE.pt --objective-scale initial --epochs 10

BACKBONE.pt is a backbone checkpoint of data with user groups (ML-100K's genders, or `synthetic_groups: 2`).
Prints the backbone's test gap beside the gap of random groups of the same sizes (2,000 relabellings of the users:
a gap no larger than theirs cannot be closed measurably), then the adapters at w_acc 0.2 and 0.5
with w_fair at five even steps from 0 to 1 − w_acc (w_div the rest), their test metrics and, per w_acc, the
Spearman correlation of NDCG_GAP@10 with w_fair. Other flags override `AdapterConfig` fields.
"""

import time

import numpy as np
import torch
from adapter_objective_variants import parse_args  # same folder: one backbone + AdapterConfig flags front
from scipy.stats import spearmanr

from padirec.config import DataSpec, load_data
from padirec.evaluation.ranking import EvalSet, encode_instances, group_gap, ndcg_at_k, topk_full_ranking
from padirec.models import load_backbone
from padirec.training import AdapterConfig, train_adapters

OBJECTIVES = ["accuracy", "diversity", "fairness"]
W_ACC = (0.2, 0.5)


@torch.no_grad()
def gap_noise(backbone, data, repeats: int = 2000) -> tuple[float, float, float]:
    """The backbone's test NDCG_GAP@10, its mean under random relabellings of the users' groups (same sizes) and
    the share of relabellings with a gap at least as large (a permutation p-value)."""
    eval_set = EvalSet.build(data, "test", objectives=OBJECTIVES)
    top = topk_full_ranking(backbone.score(encode_instances(backbone, eval_set.instances)), eval_set.excluded,
                            eval_set.k)
    known = eval_set.groups >= 0
    ndcg = ndcg_at_k(top, torch.as_tensor(eval_set.instances.targets))[None, known]
    groups = eval_set.groups[known]
    rng = np.random.default_rng(0)
    null = np.array([float(group_gap(ndcg, groups[rng.permutation(len(groups))])) for _ in range(repeats)])
    observed = float(group_gap(ndcg, groups))
    return observed, float(null.mean()), float((null >= observed).mean())


def main() -> None:
    backbone_path, overrides = parse_args(description=__doc__)
    backbone, extra = load_backbone(backbone_path)
    data = load_data(DataSpec(**extra["data"]))
    observed, null, p_value = gap_noise(backbone, data)
    print(f"backbone: test NDCG_GAP@10 {observed:.4f} ({data.group_names}); random groups of the same sizes: "
          f"{null:.4f} on average, p = {p_value:.3f}")
    weights = np.array([(a, 1 - a - f, f) for a in W_ACC for f in np.linspace(0, 1 - a, 5)], dtype=np.float32)
    config = AdapterConfig(**{"epochs": 10, "keep_last": 1, **overrides, "objectives": OBJECTIVES})
    started = time.time()
    torch.manual_seed(config.seed)
    result = train_adapters(backbone, data, weights, config, progress=False, eval_splits=("test",))
    print(f"scales {np.round(result.scales, 6).tolist()}, {time.time() - started:.0f} s")
    print("w_acc w_div w_fair | NDCG@10 α-NDCG@10 NDCG_GAP@10")
    metrics = {k: result.metrics[f"test_{k}"][-1] for k in ("ndcg10", "alpha_ndcg10", "ndcg_gap10")}
    for k, w in enumerate(weights):
        print(" ".join(f"{v:.2f}" for v in w), "|", " ".join(f"{metrics[m][k]:.4f}" for m in metrics))
    for a in W_ACC:
        rows = np.isclose(weights[:, 0], a)
        rho = spearmanr(weights[rows, 2], metrics["ndcg_gap10"][rows]).statistic
        print(f"w_acc {a}: Spearman(NDCG_GAP@10, w_fair) {rho:+.2f}")


if __name__ == "__main__":
    main()
