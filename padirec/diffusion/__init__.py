"""Parameter diffusion (paper §3.3-3.4): schedule, DiT denoiser, objective and samplers, in plain PyTorch."""

from padirec.diffusion.model import CONDITIONINGS, DiT, DiTConfig, sinusoidal_embedding
from padirec.diffusion.objective import (
    EMA,
    PREDICTIONS,
    diffusion_loss,
    diffusion_losses,
    predicted_x0,
    unwrap,
)
from padirec.diffusion.sampling import (
    METHODS,
    SPACINGS,
    SamplerConfig,
    ddim_timesteps,
    guided_output,
    guided_prediction,
    make_sampler,
    parse_sampler,
    sample,
    sampler_label,
)
from padirec.diffusion.schedule import SCHEDULES, DiffusionSchedule, ScheduleConfig, make_betas

__all__ = [
    "CONDITIONINGS",
    "EMA",
    "METHODS",
    "PREDICTIONS",
    "SCHEDULES",
    "SPACINGS",
    "DiT",
    "DiTConfig",
    "DiffusionSchedule",
    "SamplerConfig",
    "ScheduleConfig",
    "ddim_timesteps",
    "diffusion_loss",
    "diffusion_losses",
    "guided_output",
    "guided_prediction",
    "make_betas",
    "make_sampler",
    "parse_sampler",
    "sampler_label",
    "predicted_x0",
    "sample",
    "sinusoidal_embedding",
    "unwrap",
]
