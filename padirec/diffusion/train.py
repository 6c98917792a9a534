"""Generator training (paper Alg. 1): the DiT on a gathered sweep, in one process or as Ray Train DDP.

One per-epoch step (`train_epoch`) and one epoch loop (`fit`) serve both layers:

- `train_dit` runs them in the calling process (tests, a GPU box without Ray);
- `train_dit_ray` runs them in every worker of a `TorchTrainer` (DDP: gloo on CPU, NCCL on GPU). The
  Parquet file is read with `ray.data.read_parquet` and split over workers (`get_dataset_shard`); each
  worker reads its shard once into memory (rows are 4.4 KB, a sweep is thousands of rows) and reshuffles
  it locally every epoch. Rank 0 saves checkpoints through `ray.train.report`; running again with the same
  `storage_path` and `name` continues from `ray.train.get_checkpoint()`.

`batch_size` is the global batch: each of N workers takes `batch_size // N` rows per step, so a run's
optimisation does not depend on the number of workers. Randomness (row order, t, noise, CFG drops) is
seeded per (seed, rank, epoch), so a resumed run repeats exactly what an uninterrupted one would do.

The checkpoint is one file `dit.pt` that `torch.load(..., weights_only=True)` reads: configs, the
dataset's normaliser, model / EMA / optimizer states, the number of epochs completed (`epoch`) and the
lineage (`dataset_sha256`, `sweep_run_id`, `backbone_run_id`). `load_generator` turns it into a
`Generator` that samples adapters with the EMA weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from padirec.config import build
from padirec.diffusion.model import DiT, DiTConfig
from padirec.diffusion.objective import EMA, PREDICTIONS, ParamNormalizer, diffusion_losses, unwrap
from padirec.diffusion.preference import PreferenceConfig
from padirec.diffusion.sampling import SamplerConfig, sample
from padirec.diffusion.schedule import DiffusionSchedule, ScheduleConfig
from padirec.diffusion.task import AdapterTaskLoss, TaskLossConfig, load_task_loss
from padirec.models.adapter import N_PARAMS, to_tokens
from padirec.runtime import init_ray

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "dit.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class DiTTrainConfig:
    epochs: int = 200
    batch_size: int = 64  # global batch (split over workers)
    lr: float = 1e-4  # AdamW; the authors use Adam 8e-5 (= AdamW with weight_decay 0)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    prediction: str = "eps"  # "eps" (paper) | "v" (authors' code) | "x0" (TA-Rec)
    p_uncond: float = 0.1  # CFG: probability of replacing w by the null condition
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 10  # epochs; the last epoch is always saved
    log_every: int = 1  # epochs between metric reports
    device: str = "auto"  # plain loop only ("auto": cuda if available); Ray workers use their own device
    amp: str = "none"  # "none" | "bf16" (autocast on CUDA)
    dit: dict = field(default_factory=dict)  # DiTConfig overrides
    schedule: dict = field(default_factory=dict)  # ScheduleConfig overrides
    consistency_weight: float = 0.0  # TA-Rec's TCR: x0-consistency between steps t and t - delta (use x0 or v)
    consistency_delta: int = 1  # the "adjacent" step distance of TCR
    last_step_prob: float = 0.0  # share of rows drawn at t = T-1, the one-step sampler's only step
    task_loss_weight: float = 0.0  # DimeRec: weight of the w-weighted adapter loss of x̂0 in the frozen backbone
    task: dict = field(default_factory=dict)  # TaskLossConfig overrides (backbone, instances, batch_size, ...)
    preference: dict = field(default_factory=dict)  # PreferenceConfig: TA-Rec's APA stage after training (epochs > 0)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}")
        if self.consistency_weight < 0 or self.task_loss_weight < 0 or self.consistency_delta < 1:
            raise ValueError("consistency_weight and task_loss_weight must be >= 0, consistency_delta >= 1")
        if not 0.0 <= self.last_step_prob <= 1.0:
            raise ValueError(f"last_step_prob must be in [0, 1], got {self.last_step_prob}")
        self.task_config()  # unknown task options fail here, not in a worker
        self.preference_config()
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("epochs, batch_size, checkpoint_every and log_every must be >= 1")

    def dit_config(self, cond_dim: int) -> DiTConfig:
        return build(DiTConfig, {"cond_dim": cond_dim}, self.dit)

    def schedule_config(self) -> ScheduleConfig:
        return build(ScheduleConfig, self.schedule)

    def task_config(self) -> TaskLossConfig:
        return build(TaskLossConfig, self.task)

    def preference_config(self) -> PreferenceConfig:
        return build(PreferenceConfig, self.preference)


# ---------------------------------------------------------------------------------------------- data


def dataset_info(path: str | os.PathLike) -> dict:
    """What training needs to know about a gathered dataset besides its rows (read on the driver)."""
    from padirec import tracking
    from padirec.sweep.gather import read_dataset

    table, metadata = read_dataset(path)
    if table.num_rows == 0:
        raise ValueError(f"{path}: the dataset has no rows")
    backbones = sorted({b for b in table.column("backbone_run_id").to_pylist() if b})
    if len(backbones) > 1:
        raise ValueError(f"{path}: adapters of several backbones ({', '.join(backbones)}) in one dataset")
    params = table.column("params").combine_chunks().values.to_numpy().reshape(table.num_rows, N_PARAMS)
    return {"path": str(Path(path).resolve()), "sha256": tracking.sha256_file(path), "rows": table.num_rows,
            "cond_dim": len(table.column("w")[0].as_py()), "normalizer": metadata["normalizer"],
            "mean_adapter": params.mean(0, dtype=np.float64).tolist(),  # the mcgln reference adapter
            "sweep_run_id": metadata.get("sweep_run_id", ""), "backbone_run_id": backbones[0] if backbones else "",
            "objectives": metadata.get("objectives", [])}


def dataset_manifest(path: str | os.PathLike) -> dict:
    """The gather manifest beside the Parquet file, or a minimal one built from the file itself."""
    path = Path(path)
    manifest_path = path.parent / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    else:
        info = dataset_info(path)
        manifest = {"rows": info["rows"], "sha256": info["sha256"], "file": path.name,
                    "sweep_run_id": info["sweep_run_id"]}
    return {**manifest, "path": str(path.resolve())}


def prepare_rows(params: np.ndarray, w: np.ndarray, normalizer: ParamNormalizer,
                 device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Flat adapters `[N, 1096]` and weights `[N, p]` -> normalised tokens `[N, 137, 8]` and w, on device."""
    flat = torch.from_numpy(np.array(params, dtype=np.float32))
    if flat.ndim != 2 or flat.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape [N, {N_PARAMS}], got {tuple(flat.shape)}")
    x0 = to_tokens(normalizer.normalize(flat)).contiguous()
    return x0.to(device), torch.as_tensor(np.asarray(w, dtype=np.float32)).to(device)


