"""The report's methods pinned on a tiny synthetic sweep: Retrain, Soup, MMR, DPP, PaDiRec, best-of-N."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from padirec.diffusion.generate import task_weights
from padirec.evaluation.baselines import DPP, MMR, Retrain, Scorer, Soup
from padirec.evaluation.rerank import mmr_rerank
from padirec.metrics import ideal_alpha_dcg, topk_full_ranking
from padirec.models import N_PARAMS
from padirec.sweep import retrain_curve
from padirec.sweep.report import chosen_adapters


@pytest.fixture(scope="module")
def scorer(tiny_sweep) -> Scorer:
    return Scorer.build(tiny_sweep["backbone"], tiny_sweep["data"], "test")


def retrain_of(tiny_sweep) -> Retrain:
    return Retrain(tiny_sweep["arrays"], tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"])


def test_retrain_serves_the_sweeps_chosen_adapter_and_reproduces_its_curve(tiny_sweep, scorer):
    arrays = tiny_sweep["arrays"]
    weights = task_weights([0.0, 0.5, 1.0])
    adapters = retrain_of(tiny_sweep).adapters(weights)
    last = chosen_adapters(arrays)
    assert (arrays["epoch"][last] == arrays["epoch"].max()).all()  # a keep="last" sweep: its last epoch
    for w, block in zip(weights, adapters):
        rows = last & (arrays["w"][:, 0] == w[0])
        expected = arrays["params"][rows][np.argsort(arrays["seed"][rows])]
        assert block.shape == (2, N_PARAMS) and np.array_equal(block, expected)
    metrics = retrain_of(tiny_sweep).metrics(weights, scorer)  # re-scored, mean over the 2 seeds
    curve = retrain_curve(arrays, tasks=np.array([0.0, 0.5, 1.0]))
    assert np.allclose(metrics["ndcg10"], curve["ndcg10"], atol=1e-5)
    assert np.allclose(metrics["alpha_ndcg10"], curve["alpha_ndcg10"], atol=1e-5)


def test_retrain_trains_off_grid_tasks_on_demand_as_the_sweep_did(tiny_sweep, monkeypatch):
    retrain = retrain_of(tiny_sweep)
    arrays = tiny_sweep["arrays"]
    # the sweep's own procedure: retraining an on-grid w with its seed gives its adapter back
    again = retrain.train(task_weights([0.5]), seed=1).params[-1, 0]
    rows = chosen_adapters(arrays) & (arrays["w"][:, 0] == 0.5) & (arrays["seed"] == 1)
    assert np.allclose(again, arrays["params"][rows][0], atol=1e-5)

    off_grid = retrain.adapters(task_weights([0.25, 1.0]))
    assert off_grid[0].shape == (2, N_PARAMS) and not np.allclose(off_grid[0][0], off_grid[0][1])  # 2 seeds
    monkeypatch.setattr(retrain, "train", lambda *a, **k: pytest.fail("trained twice"))
    assert np.array_equal(retrain.adapters(task_weights([0.25]))[0], off_grid[0])  # kept, not retrained


def test_soup_interpolates_the_end_adapters_seed_by_seed(tiny_sweep):
    retrain = retrain_of(tiny_sweep)
    accuracy, diversity = retrain.adapters(task_weights([1.0, 0.0]))
    soup = Soup(retrain).adapters(task_weights([1.0, 0.0, 0.5]))
    assert np.array_equal(soup[0], accuracy) and np.array_equal(soup[1], diversity)
    assert np.allclose(soup[2], (accuracy + diversity) / 2)


def test_mmr_rerank_by_hand():
    scores = torch.tensor([[3.0, 2.0, 1.0]])  # relevance 1, 0.5, 0
    categories = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    assert mmr_rerank(scores, categories, 1.0, 3).tolist() == [[0, 1, 2]]
    # λ = 0.4 after item 0: item 1 (its category repeated: gain 0.5) 0.4·0.5 + 0.6·0.5 = 0.5 < item 2's 0.6·1
    assert mmr_rerank(scores, categories, 0.4, 3).tolist() == [[0, 2, 1]]
    unavailable = torch.tensor([[3.0, float("-inf"), 1.0]])
    assert mmr_rerank(unavailable, categories, 0.0, 3).tolist() == [[0, 2, 1]]  # the unavailable one last


def multi_category_scorer(scorer: Scorer, seed: int = 0) -> Scorer:
    """The same backbone and users with every item given 5 to 8 of 24 overlapping categories instead."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(len(scorer.eval_set.item_categories), 24)
    for i in range(1, len(y)):  # item 0 is padding
        y[i, torch.randperm(24, generator=g)[: int(torch.randint(5, 9, (1,), generator=g))]] = 1.0
    eval_set = replace(scorer.eval_set, item_categories=y, ideal=ideal_alpha_dcg(y, 10, scorer.eval_set.alpha))
    return replace(scorer, eval_set=eval_set)


@pytest.mark.parametrize("method", [MMR, DPP])
@pytest.mark.parametrize("categories", ["synthetic", "multi"])
def test_rerankers_at_lambda_one_are_the_backbones_ranking_and_diversify_below(scorer, method, categories):
    scorer = scorer if categories == "synthetic" else multi_category_scorer(scorer)
    reranker = method(candidates=30)
    backbone_top = topk_full_ranking(scorer.backbone.score(scorer.states), scorer.eval_set.excluded, 10)
    assert torch.equal(reranker.rankings(scorer, 1.0), backbone_top)
    diversity = reranker.metrics(task_weights([1.0, 0.5, 0.0]), scorer)["alpha_ndcg10"]
    assert diversity[1] >= diversity[0] and diversity[2] > diversity[0]


def test_chosen_adapters_are_the_sweeps_rank_0_when_it_kept_its_best():
    arrays = {"w": np.array([[0.5, 0.5]] * 3 + [[1.0, 0.0]] * 2), "seed": np.zeros(5, int),
              "epoch": np.array([7, 3, 9, 4, 6]),
              "slot": np.array(["rank=1", "rank=0", "rank=2", "", ""], dtype=object)}
    assert chosen_adapters(arrays).tolist() == [False, True, False, False, True]  # rank 0; else the last epoch


def test_best_of_keeps_the_candidate_with_the_best_validation_utility(tiny_sweep, scorer):
    from padirec.evaluation.select import BestOf
    from padirec.metrics import minmax_bounds, w_utility

    valid = Scorer.build(tiny_sweep["backbone"], tiny_sweep["data"], "valid")
    selector = valid.sample(40, seed=1)
    assert len(selector.eval_set.instances) == 40 == len(selector.states) == len(selector.eval_set.excluded)
    assert valid.sample(10_000) is valid
    arrays = tiny_sweep["arrays"]
    bounds = minmax_bounds(arrays["ndcg10"], arrays["alpha_ndcg10"])
    weights = task_weights([0.0, 1.0])
    retrain = retrain_of(tiny_sweep)
    best = BestOf(retrain, selector, bounds, "Retrain (best seed)")
    chosen = best.adapters(weights)
    for w, candidates, adapter in zip(weights, retrain.adapters(weights), chosen):
        assert adapter.shape == (1, N_PARAMS)
        scores = selector.per_adapter(candidates)
        utility = w_utility(w, scores["ndcg10"], scores["alpha_ndcg10"], bounds)
        assert np.array_equal(adapter[0], candidates[int(np.argmax(utility))])  # the best on the sample, not the mean
    # judged on another split, a best-of-N can only be as good as the candidates' best there
    per_task = best.metrics(weights, scorer)
    assert per_task["ndcg10"].shape == (2,)
