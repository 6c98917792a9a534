"""Issue 7's generator options: TA-Rec's temporal consistency (one-step generation), FatsMB's MCGLN conditioning
with the reference adapter, and DimeRec's task loss through the frozen backbone."""

from __future__ import annotations

import argparse
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from support import TINY_DIT

from padirec.cli.generator import add_commands, generate_config, train_config
from padirec.config import DataSpec, build, load_data
from padirec.contracts.checkpoint import load_checkpoint
from padirec.contracts.dataset import write_dataset
from padirec.data import SyntheticConfig, make_synthetic, preprocess
from padirec.diffusion import DiffusionSchedule, DiT, DiTConfig, SamplerConfig, ScheduleConfig, sample
from padirec.diffusion.generator import load_generator
from padirec.diffusion.objective import diffusion_losses, jitter_weights
from padirec.diffusion.ray_train import train_dit_ray
from padirec.diffusion.task import TaskLossConfig, adapter_task_loss
from padirec.diffusion.train import DiTTrainConfig, train_dit
from padirec.models import N_PARAMS, BackboneConfig, ParamNormalizer, build_backbone, save_backbone, to_tokens
from padirec.training import AdapterConfig

pytestmark = pytest.mark.usefixtures("_seed")  # conftest: torch.manual_seed(0) before each test


def small_schedule(steps: int = 100) -> DiffusionSchedule:
    return DiffusionSchedule(ScheduleConfig(steps=steps))


# --- TA-Rec: temporal consistency ---------------------------------------------------------------------


class FixedX0(nn.Module):
    """A denoiser whose x0 prediction is w_0 (or -w_0 on dropped rows) everywhere, plus t/100 if `slope`;
    it returns that x0 as an eps, v or x0 output. Records the steps it was called at."""

    def __init__(self, schedule: DiffusionSchedule, prediction: str, slope: float = 0.0):
        super().__init__()
        self.schedule, self.prediction, self.slope = schedule, prediction, slope
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[torch.Tensor] = []
        self.config = SimpleNamespace(n_tokens=8, token_dim=8)

    def forward(self, x, t, w, drop=None):
        self.calls.append(t)
        sign = 1.0 - 2.0 * drop.float() if drop is not None else torch.ones(len(t))
        x0 = self.scale * (sign * w[:, 0] + self.slope * t / 100)[:, None, None].expand_as(x)
        if self.prediction == "x0":
            return x0
        abar = self.schedule.alphas_cumprod[t].reshape(-1, 1, 1)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if self.prediction == "eps" else abar.sqrt() * eps - (1 - abar).sqrt() * x0


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_consistency_is_zero_for_an_x0_prediction_constant_in_t(prediction):
    schedule = small_schedule()
    x0, w = torch.randn(64, 8, 8), torch.rand(64, 2)
    constant = FixedX0(schedule, prediction)
    losses = diffusion_losses(constant, schedule, x0, w, 0.5, prediction, torch.Generator().manual_seed(0),
                              consistency_weight=1.0)
    # both branches see the same x0, noise and (dropped) condition: a t-independent x0 gives exactly 0
    assert losses["consistency"].item() == pytest.approx(0.0, abs=1e-9)
    assert losses["loss"].item() == pytest.approx(losses["diffusion"].item())
    sloped = FixedX0(schedule, prediction, slope=1.0)
    losses = diffusion_losses(sloped, schedule, x0, w, 0.5, prediction, torch.Generator().manual_seed(0),
                              consistency_weight=0.5, consistency_delta=2)
    t, t_prev = sloped.calls
    assert torch.equal(t_prev, (t - 2).clamp(min=0))
    expected = ((t - t_prev).float() / 100).pow(2).mean()  # the x0 predictions differ by slope * delta / 100
    assert losses["consistency"].item() == pytest.approx(expected.item(), rel=1e-3)
    assert losses["loss"].item() == pytest.approx(losses["diffusion"].item() + 0.5 * expected.item(), rel=1e-4)


