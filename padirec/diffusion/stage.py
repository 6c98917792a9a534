"""The generator-training stage: DiT training (in process or Ray Train DDP), preference alignment, one MLflow
run, and the registered model version. `padirec train-dit` and the pipeline call `train_generator`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow

from padirec import tracking
from padirec.contracts.dataset import dataset_info, dataset_manifest
from padirec.contracts.names import (
    ALIAS,
    BACKBONE_RUN_TAG,
    DATASET_SHA256_TAG,
    MODEL_NAME,
    OBJECTIVES_TAG,
    RAY_TRAIN_NAME_TAG,
    STAGE_GENERATOR,
    STAGE_TAG,
    SWEEP_RUN_TAG,
)
from padirec.diffusion.preference import align_file
from padirec.diffusion.ray_train import train_dit_ray
from padirec.diffusion.registry import log_and_register, log_checkpoint, log_training_params, training_params
from padirec.diffusion.train import DiTTrainConfig, resolve_device, train_dit
from padirec.runtime import storage_uri


@dataclass
class GeneratorRunConfig:
    """Where and how generator training runs and is recorded (what it learns is `DiTTrainConfig`)."""

    workers: int = 2  # Ray Train DDP workers; 0 = in this process, without Ray
    gpu: bool = False  # one GPU per worker (NCCL)
    cpus_per_worker: float = 1.0
    storage_path: str = "ray_results"  # Ray Train results: shared storage or a URI (s3://...) on a cluster
    name: str = ""  # Ray Train run name; reuse it to resume (default dit-<dataset sha>-<time>)
    max_failures: int = 0  # worker-group restarts from the last checkpoint
    model_name: str = MODEL_NAME  # registered model name
    alias: str = ALIAS  # alias set on the new version
    register: bool = True  # register the checkpoint as a model version (else only log it to the run)
    experiment: str = tracking.DEFAULT_EXPERIMENT

    def __post_init__(self):
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


@dataclass
class GeneratorRun:
    """What generator training left: its MLflow run, the model version, the checkpoint file."""

    run_id: str
    checkpoint_path: str
    epoch: int
    loss: float | None
    name: str  # the Ray Train run name (resume with it)
    storage_path: str
    model_name: str | None = None
    version: str | None = None
    alias: str | None = None

    @property
    def model_uri(self) -> str | None:
        return f"models:/{self.model_name}/{self.version}" if self.version else None

    def to_dict(self) -> dict:
        return {**asdict(self), "model_uri": self.model_uri}


def train_generator(dataset: str | Path, config: DiTTrainConfig = DiTTrainConfig(),
                    run: GeneratorRunConfig = GeneratorRunConfig()) -> GeneratorRun:
    """Train the DiT on a gathered `adapters.parquet`, log it to one MLflow run and register it."""
    uri = tracking.setup(run.experiment)
    path = Path(dataset)
    manifest = dataset_manifest(path)
    info = dataset_info(path)
    name = run.name or f"dit-{info['sha256'][:12]}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = storage_uri(run.storage_path)
    tags = {STAGE_TAG: STAGE_GENERATOR, RAY_TRAIN_NAME_TAG: name, DATASET_SHA256_TAG: info["sha256"],
            SWEEP_RUN_TAG: info["sweep_run_id"], BACKBONE_RUN_TAG: info["backbone_run_id"],
            OBJECTIVES_TAG: ",".join(info["objectives"])}
    with tracking.start_run(f"dit-{name}", run.experiment, tags=tags) as active:
        log_training_params(training_params(asdict(config), asdict(config.dit_config(info["cond_dim"])),
                                            asdict(config.schedule)))
        mlflow.log_params({"workers": run.workers, "gpu": run.gpu, "dataset_rows": info["rows"]})
        on_epoch = tracking.epoch_logger(uri, active.info.run_id)
        if run.workers == 0:
            if run.gpu and config.device == "auto":
                config = replace(config, device="cuda")
            result = train_dit(path, config, on_epoch=on_epoch, output_dir=_local_dir(storage, name))
        else:
            resources = {"CPU": run.cpus_per_worker, **({"GPU": 1} if run.gpu else {})}
            result = train_dit_ray(path, config, run.workers, run.gpu, storage, name, resources,
                                   tracking={"uri": uri, "run_id": active.info.run_id}, max_failures=run.max_failures)
        checkpoint_path = result["checkpoint_path"]
        if config.preference.epochs > 0:  # TA-Rec's second stage, in this process: the pairs are a few thousand rows
            checkpoint_path = str(align_file(checkpoint_path, path, config.preference, resolve_device(config.device),
                                             on_epoch=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch)))
        version = None
        if run.register:
            _, version = log_and_register(checkpoint_path, manifest, run.model_name, run.alias)
        else:
            log_checkpoint(checkpoint_path)
    return GeneratorRun(run_id=active.info.run_id, checkpoint_path=checkpoint_path, epoch=result["epoch"],
                        loss=result["metrics"].get("loss"), name=name, storage_path=storage,
                        model_name=run.model_name if run.register else None, version=version,
                        alias=run.alias if run.register else None)


def _local_dir(storage: str, name: str) -> Path:
    """The in-process loop writes its checkpoint to a local directory: a URI storage path is Ray Train's only."""
    if "://" in storage:
        raise ValueError(f"workers=0 trains in this process and needs a local storage_path, got {storage}")
    return Path(storage) / name
