"""Writing and finding the files stages hand each other through MLflow: adapters, backbones and generator
checkpoints with their sha256 (checked when read back), and one resolver from a path, run id, `runs:/` or
`models:/` URI to a local backbone or generator file."""

from __future__ import annotations

import logging
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
    BACKBONE_SHA256_TAG,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_FILE,
    CHECKPOINT_SHA256_TAG,
    GENERATOR_RUN_TAG,
    MODEL_VERSION_TAG,
    tag,
)
from padirec.models import N_PARAMS

log = logging.getLogger(__name__)
DIGEST_TAGS = {BACKBONE_ARTIFACT: BACKBONE_SHA256_TAG, CHECKPOINT_ARTIFACT: CHECKPOINT_SHA256_TAG}


def log_checked_file(path: str | os.PathLike, artifact: str) -> str:
    """Log `path` to the active run as `artifact` (`BACKBONE_ARTIFACT` or `CHECKPOINT_ARTIFACT`, whose file name
    it must have) with its sha256 tag, which `resolve_backbone_file` / `resolve_generator_file` check."""
    if Path(path).name != Path(artifact).name:
        raise ValueError(f"{path} must be named {Path(artifact).name} to be logged as {artifact}")
    digest = tracking.sha256_file(path)
    mlflow.set_tag(DIGEST_TAGS[artifact], digest)
    mlflow.log_artifact(str(path), str(Path(artifact).parent))
    return digest


def _is_local(reference: str) -> bool:
    """A file path (existing or not) rather than an MLflow run id, `runs:/` or `models:/` reference."""
    return not reference.startswith(("models:/", "runs:/")) and (
        Path(reference).exists() or "/" in reference or reference.endswith(".pt"))


def _model_version(reference: str):
    """The registered model version `models:/name/version` or `models:/name@alias` names."""
    name, _, rest = reference.removeprefix("models:/").partition("/")
    client = MlflowClient(tracking.tracking_uri())
    if "@" in name:
        return client.get_model_version_by_alias(*name.split("@", 1))
    return client.get_model_version(name, rest.split("/")[0])


def source_run_id(reference: str | os.PathLike) -> str | None:
    """The run that holds what a run id, `runs:/<id>/...` or `models:/...` points at; None for a local file."""
    reference = str(reference)
    if _is_local(reference):
        return None
    if reference.startswith("runs:/"):
        return reference.removeprefix("runs:/").split("/")[0]
    if reference.startswith("models:/"):
        return _model_version(reference).run_id
    return reference


def _check_digest(local: Path, reference: str, artifact: str, what: str) -> Path:
    """`local` after checking it against the sha256 its run recorded; runs logged before digests were recorded
    pass with a warning."""
    run_id = source_run_id(reference)
    expected = MlflowClient(tracking.tracking_uri()).get_run(run_id).data.tags.get(DIGEST_TAGS[artifact], "")
    if not expected:
        log.warning("%s of run %s has no recorded sha256 (%s): not verified", what, run_id, DIGEST_TAGS[artifact])
        return local
    actual = tracking.sha256_file(local)
    if actual != expected:
        raise ValueError(f"{what} {local.name} of run {run_id} fails its sha256 check: the run recorded "
                         f"{expected[:12]}…, the file is {actual[:12]}… (corrupted or replaced after logging)")
    return local


def write_adapter(adapter: np.ndarray, directory: str | os.PathLike) -> tuple[Path, str]:
    """`adapter.npy` (float32) in `directory` and its sha256: what a run logs under `ADAPTER_DIR`, with the tag."""
    path = Path(directory) / ADAPTER_FILE
    np.save(path, np.asarray(adapter, dtype=np.float32))
    return path, tracking.sha256_file(path)


def log_adapter(adapter: np.ndarray) -> str:
    """Log `adapter.npy` to the active run with its sha256 tag; returns the digest."""
    with tempfile.TemporaryDirectory() as tmp:
        path, digest = write_adapter(adapter, tmp)
        mlflow.set_tag(ADAPTER_SHA256_TAG, digest)
        mlflow.log_artifact(str(path), ADAPTER_DIR)
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
    dst = dst or tracking.scratch_dir()
    if reference.startswith(("models:/", "runs:/")):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=reference, dst_path=dst))
        if not local.is_file():
            found = sorted(local.rglob(Path(artifact).name))
            if not found:
                raise FileNotFoundError(f"{reference} holds no {Path(artifact).name}")
            local = found[0]
        return _check_digest(local, reference, artifact, what)
    if _is_local(reference):
        raise FileNotFoundError(f"{what} {reference} does not exist")
    try:
        local = tracking.download(reference, artifact, dst)
    except Exception as err:  # noqa: BLE001 - MLflow raises its own types for an unknown run or a missing file
        raise FileNotFoundError(f"{what} {reference!r} is neither a file nor an MLflow run with {artifact} "
                                f"in {tracking.tracking_uri()}: {err}") from err
    return _check_digest(local, reference, artifact, what)


def resolve_backbone_file(reference: str | os.PathLike, dst: str | None = None) -> Path:
    """A local `backbone.pt`: a file, a directory holding one, an MLflow run id or a `runs:/` URI."""
    path = Path(reference)
    if path.is_dir() and (path / BACKBONE_FILE).exists():
        return path / BACKBONE_FILE
    if path.is_file():
        return path
    return _download(str(reference), BACKBONE_ARTIFACT, "backbone", dst)


def generator_lineage(reference: str | os.PathLike) -> dict[str, str]:
    """The lineage tags of a generator reference: its run id, and its registered "name/version" (a `models:/`
    reference, or the first version registered from that run). A local file has none."""
    reference = str(reference)
    if reference.startswith("models:/"):
        version = _model_version(reference)
        run_id = version.run_id
    else:
        run_id = source_run_id(reference)
        if run_id is None:
            return {}
        versions = MlflowClient(tracking.tracking_uri()).search_model_versions(f"run_id = '{run_id}'")
        version = min(versions, key=lambda v: int(v.version)) if versions else None
    tags = {GENERATOR_RUN_TAG: run_id}
    if version is not None:
        tags[MODEL_VERSION_TAG] = f"{version.name}/{version.version}"
    return tags


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
