"""Phase 1 and phase 2 training on the seeded synthetic data."""

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from padirec.data import SyntheticConfig, make_synthetic, preprocess
from padirec.evaluation.ranking import EvalSet, popularity_metrics, rank_metrics
from padirec.metrics import curve_gaps, w_utility
from padirec.models import BackboneConfig, build_backbone, init_adapter_flat, load_backbone, save_backbone
from padirec.objectives import CategoryTable
from padirec.training import (
    AdapterConfig,
    AdapterResult,
    PretrainConfig,
    calibrate,
    loss_weights,
    pretrain_backbone,
    scalarized_loss,
    scale_params,
    train_adapters,
)


@pytest.fixture(scope="module")
def data():
    return preprocess(make_synthetic(SyntheticConfig(n_users=200, n_items=120, seed=3)))


@pytest.fixture(scope="module")
def backbone(data):
    model, summary = pretrain_backbone(data, PretrainConfig(epochs=8, patience=3, batch_size=128), progress=False)
    assert summary["best_epoch"] >= 0
    return model


def test_pretrained_backbone_beats_most_popular(data, backbone):
    test = EvalSet.build(data, "test")
    ours = rank_metrics(backbone, test)["ndcg10"][0]
    assert ours > popularity_metrics(data, test)["ndcg10"]


def test_pretraining_without_a_bar_logs_a_line_per_epoch(data, caplog):
    """The pipeline's console shows a stage log's latest line: a long pretraining says how far it is."""
    with caplog.at_level(logging.INFO, logger="padirec.training"):
        pretrain_backbone(data, PretrainConfig(epochs=2, patience=5, batch_size=128), progress=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretrain sasrec: epoch")]
    assert [line.split(",")[0] for line in lines] == ["pretrain sasrec: epoch 1/2", "pretrain sasrec: epoch 2/2"]
    assert "val NDCG@10" in lines[-1] and "best" in lines[-1]


def test_backbone_is_frozen_in_phase_2(data, backbone):
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    train_adapters(backbone, data, np.array([[0.5, 0.5]]), AdapterConfig(epochs=2, keep_last=1), progress=False)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert not any(p.requires_grad for p in backbone.parameters())


def test_packed_adapters_equal_separately_trained_ones(data, backbone):
    config = AdapterConfig(epochs=2, keep_last=2, seed=5, keep="last")
    weights = np.array([[1.0, 0.0], [0.3, 0.7]])
    packed = train_adapters(backbone, data, weights, config, progress=False, eval_splits=())
    for k in range(2):
        single = train_adapters(backbone, data, weights[k : k + 1], config, progress=False, eval_splits=())
        np.testing.assert_allclose(packed.params[:, k], single.params[:, 0], atol=2e-5)
    assert packed.params.shape == (2, 2, 1096) and packed.epochs[:, 0].tolist() == [0, 1]
    assert packed.slots == ["epoch=0", "epoch=1"]  # the keys sweeps have always used: old sweeps still resume


def test_accuracy_and_diversity_adapters_differ_in_the_expected_direction(data, backbone):
    result = train_adapters(backbone, data, np.array([[1.0, 0.0], [0.0, 1.0]]),
                            AdapterConfig(epochs=6, keep_last=1), progress=False)
    ndcg, diversity = result.metrics["test_ndcg10"][-1], result.metrics["test_alpha_ndcg10"][-1]
    assert ndcg[0] > ndcg[1] and diversity[1] > diversity[0]
    assert len(result.examples()) == 2 and result.examples()[0]["params"].shape == (1096,)


def test_the_backbone_accuracy_loss_keeps_the_pure_accuracy_adapter_at_the_backbone(data, backbone):
    """accuracy_loss="backbone": KL from the backbone's own ranking, zero at the identity adapter, so w_acc 1 serves
    the backbone's lists (BCE on the training interactions moves away from them); diversity still moves w_acc 0."""
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    bare = {k: float(v[0]) for k, v in rank_metrics(backbone, EvalSet.build(data, "test")).items()}
    runs = {loss: train_adapters(backbone, data, weights, AdapterConfig(epochs=3, keep_last=1, diversity_topk=5,
                                                                      accuracy_loss=loss), progress=False)
            for loss in ("bce", "backbone")}
    kept = {loss: (r.metrics["test_ndcg10"][-1], r.metrics["test_alpha_ndcg10"][-1]) for loss, r in runs.items()}
    assert kept["backbone"][0][0] == pytest.approx(bare["ndcg10"], abs=1e-4)
    assert kept["backbone"][1][0] == pytest.approx(bare["alpha_ndcg10"], abs=1e-4)
    assert abs(kept["bce"][0][0] - bare["ndcg10"]) > 1e-3  # the paper's loss does move it
    assert kept["backbone"][1][1] > bare["alpha_ndcg10"] + 0.01 and kept["backbone"][0][1] < bare["ndcg10"]


def test_backbone_checkpoint_round_trip(data, backbone, tmp_path):
    save_backbone(backbone, tmp_path / "b.pt", extra={"data": {"kind": "synthetic"}})
    loaded, extra = load_backbone(tmp_path / "b.pt")
    test = EvalSet.build(data, "test")
    assert extra == {"data": {"kind": "synthetic"}}
    np.testing.assert_allclose(rank_metrics(loaded, test)["ndcg10"], rank_metrics(backbone, test)["ndcg10"])


def test_diversity_topk_adds_each_adapters_top_items_to_the_diversity_term_only():
    from padirec.training import adapter_losses

    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(n_items=30, hidden=8)).requires_grad_(False)
    backbone.i_embeddings.weight.normal_()
    categories = CategoryTable.from_multi_hot(torch.rand(31, 4) < 0.4)
    h = torch.randn(3, 5, 8, requires_grad=True)  # K=3 adapters, batch 5
    candidates = torch.randint(1, 31, (5, 10))
    plain = adapter_losses(h, candidates, backbone, categories, AdapterConfig())
    topk = adapter_losses(h, candidates, backbone, categories, AdapterConfig(diversity_topk=4))
    assert plain.shape == topk.shape == (3, 2)
    assert torch.allclose(plain[:, 0], topk[:, 0]) and not torch.allclose(plain[:, 1], topk[:, 1])
    topk[:, 1].sum().backward()
    assert h.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["sasrec", "comirec"])
