"""The diffusion maths against closed forms and an analytic denoiser whose exact samples are known."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from padirec.diffusion import (
    DiffusionSchedule,
    DiT,
    DiTConfig,
    SamplerConfig,
    ScheduleConfig,
    ddim_timesteps,
    guided_prediction,
    make_sampler,
    sample,
)
from padirec.models import ParamNormalizer
from padirec.models.adapter import ADAPTER_LAYOUT, N_PARAMS, N_TOKENS, TOKEN_WIDTH, to_tokens

pytestmark = pytest.mark.usefixtures("_seed")  # conftest: torch.manual_seed(0) before each test


def small_schedule(steps: int = 100, kind: str = "linear") -> DiffusionSchedule:
    return DiffusionSchedule(ScheduleConfig(steps=steps, kind=kind))


# --- schedule -------------------------------------------------------------------------------------


def test_q_sample_is_the_closed_form():
    s = small_schedule()
    x0, noise = torch.randn(6, 5, 8), torch.randn(6, 5, 8)
    t = torch.tensor([0, 1, 17, 50, 98, 99])
    abar = np.cumprod(1 - np.linspace(1e-3, 0.2, 100))  # 1e-4..0.02 rescaled by 1000/100
    expected = (
        torch.tensor(np.sqrt(abar[t]), dtype=torch.float32)[:, None, None] * x0
        + torch.tensor(np.sqrt(1 - abar[t]), dtype=torch.float32)[:, None, None] * noise
    )
    torch.testing.assert_close(s.q_sample(x0, t, noise), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_ends_in_noise(kind):
    s = DiffusionSchedule(ScheduleConfig(steps=500, kind=kind))
    assert s.alphas_cumprod[-1] < 1e-3
    assert s.betas.dtype == torch.float32 and len(s.betas) == 500
    assert torch.all(s.betas > 0) and torch.all(s.betas < 1)


def test_linear_schedule_is_rescaled_by_1000_over_T():
    s = DiffusionSchedule(ScheduleConfig(steps=500))
    assert s.betas[0].item() == pytest.approx(2e-4) and s.betas[-1].item() == pytest.approx(0.04)


def test_unrescaled_short_schedule_raises():
    # the authors' T=500 linear schedule keeps ~8% of the signal at step T
    with pytest.raises(ValueError, match="rescale"):
        DiffusionSchedule(ScheduleConfig(steps=500, rescale=False))


def test_x0_eps_v_conversions_invert():
    s = small_schedule()
    x0, eps = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    t = torch.tensor([0, 10, 60, 99])
    xt = s.q_sample(x0, t, eps)
    v = s.v_target(x0, t, eps)
    torch.testing.assert_close(s.predict_x0_from_eps(xt, t, eps), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(s.predict_eps_from_x0(xt, t, x0), eps, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(s.predict_x0_from_v(xt, t, v), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s.predict_eps_from_v(xt, t, v), eps, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_posterior_matches_textbook_float64(kind):
    s = small_schedule(kind=kind)
    betas = s.betas.double().numpy()  # the float32-rounded betas; everything else recomputed here in float64
    abar = np.cumprod(1 - betas)
    x0, xt = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    t = torch.tensor([1, 5, 50, 99])
    mean, var, log_var = s.q_posterior(x0, xt, t)
    for row, i in enumerate(t.tolist()):
        a_t, ab_t, ab_prev = 1 - betas[i], abar[i], abar[i - 1]
        mu = (np.sqrt(ab_prev) * betas[i] / (1 - ab_t)) * x0[row].double().numpy() + (
            np.sqrt(a_t) * (1 - ab_prev) / (1 - ab_t)
        ) * xt[row].double().numpy()
        beta_tilde = (1 - ab_prev) / (1 - ab_t) * betas[i]
        np.testing.assert_allclose(mean[row].numpy(), mu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var[row].flatten().numpy(), beta_tilde, rtol=1e-4)
        np.testing.assert_allclose(log_var[row].flatten().numpy(), np.log(beta_tilde), rtol=1e-4)
    # at index 0 the posterior is a point mass on x0
    mean0, var0, _ = s.q_posterior(x0, xt, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mean0, x0)
    assert torch.all(var0 == 0)


@pytest.mark.parametrize("i", [1, 20, 70])
def test_posterior_sampling_recovers_the_marginal(i):
    """x_t ~ q(x_t | x0), then x_{t-1} ~ q(x_{t-1} | x_t, x0) must be distributed as q(x_{t-1} | x0)."""
    s, n, x0 = small_schedule(), 400_000, 0.7
    t = torch.full((n,), i)
    xt = s.q_sample(torch.full((n,), x0), t, torch.randn(n))
    mean, var, _ = s.q_posterior(torch.full((n,), x0), xt, t)
    x_prev = mean + var.sqrt() * torch.randn(n)
    ab = s.alphas_cumprod[i - 1].item()
    assert x_prev.mean().item() == pytest.approx(np.sqrt(ab) * x0, abs=0.005)
    assert x_prev.var().item() == pytest.approx(1 - ab, rel=0.02, abs=2e-4)


def test_ddim_timesteps_are_an_even_subsequence():
    steps = ddim_timesteps(100, 20)
    assert steps[0] == 0 and steps[-1] == 99 and len(steps) == len(set(steps)) == 20
    assert ddim_timesteps(100, 100) == list(range(100))
    with pytest.raises(ValueError):
        ddim_timesteps(100, 101)


def test_few_step_timesteps_start_at_T_and_trailing_skips_the_clean_end():
    assert ddim_timesteps(100, 1) == ddim_timesteps(100, 1, "trailing") == [99]  # one x0 prediction from x_T
    assert ddim_timesteps(100, 2) == [0, 99]
    assert ddim_timesteps(100, 2, "trailing") == [49, 99] and ddim_timesteps(100, 4, "trailing") == [24, 49, 74, 99]
    assert ddim_timesteps(100, 100, "trailing") == list(range(100))
    for bad in ((0, "linspace"), (3, "leading")):
        with pytest.raises(ValueError):
            ddim_timesteps(100, *bad)


def test_logsnr_timesteps_are_even_in_log_snr():
    schedule = small_schedule(500)
    abar = schedule.alphas_cumprod.double()
    steps = ddim_timesteps(500, 8, "logsnr", schedule.alphas_cumprod)
    assert steps[0] == 0 and steps[-1] == 499 and steps == sorted(set(steps)) and len(steps) == 8
    gaps = np.diff((abar.log() - (1 - abar).log())[steps].numpy())
    assert np.all(gaps < 0) and gaps.max() / gaps.min() < 1.3  # equal steps in log-SNR, up to the index grid
    assert ddim_timesteps(500, 500, "logsnr", schedule.alphas_cumprod) == list(range(500))
    assert ddim_timesteps(500, 1, "logsnr", schedule.alphas_cumprod) == [499]
    with pytest.raises(ValueError, match="alphas_cumprod"):
        ddim_timesteps(500, 8, "logsnr")


# --- guidance ---------------------------------------------------------------------------------------


def random_dit(**overrides) -> DiT:
    """A small DiT with all weights random, so that its output depends on x, t and w (unlike at init)."""
    model = DiT(DiTConfig(n_tokens=6, token_dim=8, hidden=32, depth=2, heads=4, ffn=64, **overrides))
    for p in model.parameters():
        nn.init.normal_(p, std=0.2)
    return model.eval()


@pytest.mark.parametrize("conditioning", ["pre", "pre_post", "adanorm", "mcgln"])
def test_guidance_combines_conditional_and_null_predictions(conditioning):
    model = random_dit(conditioning=conditioning)
    x, t, w = torch.randn(5, 6, 8), torch.randint(0, 100, (5,)), torch.rand(5, 2)
    with torch.no_grad():
        cond = model(x, t, w)
        uncond = model(x, t, w, torch.ones(5, dtype=torch.bool))
    assert not torch.allclose(cond, uncond, atol=1e-3)
    assert torch.equal(guided_prediction(model, x, t, w, 0.0), cond)
    for g in (1.0, 3.0):
        expected = (1 + g) * cond - g * uncond
        torch.testing.assert_close(guided_prediction(model, x, t, w, g), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_guidance_in_v_or_x0_space_equals_guidance_in_eps_space(prediction):
    model, s = random_dit(), small_schedule()
    x, t, w = torch.randn(5, 6, 8), torch.randint(0, 100, (5,)), torch.rand(5, 2)
    to_eps = s.predict_eps_from_v if prediction == "v" else s.predict_eps_from_x0
    with torch.no_grad():
        eps_c = to_eps(x, t, model(x, t, w))
        eps_u = to_eps(x, t, model(x, t, w, torch.ones(5, dtype=torch.bool)))
    got = guided_prediction(model, x, t, w, 2.0, prediction, s)
    torch.testing.assert_close(got, 3 * eps_c - 2 * eps_u, atol=1e-4, rtol=1e-4)


# --- sampling on a Gaussian toy with an exact denoiser ---------------------------------------------


class GaussianDenoiser(nn.Module):
    """The exact E[eps | x_t] (or E[v | x_t], E[x0 | x_t]) for data x0 ~ N(mu, s^2 I), with the DiT forward
    signature."""

    def __init__(self, schedule: DiffusionSchedule, mu: torch.Tensor, s: float, prediction: str = "eps"):
        super().__init__()
        self.schedule, self.s, self.prediction = schedule, s, prediction
        self.register_buffer("mu", mu)
        self.config = SimpleNamespace(n_tokens=mu.shape[0], token_dim=mu.shape[1])

    def forward(self, x, t, w, drop=None):
        abar = self.schedule.alphas_cumprod[t].reshape(-1, 1, 1)
        eps = (x - abar.sqrt() * self.mu) * (1 - abar).sqrt() / (abar * self.s**2 + 1 - abar)
        if self.prediction == "eps":
            return eps
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        return x0 if self.prediction == "x0" else abar.sqrt() * eps - (1 - abar).sqrt() * x0


def exact_final_std(
    schedule: DiffusionSchedule, s: float, steps: list[int], eta: float, beta_noise: bool = False
) -> float:
    """Std of a sampler's output on the Gaussian toy: Var propagated through its affine updates in float64.

    With the exact denoiser every step is x_prev = g x + noise, so Var_prev = g^2 Var + sigma^2.
    """
    abar, betas = schedule.alphas_cumprod.double().numpy(), schedule.betas.double().numpy()
    var = 1.0
    for i, i_prev in zip(steps[::-1], [*steps[::-1][1:], None], strict=True):
        a = abar[i]
        eps_gain = np.sqrt(1 - a) / (a * s**2 + 1 - a)  # d eps*/d x
        x0_gain = (1 - np.sqrt(1 - a) * eps_gain) / np.sqrt(a)  # d x0*/d x
        if i_prev is None:
            return float(np.sqrt(var * x0_gain**2))
        a_prev = abar[i_prev]
        sig2 = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        gain = np.sqrt(a_prev) * x0_gain + np.sqrt(1 - a_prev - sig2) * eps_gain
        var = gain**2 * var + (betas[i] if beta_noise else sig2)


SAMPLERS = {  # sampler, (steps, eta, beta_noise) of the same process in exact_final_std
    "ddpm": (SamplerConfig("ddpm"), (100, 1.0, False)),
    "ddpm-sigma-beta": (SamplerConfig("ddpm", sigma="beta"), (100, 1.0, True)),
    "ddim-eta1-all": (SamplerConfig("ddim", eta=1.0), (100, 1.0, False)),
    "ddim-eta0-20": (SamplerConfig("ddim", steps=20, eta=0.0), (20, 0.0, False)),
}


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_reproduce_a_known_gaussian(prediction, name):
    """Data N(mu, s^2) and the exact denoiser: samples have mean mu and std s up to the known discretisation.

    The discrete samplers shrink the spread a little at T=100 (DDPM with the posterior sigma: 0.468 for
    s=0.5, DDIM-20: 0.434), so the std is checked tightly against the exact law of each discrete process
    and loosely against s.
    """
    schedule, s, n = small_schedule(100), 0.5, 4000
    sampler, (steps, eta, beta_noise) = SAMPLERS[name]
    mu = torch.linspace(-2, 2, 8).reshape(2, 4)
    model = GaussianDenoiser(schedule, mu, s, prediction)
    gen = torch.Generator().manual_seed(1)
    x = sample(model, schedule, torch.zeros(n, 2), sampler, prediction=prediction, generator=gen)
    assert x.shape == (n, 8)
    x = x.reshape(n, 2, 4)
    # per-coordinate standard error of the mean ~ 0.5/sqrt(4000) = 0.008, of the std ~ 0.006
    torch.testing.assert_close(x.mean(0), mu, atol=0.04, rtol=0)
    expected = exact_final_std(schedule, s, ddim_timesteps(100, steps), eta, beta_noise)
    torch.testing.assert_close(x.std(0), torch.full((2, 4), expected), atol=0.025, rtol=0)
    assert abs(expected - s) < 0.08


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("steps, spacing", [(1, "linspace"), (2, "trailing"), (4, "trailing"), (3, "linspace")])
def test_few_step_ddim_follows_its_exact_law(prediction, steps, spacing):
    """1 step is E[x0 | x_T] itself (for the exact denoiser: mu plus a sliver of x_T); 2-4 steps follow the law
    of their affine updates. Few steps shrink the spread, so only the exact law is checked, not s."""
    schedule, s, n = small_schedule(100), 0.5, 4000
    mu = torch.linspace(-2, 2, 8).reshape(2, 4)
    model = GaussianDenoiser(schedule, mu, s, prediction)
    x_T = torch.randn(n, 2, 4, generator=torch.Generator().manual_seed(1))
    sampler = SamplerConfig("ddim", steps=steps, spacing=spacing)
    x = sample(model, schedule, torch.zeros(n, 2), sampler, prediction=prediction, x_T=x_T).reshape(n, 2, 4)
    if steps == 1:  # the model's x0 prediction at T-1 from x_T, whatever it predicts
        exact_x0 = GaussianDenoiser(schedule, mu, s, "x0")(x_T, torch.full((n,), 99), None)
        torch.testing.assert_close(x, exact_x0.reshape(n, 2, 4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x.mean(0), mu, atol=0.04, rtol=0)
    expected = exact_final_std(schedule, s, ddim_timesteps(100, steps, spacing), 0.0)
    torch.testing.assert_close(x.std(0), torch.full((2, 4), expected), atol=0.025, rtol=0)


def ode_end_point(schedule: DiffusionSchedule, mu: torch.Tensor, s: float, x_T: torch.Tensor) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T for data N(mu, s^2): the same standard score at every t."""
    abar = schedule.alphas_cumprod.double()[-1]
    return (mu + s * (x_T.double() - abar.sqrt() * mu) / (abar * s**2 + 1 - abar).sqrt()).float()


