"""Test-time generation (paper eq. 9, Alg. 2): guided ancestral DDPM, DDIM and DPM-Solver++(2M), batched over many w.

`dpm` (Lu et al. 2022, "DPM-Solver++": multistep, second order in the data prediction, on steps spaced evenly in
log-SNR) extrapolates each x0 prediction with the one before, so few steps land nearer the probability-flow ODE's
end point than DDIM's (issue 14: best-of-N wants sharp candidates within 100 ms)."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from padirec.diffusion.objective import PREDICTIONS, predicted_x0
from padirec.diffusion.schedule import DiffusionSchedule
from padirec.models import ParamNormalizer

METHODS = ("ddpm", "ddim", "dpm")
STEPPED = ("ddim", "dpm")  # the samplers that take a number of steps
DTYPES = ("float32", "bfloat16")
DEFAULT_DDIM_STEPS = 1  # one x0 prediction from x_T: within 1% of 500 steps' Avg.HV (BENCHMARKS §6), 50x faster
SELECT_STEPS = 10  # best-of-N's DPM-Solver++ steps: picks as good as DDIM-50's in a fifth of the time (BENCHMARKS §14)


def default_sampler(method: str | None, steps: int | None, select: int) -> tuple[str, int | None]:
    """The sampler a command runs when it is named none: DPM-Solver++ with `SELECT_STEPS` for best-of-N (one-step
    candidates have collapsed to the mean, BENCHMARKS §11), DDIM (one step unless told) for a single adapter."""
    if method is not None:
        return method, steps
    return ("dpm", steps or SELECT_STEPS) if select else ("ddim", steps)


@dataclass
class SamplerConfig:
    method: str = "ddpm"  # "ddpm" | "ddim" | "dpm" (DPM-Solver++(2M))
    steps: int | None = None  # None = all T (ddpm needs all T); ddim/dpm: 1 = one x0 prediction from x_T
    # ddim/dpm steps: "linspace" (0 … T-1) | "trailing" (T-1 down by T/steps) | "logsnr" (even in log-SNR)
    spacing: str = "linspace"
    eta: float = 0.0  # ddim noise: 0 deterministic, 1 = DDPM's marginals (dpm is deterministic)
    guidance: float = 0.0  # gamma of eq. 9
    dtype: str = "float32"  # "bfloat16": the DiT's forward under autocast (fast where the CPU has AMX); steps in fp32
    clip: bool = True  # clamp predicted x0 to the training range per tensor (needs a normalizer)
    sigma: str = "posterior"  # ddpm noise scale: "posterior" (sqrt of posterior variance) | "beta" (Alg. 2)


def make_sampler(method: str = "ddim", steps: int | None = None, num_steps: int | None = None,
                 spacing: str | None = None, eta: float = 0.0, guidance: float = 0.0,
                 dtype: str = "float32") -> SamplerConfig:
    """The one builder of a sampler from user input: ddpm runs all T steps (asking for fewer is an error); ddim
    and dpm take 1..T steps (default `DEFAULT_DDIM_STEPS`), spaced `linspace` (ddim) or `logsnr` (dpm) unless
    `spacing` says otherwise. `num_steps` is the generator's T when known."""
    if method not in METHODS:
        raise ValueError(f"unknown sampler {method!r}; expected one of {', '.join(METHODS)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown sampler dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if method == "ddpm":
        if steps is not None:
            raise ValueError("steps apply to the ddim sampler; ddpm runs all T steps")
        return SamplerConfig(method="ddpm", guidance=guidance, dtype=dtype)
    steps = DEFAULT_DDIM_STEPS if steps is None else int(steps)
    if steps < 1 or (num_steps is not None and steps > num_steps):
        raise ValueError(f"{method} steps must be in [1, {num_steps or 'T'}] (the generator's T), got {steps}")
    if method == "dpm" and eta:
        raise ValueError("the dpm sampler is deterministic; eta applies to ddim")
    spacing = spacing or ("logsnr" if method == "dpm" else "linspace")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    return SamplerConfig(method=method, steps=steps, spacing=spacing, eta=eta, guidance=guidance, dtype=dtype)


def parse_sampler(spec: str) -> tuple[str, SamplerConfig]:
    """The sampler spec syntax: `ddim:50` -> ("DDIM-50", DDIM with 50 steps); `dpm:5` -> ("DPM-5",
    DPM-Solver++(2M) with 5 steps); `ddpm` -> ("DDPM", all T steps); a `:bf16` suffix runs the DiT in bfloat16."""
    method, _, rest = spec.strip().lower().partition(":")
    steps, _, dtype = rest.partition(":") if method in STEPPED else ("", "", rest)
    if (method not in METHODS or (method in STEPPED) != bool(steps) or (steps and not steps.isdigit())
            or dtype not in ("", "bf16")):
        raise ValueError(f"sampler {spec!r}: expected ddim:STEPS, dpm:STEPS or ddpm, optionally then :bf16")
    sampler = make_sampler(method, int(steps) if steps else None, dtype="bfloat16" if dtype else "float32")
    return sampler_label(sampler), sampler


def sampler_label(sampler: SamplerConfig, num_steps: int | None = None) -> str:
    """`DDIM-50`, `DPM-5`, `DDPM` (or `DDPM-500` given T), `DPM-5 bf16`: how reports name a sampler."""
    steps = sampler.steps if sampler.method in STEPPED else num_steps
    label = f"{sampler.method.upper()}-{steps}" if steps else sampler.method.upper()
    return label + (" bf16" if sampler.dtype == "bfloat16" else "")


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def guided_output(model: nn.Module, x: Tensor, t: Tensor, w: Tensor | None, guidance: float) -> Tensor:
    """Eq. 9 on the model's own output (eps, v or x0): (1+g) f(x, w, t) - g f(x, null, t), in one forward."""
    if guidance == 0 or w is None:
        return model(x, t, w)
    B = x.shape[0]
    drop = torch.arange(2 * B, device=x.device) >= B
    cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([w, w]), drop).chunk(2)
    return (1 + guidance) * cond - guidance * uncond