def test_the_catalogue_top_k_scored_in_chunks_is_the_one_product_top_k(kind, monkeypatch):
    """`catalogue_top` scores a few states at a time for speed: it must pick the items one product picks."""
    import padirec.training as training

    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=kind, n_items=50, hidden=8, n_interests=2)).requires_grad_(False)
    backbone.eval()
    backbone.i_embeddings.weight.normal_()
    h = torch.randn(3, 7, *((2,) if kind == "comirec" else ()), 8)  # K=3 adapters, batch 7 (ComiRec: 2 interests)
    expected = backbone.score(h)[..., 1:].topk(4, dim=-1).indices + 1
    monkeypatch.setattr(training, "SCORE_CHUNK", 5 * 51)  # 5 states a chunk: 21 rows in 5 chunks
    assert torch.equal(training.catalogue_top(backbone, h, 4), expected)
    assert (expected >= 1).all()  # never the padding item 0


def test_full_ranking_metrics_do_not_depend_on_how_many_users_are_scored_at_once(data, backbone):
    """`rank_metrics` sizes its user chunks by the scores they make: any chunk must give the same metrics."""
    test = EvalSet.build(data, "test")
    adapters = init_adapter_flat(0, backbone.config.hidden).repeat(3, 1) + 0.05 * torch.randn(3, 1096)
    sized = rank_metrics(backbone, test, adapters)
    for chunk in (1, 7, len(test.instances.targets)):
        one = rank_metrics(backbone, test, adapters, chunk=chunk)
        for name in sized:
            np.testing.assert_allclose(one[name], sized[name], atol=1e-6, err_msg=f"{name}, chunk {chunk}")


def test_best_keeps_the_epochs_of_highest_validation_utility(data, backbone):
    """keep="best" = train every epoch, keep per w the epochs whose validation w-utility is highest."""
    weights = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    config = AdapterConfig(epochs=4, keep_last=2, keep="best", objective_scale="range", seed=2)
    every = train_adapters(backbone, data, weights, replace(config, keep_last=4, keep="last"), progress=False,
                           eval_splits=("valid",))
    best = train_adapters(backbone, data, weights, config, progress=False)
    ndcg, alpha = every.metrics["val_ndcg10"], every.metrics["val_alpha_ndcg10"]  # [4 epochs, 3 weights]
    bounds = calibrate(backbone, data, config).utility_bounds  # what "best" selects by
    utility = w_utility(weights[None], ndcg, alpha, bounds)
    for k in range(3):
        expected = np.argsort(utility[:, k], kind="stable")[-2:]
        assert best.epochs[:, k].tolist() == expected.tolist(), (k, utility[:, k])
        np.testing.assert_allclose(best.params[-1, k], every.params[expected[-1], k], atol=1e-6)
    assert best.slots == ["rank=1", "rank=0"] and set(best.metrics) >= {"val_ndcg10", "test_ndcg10"}
    assert best.metrics["test_ndcg10"].shape == (2, 3)