def test_last_step_prob_trains_the_one_step_samplers_step():
    schedule = small_schedule()
    model = FixedX0(schedule, "x0")
    diffusion_losses(model, schedule, torch.randn(32, 8, 8), torch.rand(32, 2), 0.1, "x0", last_step_prob=1.0)
    assert torch.all(model.calls[0] == 99)
    model.calls.clear()
    diffusion_losses(model, schedule, torch.randn(400, 8, 8), torch.rand(400, 2), 0.1, "x0", last_step_prob=0.5)
    assert 0.4 < (model.calls[0] == 99).float().mean() < 0.6


def test_one_step_sampling_returns_the_x0_prediction_at_T():
    schedule = small_schedule()
    model = FixedX0(schedule, "x0")
    w = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    x = sample(model, schedule, w, SamplerConfig("ddim", steps=1), prediction="x0")
    torch.testing.assert_close(x, w[:, :1].expand(2, 64))
    assert [c.tolist() for c in model.calls] == [[99, 99]]  # one forward pass (no guidance)


# --- FatsMB: MCGLN -------------------------------------------------------------------------------------


def random_mcgln(**overrides) -> DiT:
    model = DiT(DiTConfig(n_tokens=6, token_dim=8, hidden=32, depth=2, heads=4, ffn=64, conditioning="mcgln",
                          **overrides))
    for p in model.parameters():
        nn.init.normal_(p, std=0.2)
    return model.eval()


def test_mcgln_routes_w_regions_and_the_null_condition_uses_only_shared_experts():
    model = random_mcgln()
    w = torch.tensor([[0.0, 1.0], [0.4, 0.6], [1.0, 0.0], [0.7, 0.3]])
    drop = torch.tensor([False, False, False, True])
    assert model.region(w, drop, 4).tolist() == [0, 1, 2, -1] and model.region(None, None, 2).tolist() == [-1, -1]
    x, t = torch.randn(4, 6, 8), torch.randint(0, 100, (4,))
    with torch.no_grad():
        before = model(x, t, w, drop)
        for block in model.blocks:
            for experts in block.moe.private:
                for p in experts.parameters():
                    p.add_(1.0)
        after = model(x, t, w, drop)
    assert torch.equal(before[3], after[3])  # null row: shared experts only
    assert all(not torch.allclose(before[i], after[i]) for i in range(3))


def test_mcgln_trains_every_expert_even_when_a_region_is_absent():
    """DDP needs a gradient for every parameter at every step; private experts of absent regions still get one."""
    model = random_mcgln().train()
    w = torch.tensor([[0.1, 0.9]] * 4)  # region 0 only
    model(torch.randn(4, 6, 8), torch.randint(0, 100, (4,)), w, torch.tensor([True, False, False, False])).sum() \
        .backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    with pytest.raises(ValueError, match="mcgln"):
        DiT(DiTConfig(reference=True))  # the reference is a condition of mcgln only


def test_reference_adapter_is_an_always_present_condition_saved_with_the_weights():
    model = random_mcgln(reference=True)
    x, t, w = torch.randn(3, 6, 8), torch.randint(0, 100, (3,)), torch.rand(3, 2)
    drop = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        before, null_before = model(x, t, w), model(x, t, w, drop)
        model.reference.normal_()
        after, null_after = model(x, t, w), model(x, t, w, drop)
    assert not torch.allclose(before, after) and not torch.allclose(null_before, null_after)  # never dropped
    clone = DiT(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.reference, model.reference)


# --- DimeRec: task loss on x̂0 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return preprocess(make_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=0)))


