"""The issue's acceptance figures on real MovieLens 100K (slow: run with `python -m pytest -m slow`)."""

import numpy as np
import pytest

from padirec.data import load_dataset
from padirec.evaluation.ranking import EvalSet, popularity_metrics, rank_metrics
from padirec.metrics import spearman
from padirec.training import AdapterConfig, PretrainConfig, pretrain_backbone, train_adapters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ml100k(ml100k_dir, tmp_path_factory):
    return load_dataset("ml-100k", ml100k_dir, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def sasrec(ml100k):
    backbone, _ = pretrain_backbone(ml100k, PretrainConfig(epochs=40, patience=5), progress=False)
    return backbone


def test_sasrec_beats_twice_most_popular(ml100k, sasrec):
    test = EvalSet.build(ml100k, "test")
    assert rank_metrics(sasrec, test)["ndcg10"][0] >= 2 * popularity_metrics(ml100k, test)["ndcg10"]


def test_retrain_curve_trades_accuracy_for_diversity(ml100k, sasrec):
    w_acc = np.linspace(0, 1, 11)
    result = train_adapters(sasrec, ml100k, np.stack([w_acc, 1 - w_acc], 1), AdapterConfig(epochs=10, keep_last=1),
                            progress=False, eval_splits=("test",))
    ndcg, diversity = result.metrics["test_ndcg10"][-1], result.metrics["test_alpha_ndcg10"][-1]
    assert ndcg[-1] > ndcg[0] and diversity[0] > diversity[-1]
    assert spearman(w_acc, ndcg) >= 0.9 and spearman(w_acc, diversity) <= -0.9