def test_each_epoch_reports_adapters_kept_and_the_validation_utility_under_fixed_bounds(data, backbone):
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    reports = []
    config = AdapterConfig(epochs=3, keep_last=2, utility_bounds=[0.0, 1.0, 0.0, 1.0])
    result = train_adapters(backbone, data, weights, config, progress=False, eval_splits=("valid",),
                            on_epoch=lambda epoch, metrics: reports.append(metrics))
    assert [r.get("adapters_kept", 0) for r in reports] == [0, 2, 4]
    expected = w_utility(weights, result.metrics["val_ndcg10"][-1], result.metrics["val_alpha_ndcg10"][-1],
                         (0.0, 1.0, 0.0, 1.0)).mean()
    assert reports[-1]["val_utility"] == pytest.approx(expected)
    unbounded = []  # without fixed bounds a per-epoch utility would change meaning from epoch to epoch
    train_adapters(backbone, data, weights, replace(config, utility_bounds=[]), progress=False,
                   eval_splits=("valid",), on_epoch=lambda epoch, metrics: unbounded.append(metrics))
    assert not any("val_utility" in r for r in unbounded)
    test_only = []  # the report's off-grid Retrain: calibrated bounds, no validation split to weigh
    train_adapters(backbone, data, weights, config, progress=False, eval_splits=("test",),
                   on_epoch=lambda epoch, metrics: test_only.append(metrics))
    assert "test_ndcg10" in test_only[-1] and "val_utility" not in test_only[-1]


def test_objective_scales_put_the_losses_on_one_scale(data, backbone):
    none = calibrate(backbone, data, AdapterConfig(objective_scale="none")).scales
    initial = calibrate(backbone, data, AdapterConfig(objective_scale="initial")).scales
    spans = calibrate(backbone, data, AdapterConfig(objective_scale="range", scale_epochs=2))
    assert none == [1.0, 1.0] and all(s > 0 for s in initial + spans.scales)
    lo_a, hi_a, lo_d, hi_d = spans.utility_bounds  # the ends of the front: accuracy-only and diversity-only adapters
    assert lo_a < hi_a and lo_d < hi_d
    given = AdapterConfig(scales=[2.0, 3.0], utility_bounds=[0.0, 1.0, 0.0, 1.0])
    assert calibrate(backbone, data, given) == given  # given: used as is
    result = train_adapters(backbone, data, np.array([[0.5, 0.5]]), AdapterConfig(epochs=1, keep_last=1,
                            objective_scale="initial"), progress=False)
    assert result.scales == initial
    with pytest.raises(ValueError, match="scales must be 2 positive"):
        AdapterConfig(scales=[1.0, -1.0])


def test_a_weight_map_trains_each_w_at_its_mapped_loss_weight(data, backbone):
    """With `weight_map` the adapter for w_acc is the one raw weighting trains at the mapped weight."""
    squared = [round((k / 10) ** 2, 6) for k in range(11)]
    config = AdapterConfig(epochs=2, keep_last=1, seed=4)
    mapped = train_adapters(backbone, data, np.array([[0.5, 0.5], [0.9, 0.1]]), replace(config, weight_map=squared),
                            progress=False, eval_splits=())
    raw = train_adapters(backbone, data, np.array([[0.25, 0.75], [0.81, 0.19]]), config, progress=False,
                         eval_splits=())
    np.testing.assert_allclose(mapped.params, raw.params, atol=2e-5)
    np.testing.assert_allclose(mapped.weights, [[0.5, 0.5], [0.9, 0.1]])  # the dataset keeps w as asked
    assert mapped.weight_map == squared
    np.testing.assert_allclose(loss_weights([[0.55, 0.45]], replace(config, weight_map=squared)),
                               [[0.305, 0.695]], atol=1e-6)  # linear between the knots 0.25 and 0.36
    np.testing.assert_array_equal(loss_weights([[0.3, 0.7]], config), np.float32([[0.3, 0.7]]))  # no map: w
    for bad in ([0.0, 0.6, 0.5, 1.0], [-0.1, 0.5, 1.0], [0.0, 1.2]):
        with pytest.raises(ValueError, match=r"weight_map must rise within \[0, 1\]"):
            AdapterConfig(weight_map=bad)
    assert AdapterConfig(weight_map=[0.02, 0.5, 0.97]).weight_map == [0.02, 0.5, 0.97]  # efficient ends


