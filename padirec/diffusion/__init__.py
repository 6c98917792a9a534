"""Parameter diffusion (paper §3.3-3.4): schedule, DiT denoiser, objective and samplers, in plain PyTorch."""

from padirec.diffusion.model import CONDITIONINGS, DiT, DiTConfig, sinusoidal_embedding
from padirec.diffusion.objective import (
    EMA,
    PREDICTIONS,
    DiffusionTrainConfig,
    ParamNormalizer,
    diffusion_loss,
    unwrap,
)
from padirec.diffusion.sampling import METHODS, SamplerConfig, ddim_timesteps, guided_prediction, sample
from padirec.diffusion.schedule import SCHEDULES, DiffusionSchedule, ScheduleConfig, make_betas

__all__ = [
    "CONDITIONINGS",
    "EMA",
    "METHODS",
    "PREDICTIONS",
    "SCHEDULES",
    "DiT",
    "DiTConfig",
    "DiffusionSchedule",
    "DiffusionTrainConfig",
    "ParamNormalizer",
    "SamplerConfig",
    "ScheduleConfig",
    "ddim_timesteps",
    "diffusion_loss",
    "guided_prediction",
    "make_betas",
    "sample",
    "sinusoidal_embedding",
    "unwrap",
]
