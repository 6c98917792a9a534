"""BENCHMARKS §7 on the dense-category synthetic set (≈ 11 categories per item, the shape that collapsed the
Retrain curve on an unseen dataset): dividing each loss by its magnitude at the initial adapter collapses the
curve on every backbone measured. (Which of the paper's weighting and `range` is even and monotone there
changed between two backbones, so neither is pinned.) Slow: pretraining runs to convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.config import DataSpec, load_data
from padirec.sweep.report import curve_evenness
from padirec.training import AdapterConfig, PretrainConfig, pretrain_backbone, train_adapters

pytestmark = pytest.mark.slow
W_ACC = np.round(np.linspace(0, 1, 11), 4)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    spec = DataSpec(kind="synthetic", synthetic_users=250, synthetic_items=150, synthetic_categories=20,
                    synthetic_extra_categories=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADIREC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        data = load_data(spec)
    torch.manual_seed(0)
    backbone, info = pretrain_backbone(data, PretrainConfig(epochs=200, patience=5), progress=False)
    assert data.stats()["avg_categories_per_item"] >= 10 and info["converged"] == 1.0
    return data, backbone


def curve(dense, **adapter) -> tuple[np.ndarray, np.ndarray]:
    data, backbone = dense
    weights = np.stack([W_ACC, 1 - W_ACC], 1).astype(np.float32)
    result = train_adapters(backbone, data, weights, AdapterConfig(epochs=10, keep_last=3, **adapter), progress=False)
    return result.metrics["test_ndcg10"][-1], result.metrics["test_alpha_ndcg10"][-1]


def test_scaling_by_the_initial_loss_magnitudes_collapses_the_curve(dense):
    ndcg, alpha = curve(dense, objective_scale="initial")
    assert curve_evenness(ndcg, alpha) >= 5.0, (ndcg, alpha)  # everything but w_acc = 0 at the accurate end
    paper_ndcg, paper_alpha = curve(dense)
    assert curve_evenness(paper_ndcg, paper_alpha) < curve_evenness(ndcg, alpha) / 2  # the default does not


def test_tchebycheff_spreads_the_top10_curve_that_the_weighted_sum_jumps_across(dense):
    """With the diversity term on each adapter's top-10 the weighted sum's minimiser jumps from the diverse end to
    the accurate one between two loss weights (BENCHMARKS §7); Tchebycheff's moves along the front with w."""
    from padirec.metrics import spearman

    ndcg, alpha = curve(dense, diversity_topk=10)
    t_ndcg, t_alpha = curve(dense, diversity_topk=10, objective_scale="range", scalarization="tchebycheff",
                            scale_epochs=10)
    assert curve_evenness(t_ndcg, t_alpha) < curve_evenness(ndcg, alpha), (t_ndcg, t_alpha, ndcg, alpha)
    assert spearman(W_ACC, t_ndcg) >= 0.9 and spearman(W_ACC, t_alpha) <= -0.9, (t_ndcg, t_alpha)