@pytest.mark.parametrize("accuracy_loss", ["bce", "backbone"])
@pytest.mark.parametrize("backbone_name", ["sasrec", "comirec"])
def test_task_loss_gradient_reaches_the_dit_and_not_the_backbone(data, backbone_name, accuracy_loss):
    backbone = build_backbone(BackboneConfig(name=backbone_name, n_items=data.n_items, max_len=data.max_len))
    assert all(p.requires_grad for p in backbone.parameters())
    normalizer = ParamNormalizer.fit(torch.randn(20, N_PARAMS) * 0.1)
    adapter = AdapterConfig(accuracy_loss=accuracy_loss, diversity_topk=5 if accuracy_loss == "backbone" else 0)
    task = adapter_task_loss(backbone, data, normalizer, TaskLossConfig(instances=50, batch_size=8, adapter=adapter))
    model = DiT(DiTConfig(**TINY_DIT))
    schedule = small_schedule()
    x0, w = to_tokens(normalizer.normalize(torch.randn(6, N_PARAMS) * 0.1)), torch.rand(6, 2)
    losses = diffusion_losses(model, schedule, x0, w, 0.0, "v", torch.Generator().manual_seed(0), task_loss=task,
                              task_loss_weight=0.1)
    assert torch.isfinite(losses["task"]) and losses["task"].item() != 0.0
    assert losses["loss"].item() == pytest.approx(losses["diffusion"].item() + 0.1 * losses["task"].item(), rel=1e-5)
    model.zero_grad()
    losses["task"].backward()
    assert model.final.weight.grad.abs().sum() > 0  # the zero-initialised output layer is what x̂0 moves first
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    # rows whose w was dropped are not asked to serve it
    dropped = diffusion_losses(model, schedule, x0, w, 1.0, "v", task_loss=task, task_loss_weight=0.1)
    assert dropped["task"].item() == 0.0
    # Ray Train ships the loss to its workers: it pickles and computes the same after the trip
    shipped = pickle.loads(pickle.dumps(task))
    x0_hat = torch.randn(2, *x0.shape[1:])
    torch.testing.assert_close(shipped(x0_hat, w[:2], torch.Generator().manual_seed(1)),
                               task(x0_hat, w[:2], torch.Generator().manual_seed(1)))


# --- the options through training, checkpoint and the CLI ---------------------------------------------


@pytest.fixture
def options_setup(tmp_path, monkeypatch):
    """A comirec backbone checkpoint (recording its data), a two-mode adapter dataset, and a config with every
    option on: x0 prediction with TCR, mcgln with the reference adapter, the task loss."""
    monkeypatch.setenv("PADIREC_CACHE_DIR", str(tmp_path / "cache"))
    spec = DataSpec(kind="synthetic", synthetic_users=60, synthetic_items=40)
    data = load_data(spec)
    backbone = build_backbone(BackboneConfig(name="comirec", n_items=data.n_items, max_len=data.max_len))
    save_backbone(backbone, tmp_path / "backbone.pt", extra={"data": spec.to_dict()})
    rng = np.random.default_rng(0)
    rows = [{"w": [a, 1 - a], "seed": s, "epoch": 0, "params": ((2 * a - 1) * 0.5 + rng.normal(0, 0.05, N_PARAMS))
             .astype(np.float32), "ndcg10": 0.0, "alpha_ndcg10": 0.0, "test_ndcg10": 0.0, "test_alpha_ndcg10": 0.0,
             "backbone_run_id": "", "run_id": f"r{a}{s}"} for a in (0.0, 0.5, 1.0) for s in range(4)]
    config = build(DiTTrainConfig, dict(
        epochs=2, batch_size=6, lr=3e-3, prediction="x0", device="cpu",
        dit={**TINY_DIT, "conditioning": "mcgln", "reference": True}, schedule={"steps": 50},
        consistency_weight=0.5, last_step_prob=0.2, task_loss_weight=0.1, cond_jitter=0.25,
        task={"backbone": str(tmp_path / "backbone.pt"), "instances": 32, "batch_size": 4}))
    mean = torch.tensor(np.stack([r["params"] for r in rows]).mean(0))
    return {"path": write_dataset(rows, tmp_path / "data")["path"], "config": config, "mean_adapter": mean}


