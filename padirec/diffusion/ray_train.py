"""The Ray Train layer of generator training: `train_dit`'s epoch loop in every worker of a `TorchTrainer`.

DDP: gloo on CPU, NCCL on GPU. The Parquet file is read with `ray.data.read_parquet` and split over workers
(`get_dataset_shard`); each worker reads its shard once into memory (rows are 4.4 KB, a sweep is thousands of
rows) and reshuffles it locally every epoch. Rank 0 saves checkpoints through `ray.train.report`; running
again with the same `storage_path` and `name` continues from `ray.train.get_checkpoint()`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from padirec.config import build
from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint, save_checkpoint
from padirec.contracts.dataset import dataset_info
from padirec.contracts.names import CHECKPOINT_FILE
from padirec.diffusion.objective import prepare_rows
from padirec.diffusion.train import DiTTrainConfig, build_state, fit, task_loss_for
from padirec.models import N_PARAMS, ParamNormalizer
from padirec.runtime import init_ray, storage_uri
from padirec.tracking import epoch_logger


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


def _ray_train_loop(loop_config: dict) -> None:
    """The function every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(loop_config["threads"])
    config = build(DiTTrainConfig, loop_config["config"])
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
    on_epoch = epoch_logger(tracking["uri"], tracking["run_id"]) if tracking and rank == 0 else None

    def report(epoch: int, metrics: dict, checkpoint: GeneratorCheckpoint | None) -> None:
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
    """The Parquet file as a Ray Dataset; read by the driver instead when other nodes cannot see the path.

    Without Ray Data's progress bars: the dataset is a few MB, streamed to the workers every epoch, and its bars
    (one per operator, redrawn each epoch) were most of the pipeline's console output."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if "://" not in path and len(alive) > 1:
        import pyarrow.parquet as pq

        return ray.data.from_arrow(pq.read_table(path, columns=["w", "params"]))
    return ray.data.read_parquet(path, columns=["w", "params"])


def cpu_shortfall(cluster_cpus: float, num_workers: int, cpus_per_worker: float) -> str | None:
    """Why a run of `num_workers` would hang on a cluster of `cluster_cpus` (None if it fits): the workers hold
    their CPUs for the whole run and the Ray Data read of the dataset needs one more beside them."""
    needed = num_workers * cpus_per_worker + 1
    if cluster_cpus >= needed:
        return None
    return (f"Ray Train needs {needed:g} CPUs ({num_workers} workers x {cpus_per_worker:g} + 1 for the Ray Data read) "
            f"but the cluster has {cluster_cpus:g}: the run would wait for resources; use fewer --workers, or a "
            f"bigger cluster (an autoscaling one may add them)")


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
    import ray

    shortfall = cpu_shortfall(ray.cluster_resources().get("CPU", 0), num_workers, resources.get("CPU", 1))
    if shortfall:
        logging.getLogger(__name__).warning(shortfall)
    storage = storage_uri(str(storage_path) if storage_path else None)
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
    return {"checkpoint_path": str(path), "epoch": checkpoint.epoch, "metrics": checkpoint.metrics,
            "name": name, "storage_path": storage, "result_path": result.path}
