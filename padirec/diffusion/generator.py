"""The trained generator (paper Alg. 2): EMA DiT + schedule + normaliser, loaded from a checkpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint
from padirec.diffusion.model import DiT, DiTConfig
from padirec.diffusion.sampling import SamplerConfig, sample
from padirec.diffusion.schedule import DiffusionSchedule, ScheduleConfig
from padirec.models import ParamNormalizer


@dataclass
class Generator:
    """The trained generator: EMA DiT (eval mode), schedule, normaliser, and where it came from."""

    model: DiT
    schedule: DiffusionSchedule
    normalizer: ParamNormalizer
    prediction: str
    metadata: dict

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def cond_dim(self) -> int:
        return self.model.config.cond_dim

    @property
    def objectives(self) -> list[str]:
        """The objectives w's columns weigh, in order (recorded from the training dataset)."""
        return list(self.metadata.get("objectives") or ["accuracy", "diversity"][: self.cond_dim])

    def to(self, device: torch.device | str) -> Generator:
        self.model.to(device)
        self.schedule.to(device)
        self.normalizer.to(device)
        return self

    def generate(self, w, sampler: SamplerConfig = SamplerConfig(), seed: int = 0,
                 shared_noise: bool = False) -> np.ndarray:
        """Adapters for `w [B, p]` (or one `[p]`) -> denormalised flat float32 `[B, 1096]`, in one batch.

        `shared_noise`: every row starts from the same seeded x_T, so (with DDIM, eta = 0) a row's adapter
        depends only on its w, not on its position in the batch — what a server batching requests needs.
        """
        w = torch.as_tensor(np.asarray(w, dtype=np.float32))
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2 or w.shape[1] != self.cond_dim:
            raise ValueError(f"w must have shape [B, {self.cond_dim}], got {tuple(w.shape)}")
        device = self.device
        generator = torch.Generator(device=device).manual_seed(seed)
        x_T = None
        if shared_noise:
            config = self.model.config
            x_T = torch.randn((1, config.n_tokens, config.token_dim), generator=torch.Generator().manual_seed(seed))
            x_T = x_T.expand(w.shape[0], -1, -1).contiguous()
        flat = sample(self.model, self.schedule, w.to(device), sampler, self.normalizer, self.prediction, generator,
                      x_T=x_T)
        return flat.float().cpu().numpy()


def load_generator(checkpoint_path: str | os.PathLike, device: str = "cpu") -> Generator:
    """A `Generator` with the EMA weights of a `dit.pt` checkpoint."""
    return generator_from_checkpoint(load_checkpoint(checkpoint_path, device), device)


def generator_from_checkpoint(checkpoint: GeneratorCheckpoint, device: str | torch.device = "cpu") -> Generator:
    """`load_generator` of a checkpoint already in memory."""
    model = DiT(DiTConfig(**checkpoint.dit_config))
    model.load_state_dict(checkpoint.ema["module"])
    model.to(device).eval().requires_grad_(False)
    schedule = DiffusionSchedule(ScheduleConfig(**checkpoint.schedule_config)).to(device)
    normalizer = ParamNormalizer.from_dict(checkpoint.normalizer).to(device)
    return Generator(model, schedule, normalizer, checkpoint.prediction, checkpoint.summary())