def test_tchebycheff_reaches_the_middle_of_a_front_where_the_weighted_sum_jumps_to_an_end():
    """On a front that bends away from the ideal (L_div = 1 − L_acc², both on the ideal–nadir scale) the paper's
    weighted sum is minimised at an end for every w; Tchebycheff's minimiser moves along the front with w, and
    for equal weights it sits where the two distances to the ideal are equal."""
    t = torch.linspace(0, 1, 2001)
    losses = torch.stack([t, 1 - t**2], dim=-1)  # the front, one point per t
    linear = AdapterConfig()
    tchebycheff = AdapterConfig(objective_scale="range", scalarization="tchebycheff", scales=[1.0, 1.0],
                                ideal=[0.0, 0.0], smoothing=1e-3)
    w_acc = np.linspace(0.1, 0.9, 9)
    picks = {}
    for name, config in [("linear", linear), ("tchebycheff", tchebycheff)]:
        picks[name] = np.array([float(t[scalarized_loss(losses, torch.tensor([1 - w, w]), config).argmin()])
                                for w in w_acc])  # w weighs the accuracy loss (the first column) by 1 − w here
    assert set(np.round(picks["linear"], 3)) <= {0.0, 1.0}  # only the ends
    assert np.all(np.diff(picks["tchebycheff"]) > 0.02)  # every w its own point, in order
    assert picks["tchebycheff"][4] == pytest.approx((np.sqrt(5) - 1) / 2, abs=2e-3)  # t = 1 − t²
    linear_value = scalarized_loss(losses[:3], torch.tensor([0.3, 0.7]), linear)
    torch.testing.assert_close(linear_value, 0.3 * losses[:3, 0] + 0.7 * losses[:3, 1])  # the paper's eq. 4


def test_tchebycheff_calibrates_its_ideal_and_is_recorded(data, backbone):
    config = calibrate(backbone, data, AdapterConfig(objective_scale="range", scalarization="tchebycheff",
                                                     scale_epochs=2))
    assert len(config.ideal) == 2 and all(s > 0 for s in config.scales)
    assert calibrate(backbone, data, config) == config  # calibrated once: kept as is
    params = scale_params(config)
    assert set(params) == {"scale.accuracy", "scale.diversity", "ideal.accuracy", "ideal.diversity"}
    result = train_adapters(backbone, data, np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]),
                            replace(config, epochs=3, keep_last=1), progress=False)
    assert np.isfinite(result.params).all() and np.isfinite(result.train_loss).all()
    ndcg = result.metrics["test_ndcg10"][-1]
    assert ndcg[0] < ndcg[2]  # w still moves the adapters the way it asks
    mapped = calibrate(backbone, data, replace(config, objective_scale="even", scales=[], ideal=[], weight_map=[],
                                               utility_bounds=[]))  # the even map, drawn over Tchebycheff's losses
    assert mapped.scales == pytest.approx(config.scales) and mapped.ideal == pytest.approx(config.ideal)
    assert len(mapped.weight_map) == 11 and calibrate(backbone, data, mapped) == mapped
    with pytest.raises(ValueError, match='needs objective_scale "range"'):
        AdapterConfig(scalarization="tchebycheff")
    with pytest.raises(ValueError, match="needs calibrated scales and ideal"):
        scalarized_loss(torch.ones(2), torch.tensor([0.5, 0.5]),
                        AdapterConfig(objective_scale="range", scalarization="tchebycheff"))


