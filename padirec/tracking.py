"""MLflow glue: where the store is, and logging/loading the artifacts each stage hands on.

The embedded default is a SQLite store `mlflow.db` (and `mlartifacts/`) in the working
directory; `MLFLOW_TRACKING_URI` points every stage at a team server instead.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

DEFAULT_EXPERIMENT = "padirec"
log = logging.getLogger(__name__)


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else an absolute SQLite store under the working directory.

    Absolute, so that Ray workers whose working directory differs write to the same store.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def setup(experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> str:
    """Point MLflow at the store and create the experiment (artifacts beside a local store)."""
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    ensure_experiment(experiment)
    mlflow.set_experiment(experiment)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment `name` in the current store, created if missing (artifacts beside a local store)."""
    if (experiment := mlflow.get_experiment_by_name(name)) is not None:
        return experiment.experiment_id
    uri, location = mlflow.get_tracking_uri(), None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it meanwhile
        return mlflow.get_experiment_by_name(name).experiment_id


@contextmanager
def start_run(run_name: str, experiment: str = DEFAULT_EXPERIMENT, tags: dict | None = None,
              nested: bool = False):
    """An MLflow run in the configured store; prints where to find it."""
    setup(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags, nested=nested) as run:
        yield run
    print(f"MLflow run {run.info.run_id} ({run_name}) in {mlflow.get_tracking_uri()}", file=sys.stderr)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_scratch: tuple[int, Path] | None = None  # (pid, root) of this process's download directory


def scratch_dir(prefix: str = "padirec-") -> str:
    """A new directory for a download its caller reads at once, under one root per process that is removed when
    the process exits: each load used to leave its copy in /tmp (a test run left ~2,000 model copies, 1 GB)."""
    global _scratch
    if _scratch is None or _scratch[0] != os.getpid() or not _scratch[1].exists():
        _scratch = (os.getpid(), Path(tempfile.mkdtemp(prefix="padirec-scratch-")))
        atexit.register(shutil.rmtree, _scratch[1], True)
    return tempfile.mkdtemp(prefix=prefix, dir=_scratch[1])


def download(run_id: str, artifact_path: str, dst: str | None = None) -> Path:
    """Local path of one artifact of a run (downloaded if the store is remote; into a `scratch_dir` unless `dst`
    is given)."""
    dst = dst or scratch_dir()
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst))


def log_epoch_metrics(epoch: int, metrics: dict) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=epoch)


def epoch_logger(uri: str, run_id: str) -> Callable[[int, dict], None]:
    """`on_epoch(epoch, metrics)` that logs to an existing run through the client (usable inside a Ray worker)."""
    client = MlflowClient(uri)

    def on_epoch(epoch: int, metrics: dict) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items() if k != "epoch"]
        try:
            client.log_batch(run_id, metrics=batch)
        except Exception as err:  # noqa: BLE001 - a busy store must not kill the training
            log.warning("could not log epoch %d metrics to MLflow: %s", epoch, err)

    return on_epoch
