"""Training objective (paper Alg. 1) and the EMA of the denoiser."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from padirec.diffusion.schedule import DiffusionSchedule
from padirec.models import N_PARAMS, ParamNormalizer, to_tokens

PREDICTIONS = ("eps", "v", "x0")


def predicted_x0(schedule: DiffusionSchedule, xt: Tensor, t: Tensor, out: Tensor, prediction: str) -> Tensor:
    """The x0 that the model's output (eps, v or x0) implies at x_t."""
    if prediction == "eps":
        return schedule.predict_x0_from_eps(xt, t, out)
    if prediction == "v":
        return schedule.predict_x0_from_v(xt, t, out)
    return out


def prediction_target(schedule: DiffusionSchedule, x0: Tensor, t: Tensor, noise: Tensor, prediction: str) -> Tensor:
    """What the model's output regresses at x_t = q_sample(x0, t, noise): the noise, v, or x0 itself."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        return schedule.v_target(x0, t, noise)
    return x0


def jitter_weights(w: Tensor, amount: float, generator: torch.Generator | None = None) -> Tensor:
    """w moved within the simplex by up to `amount` per coordinate (a uniform draw, centred to sum to zero and
    scaled to that bound, then clipped at 0 and renormalised, which can add a little at the simplex's faces):
    the sweep's grid conditions smeared over the gaps between them, so the DiT sees every w in training, not
    only the grid's (BENCHMARKS §14: between grid points it was erratic)."""
    if amount <= 0:
        return w
    p = w.shape[-1]
    u = torch.rand(w.shape, device=w.device, generator=generator, dtype=w.dtype) * 2 - 1
    delta = (u - u.mean(dim=-1, keepdim=True)) * (amount * p / (2 * (p - 1)))  # |delta_i| <= amount
    moved = (w + delta).clamp_min(0)
    return moved / moved.sum(dim=-1, keepdim=True).clamp_min(1e-12)


# (x̂0 tokens [B, n_tokens, width], w [B, p], generator) -> per-row loss [B]: DimeRec's task loss on x̂0
TaskLoss = Callable[[Tensor, Tensor, torch.Generator | None], Tensor]


def diffusion_losses(
    model: nn.Module,
    schedule: DiffusionSchedule,
    x0_tokens: Tensor,
    w: Tensor | None,
    p_uncond: float,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    consistency_weight: float = 0.0,
    consistency_delta: int = 1,
    last_step_prob: float = 0.0,
    task_loss: TaskLoss | None = None,
    task_loss_weight: float = 0.0,
) -> dict[str, Tensor]:
    """Alg. 1's MSE and the optional terms on the predicted x0; returns each term and their weighted sum `loss`.

    - `consistency`: TA-Rec's temporal consistency, the MSE between the x0 predictions at t and
      t - `consistency_delta` of the same x0, noise and (possibly dropped) condition, so that one step
      from x_T lands near the data. `last_step_prob` draws t = T-1 (the one-step sampler's only step) more often.
      Use it with x0 (TA-Rec) or v prediction: an eps model's x0 at high t amplifies its error by 1/sqrt(ᾱ_t).
    - `task`: DimeRec's task loss of x̂0, weighted per row by ᾱ_t (x̂0 means little at high noise), zero
      on rows whose w was dropped (their x̂0 is not meant to serve w).

    `generator`, if given, must live on x0's device.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    B, device, T = x0_tokens.shape[0], x0_tokens.device, schedule.num_steps
    t = torch.randint(0, T, (B,), device=device, generator=generator)
    noise = torch.randn(x0_tokens.shape, device=device, generator=generator, dtype=x0_tokens.dtype)
    drop = torch.rand(B, device=device, generator=generator) < p_uncond
    if last_step_prob > 0:
        t = torch.where(torch.rand(B, device=device, generator=generator) < last_step_prob, T - 1, t)
    xt = schedule.q_sample(x0_tokens, t, noise)
    out = model(xt, t, w, drop)
    terms = {"diffusion": F.mse_loss(out, prediction_target(schedule, x0_tokens, t, noise, prediction))}
    loss = terms["diffusion"]
    if consistency_weight > 0 or task_loss is not None:
        x0_hat = predicted_x0(schedule, xt, t, out, prediction)
    if consistency_weight > 0:
        t_prev = (t - consistency_delta).clamp(min=0)  # t < delta: both branches see the same input, term 0
        x_prev = schedule.q_sample(x0_tokens, t_prev, noise)
        x0_prev = predicted_x0(schedule, x_prev, t_prev, model(x_prev, t_prev, w, drop), prediction)
        terms["consistency"] = F.mse_loss(x0_hat, x0_prev)
        loss = loss + consistency_weight * terms["consistency"]
    if task_loss is not None:
        if w is None:
            raise ValueError("the task loss needs the preference weights w")
        row_weight = schedule.alphas_cumprod.to(device)[t] * (~drop)
        terms["task"] = (row_weight * task_loss(x0_hat, w, generator)).mean()
        loss = loss + task_loss_weight * terms["task"]
    return {**terms, "loss": loss}


def diffusion_loss(
    model: nn.Module,
    schedule: DiffusionSchedule,
    x0_tokens: Tensor,
    w: Tensor | None,
    p_uncond: float,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Alg. 1: t ~ U{0..T-1}, eps ~ N(0, I), w dropped to null with prob. p_uncond, MSE on eps (or v, x0)."""
    return diffusion_losses(model, schedule, x0_tokens, w, p_uncond, prediction, generator)["loss"]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


class EMA:
    """Moving average of a model's weights, started as a copy (the reference code never updated its EMA)."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.num_updates = 0

    @property
    def current_decay(self) -> float:
        """Warm-up `(1 + n) / (10 + n)` capped at `decay`: without it a run of a few thousand steps
        samples from an average still dominated by the initial weights (0.999^840 = 43% of them)."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- d * ema + (1 - d) * model with d = current_decay; buffers are copied."""
        model = unwrap(model)
        decay = self.current_decay
        for e, p in zip(self.module.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        self.module.load_state_dict(state["module"])


def prepare_rows(params: np.ndarray, w: np.ndarray, normalizer: ParamNormalizer,
                 device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Flat adapters `[N, 1096]` and weights `[N, p]` -> normalised tokens `[N, 137, 8]` and w, on device."""
    flat = torch.from_numpy(np.array(params, dtype=np.float32))
    if flat.ndim != 2 or flat.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape [N, {N_PARAMS}], got {tuple(flat.shape)}")
    x0 = to_tokens(normalizer.normalize(flat)).contiguous()
    return x0.to(device), torch.as_tensor(np.asarray(w, dtype=np.float32)).to(device)
