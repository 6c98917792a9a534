"""MLflow glue for the generator: log a `dit.pt` and register it as a model.

A registered version is an MLflow pyfunc model (`GeneratorModel`) whose only artifact is the `dit.pt`
checkpoint (the same file is also logged to the run under `checkpoint/dit.pt`). Its `predict(w [B, p])`
returns adapters `[B, 1096]`; the sampler is chosen through params (`method`, `steps`, `guidance`, `eta`,
`seed`). The wrapper class is pickled by reference, so loading the pyfunc needs `padirec` importable;
everything else in this project reads the checkpoint directly (`resolve_generator_file` + `load_generator`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.contracts.artifacts import log_checked_file
from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint
from padirec.contracts.names import (
    ALIAS,
    BACKBONE_RUN_TAG,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_FILE,
    DATASET_DIR,
    DATASET_FILE,
    DATASET_SHA256_TAG,
    MODEL_ARTIFACT,
    MODEL_NAME,
    STAGE_GENERATOR,
    STAGE_TAG,
    SWEEP_RUN_TAG,
)
from padirec.diffusion.generator import load_generator
from padirec.diffusion.sampling import DEFAULT_DDIM_STEPS, make_sampler
from padirec.models.adapter import N_PARAMS


class GeneratorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: `predict(w [B, p]) -> adapters [B, 1096]` with the EMA DiT of the `dit` artifact."""

    def load_context(self, context) -> None:
        self.generator = load_generator(context.artifacts["dit"])

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        params = params or {}
        values = model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input
        if isinstance(values, dict):  # a named-tensor request {"w": [[...]]}
            values = values["w"]
        T = self.generator.schedule.num_steps
        method = str(params.get("method", "ddim"))
        steps = int(params.get("steps", DEFAULT_DDIM_STEPS))  # the signature's default; ddpm ignores it
        sampler = make_sampler(method, None if method == "ddpm" or steps <= 0 else min(steps, T), T,
                               guidance=float(params.get("guidance", 0.0)), eta=float(params.get("eta", 0.0)))
        return self.generator.generate(np.asarray(values, dtype=np.float32), sampler, seed=int(params.get("seed", 0)))


def lineage_tags(checkpoint: GeneratorCheckpoint) -> dict[str, str]:
    """Where a generator came from, as the MLflow tags its run and its model version carry."""
    return {DATASET_SHA256_TAG: checkpoint.dataset_sha256, SWEEP_RUN_TAG: checkpoint.sweep_run_id,
            BACKBONE_RUN_TAG: checkpoint.backbone_run_id}


def model_signature(cond_dim: int):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, cond_dim))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_PARAMS))]),
        params=ParamSchema([ParamSpec("method", "string", "ddim"), ParamSpec("steps", "long", DEFAULT_DDIM_STEPS),
                            ParamSpec("guidance", "double", 0.0), ParamSpec("eta", "double", 0.0),
                            ParamSpec("seed", "long", 0)]),
    )