@pytest.mark.parametrize("steps", [4, 6, 8])
def test_dpm_solver_lands_nearer_the_ode_end_point_than_ddim(steps):
    """DPM-Solver++(2M) with few steps is nearer the exact ODE solution than DDIM on the same steps or on its
    default linspace ones (measured: 2-8x nearer at 4-8 steps on this toy); a wrong coefficient loses that."""
    schedule, s, n = small_schedule(500), 0.5, 2000
    mu = torch.linspace(-2, 2, 8).reshape(2, 4)
    model = GaussianDenoiser(schedule, mu, s, "v")
    x_T = torch.randn(n, 2, 4, generator=torch.Generator().manual_seed(1))
    exact = ode_end_point(schedule, mu, s, x_T)

    def error(sampler: SamplerConfig) -> float:
        x = sample(model, schedule, torch.zeros(n, 2), sampler, prediction="v", x_T=x_T).reshape(n, 2, 4)
        return float((x - exact).abs().mean())

    dpm = error(make_sampler("dpm", steps))
    assert make_sampler("dpm", steps).spacing == "logsnr"
    assert dpm < 0.5 * error(make_sampler("ddim", steps))
    assert dpm < 0.7 * error(make_sampler("ddim", steps, spacing="logsnr"))


def test_dpm_solver_takes_ddim_first_step_and_no_eta():
    """With one or two steps there is no earlier prediction to extrapolate with: DPM-Solver++ is DDIM there."""
    schedule = small_schedule(100)
    model = random_dit()
    x_T, w = torch.randn(4, 6, 8), torch.rand(4, 2)
    for steps in (1, 2):
        dpm, ddim = (sample(model, schedule, w, make_sampler(m, steps, spacing="logsnr"), prediction="v", x_T=x_T)
                     for m in ("dpm", "ddim"))
        torch.testing.assert_close(dpm, ddim)
    with pytest.raises(ValueError, match="deterministic"):
        make_sampler("dpm", 5, eta=0.5)


