"""The one-network baselines pinned on a tiny synthetic sweep: CMR, PHN, YOTO (end to end) and the Hypernetwork."""

import numpy as np
import pytest
import torch

from padirec.diffusion.generate import task_weights
from padirec.evaluation.baselines import Scorer
from padirec.evaluation.hypernetworks import (
    CMR,
    PHN,
    YOTO,
    CMRConfig,
    FiLMAdapter,
    Hypernetwork,
    HypernetworkConfig,
    PHNConfig,
    WeightToAdapter,
    YOTOConfig,
    draw_weights,
)
from padirec.evaluation.select import ValidationUtility
from padirec.models import N_PARAMS, apply_adapters, init_adapter_flat, unflatten


def test_cmr_hypernetwork_starts_at_the_init_and_learns_to_depend_on_w(tiny_sweep):
    init = init_adapter_flat(tiny_sweep["adapter"].init_seed)
    untrained = WeightToAdapter(init=init)(torch.as_tensor(task_weights([0.0, 0.3, 1.0])))
    assert torch.allclose(untrained, init.expand(3, -1), atol=1e-6)
    cmr = CMR.fit(tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"], CMRConfig(epochs=1),
                  progress=False)
    diversity, middle, accuracy = (a[0] for a in cmr.adapters(task_weights([0.0, 0.5, 1.0])))
    assert np.abs(accuracy - diversity).max() > 1e-3
    assert np.allclose(middle, (accuracy + diversity) / 2, atol=1e-5)  # CMR's generated layer is linear in w