def training_params(train_config: dict, dit_config: dict, schedule_config: dict) -> dict:
    """The run's params: the training config (nested sections as `section.key`), the DiT and the schedule."""
    def flat(prefix: str, values: dict) -> dict:
        out = {}
        for key, value in values.items():
            out.update(flat(f"{prefix}{key}.", value) if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    train = {k: v for k, v in train_config.items() if k not in ("dit", "schedule")}
    return {**flat("train.", train), **flat("dit.", dit_config), **flat("schedule.", schedule_config)}


def log_training_params(params: dict) -> None:
    """Log params that the active run does not have yet (re-logging a different value is an MLflow error)."""
    run = mlflow.active_run()
    existing = MlflowClient().get_run(run.info.run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def log_dataset_input(manifest: dict, checkpoint: GeneratorCheckpoint) -> None:
    """Record the sweep's gathered dataset as the run's training input (lineage in the MLflow UI)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    sweep = manifest.get("sweep_run_id") or checkpoint.sweep_run_id
    uri = manifest.get("path", "")
    if sweep:
        try:
            uri = f"{mlflow.get_run(sweep).info.artifact_uri}/{DATASET_DIR}/{manifest.get('file', DATASET_FILE)}"
        except Exception:  # noqa: BLE001 - the sweep run may live in another store
            pass
    with warnings.catch_warnings():  # MLflow 3.17 registers the local-file source twice and warns about it
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        try:
            source = resolve_dataset_source(uri)
        except Exception:  # noqa: BLE001 - an artifact scheme MLflow has no dataset source for
            source = resolve_dataset_source(manifest.get("path") or DATASET_FILE)
    name = f"sweep-{sweep[:12]}-adapters" if sweep else "padirec-adapters"
    mlflow.log_input(MetaDataset(source, name=name, digest=checkpoint.dataset_sha256[:16]), context="training",
                     tags={"sha256": checkpoint.dataset_sha256, "rows": str(manifest.get("rows", ""))})


@contextmanager
def as_checkpoint_file(checkpoint_path: str | os.PathLike) -> Iterator[Path]:
    """The checkpoint under the name `resolve_generator_file` looks for (`dit.pt`): the file itself, or a temporary
    copy of one named otherwise (`dit-aligned.pt`)."""
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.name == CHECKPOINT_FILE:
        yield checkpoint_path
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / CHECKPOINT_FILE
        shutil.copyfile(checkpoint_path, local)
        yield local


def log_checkpoint(checkpoint_path: str | os.PathLike) -> None:
    """Log a checkpoint to the active run as `checkpoint/dit.pt`, so that `resolve_generator_file(run_id)` finds it."""
    with as_checkpoint_file(checkpoint_path) as local:
        log_checked_file(local, CHECKPOINT_ARTIFACT)


def log_and_register(checkpoint_path: str | os.PathLike, manifest: dict, model_name: str = MODEL_NAME,
                     alias: str | None = ALIAS, experiment: str = tracking.DEFAULT_EXPERIMENT) -> tuple[str, str]:
    """Log `dit.pt` (artifact + pyfunc model) to the active run (or a new one), register it, set the alias.

    Returns (run_id, model version). Lineage: the dataset / sweep / backbone tags, the dataset as the run's
    input, the training config as params.
    """
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    if manifest.get("sha256") and manifest["sha256"] != checkpoint.dataset_sha256:
        raise ValueError(f"checkpoint was trained on dataset {checkpoint.dataset_sha256[:12]}, "
                         f"the manifest describes {manifest['sha256'][:12]}")
    active = mlflow.active_run()
    if active is None:
        tracking.setup(experiment)
    context = nullcontext(active) if active else mlflow.start_run(run_name="dit", tags={STAGE_TAG: STAGE_GENERATOR})
    with context as run:
        mlflow.set_tags({**lineage_tags(checkpoint), "padirec.dit_epoch": str(checkpoint.epoch)})
        log_training_params(training_params(checkpoint.train_config, checkpoint.dit_config,
                                            checkpoint.schedule_config))
        log_dataset_input(manifest, checkpoint)
        mlflow.log_dict({k: v for k, v in manifest.items() if k != "path"}, "dataset_manifest.json")
        # the run artifact and the pyfunc artifact keep the file's name: both must be dit.pt
        with as_checkpoint_file(checkpoint_path) as local, warnings.catch_warnings():
            log_checked_file(local, CHECKPOINT_ARTIFACT)
            # no input example on purpose: MLflow would run the sampler to validate it
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT, python_model=GeneratorModel(), artifacts={"dit": str(local)},
                signature=model_signature(checkpoint.dit_config["cond_dim"]),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                                  f"numpy=={np.__version__}"],
                registered_model_name=model_name, await_registration_for=60,
                metadata={**checkpoint.lineage(), "epoch": checkpoint.epoch})
        version = str(info.registered_model_version)
        client = MlflowClient()
        for key, value in lineage_tags(checkpoint).items():
            client.set_model_version_tag(model_name, version, key, value)
        if alias:
            client.set_registered_model_alias(model_name, alias, version)
    return run.info.run_id, version