@torch.no_grad()
def guided_prediction(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    w: Tensor | None,
    guidance: float,
    prediction: str = "eps",
    schedule: DiffusionSchedule | None = None,
) -> Tensor:
    """Eq. 9: (1+g) eps(x, w, t) - g eps(x, null, t), conditional and null rows in one forward; returns eps.

    Guidance is applied to the model's own output (eps, v or x0); all three are affine in eps with the same
    x_t-dependent offset, so guiding them then converting equals guiding eps. v and x0 need `schedule`.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    out = guided_output(model, x, t, w, guidance)
    if prediction == "eps":
        return out
    if schedule is None:
        raise ValueError(f"{prediction}-prediction needs the schedule to convert its output to eps")
    return schedule.predict_eps_from_v(x, t, out) if prediction == "v" else schedule.predict_eps_from_x0(x, t, out)


SPACINGS = ("linspace", "trailing", "logsnr")


def log_snr(alphas_cumprod: Tensor) -> Tensor:
    """log(abar_t / (1 - abar_t)) per step index: what `logsnr` spacing spreads evenly and DPM-Solver steps in."""
    return alphas_cumprod.log() - (1 - alphas_cumprod).log()


def ddim_timesteps(T: int, steps: int, spacing: str = "linspace", alphas_cumprod: Tensor | None = None) -> list[int]:
    """`steps` increasing indices of 0..T-1 ending at T-1; `linspace` also includes 0, `trailing` ends its last
    step at index T - T/steps (Lin et al. 2024), so few steps are not spent near the clean end; `logsnr` (DPM-Solver's
    choice; needs the schedule's `alphas_cumprod`) spaces them evenly in log-SNR from index 0. 1 step: [T-1]."""
    if not 1 <= steps <= T:
        raise ValueError(f"ddim steps must be in [1, {T}], got {steps}")
    if spacing == "logsnr":
        if alphas_cumprod is None:
            raise ValueError("logsnr spacing needs the schedule's alphas_cumprod")
        if steps == 1:
            return [T - 1]
        rising = log_snr(alphas_cumprod.double()).flip(0)  # from index T-1 down to 0: increasing
        targets = torch.linspace(float(rising[0]), float(rising[-1]), steps, dtype=torch.float64)
        picked = (T - 1 - torch.searchsorted(rising, targets).clamp(max=T - 1)).tolist()[::-1]  # increasing
        for k in range(1, steps):  # neighbours that round to one index move apart (only when steps is near T)
            picked[k] = max(picked[k], picked[k - 1] + 1)
        return picked if picked[-1] == T - 1 else torch.linspace(0, T - 1, steps).round().long().tolist()
    if spacing == "linspace":
        return torch.linspace(0, T - 1, steps).round().long().tolist() if steps > 1 else [T - 1]
    if spacing == "trailing":
        return sorted(T - 1 - round(k * T / steps) for k in range(steps))
    raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")


@functools.cache
def cpu_has_amx() -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AMX), from /proc/cpuinfo; True where it cannot tell."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: DiffusionSchedule,
    w: Tensor,
    config: SamplerConfig,
    normalizer: ParamNormalizer | None = None,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    x_T: Tensor | None = None,
) -> Tensor:
    """One adapter per row of `w [B, cond_dim]` -> flat `[B, n_params]`, denormalised if given a normalizer.

    Sample with the EMA module. `schedule` and `normalizer` are moved to the model's device in place;
    `generator` must live there too.
    """
    if config.method not in METHODS:
        raise ValueError(f"unknown sampler {config.method!r}; expected one of {METHODS}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    if not 0.0 <= config.eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {config.eta}")
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown sampler dtype {config.dtype!r}; expected one of {DTYPES}")
    device = _device(model)
    if config.dtype == "bfloat16" and device.type == "cpu" and not cpu_has_amx():
        warnings.warn("bfloat16 sampling on a CPU without AMX: 5x slower than float32 on an AMD EPYC (BENCHMARKS §7, "
                      "sixth session); use --dtype float32", stacklevel=2)
    schedule = schedule.to(device)
    normalizer = normalizer.to(device) if normalizer is not None else None
    T, B = schedule.num_steps, w.shape[0]
    w = w.to(device=device, dtype=torch.float32)
    shape = (B, model.config.n_tokens, model.config.token_dim)

    def noise() -> Tensor:
        return torch.randn(shape, device=device, generator=generator)

    x = noise() if x_T is None else x_T.to(device=device, dtype=torch.float32).reshape(shape)

    def predict(x: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """The x0 that the guided output implies (clamped to the training range if asked), at index i."""
        t = torch.full((B,), i, device=device, dtype=torch.long)
        with torch.autocast(device.type, torch.bfloat16, enabled=config.dtype == "bfloat16"):
            out = guided_output(model, x, t, w, config.guidance)
        x0 = predicted_x0(schedule, x, t, out.float(), prediction)
        if config.clip and normalizer is not None:
            x0 = normalizer.clamp_tokens(x0)
        return t, x0

    was_training = model.training
    model.eval()
    try:
        if config.method == "ddpm":
            if config.steps not in (None, T):
                raise ValueError(f"ddpm runs all {T} steps; for fewer use method='ddim' (eta=1 is ancestral)")
            if config.sigma not in ("posterior", "beta"):
                raise ValueError(f"unknown sigma {config.sigma!r}; expected 'posterior' or 'beta'")
            for i in reversed(range(T)):
                t, x0 = predict(x, i)
                # The posterior mean at the predicted x0 equals Alg. 2's
                # 1/sqrt(a_t) (x_t - b_t/sqrt(1-abar_t) eps) whenever x0 is not clamped. Alg. 2 writes
                # sigma_t = sqrt(beta_t) (sigma="beta"); by default we use the posterior's sqrt(beta~_t),
                # Ho et al.'s other choice, which is exact for a deterministic x0 (and what DDIM eta=1 gives).
                mean, _, log_var = schedule.q_posterior(x0, x, t)
                if i == 0:
                    x = mean
                else:
                    sigma = (0.5 * log_var).exp() if config.sigma == "posterior" else schedule.betas[i].sqrt()
                    x = mean + sigma * noise()
        else:
            abar = schedule.alphas_cumprod
            steps = ddim_timesteps(T, config.steps or T, config.spacing, abar)
            lam = 0.5 * log_snr(abar)  # log(alpha_t / sigma_t), dpm's time variable
            previous = None  # dpm: the x0 prediction of the step before and that step's length in lam
            for i, i_prev in zip(reversed(steps), [*reversed(steps[:-1]), None], strict=True):
                t, x0 = predict(x, i)
                if i_prev is None:
                    x = x0
                    break
                a, a_prev = abar[i], abar[i_prev]
                if config.method == "dpm":  # DPM-Solver++(2M); its first step is DDIM's
                    h = lam[i_prev] - lam[i]
                    d = x0 if previous is None else x0 + (x0 - previous[0]) * (h / (2 * previous[1]))
                    x = ((1 - a_prev) / (1 - a)).sqrt() * x - a_prev.sqrt() * torch.expm1(-h) * d
                    previous = (x0, h)
                    continue
                eps = schedule.predict_eps_from_x0(x, t, x0)  # consistent with the (clamped) x0
                sigma = config.eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
                x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
                if config.eta > 0:
                    x = x + sigma * noise()
    finally:
        model.train(was_training)
    flat = x.reshape(B, -1)
    return normalizer.denormalize(flat) if normalizer is not None else flat