def test_end_to_end_training_takes_at_least_min_steps_where_an_epoch_is_short(tiny_sweep):
    """A small dataset's epoch is a few batches: `min_steps` adds epochs (the last one cut) until the budget is met."""
    batches = -(-len(tiny_sweep["data"].train_instances()) // tiny_sweep["adapter"].batch_size)
    by_epochs = CMR.fit(tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"], CMRConfig(epochs=2),
                        progress=False)
    by_steps = CMR.fit(tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"],
                       CMRConfig(epochs=2, min_steps=3 * batches + 1), progress=False)
    assert (by_epochs.steps, by_steps.steps) == (2 * batches, 3 * batches + 1)
    w = torch.as_tensor(task_weights([0.0, 1.0]))
    assert not torch.allclose(by_epochs.model(w), by_steps.model(w))  # the same seed, trained further


def test_keep_best_restores_the_epoch_its_judge_scored_highest(tiny_sweep):
    """The judge is called after each epoch; the weights kept are those it scored best, not the last ones."""
    setting = (tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"])
    batches = -(-len(tiny_sweep["data"].train_instances()) // tiny_sweep["adapter"].batch_size)
    scores = iter([0.1, 0.9, 0.3, 0.2])
    judged = CMR.fit(*setting, CMRConfig(epochs=4, keep="best"), progress=False, judge=lambda method: next(scores))
    second = CMR.fit(*setting, CMRConfig(epochs=2), progress=False)
    last = CMR.fit(*setting, CMRConfig(epochs=4), progress=False)
    assert (judged.steps, judged.kept_step) == (4 * batches, 2 * batches)
    w = torch.as_tensor(task_weights([0.0, 1.0]))
    assert torch.allclose(judged.model(w), second.model(w)) and not torch.allclose(judged.model(w), last.model(w))
    with pytest.raises(ValueError, match="judge"):
        CMR.fit(*setting, CMRConfig(epochs=1, keep="best"), progress=False)


def test_validation_utility_weighs_the_validation_metrics_on_the_sweeps_range(tiny_sweep):
    """The judge's scale is the swept adapters' validation range, so a swept adapter's utility is w · its recorded
    validation metrics min–max normalised over the sweep; the mean is over the tasks."""
    arrays, w = tiny_sweep["arrays"], task_weights([0.0, 0.3, 1.0])
    valid = Scorer.build(tiny_sweep["backbone"], tiny_sweep["data"], "valid")
    points = np.stack([arrays["ndcg10"], arrays["alpha_ndcg10"]], axis=1)
    normalised = (points - points.min(0)) / (points.max(0) - points.min(0))
    utility = ValidationUtility(valid, arrays, w)
    for row in (0, len(points) - 1):
        assert utility(Fixed(arrays["params"][row : row + 1])) == pytest.approx((w @ normalised[row]).mean(), abs=1e-4)


class Fixed:
    """One adapter for every task: a stand-in method for the utility's test."""

    def __init__(self, params: np.ndarray):
        self.params = params

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        return [self.params for _ in weights]


def test_hypernetwork_reproduces_its_training_adapters_on_a_toy_set():
    rng = np.random.default_rng(0)
    w = task_weights([0.0, 0.25, 0.5, 0.75, 1.0])
    params = rng.normal(0, 1, (5, N_PARAMS)).astype(np.float32) * np.linspace(0.1, 2, N_PARAMS, dtype=np.float32)
    model = Hypernetwork.fit(w, params, HypernetworkConfig(hidden=64, steps=600, lr=3e-3), progress=False)
    predicted = np.concatenate(model.adapters(w))
    assert np.abs(predicted - params).mean() < 0.05 * np.abs(params).mean()


def test_film_adapter_starts_at_the_init_and_folds_its_modulation_into_the_adapter_layout():
    init = init_adapter_flat(0)
    init[-64:] = torch.linspace(-1, 1, 64)  # a non-zero up.bias, so its scale is seen
    film = FiLMAdapter(3, hidden=16, init=init)
    w = torch.as_tensor(np.random.default_rng(0).dirichlet(np.ones(3), 4), dtype=torch.float32)
    assert torch.allclose(film(w), init.expand(4, -1))
    torch.nn.init.normal_(film.film[-1].weight, std=0.5)
    h = torch.randn(5, 64)
    gamma1, beta1, gamma2, beta2 = film.film(w).split([8, 8, 64, 64], dim=-1)
    base = unflatten(init)
    for k in range(4):  # the FiLM layers written out, one w at a time
        z = (1 + gamma1[k]) * (h @ base["down.weight"].T + base["down.bias"]) + beta1[k]
        expected = h + (1 + gamma2[k]) * (torch.relu(z) @ base["up.weight"].T + base["up.bias"]) + beta2[k]
        assert torch.allclose(apply_adapters(h, unflatten(film(w)))[k], expected, atol=1e-5)


def test_draw_weights_is_cmrs_uniform_w_acc_for_two_objectives_and_dirichlet_otherwise():
    w = draw_weights(np.random.default_rng(0), 1000, 2, 1.0)
    assert np.allclose(w[:, 0].numpy(), np.random.default_rng(0).random(1000))
    assert torch.allclose(w.sum(1), torch.ones(1000))
    edges = draw_weights(np.random.default_rng(0), 1000, 3, 0.2)
    middle = draw_weights(np.random.default_rng(0), 1000, 3, 1.0)
    assert torch.allclose(edges.sum(1), torch.ones(1000)) and edges.min() >= 0
    assert edges.max(1).values.mean() > middle.max(1).values.mean() + 0.1  # α < 1: mass near the vertices


@pytest.mark.parametrize("method, config", [(PHN, PHNConfig(epochs=3)), (YOTO, YOTOConfig(epochs=10))])
def test_phn_and_yoto_trained_end_to_end_give_more_diverse_lists_as_w_div_grows(tiny_sweep, method, config):
    fitted = method.fit(tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["adapter"], config, progress=False)
    assert fitted.name == method.name
    diversity, accuracy = (a[0] for a in fitted.adapters(task_weights([0.0, 1.0])))
    assert np.abs(accuracy - diversity).max() > 1e-3
    metrics = Scorer.build(tiny_sweep["backbone"], tiny_sweep["data"], "valid").per_task([diversity[None],
                                                                                         accuracy[None]])
    assert metrics["alpha_ndcg10"][0] > metrics["alpha_ndcg10"][1]