def _column(values: np.ndarray) -> np.ndarray:
    """A list column from Ray Data comes back as an object array of rows: stack it."""
    return np.stack(list(values)) if values.dtype == object else np.asarray(values)


def read_shard(shard, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """All rows of a Ray Data shard (`get_dataset_shard`) as `params [n, 1096]`, `w [n, p]`."""
    params, w = [], []
    for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
        params.append(_column(batch["params"]).astype(np.float32))
        w.append(_column(batch["w"]).astype(np.float32))
    if not params:
        return np.zeros((0, N_PARAMS), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(params), np.concatenate(w)


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
    return load_task_loss(config.task_config(), ParamNormalizer.from_dict(info["normalizer"]), info["backbone_run_id"])


def check_resumable(checkpoint: dict, config: DiTTrainConfig, dit_config: DiTConfig, info: dict) -> None:
    """A checkpoint can be continued only with the same model, schedule, prediction and normaliser."""
    mismatched = []
    if DiTConfig(**checkpoint["dit_config"]) != dit_config:  # options added later take their defaults
        mismatched.append(f"dit_config {checkpoint['dit_config']} != {asdict(dit_config)}")
    if checkpoint["schedule_config"] != asdict(config.schedule_config()):
        mismatched.append(f"schedule_config {checkpoint['schedule_config']} != {asdict(config.schedule_config())}")
    if checkpoint["train_config"]["prediction"] != config.prediction:
        mismatched.append(f"prediction {checkpoint['train_config']['prediction']!r} != {config.prediction!r}")
    if checkpoint["dataset_sha256"] != info["sha256"]:
        log.warning("resuming on a different dataset (sha256 %s, checkpoint trained on %s)",
                    info["sha256"][:12], checkpoint["dataset_sha256"][:12])
    if mismatched:
        raise ValueError("cannot resume from the checkpoint: " + "; ".join(mismatched))


def build_state(config: DiTTrainConfig, info: dict, device: torch.device | str, rank: int = 0, world_size: int = 1,
                resume_from: dict | None = None, wrap: Callable[[nn.Module], nn.Module] | None = None,
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
        model.load_state_dict(resume_from["model"])
        start_epoch = int(resume_from["epoch"])
    model.to(device)
    ema = EMA(model, config.ema_decay)
    if resume_from is not None:
        ema.load_state_dict(resume_from["ema"])
        ema.decay = config.ema_decay
    if wrap is not None:
        model = wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if resume_from is not None:
        optimizer.load_state_dict(resume_from["optimizer"])
        for group in optimizer.param_groups:  # the config's values win over the saved ones
            group["lr"], group["weight_decay"] = config.lr, config.weight_decay
    schedule = DiffusionSchedule(config.schedule_config()).to(device)
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
            losses = diffusion_losses(model, state.schedule, x0[index], w[index], cfg.p_uncond, cfg.prediction,
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


def make_checkpoint(state: TrainState, epochs_done: int, info: dict, metrics: dict | None = None) -> dict:
    """The `dit.pt` contents (plain types and tensors only, so `weights_only=True` loads it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "dit_config": asdict(state.dit_config),
        "schedule_config": asdict(state.schedule.config),
        "train_config": asdict(state.config),
        "normalizer": info["normalizer"],
        "model": unwrap(state.model).state_dict(),
        "ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "epoch": int(epochs_done),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "dataset_sha256": info["sha256"],
        "dataset_rows": int(info["rows"]),
        "sweep_run_id": info["sweep_run_id"],
        "backbone_run_id": info["backbone_run_id"],
    }


def save_checkpoint(checkpoint: dict, path: str | os.PathLike) -> Path:
    """Write atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)


# Called at every logged or saved epoch: (epoch index, metrics, checkpoint dict or None).
Report = Callable[[int, dict, dict | None], None]


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


def mlflow_epoch_logger(tracking_uri: str, run_id: str) -> Callable[[int, dict], None]:
    """`on_epoch` that logs to an existing MLflow run through the client (usable inside a Ray worker)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)

    def on_epoch(epoch: int, metrics: dict) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if k != "epoch"]
        try:
            client.log_batch(run_id, metrics=batch)
        except Exception as err:  # noqa: BLE001 - a busy store must not kill the training
            log.warning("could not log epoch %d metrics to MLflow: %s", epoch, err)

    return on_epoch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -------------------------------------------------------------------------------------- plain layer


def train_dit(dataset_path: str | os.PathLike, config: DiTTrainConfig = DiTTrainConfig(),
              on_epoch: Callable[[int, dict], None] | None = None, resume_from: dict | None = None,
              output_dir: str | os.PathLike | None = None) -> dict:
    """Train in this process. Saves `output_dir/dit.pt` at checkpoints (and continues from it if it exists
    and `resume_from` is not given). Returns epoch, metrics, history, the final checkpoint dict and its path."""
    from padirec.sweep.gather import dataset_arrays, read_dataset

    info = dataset_info(dataset_path)
    checkpoint_path = Path(output_dir) / CHECKPOINT_FILE if output_dir else None
    if resume_from is None and checkpoint_path is not None and checkpoint_path.exists():
        resume_from = load_checkpoint(checkpoint_path)
        log.info("continuing from %s (epoch %d)", checkpoint_path, resume_from["epoch"])
    device = resolve_device(config.device)
    arrays = dataset_arrays(read_dataset(dataset_path)[0])
    x0, w = prepare_rows(arrays["params"], arrays["w"], ParamNormalizer.from_dict(info["normalizer"]), device)
    state = build_state(config, info, device, resume_from=resume_from, task_loss=task_loss_for(config, info))
    final: dict = {}

    def report(epoch: int, metrics: dict, checkpoint: dict | None) -> None:
        if on_epoch is not None and len(metrics) > 1:
            on_epoch(epoch, metrics)
        if checkpoint is not None:
            final["checkpoint"] = checkpoint
            if checkpoint_path is not None:
                save_checkpoint(checkpoint, checkpoint_path)

    result = fit(state, x0, w, info, report)
    return {**result, "checkpoint": final.get("checkpoint"),
            "checkpoint_path": str(checkpoint_path) if checkpoint_path else None}


# ---------------------------------------------------------------------------------------- Ray layer


def _ray_train_loop(loop_config: dict) -> None:
    """The function every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(loop_config["threads"])
    config = DiTTrainConfig(**loop_config["config"])
    info = loop_config["info"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    resume_from = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume_from = load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    params, w = read_shard(ray.train.get_dataset_shard("train"))
    if len(params) == 0:
        raise ValueError(f"worker {rank} got no rows: {info['rows']} rows for {world_size} workers")
    x0, w = prepare_rows(params, w, ParamNormalizer.from_dict(info["normalizer"]), device)
    state = build_state(config, info, device, rank, world_size, resume_from,
                        wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=False),
                        task_loss=loop_config.get("task_loss"))
    del resume_from  # its tensors are copied into the model, EMA and optimizer
    tracking = loop_config.get("tracking")
    on_epoch = mlflow_epoch_logger(tracking["uri"], tracking["run_id"]) if tracking and rank == 0 else None

    def report(epoch: int, metrics: dict, checkpoint: dict | None) -> None:
        if on_epoch is not None and len(metrics) > 1:
            on_epoch(epoch, metrics)
        if checkpoint is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(checkpoint, Path(directory) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

    fit(state, x0, w, info, report)


def _ray_dataset(path: str):
    """The Parquet file as a Ray Dataset; read by the driver instead when other nodes cannot see the path."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    if "://" not in path and len(alive) > 1:
        import pyarrow.parquet as pq

        return ray.data.from_arrow(pq.read_table(path, columns=["w", "params"]))
    return ray.data.read_parquet(path, columns=["w", "params"])


def train_dit_ray(dataset_path: str | os.PathLike, config: DiTTrainConfig = DiTTrainConfig(), num_workers: int = 2,
                  use_gpu: bool = False, storage_path: str | os.PathLike | None = None, name: str | None = None,
                  resources_per_worker: dict | None = None, tracking: dict | None = None,
                  max_failures: int = 0) -> dict:
    """Train with Ray Train DDP over `num_workers`; rerunning with the same `storage_path`/`name` continues.

    `tracking = {"uri": ..., "run_id": ...}` makes rank 0 log each epoch's metrics to that MLflow run.
    Returns the final checkpoint's local path, its epoch and metrics, and the run's storage path.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if num_workers < 1:
        raise ValueError("train_dit_ray needs num_workers >= 1 (use train_dit for the in-process loop)")
    info = dataset_info(dataset_path)
    if info["rows"] < num_workers:
        raise ValueError(f"{info['rows']} rows cannot be split over {num_workers} workers")
    resources = dict(resources_per_worker or {"CPU": 1})
    init_ray(num_workers * resources.get("CPU", 1))
    storage = str(Path(storage_path or "ray_results").resolve()) if "://" not in str(storage_path) else storage_path
    name = name or f"dit-{info['sha256'][:12]}-{time.strftime('%Y%m%d-%H%M%S')}"
    loop_config = {"config": asdict(config), "info": info, "tracking": tracking,
                   "threads": max(1, int(resources.get("CPU", 1))),
                   "task_loss": task_loss_for(config, info)}  # frozen backbone + instance pool, shipped as is
    trainer = TorchTrainer(
        _ray_train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=max_failures)),
        datasets={"train": _ray_dataset(info["path"])},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint")
    local = Path(result.checkpoint.path)
    if not (local / CHECKPOINT_FILE).exists():  # remote storage: fetch it
        local = Path(result.checkpoint.to_directory(tempfile.mkdtemp(prefix="padirec-dit-")))
    path = local / CHECKPOINT_FILE
    checkpoint = load_checkpoint(path)
    return {"checkpoint_path": str(path), "epoch": checkpoint["epoch"], "metrics": checkpoint["metrics"],
            "name": name, "storage_path": storage, "result_path": result.path}


# ------------------------------------------------------------------------------------------ sampling


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


def generator_from_checkpoint(checkpoint: dict, device: str | torch.device = "cpu") -> Generator:
    """`load_generator` of checkpoint contents already in memory."""
    model = DiT(DiTConfig(**checkpoint["dit_config"]))
    model.load_state_dict(checkpoint["ema"]["module"])
    model.to(device).eval().requires_grad_(False)
    schedule = DiffusionSchedule(ScheduleConfig(**checkpoint["schedule_config"])).to(device)
    normalizer = ParamNormalizer.from_dict(checkpoint["normalizer"]).to(device)
    keys = ("epoch", "metrics", "dataset_sha256", "dataset_rows", "sweep_run_id", "backbone_run_id", "train_config",
            "dit_config", "schedule_config")
    metadata = {k: checkpoint[k] for k in keys if k in checkpoint}
    return Generator(model, schedule, normalizer, checkpoint["train_config"]["prediction"], metadata)
