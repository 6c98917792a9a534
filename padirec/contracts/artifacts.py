"""Writing and finding the files stages hand each other through MLflow: adapters with their sha256, and one
resolver from a path, run id, `runs:/` or `models:/` URI to a local backbone or generator file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.contracts.names import (
    ADAPTER_ARTIFACT,
    ADAPTER_DIR,
    ADAPTER_FILE,
    ADAPTER_SHA256_TAG,
    ALIGNED_FILE,
    BACKBONE_ARTIFACT,
    BACKBONE_FILE,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_FILE,
    tag,
)
from padirec.models import N_PARAMS


def log_adapter(adapter: np.ndarray, run_id: str | None = None, client: MlflowClient | None = None) -> str:
    """Log `adapter.npy` (float32) to a run (the active one by default) with its sha256 tag; returns the digest."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ADAPTER_FILE
        np.save(path, np.asarray(adapter, dtype=np.float32))
        digest = tracking.sha256_file(path)
        if client is None:
            mlflow.set_tag(ADAPTER_SHA256_TAG, digest)
            mlflow.log_artifact(str(path), ADAPTER_DIR)
        else:
            client.set_tag(run_id, ADAPTER_SHA256_TAG, digest)
            client.log_artifact(run_id, str(path), ADAPTER_DIR)
    return digest


def load_adapter(run: mlflow.entities.Run, dst: str | os.PathLike | None = None) -> np.ndarray:
    """The run's adapter as float32, after checking it against the run's sha256 tag (a clear error if not)."""
    path = tracking.download(run.info.run_id, ADAPTER_ARTIFACT, str(dst) if dst else None)
    expected = tag(run.data.tags, ADAPTER_SHA256_TAG)
    if tracking.sha256_file(path) != expected:
        raise ValueError(f"adapter of run {run.info.run_id} fails its sha256 check (tag {expected[:12] or 'missing'})")
    return np.load(path).astype(np.float32)


def check_adapter_shape(adapter: np.ndarray, source: str) -> np.ndarray:
    """A flat adapter `[1096]` or a batch `[K, 1096]`; anything else is an error naming where it came from."""
    if adapter.shape[-1:] != (N_PARAMS,) or adapter.ndim > 2:
        raise ValueError(f"{source}: expected an adapter of {N_PARAMS} values (or [K, {N_PARAMS}]), "
                         f"got shape {adapter.shape}")
    return adapter


def _download(reference: str, artifact: str, what: str, dst: str | None) -> Path:
    mlflow.set_tracking_uri(tracking.tracking_uri())
    dst = dst or tempfile.mkdtemp(prefix="padirec-")
    if reference.startswith(("models:/", "runs:/")):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=reference, dst_path=dst))
        if local.is_file():
            return local
        found = sorted(local.rglob(Path(artifact).name))
        if not found:
            raise FileNotFoundError(f"{reference} holds no {Path(artifact).name}")
        return found[0]
    if "/" in reference or reference.endswith(".pt"):
        raise FileNotFoundError(f"{what} {reference} does not exist")
    try:
        return tracking.download(reference, artifact, dst)
    except Exception as err:  # noqa: BLE001 - MLflow raises its own types for an unknown run or a missing file
        raise FileNotFoundError(f"{what} {reference!r} is neither a file nor an MLflow run with {artifact} "
                                f"in {tracking.tracking_uri()}: {err}") from err


def resolve_backbone_file(reference: str | os.PathLike, dst: str | None = None) -> Path:
    """A local `backbone.pt`: a file, a directory holding one, an MLflow run id or a `runs:/` URI."""
    path = Path(reference)
    if path.is_dir() and (path / BACKBONE_FILE).exists():
        return path / BACKBONE_FILE
    if path.is_file():
        return path
    return _download(str(reference), BACKBONE_ARTIFACT, "backbone", dst)


def resolve_generator_file(reference: str | os.PathLike, dst: str | None = None) -> Path:
    """A local generator checkpoint: a file, a run directory (its `dit-aligned.pt` first), an MLflow run id,
    `runs:/...`, or `models:/name@alias` / `models:/name/version`."""
    path = Path(reference)
    for name in (ALIGNED_FILE, CHECKPOINT_FILE):
        if path.is_dir() and (path / name).exists():
            return path / name
    if path.is_file():
        return path
    return _download(str(reference), CHECKPOINT_ARTIFACT, "generator checkpoint", dst)