def test_bfloat16_sampling_runs_the_dit_in_bf16_and_stays_near_float32():
    """`dtype="bfloat16"` puts the DiT's forward under autocast (its output differs from float32's in the last bits)
    while the sampler's steps stay in float32: the adapters agree to about 1%."""
    schedule, model = small_schedule(100), random_dit()
    x_T, w = torch.randn(4, 6, 8), torch.rand(4, 2)
    full, half = (sample(model, schedule, w, make_sampler("dpm", 5, dtype=d), prediction="v", x_T=x_T)
                  for d in ("float32", "bfloat16"))
    assert half.dtype == torch.float32 and not torch.equal(full, half)
    assert float((full - half).norm() / full.norm()) < 0.03
    with pytest.raises(ValueError, match="dtype"):
        make_sampler("dpm", 5, dtype="float16")


@pytest.mark.parametrize("amx", [True, False])
def test_bfloat16_sampling_warns_on_a_cpu_without_amx(amx, monkeypatch):
    """Without AMX, bfloat16 autocast made the DiT 5x slower (BENCHMARKS §7): say so instead of serving slowly."""
    import padirec.diffusion.sampling as sampling

    monkeypatch.setattr(sampling, "cpu_has_amx", lambda: amx)
    schedule, model = small_schedule(100), random_dit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample(model, schedule, torch.rand(2, 2), make_sampler("dpm", 2, dtype="bfloat16"), prediction="v")
        sample(model, schedule, torch.rand(2, 2), make_sampler("dpm", 2), prediction="v")
    said = [w for w in caught if "bfloat16 sampling on a CPU without AMX" in str(w.message)]
    assert len(said) == (0 if amx else 1)  # the bfloat16 call only, and only without AMX


