"""Gaussian diffusion schedule (DDPM, Ho et al. 2020) and the conversions between x0, eps and v.

Step indices are 0-based: index `i` is the paper's step `t = i + 1`, so `alphas_cumprod[i]` is
`ᾱ_{i+1}` and sampling runs `i = T-1 … 0`. Buffers are computed in float64 and kept as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SCHEDULES = ("linear", "cosine")


@dataclass
class ScheduleConfig:
    steps: int = 500  # T (paper)
    kind: str = "linear"  # "linear" | "cosine"
    beta_start: float = 1e-4  # calibrated for T = 1000 ...
    beta_end: float = 0.02
    rescale: bool = True  # ... so scale the linear betas by 1000 / T (DiT, improved-diffusion)


def make_betas(config: ScheduleConfig) -> np.ndarray:
    """float64 betas of length T."""
    T = config.steps
    if config.kind == "linear":
        scale = 1000.0 / T if config.rescale else 1.0
        return np.linspace(scale * config.beta_start, scale * config.beta_end, T, dtype=np.float64)
    if config.kind == "cosine":  # Nichol & Dhariwal (2021), betas capped at 0.999
        abar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=np.float64)
    raise ValueError(f"unknown schedule kind {config.kind!r}; expected one of {SCHEDULES}")


def _extract(buffer: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """`buffer[t]` shaped `[B, 1, ..., 1]` to broadcast over x's trailing dims."""
    return buffer.to(t.device)[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class DiffusionSchedule:
    """The forward process q and the posterior q(x_{t-1} | x_t, x0), batched over t."""

    def __init__(self, config: ScheduleConfig):
        if config.steps < 2:
            raise ValueError(f"need at least 2 diffusion steps, got {config.steps}")
        self.config = config
        betas = make_betas(config)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        if abar[-1] >= 1e-3:
            raise ValueError(
                f"{config.kind} schedule with T={config.steps} leaves alphas_cumprod[T]={abar[-1]:.3g} "
                f"(signal scale {math.sqrt(abar[-1]):.1%}) at the last step, so sampling from N(0, I) starts "
                "off-distribution; use rescale=True (betas x 1000/T), a larger beta_end, more steps "
                "or kind='cosine'"
            )
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": np.sqrt(abar),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - abar),
            "posterior_variance": post_var,
            # post_var[0] = 0: take the log of post_var[1] there, as improved-diffusion does
            "posterior_log_variance_clipped": np.log(np.append(post_var[1], post_var[1:])),
            "posterior_mean_coef1": betas * np.sqrt(abar_prev) / (1.0 - abar),
            "posterior_mean_coef2": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
        }
        for name, value in buffers.items():
            setattr(self, name, torch.from_numpy(value).float())
        self._names = list(buffers)

    @property
    def num_steps(self) -> int:
        return self.config.steps

    def to(self, device: torch.device | str) -> DiffusionSchedule:
        """Move the buffers in place (like `nn.Module.to`) and return self."""
        for name in self._names:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _signal_noise(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """sqrt(ᾱ_t) and sqrt(1 - ᾱ_t), broadcastable against x."""
        return _extract(self.sqrt_alphas_cumprod, t, x), _extract(self.sqrt_one_minus_alphas_cumprod, t, x)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps."""
        a, s = self._signal_noise(t, x0)
        return a * x0 + s * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0)."""
        c1, c2 = _extract(self.posterior_mean_coef1, t, xt), _extract(self.posterior_mean_coef2, t, xt)
        var = _extract(self.posterior_variance, t, xt)
        return c1 * x0 + c2 * xt, var, _extract(self.posterior_log_variance_clipped, t, xt)

    def predict_x0_from_eps(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        a, s = self._signal_noise(t, xt)
        return (xt - s * eps) / a

    def predict_eps_from_x0(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        a, s = self._signal_noise(t, xt)
        return (xt - a * x0) / s

    def v_target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """v = sqrt(ᾱ) eps - sqrt(1-ᾱ) x0 (Salimans & Ho 2022; the authors' code predicts v)."""
        a, s = self._signal_noise(t, x0)
        return a * noise - s * x0

    def predict_x0_from_v(self, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
        a, s = self._signal_noise(t, xt)
        return a * xt - s * v

    def predict_eps_from_v(self, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
        a, s = self._signal_noise(t, xt)
        return s * xt + a * v