def test_the_even_map_spreads_a_curve_whose_change_piles_up_at_one_end(data, backbone, monkeypatch):
    """The arithmetic of `even_weight_map` on a pilot curve that moves only between loss weights 0.98 and 1:
    equal steps of w_acc must then be equal steps of the curve, so the map puts w_acc 0.1 … 0.9 inside them."""
    import padirec.training as training

    def pilot(backbone, data, weights, config, **kwargs):
        v = np.asarray(weights)[:, 0]
        moved = np.clip((v - 0.98) / 0.02, 0, 1)  # the curve's position along its (straight) path
        metrics = {"val_ndcg10": (0.1 + 0.1 * moved)[None], "val_alpha_ndcg10": (0.9 - 0.4 * moved)[None]}
        assert config.epochs == 2 and not config.weight_map  # scale_epochs, raw weighting
        return AdapterResult(weights=weights, epochs=np.zeros((1, len(v)), int), slots=["epoch=1"],
                             params=np.zeros((1, len(v), 1096), np.float32), metrics=metrics)

    monkeypatch.setattr(training, "train_adapters", pilot)
    config = calibrate(backbone, data, AdapterConfig(objective_scale="even", scale_epochs=2))
    assert config.weight_map[0] == 0.0 and config.weight_map[-1] == 1.0 and config.scales == [1.0, 1.0]
    np.testing.assert_allclose(config.weight_map[1:-1], 0.98 + 0.02 * np.arange(1, 10) / 10, atol=1e-4)
    assert config.utility_bounds == pytest.approx([0.1, 0.2, 0.5, 0.9])
    assert calibrate(backbone, data, config) == config  # calibrated once: kept as is


def test_the_even_map_ignores_a_pilots_noise_and_accepts_repeated_weights():
    """`arc_length_map` fits each metric monotone in the loss weight: a zig-zag of one seed adds no arc length, and
    the points of several pilot rounds (in any order, with repeats) draw one map."""
    from padirec.training import arc_length_map

    v = np.linspace(0, 1, 21)
    clean_ndcg, clean_alpha = 0.1 + 0.1 * v, 0.9 - 0.4 * v  # a straight curve: the map is w itself
    np.testing.assert_allclose(arc_length_map(v, clean_ndcg, clean_alpha), np.linspace(0, 1, 11), atol=1e-6)
    noisy = clean_alpha + np.where(v < 0.3, 0.03 * (-1) ** np.arange(21), 0)  # seed noise near one end
    raw_arc = np.concatenate([[0.0], np.cumsum(curve_gaps(clean_ndcg, noisy))])  # the zig-zag's own length
    raw_map = np.interp(np.linspace(0, 1, 11), raw_arc / raw_arc[-1], v)
    weight_map = arc_length_map(v, clean_ndcg, noisy)
    assert np.all(np.diff(weight_map) > 0)
    assert np.abs(raw_map - np.linspace(0, 1, 11)).max() > 0.15  # the raw arc crowds the knots into the noise
    assert np.abs(weight_map - np.linspace(0, 1, 11)).max() < 0.08
    merged = arc_length_map(np.concatenate([v, v[::-1]]), np.concatenate([clean_ndcg, clean_ndcg[::-1]]),
                            np.concatenate([clean_alpha, clean_alpha[::-1]]))
    np.testing.assert_allclose(merged, np.linspace(0, 1, 11), atol=1e-6)
    # two seeds that disagree at one weight are averaged there, not read as a step at that weight
    seeds = arc_length_map(np.concatenate([v, v]), np.concatenate([clean_ndcg, clean_ndcg]),
                           np.concatenate([clean_alpha + np.where(v == 0, 0.2, 0), clean_alpha]))
    assert seeds[1] > 0.02 and np.all(np.diff(seeds) > 0)


def test_efficient_ends_skip_an_end_adapter_that_a_little_of_the_other_weight_beats_on_both_metrics():
    """A pure-diversity adapter (loss weight 0) that is less diverse *and* less accurate than the one at 0.05 is not
    on the front: with efficient ends w_acc = 0 gets the most diverse loss weight, and the knots spread from there;
    the pure ends stay as asked otherwise, and where the ends are already the best they are the same map."""
    from padirec.training import arc_length_map

    v = np.linspace(0, 1, 21)
    ndcg, alpha = 0.1 + 0.1 * v, 0.9 - 0.4 * v
    alpha[0], ndcg[0] = 0.8, 0.09  # the drifted pure-diversity adapter: dominated by v = 0.05
    efficient = arc_length_map(v, ndcg, alpha, efficient_ends=True)
    assert efficient[0] == pytest.approx(0.05) and efficient[-1] == 1.0
    np.testing.assert_allclose(efficient, np.linspace(0.05, 1, 11), atol=1e-6)
    assert arc_length_map(v, ndcg, alpha)[0] == 0.0
    clean = 0.9 - 0.4 * v
    np.testing.assert_allclose(arc_length_map(v, 0.1 + 0.1 * v, clean, efficient_ends=True),
                               arc_length_map(v, 0.1 + 0.1 * v, clean), atol=1e-9)
    # two seeds on a curve whose diverse half is flat: a mean that tops the pure end by less than the seeds'
    # noise does not move it (the argmax alone would start the map at 0.45)
    rng = np.random.default_rng(0)
    flat = np.where(v < 0.5, 0.9, 0.9 - 0.8 * (v - 0.5))
    noise = rng.normal(0, 0.01, (2, 21))
    noise[:, 9] = [0.012, 0.008]  # v = 0.45: the highest mean, by 0.01
    seeds_v, seeds_ndcg, seeds_alpha = np.tile(v, 2), np.tile(0.1 + 0.1 * v, 2), (flat + noise).ravel()
    assert v[np.argmax((flat + noise).mean(0))] == pytest.approx(0.45)
    assert arc_length_map(seeds_v, seeds_ndcg, seeds_alpha, efficient_ends=True)[0] == 0.0