def test_ddpm_and_ddim_eta1_share_each_marginal():
    """Started from the same x_T, both samplers match in distribution at the end (same mean/std)."""
    schedule, n = small_schedule(100), 4000
    model = GaussianDenoiser(schedule, torch.full((1, 4), 1.5), 0.3)
    x_T = torch.randn(n, 1, 4)
    a = sample(model, schedule, torch.zeros(n, 2), SamplerConfig("ddpm"), x_T=x_T)
    b = sample(model, schedule, torch.zeros(n, 2), SamplerConfig("ddim", eta=1.0), x_T=x_T)
    assert not torch.allclose(a, b)  # different noise paths ...
    assert abs(a.mean() - b.mean()) < 0.02 and abs(a.std() - b.std()) < 0.02  # ... same law


def test_ddim_eta0_is_deterministic_and_ddpm_uses_the_generator():
    schedule = small_schedule(100)
    model = GaussianDenoiser(schedule, torch.zeros(1, 4), 1.0)
    x_T = torch.randn(8, 1, 4)
    ddim = SamplerConfig("ddim", steps=10)
    torch.testing.assert_close(
        sample(model, schedule, torch.zeros(8, 2), ddim, x_T=x_T),
        sample(model, schedule, torch.zeros(8, 2), ddim, x_T=x_T),
    )
    run = lambda seed: sample(  # noqa: E731
        model, schedule, torch.zeros(8, 2), SamplerConfig(), generator=torch.Generator().manual_seed(seed)
    )
    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))
    with pytest.raises(ValueError, match="ddim"):
        sample(model, schedule, torch.zeros(8, 2), SamplerConfig("ddpm", steps=10))