def check_options_checkpoint(checkpoint_path, mean_adapter: torch.Tensor) -> None:
    """Per-term metrics saved, the reference is the normalised mean adapter, one-step generation works."""
    metrics = load_checkpoint(checkpoint_path).metrics
    assert {"loss", "diffusion_loss", "consistency_loss", "task_loss"} <= metrics.keys()
    assert np.isfinite(metrics["task_loss"]) and metrics["task_loss"] != 0 and metrics["consistency_loss"] > 0
    generator = load_generator(checkpoint_path)
    torch.testing.assert_close(generator.model.reference, to_tokens(generator.normalizer.normalize(mean_adapter)))
    adapters = generator.generate(np.array([[1.0, 0.0], [0.0, 1.0]]), SamplerConfig("ddim", steps=1))
    assert adapters.shape == (2, N_PARAMS) and np.isfinite(adapters).all()


@pytest.mark.parametrize("p", [2, 3])
def test_cond_jitter_moves_w_within_the_simplex_by_at_most_its_amount(p):
    w = torch.distributions.Dirichlet(torch.ones(p)).sample((2000,))
    w[:p] = torch.eye(p)  # the vertices too: clipped back onto the simplex
    moved = jitter_weights(w, 0.1, torch.Generator().manual_seed(0))
    assert (moved >= 0).all() and torch.allclose(moved.sum(1), torch.ones(2000))
    inside = (w > 0.2).all(1)  # away from the faces nothing is clipped: the bound is exact
    assert (moved - w)[inside].abs().max() <= 0.1 + 1e-6 and (moved - w).abs().max() <= 0.12
    assert (moved - w)[inside].abs().max() > 0.07  # it does move, about this far
    assert (moved - w).mean(0).abs().max() < 0.01  # no drift away from the grid's weights
    assert jitter_weights(w, 0.0) is w
    with pytest.raises(ValueError, match="cond_jitter"):
        DiTTrainConfig(cond_jitter=0.7)


def test_options_train_checkpoint_and_generate_in_one_step(options_setup, tmp_path):
    result = train_dit(options_setup["path"], options_setup["config"], output_dir=tmp_path / "run")
    check_options_checkpoint(result["checkpoint_path"], options_setup["mean_adapter"])


@pytest.mark.slow  # Ray Train start-up dominates (106 s on the loaded shared 2-core box); plain DDP runs by default
def test_options_train_on_ray_ddp(options_setup, ray_cluster, tmp_path):
    """Two gloo workers: TCR's second forward under DDP, mcgln's routed experts, the task loss shipped as is."""
    result = train_dit_ray(options_setup["path"], options_setup["config"], num_workers=2,
                           storage_path=tmp_path / "ray_results", name="options")
    assert result["epoch"] == 2 and result["metrics"]["samples"] == 12  # both workers' rows
    check_options_checkpoint(result["checkpoint_path"], options_setup["mean_adapter"])


def test_cli_flags_reach_the_configs():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-dit", "--dataset-path", "a.parquet", "--conditioning", "mcgln", "--reference",
                              "--prediction", "x0", "--consistency-weight", "0.6", "--last-step-prob", "0.25",
                              "--task-loss-weight", "0.1", "--task-backbone", "backbone.pt"])
    config = train_config(args)
    assert config.dit == DiTConfig(conditioning="mcgln", reference=True) and config.prediction == "x0"
    assert (config.consistency_weight, config.last_step_prob, config.task_loss_weight) == (0.6, 0.25, 0.1)
    assert config.task.backbone == "backbone.pt" and config.dit_config(2).conditioning == "mcgln"
    plain = train_config(parser.parse_args(["train-dit", "--dataset-path", "a.parquet"]))
    assert plain == DiTTrainConfig()
    args = parser.parse_args(["generate", "--w-acc", "0.3", "--steps", "1"])
    assert generate_config(args).sampler_config() == SamplerConfig("ddim", steps=1)
    args = parser.parse_args(["generate", "--w-acc", "0.3", "--steps", "3", "--spacing", "trailing"])
    assert generate_config(args).sampler_config() == SamplerConfig("ddim", steps=3, spacing="trailing")
    with pytest.raises(ValueError, match="unknown TaskLossConfig option 'instance'"):
        build(DiTTrainConfig, {"task": {"instance": 3}})
