"""Generator training (paper Alg. 1): the DiT on a gathered sweep, in this process.

One per-epoch step (`train_epoch`) and one epoch loop (`fit`) serve both layers: `train_dit` runs them here
(tests, a GPU box without Ray); `diffusion.ray_train.train_dit_ray` runs them in every Ray Train worker.

`batch_size` is the global batch: each of N workers takes `batch_size // N` rows per step, so a run's
optimisation does not depend on the number of workers. Randomness (row order, t, noise, CFG drops) is
seeded per (seed, rank, epoch), so a resumed run repeats exactly what an uninterrupted one would do.
Checkpoints are `contracts.checkpoint.GeneratorCheckpoint`s.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint, save_checkpoint
from padirec.contracts.dataset import dataset_arrays, dataset_info, read_dataset
from padirec.contracts.names import CHECKPOINT_FILE
from padirec.diffusion.model import DiT, DiTConfig
from padirec.diffusion.objective import EMA, PREDICTIONS, diffusion_losses, jitter_weights, prepare_rows, unwrap
from padirec.diffusion.preference import PreferenceConfig
from padirec.diffusion.schedule import DiffusionSchedule, ScheduleConfig
from padirec.diffusion.task import AdapterTaskLoss, TaskLossConfig, load_task_loss
from padirec.models import ParamNormalizer, to_tokens

log = logging.getLogger(__name__)


@dataclass
class DiTTrainConfig:
    """What the generator learns and how (YAML section `dit_train`); where it runs is `GeneratorRunConfig`."""

    epochs: int = 200
    batch_size: int = 64  # global batch (split over workers)
    lr: float = 1e-4  # AdamW; the authors use Adam 8e-5 (= AdamW with weight_decay 0)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    prediction: Literal["eps", "v", "x0"] = "eps"  # eps: paper; v: authors' code; x0: TA-Rec
    p_uncond: float = 0.1  # CFG: probability of replacing w by the null condition
    cond_jitter: float = 0.0  # > 0: each row's w moved within the simplex by up to this (`jitter_weights`)
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 10  # epochs; the last epoch is always saved
    log_every: int = 1  # epochs between metric reports
    device: str = "auto"  # plain loop only ("auto": cuda if available); Ray workers use their own device
    amp: Literal["none", "bf16"] = "none"  # bf16: autocast on CUDA
    dit: DiTConfig = field(default_factory=DiTConfig)  # cond_dim is taken from the dataset
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    consistency_weight: float = 0.0  # TA-Rec's TCR: x0-consistency between steps t and t - delta (use x0 or v)
    consistency_delta: int = 1  # the "adjacent" step distance of TCR
    last_step_prob: float = 0.0  # share of rows drawn at t = T-1, the one-step sampler's only step
    task_loss_weight: float = 0.0  # DimeRec: weight of the w-weighted adapter loss of x̂0 in the frozen backbone
    task: TaskLossConfig = field(default_factory=TaskLossConfig)  # the task loss's backbone, instances, ...
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)  # TA-Rec's APA stage (epochs > 0)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}")
        if not 0.0 <= self.cond_jitter <= 0.5:
            raise ValueError(f"cond_jitter must be in [0, 0.5], got {self.cond_jitter}")
        if self.consistency_weight < 0 or self.task_loss_weight < 0 or self.consistency_delta < 1:
            raise ValueError("consistency_weight and task_loss_weight must be >= 0, consistency_delta >= 1")
        if not 0.0 <= self.last_step_prob <= 1.0:
            raise ValueError(f"last_step_prob must be in [0, 1], got {self.last_step_prob}")
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("epochs, batch_size, checkpoint_every and log_every must be >= 1")

    def dit_config(self, cond_dim: int) -> DiTConfig:
        """The DiT for a dataset whose w has `cond_dim` objectives."""
        return replace(self.dit, cond_dim=cond_dim)


# ------------------------------------------------------------------------------------ training state


@dataclass
class TrainState:
    """One worker's model (DDP-wrapped under Ray), EMA, optimizer and schedule."""

    config: DiTTrainConfig
    dit_config: DiTConfig
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    schedule: DiffusionSchedule
    device: torch.device
    rank: int = 0
    world_size: int = 1
    start_epoch: int = 0  # epochs completed before this run (from the resumed checkpoint)
    task_loss: AdapterTaskLoss | None = None  # with config.task_loss_weight > 0

    @property
    def local_batch(self) -> int:
        return max(1, self.config.batch_size // self.world_size)


def task_loss_for(config: DiTTrainConfig, info: dict) -> AdapterTaskLoss | None:
    """The task loss a config asks for (built on the driver: backbone + data are read once), else None."""
    if config.task_loss_weight <= 0:
        return None
    return load_task_loss(config.task, ParamNormalizer.from_dict(info["normalizer"]), info["backbone_run_id"])


def check_resumable(checkpoint: GeneratorCheckpoint, config: DiTTrainConfig, dit_config: DiTConfig, info: dict) -> None:
    """A checkpoint can be continued only with the same model, schedule, prediction and normaliser."""
    mismatched = []
    if DiTConfig(**checkpoint.dit_config) != dit_config:  # options added later take their defaults
        mismatched.append(f"dit_config {checkpoint.dit_config} != {asdict(dit_config)}")
    if checkpoint.schedule_config != asdict(config.schedule):
        mismatched.append(f"schedule_config {checkpoint.schedule_config} != {asdict(config.schedule)}")
    if checkpoint.prediction != config.prediction:
        mismatched.append(f"prediction {checkpoint.prediction!r} != {config.prediction!r}")
    if checkpoint.dataset_sha256 != info["sha256"]:
        log.warning("resuming on a different dataset (sha256 %s, checkpoint trained on %s)",
                    info["sha256"][:12], checkpoint.dataset_sha256[:12])
    if mismatched:
        raise ValueError("cannot resume from the checkpoint: " + "; ".join(mismatched))


def build_state(config: DiTTrainConfig, info: dict, device: torch.device | str, rank: int = 0, world_size: int = 1,
                resume_from: GeneratorCheckpoint | None = None, wrap: Callable[[nn.Module], nn.Module] | None = None,
                task_loss: AdapterTaskLoss | None = None) -> TrainState:
    """Model (same init on every rank), EMA, AdamW; restored from `resume_from` (a checkpoint dict) if given.
    A `reference` DiT gets the dataset's mean adapter (normalised) as its reference."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    dit_config = config.dit_config(info["cond_dim"])
    model = DiT(dit_config)
    if dit_config.reference:
        mean = torch.tensor(info["mean_adapter"], dtype=torch.float32)
        model.reference.copy_(to_tokens(ParamNormalizer.from_dict(info["normalizer"]).normalize(mean)))
    if config.task_loss_weight > 0 and task_loss is None:
        raise ValueError("task_loss_weight > 0 needs the task loss (build it with load_task_loss on the driver)")
    start_epoch = 0
    if resume_from is not None:
        check_resumable(resume_from, config, dit_config, info)
        model.load_state_dict(resume_from.model)
        start_epoch = int(resume_from.epoch)
    model.to(device)
    ema = EMA(model, config.ema_decay)
    if resume_from is not None:
        ema.load_state_dict(resume_from.ema)
        ema.decay = config.ema_decay
    if wrap is not None:
        model = wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if resume_from is not None:
        optimizer.load_state_dict(resume_from.optimizer)
        for group in optimizer.param_groups:  # the config's values win over the saved ones
            group["lr"], group["weight_decay"] = config.lr, config.weight_decay
    schedule = DiffusionSchedule(config.schedule).to(device)
    task_loss = task_loss.to(device) if task_loss is not None and config.task_loss_weight > 0 else None
    return TrainState(config, dit_config, model, ema, optimizer, schedule, device, rank, world_size, start_epoch,
                      task_loss)


def _epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return (seed * 1_000_003 + rank * 10_007 + epoch) % (2**63)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def train_epoch(state: TrainState, x0: Tensor, w: Tensor, epoch: int) -> dict:
    """One pass over this worker's rows: the shared step of both layers. Metrics are averaged over workers."""
    cfg, model, device = state.config, state.model, state.device
    started = time.perf_counter()
    seed = _epoch_seed(cfg.seed, state.rank, epoch)
    noise_generator = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(x0.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    per_step = state.local_batch
    steps = torch.tensor([math.ceil(x0.shape[0] / per_step)], device=device)
    if _distributed():  # every rank must take the same number of steps (DDP all-reduces each one)
        dist.all_reduce(steps, op=dist.ReduceOp.MIN)
    steps = int(steps.item())
    model.train()
    sums: dict[str, Tensor] = {}  # summed on device over rows: no sync per step
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    rows = 0
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    for i in range(steps):
        index = order[i * per_step : (i + 1) * per_step]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            w_rows = jitter_weights(w[index], cfg.cond_jitter, noise_generator)
            losses = diffusion_losses(model, state.schedule, x0[index], w_rows, cfg.p_uncond, cfg.prediction,
                                      noise_generator, cfg.consistency_weight, cfg.consistency_delta,
                                      cfg.last_step_prob, state.task_loss, cfg.task_loss_weight)
        state.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        state.optimizer.step()
        state.ema.update(model)
        if len(losses) == 2:  # the plain objective: "loss" is the diffusion loss
            losses = {"loss": losses["loss"]}
        for name, value in losses.items():  # the same names in the same order on every rank
            key = name if name == "loss" else f"{name}_loss"
            sums[key] = sums.get(key, 0.0) + value.detach().double() * len(index)
        norm_sum += grad_norm.detach().double()
        rows += len(index)
    counts = torch.tensor([float(rows), float(steps)], dtype=torch.float64, device=device)
    totals = torch.cat([torch.stack([*sums.values(), norm_sum]), counts])
    if _distributed():
        dist.all_reduce(totals)
    *term_sums, norm_sum, rows, n_steps = totals.tolist()
    seconds = time.perf_counter() - started
    return {**{name: value / max(rows, 1) for name, value in zip(sums, term_sums, strict=True)},
            "grad_norm": norm_sum / max(n_steps, 1), "steps": steps,
            "samples": int(rows), "epoch_seconds": seconds, "samples_per_s": rows / max(seconds, 1e-9),
            "lr": state.optimizer.param_groups[0]["lr"]}


def make_checkpoint(state: TrainState, epochs_done: int, info: dict, metrics: dict | None = None
                    ) -> GeneratorCheckpoint:
    """The state after `epochs_done` epochs, with the dataset's normaliser and lineage."""
    return GeneratorCheckpoint(
        dit_config=asdict(state.dit_config), schedule_config=asdict(state.schedule.config),
        train_config=asdict(state.config), normalizer=info["normalizer"], model=unwrap(state.model).state_dict(),
        ema=state.ema.state_dict(), optimizer=state.optimizer.state_dict(), epoch=int(epochs_done),
        dataset_sha256=info["sha256"], dataset_rows=int(info["rows"]), sweep_run_id=info["sweep_run_id"],
        backbone_run_id=info["backbone_run_id"], metrics={k: float(v) for k, v in (metrics or {}).items()},
        objectives=list(info.get("objectives") or []), utility_bounds=list(info.get("utility_bounds") or []))


# Called at every logged or saved epoch: (epoch index, metrics, checkpoint or None).
Report = Callable[[int, dict, GeneratorCheckpoint | None], None]


def fit(state: TrainState, x0: Tensor, w: Tensor, info: dict, report: Report) -> dict:
    """Epochs `state.start_epoch .. config.epochs - 1`; reports every `log_every`, checkpoints every
    `checkpoint_every` and at the end. Every rank calls `report` equally often; only rank 0 gets a checkpoint."""
    cfg = state.config
    history: list[dict] = []
    metrics: dict = {}
    for epoch in range(state.start_epoch, cfg.epochs):
        metrics = {"epoch": epoch, **train_epoch(state, x0, w, epoch)}
        history.append(metrics)
        done = epoch + 1
        save = done % cfg.checkpoint_every == 0 or done == cfg.epochs
        if save or done % cfg.log_every == 0:
            checkpoint = make_checkpoint(state, done, info, metrics) if save and state.rank == 0 else None
            report(epoch, metrics, checkpoint)
    if not history:  # nothing left to train: hand back the resumed state as the final checkpoint
        checkpoint = make_checkpoint(state, state.start_epoch, info) if state.rank == 0 else None
        report(state.start_epoch - 1, {"epoch": state.start_epoch - 1}, checkpoint)
    return {"epoch": max(cfg.epochs, state.start_epoch), "metrics": metrics, "history": history,
            "start_epoch": state.start_epoch}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -------------------------------------------------------------------------------------- plain layer


def train_dit(dataset_path: str | os.PathLike, config: DiTTrainConfig = DiTTrainConfig(),
              on_epoch: Callable[[int, dict], None] | None = None, resume_from: GeneratorCheckpoint | None = None,
              output_dir: str | os.PathLike | None = None) -> dict:
    """Train in this process. Saves `output_dir/dit.pt` at checkpoints (and continues from it if it exists
    and `resume_from` is not given). Returns epoch, metrics, history, the final checkpoint dict and its path."""
    info = dataset_info(dataset_path)
    checkpoint_path = Path(output_dir) / CHECKPOINT_FILE if output_dir else None
    if resume_from is None and checkpoint_path is not None and checkpoint_path.exists():
        resume_from = load_checkpoint(checkpoint_path)
        log.info("continuing from %s (epoch %d)", checkpoint_path, resume_from.epoch)
    device = resolve_device(config.device)
    arrays = dataset_arrays(read_dataset(dataset_path)[0])
    x0, w = prepare_rows(arrays["params"], arrays["w"], ParamNormalizer.from_dict(info["normalizer"]), device)
    state = build_state(config, info, device, resume_from=resume_from, task_loss=task_loss_for(config, info))
    final: dict = {}

    def report(epoch: int, metrics: dict, checkpoint: GeneratorCheckpoint | None) -> None:
        if on_epoch is not None and len(metrics) > 1:
            on_epoch(epoch, metrics)
        if checkpoint is not None:
            final["checkpoint"] = checkpoint
            if checkpoint_path is not None:
                save_checkpoint(checkpoint, checkpoint_path)

    result = fit(state, x0, w, info, report)
    return {**result, "checkpoint": final.get("checkpoint"),
            "checkpoint_path": str(checkpoint_path) if checkpoint_path else None}