@pytest.mark.parametrize("sampler", [SamplerConfig("ddpm"), SamplerConfig("ddim", steps=10, eta=1.0)])
def test_last_step_adds_no_noise(sampler):
    """For point-mass data the exact denoiser predicts x0 = mu everywhere: the output must be mu exactly."""
    schedule, mu = small_schedule(100), torch.linspace(-1, 1, 8).reshape(2, 4)
    x = sample(GaussianDenoiser(schedule, mu, 0.0), schedule, torch.zeros(64, 2), sampler)
    torch.testing.assert_close(x, mu.reshape(1, 8).expand(64, 8), atol=1e-4, rtol=0)


def test_sampling_clamps_x0_and_denormalises():
    """With clip, the last x0 lies in the training range; the output is in parameter units."""
    schedule = small_schedule(50)
    flat = torch.randn(64, N_PARAMS) * 0.1 + 3.0
    norm = ParamNormalizer.fit(flat)
    mu = torch.full((N_TOKENS, TOKEN_WIDTH), 8.0)  # the exact model of data far outside the seen range
    model = GaussianDenoiser(schedule, mu, 0.1)
    out = sample(model, schedule, torch.zeros(16, 2), SamplerConfig("ddim", steps=10), normalizer=norm)
    assert out.shape == (16, N_PARAMS)
    lo, hi = (norm.denormalize(v[norm.index]) for v in (norm.lo, norm.hi))
    assert torch.all(out >= lo - 1e-4) and torch.all(out <= hi + 1e-4)
    assert torch.allclose(out, hi.expand_as(out), atol=1e-3)  # pushed to the top of the range
    unclipped = SamplerConfig("ddim", steps=10, clip=False)
    assert (sample(model, schedule, torch.zeros(4, 2), unclipped, normalizer=norm) > hi + 0.1).all()


