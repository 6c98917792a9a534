"""The DiT denoiser, its EMA, and an end-to-end train-then-sample run on a two-mode toy."""

from __future__ import annotations

import pytest
import torch

from padirec.diffusion import (
    EMA,
    DiffusionSchedule,
    DiT,
    DiTConfig,
    SamplerConfig,
    ScheduleConfig,
    diffusion_loss,
    sample,
)
from padirec.models import ParamNormalizer
from padirec.models.adapter import N_PARAMS, N_TOKENS, TOKEN_WIDTH, TensorSlot

STRATEGIES = ["pre", "pre_post", "adanorm", "mcgln"]


pytestmark = pytest.mark.usefixtures("_seed")  # conftest: torch.manual_seed(0) before each test


def tiny(conditioning: str = "adanorm") -> DiT:
    config = DiTConfig(
        n_tokens=8, token_dim=8, hidden=64, depth=2, heads=4, ffn=128, conditioning=conditioning
    )
    return DiT(config)


def train_steps(model: DiT, schedule: DiffusionSchedule, steps: int = 1, lr: float = 1e-2) -> None:
    """Adam steps on the diffusion loss with data whose sign depends on w."""
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(16, 1)
    x0 = (w[:, :1] - w[:, 1:]).reshape(-1, 1, 1).expand(-1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        diffusion_loss(model, schedule, x0, w, p_uncond=0.2).backward()
        opt.step()


def test_default_dit_is_the_paper_size():
    model = DiT(DiTConfig())
    x = torch.randn(2, N_TOKENS, TOKEN_WIDTH)
    out = model(x, torch.tensor([0, 499]), torch.tensor([[0.3, 0.7], [1.0, 0.0]]))
    assert out.shape == (2, N_TOKENS, TOKEN_WIDTH) == (2, 137, 8) and N_TOKENS * TOKEN_WIDTH == N_PARAMS
    # 4 x (attention 1M + FFN 2.1M + adaLN 1.6M) + embeddings: ~20M
    assert 15e6 < sum(p.numel() for p in model.parameters()) < 25e6


@pytest.mark.parametrize("conditioning", STRATEGIES)
def test_shapes_and_zero_output_at_init(conditioning):
    model = tiny(conditioning)
    x, t, w = torch.randn(5, 8, 8), torch.randint(0, 100, (5,)), torch.rand(5, 2)
    for cond in (w, None):
        out = model(x, t, cond)
        assert out.shape == (5, 8, 8)
        assert torch.all(out == 0)  # zero-initialised final linear (and adaLN-Zero)
    if conditioning in ("adanorm", "mcgln"):
        for block in model.blocks:  # every block starts as the identity
            h, c = torch.randn(5, 8, 64), torch.randn(5, 64)
            extra = [torch.tensor([0, 1, 2, -1, 1])] if conditioning == "mcgln" else []  # w-regions, -1: null
            assert torch.equal(block(h, c, *extra), h)
    else:
        assert all(block.ada is None for block in model.blocks)


def test_unknown_conditioning_is_rejected():
    with pytest.raises(ValueError, match="conditioning"):
        tiny("post")


@pytest.mark.parametrize("conditioning", STRATEGIES)
def test_condition_matters_after_training_and_drop_ignores_w(conditioning):
    model, schedule = tiny(conditioning), DiffusionSchedule(ScheduleConfig(steps=100))
    # Two steps: under adaLN-Zero the first step only moves the zero-initialised output layer
    # (the modulation gets no gradient while the layer after it is zero), the second reaches c.
    train_steps(model, schedule, steps=2)
    model.eval()
    x, t = torch.randn(4, 8, 8), torch.full((4,), 30)
    w_a, w_b = torch.tensor([[1.0, 0.0]]).repeat(4, 1), torch.tensor([[0.0, 1.0]]).repeat(4, 1)
    with torch.no_grad():
        out_a, out_b = model(x, t, w_a), model(x, t, w_b)
        assert out_a.abs().max() > 1e-3 and (out_a - out_b).abs().max() > 1e-3
        drop = torch.ones(4, dtype=torch.bool)
        null_a, null_b, null_none = model(x, t, w_a, drop), model(x, t, w_b, drop), model(x, t, None)
    assert torch.equal(null_a, null_b) and torch.equal(null_a, null_none)
    # dropping is per row
    mixed = torch.tensor([True, False, True, False])
    with torch.no_grad():
        out_mixed = model(x, t, w_a, mixed)
    torch.testing.assert_close(out_mixed[1::2], out_a[1::2])
    torch.testing.assert_close(out_mixed[0::2], null_a[0::2])


def test_ema_starts_as_copy_and_averages():
    model, schedule, d = tiny(), DiffusionSchedule(ScheduleConfig(steps=100)), 0.9
    ema = EMA(model, decay=d)
    for p, e in zip(model.parameters(), ema.module.parameters(), strict=True):
        assert torch.equal(p, e) and p.data_ptr() != e.data_ptr() and not e.requires_grad
    train_steps(model, schedule)
    assert ema.current_decay == pytest.approx(0.1)  # warm-up: (1 + 0) / (10 + 0)
    ema.num_updates = 1000  # past the warm-up the configured decay applies
    assert ema.current_decay == d
    old = [e.clone() for e in ema.module.parameters()]
    ema.update(model)
    changed = 0
    for o, p, e in zip(old, model.parameters(), ema.module.parameters(), strict=True):
        torch.testing.assert_close(e, d * o + (1 - d) * p, atol=1e-7, rtol=1e-6)
        changed += int(not torch.equal(e, o))
    assert changed > 0 and ema.num_updates == 1001
    clone = EMA(tiny(), decay=0.5)
    clone.load_state_dict(ema.state_dict())
    assert clone.decay == d and all(
        torch.equal(a, b) for a, b in zip(clone.module.parameters(), ema.module.parameters(), strict=True)
    )


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_finite_and_backpropagates(prediction):
    model, schedule = tiny(), DiffusionSchedule(ScheduleConfig(steps=100))
    x0 = torch.randn(8, 8, 8)
    w = torch.rand(8, 2)
    loss = diffusion_loss(model, schedule, x0, w, 0.1, prediction, torch.Generator().manual_seed(0))
    again = diffusion_loss(model, schedule, x0, w, 0.1, prediction, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(again.item())
    # the output is 0 at init, so the loss is E[target^2]: ~1 for both eps and v
    assert 0.5 < loss.item() < 1.6
    loss.backward()
    assert model.final.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        diffusion_loss(model, schedule, x0, None, 0.1, "score")


def test_trained_dit_generates_the_mode_of_its_condition():
    """w=(1,0) -> every value near +1, w=(0,1) -> near -1: a small DiT learns it and the samplers find it.

    As in production, data are normalised per tensor and sampling clamps x0 to the training range.
    """
    gen = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        sign = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        w = torch.stack([(sign + 1) / 2, (1 - sign) / 2], dim=1)
        return w, sign.reshape(-1, 1) + 0.05 * torch.randn(n, 64, generator=gen)

    layout = [TensorSlot("a", (4, 8), 0), TensorSlot("b", (32,), 32)]
    norm = ParamNormalizer.fit(batch(1000)[1], layout)
    model, schedule = tiny("adanorm"), DiffusionSchedule(ScheduleConfig(steps=100))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    ema = EMA(model, decay=0.98)
    for _ in range(300):
        w, flat = batch(64)
        loss = diffusion_loss(model, schedule, norm.normalize(flat).reshape(64, 8, 8), w, 0.1, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
    assert loss.item() < 0.1
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat_interleave(32, dim=0)
    for config in (
        SamplerConfig("ddpm"),
        SamplerConfig("ddim", steps=20),
        SamplerConfig("ddim", steps=20, guidance=1),
    ):
        x = sample(ema.module, schedule, w, config, norm, generator=torch.Generator().manual_seed(1))
        assert x.shape == (64, 64)
        pos, neg = x[:32], x[32:]
        assert abs(pos.mean().item() - 1) < 0.1 and abs(neg.mean().item() + 1) < 0.1, config
        assert (pos > 0).float().mean() > 0.95 and (neg < 0).float().mean() > 0.95, config
    # ancestral sampling needs no clamping here
    x = norm.denormalize(sample(ema.module, schedule, w, SamplerConfig(clip=False), generator=gen))
    assert (x[:32] - 1).abs().max() < 0.5 and (x[32:] + 1).abs().max() < 0.5