def test_map_refinement_trains_the_maps_own_knots_with_a_new_seed(data, backbone, monkeypatch):
    """A curve that turns sharply between two pilot weights (all its change between 0.8 and 0.82): the first map
    spreads the knots linearly over 0.8–0.9; a refinement round trains exactly those knots, with the next seed,
    and redraws the map so that the user's weights 0.1 … 0.9 land inside the sharp turn."""
    import padirec.training as training

    calls = []

    def pilot(backbone, data, weights, config, **kwargs):
        v = np.asarray(weights)[:, 0]
        calls.append((v.copy(), config.seed))
        moved = np.clip((v - 0.8) / 0.02, 0, 1)
        metrics = {"val_ndcg10": (0.1 + 0.1 * moved)[None], "val_alpha_ndcg10": (0.9 - 0.4 * moved)[None]}
        return AdapterResult(weights=weights, epochs=np.zeros((1, len(v)), int), slots=["epoch=1"],
                             params=np.zeros((1, len(v), 1096), np.float32), metrics=metrics)

    monkeypatch.setattr(training, "train_adapters", pilot)
    once = calibrate(backbone, data, AdapterConfig(objective_scale="even", scale_epochs=2, seed=4))
    refined = calibrate(backbone, data, AdapterConfig(objective_scale="even", scale_epochs=2, seed=4,
                                                      map_refinements=1))
    assert [seed for _, seed in calls] == [4, 4, 5]
    np.testing.assert_allclose(calls[2][0], once.weight_map[1:-1], atol=1e-6)  # the first map's own knots
    assert max(once.weight_map[1:-1]) > 0.85  # the first guess spreads past the turn
    np.testing.assert_allclose(refined.weight_map[1:-1], 0.8 + 0.02 * np.arange(1, 10) / 10, atol=2e-3)
    calls.clear()  # two seeds pooled in the first round: the refinement takes the seed after them
    calibrate(backbone, data, AdapterConfig(objective_scale="even", scale_epochs=2, seed=4, map_seeds=2,
                                            map_refinements=1))
    assert [seed for _, seed in calls] == [4, 5, 6] and len(calls[0][0]) == len(calls[1][0]) == 17


def test_augmented_tchebycheff_picks_the_efficient_end_among_equally_diverse_points():
    """At w_acc = 0 the plain Tchebycheff max sees only diversity: every point of a flat stretch of the diversity
    loss ties, including those with a needlessly bad accuracy loss (weakly efficient). The augmentation ρ·Σ d_j
    breaks the tie towards the efficient point, and changes little where both weights are positive."""
    t = torch.linspace(0, 1, 1001)
    losses = torch.stack([1 - t, (t - 0.5).clamp(min=0)], dim=-1)  # t ≤ 0.5: same diversity, accuracy improving
    plain = AdapterConfig(objective_scale="range", scalarization="tchebycheff", scales=[1.0, 1.0], ideal=[0.0, 0.0],
                          smoothing=1e-3)
    augmented = replace(plain, augmentation=0.05)
    pure_diversity = torch.tensor([0.0, 1.0])
    assert float(t[scalarized_loss(losses, pure_diversity, plain).argmin()]) < 0.1  # any tie: here the worst
    assert float(t[scalarized_loss(losses, pure_diversity, augmented).argmin()]) == pytest.approx(0.5, abs=2e-3)
    balanced = torch.tensor([0.5, 0.5])
    assert float(t[scalarized_loss(losses, balanced, augmented).argmin()]) == pytest.approx(
        float(t[scalarized_loss(losses, balanced, plain).argmin()]), abs=0.02)
    with pytest.raises(ValueError, match="augmentation and map_refinements"):
        AdapterConfig(augmentation=-0.1)