# --- normaliser --------------------------------------------------------------------------------------


def test_param_normalizer_round_trip_stats_and_std_guard():
    n = 200
    scales = [0.5, 0.0, 2.0, 0.01]  # b1 constant -> std guarded to 1
    parts = [torch.randn(n, slot.size) * scales[i] + i for i, slot in enumerate(ADAPTER_LAYOUT)]
    flat = torch.cat(parts, dim=1)
    norm = ParamNormalizer.fit(flat)
    assert norm.std[1] == 1.0 and norm.mean[1] == pytest.approx(1.0)
    z = norm.normalize(flat)
    assert torch.isfinite(z).all()
    for i, slot in enumerate(ADAPTER_LAYOUT):
        block = z[:, slot.offset : slot.offset + slot.size]
        assert block.mean().item() == pytest.approx(0.0, abs=1e-4)
        assert block.std(unbiased=False).item() == pytest.approx(0.0 if i == 1 else 1.0, abs=1e-4)
        assert norm.lo[i] == pytest.approx(block.min().item(), abs=1e-5)
        assert norm.hi[i] == pytest.approx(block.max().item(), abs=1e-5)
    torch.testing.assert_close(norm.denormalize(z), flat, atol=1e-5, rtol=1e-5)
    # batch dims and JSON round trip
    again = ParamNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    torch.testing.assert_close(again.normalize(flat[:3].reshape(3, 1, -1)), z[:3].reshape(3, 1, -1))
    assert [s.name for s in again.layout] == [s.name for s in ADAPTER_LAYOUT]


def test_param_normalizer_clamp_tokens():
    hi = torch.tensor([1.0, 2, 3, 4])
    norm = ParamNormalizer(mean=torch.zeros(4), std=torch.ones(4), lo=-hi, hi=hi)
    x = torch.cat([torch.full((s.size,), 10.0 * (-1) ** i) for i, s in enumerate(ADAPTER_LAYOUT)])
    x = to_tokens(x.repeat(2, 1))
    y = norm.clamp_tokens(x)
    assert y.shape == x.shape == (2, N_TOKENS, TOKEN_WIDTH)
    flat = y.reshape(2, -1)
    for i, slot in enumerate(ADAPTER_LAYOUT):
        assert torch.all(flat[:, slot.offset : slot.offset + slot.size] == (i + 1) * (-1) ** i)
    inside = torch.zeros(2, N_TOKENS, TOKEN_WIDTH).uniform_(-0.9, 0.9)
    assert torch.equal(norm.clamp_tokens(inside), inside)
    with pytest.raises(ValueError):
        ParamNormalizer(torch.zeros(3), torch.ones(3), torch.zeros(3), torch.ones(3))
