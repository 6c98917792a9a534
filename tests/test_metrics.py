import math

import numpy as np
import pytest
import torch

from padirec.metrics import (
    alpha_dcg,
    alpha_ndcg_at_k,
    avg_hv,
    fixed_hypervolume,
    hypervolumes,
    ideal_alpha_dcg,
    igd_plus,
    minmax_bounds,
    ndcg_at_k,
    pareto_front,
    pearson,
    spearman,
    topk_full_ranking,
    w_regret,
    w_utility,
)


def test_ndcg_hand_computed():
    topk = torch.tensor([[5, 3, 9], [1, 2, 4], [7, 8, 6]])
    targets = torch.tensor([3, 9, 6])
    assert torch.allclose(ndcg_at_k(topk, targets), torch.tensor([1 / math.log2(3), 0.0, 0.5]))


def test_full_ranking_masks_padding_and_seen_items():
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0, 6.0]])
    excluded = torch.tensor([[True, True, False, False, False]])
    assert topk_full_ranking(scores, excluded, 2).tolist() == [[2, 4]]


def test_alpha_ndcg_hand_computed():
    # items 1..4 with categories: 1:{A}, 2:{A}, 3:{B}, 4:{A,B}; row 0 = padding
    cats = torch.tensor([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float32)
    # list [1, 2, 3]: gains 1, 0.5, 1
    assert math.isclose(float(alpha_dcg(torch.tensor([[1, 2, 3]]), cats)[0]),
                        1 + 0.5 / math.log2(3) + 1 / 2, rel_tol=1e-6)
    # greedy ideal for k=3: item 4 (gain 2), then 1 (0.5) or 3 (0.5), then the other (0.5)
    ideal = ideal_alpha_dcg(cats, k=3)
    assert math.isclose(ideal, 2 + 0.5 / math.log2(3) + 0.5 / 2, rel_tol=1e-9)
    value = alpha_ndcg_at_k(torch.tensor([[1, 2, 3]]), cats)
    assert math.isclose(float(value[0]), (1 + 0.5 / math.log2(3) + 0.5) / ideal, rel_tol=1e-6)
    assert float(alpha_ndcg_at_k(torch.tensor([[4, 1, 3]]), cats)[0]) == pytest.approx(1.0)


def test_hypervolume_and_avg_hv_on_a_hand_made_table():
    table = {"a": (np.array([0.1, 0.3]), np.array([0.8, 0.6])), "b": (np.array([0.2, 0.2]), np.array([0.7, 0.7]))}
    # bounds: ndcg 0.1..0.3, alpha 0.6..0.8
    hv = avg_hv(table)
    assert hv["a"] == pytest.approx(0.0)  # (0*1 + 1*0)/2
    assert hv["b"] == pytest.approx(0.25)  # 0.5*0.5 each
    assert np.allclose(hypervolumes([0.3], [0.8], (0.1, 0.3, 0.6, 0.8)), [1.0])


def test_pearson_and_spearman():
    x = np.arange(11.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(pearson(x, np.ones(11)))
    assert math.isnan(pearson([0.1, 0.2, 0.3], [0.1] * 3))  # constant up to float rounding
    assert pearson([1e-9, 2e-9, 3e-9], [1.0, 2.0, 3.0]) == pytest.approx(1.0)  # small, not constant
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)


def test_controllability_table_on_a_hand_made_table():
    from padirec.evaluation import controllability_table

    retrain = {"ndcg10": np.array([0.1, 0.2, 0.3]), "alpha_ndcg10": np.array([0.9, 0.8, 0.7])}
    scaled = {"ndcg10": retrain["ndcg10"] * 0.5 + 0.1, "alpha_ndcg10": retrain["alpha_ndcg10"] - 0.05}
    flipped = {"ndcg10": retrain["ndcg10"][::-1], "alpha_ndcg10": retrain["alpha_ndcg10"]}
    table = controllability_table({"Retrain": retrain, "Scaled": scaled, "Flipped": flipped})
    assert table["Retrain"]["r_a"] == pytest.approx(1.0) and table["Scaled"]["r_d"] == pytest.approx(1.0)
    assert table["Flipped"]["r_a"] == pytest.approx(-1.0)
    # joint bounds: ndcg 0.1..0.3, alpha 0.65..0.9 -> Retrain HV = mean(0*1, .5*.6, 1*.2) = 0.1667
    assert table["Retrain"]["avg_hv"] == pytest.approx((0 + 0.5 * 0.6 + 1 * 0.2) / 3)


def test_w_utility_weights_the_min_max_normalised_metrics():
    bounds = minmax_bounds([0.1, 0.3], [0.5, 0.9])
    assert bounds == (0.1, 0.3, 0.5, 0.9)
    u = w_utility(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), [0.3, 0.3, 0.2], [0.5, 0.5, 0.7], bounds)
    np.testing.assert_allclose(u, [1.0, 0.0, 0.5])


def test_fixed_reference_hypervolume_and_pareto_front_by_hand():
    ndcg, alpha = [0.1, 0.2, 0.15], [0.5, 0.4, 0.3]  # the third point is dominated by the second
    assert fixed_hypervolume(ndcg, alpha) == pytest.approx(0.1 * 0.5 + (0.2 - 0.1) * 0.4)
    assert fixed_hypervolume(ndcg, alpha, (0.05, 0.2)) == pytest.approx(0.05 * 0.3 + 0.1 * 0.2)
    assert fixed_hypervolume([0.1, np.nan], [0.5, 0.4]) == pytest.approx(0.05)  # a NaN point is left out
    assert math.isnan(fixed_hypervolume([np.nan], [0.5]))
    np.testing.assert_allclose(sorted(map(tuple, pareto_front(ndcg, alpha))), [(0.1, 0.5), (0.2, 0.4)])


def test_igd_plus_counts_only_where_points_fall_short_of_the_front():
    front = np.array([[0.1, 0.5], [0.2, 0.4]])
    # each front point's nearest shortfall: (0.1, 0.5) <- (0.09, 0.45): |(.01, .05)|; (0.2, 0.4) <- (0.18, 0.36)
    expected = (math.hypot(0.01, 0.05) + math.hypot(0.02, 0.04)) / 2
    assert igd_plus([0.09, 0.18], [0.45, 0.36], front) == pytest.approx(expected)
    assert igd_plus([0.3], [0.6], front) == pytest.approx(0.0)  # one point beating the whole front
    assert igd_plus(*front.T, front) == pytest.approx(0.0)


def test_w_regret_is_the_shortfall_from_the_best_of_any_method_and_seed():
    regret = w_regret({"a": np.array([[1.0, 0.5]]), "b": np.array([[0.5, 0.5], [0.8, 0.2]])})
    np.testing.assert_allclose(regret["a"], [0.0])  # best at both tasks
    np.testing.assert_allclose(regret["b"], [(0.5 + 0.0) / 2, (0.2 + 0.3) / 2])
