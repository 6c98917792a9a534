"""Shared fixtures: where the real ML-100K copy lives, and a tiny ML-100K-format folder."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from support import write_ml100k


def pytest_configure(config):
    """One intra-op thread: the tensors in tests are tiny, and threads stall when Ray workers share 2 cores."""
    import torch

    torch.set_num_threads(1)


def _find_ml100k() -> Path | None:
    env = os.environ.get("PADIREC_DATA_DIR")
    candidates = [Path(env) / "ml-100k", Path(env)] if env else []
    # CI runs from a fresh clone with shared/ beside the repository
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k")
    return next((c for c in candidates if (c / "u.data").is_file()), None)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens 100K folder; the test is skipped where there is none."""
    path = _find_ml100k()
    if path is None:
        pytest.skip("MovieLens 100K not found (set PADIREC_DATA_DIR)")
    return path


@pytest.fixture
def make_ml100k():
    """`write_ml100k` as a fixture, for tests that write their own ML-100K-format folders."""
    return write_ml100k


@pytest.fixture
def tiny_ml100k(tmp_path) -> Path:
    """A 3-user, 4-item ML-100K-format folder (users 1 and 2 have 5 ratings, user 3 has 2)."""
    ratings = [(1, 1, 5, 100), (1, 2, 3, 90), (1, 3, 4, 120), (1, 4, 1, 130), (1, 1, 2, 140),
               (2, 2, 5, 10), (2, 3, 3, 20), (2, 4, 4, 30), (2, 1, 1, 40), (2, 2, 2, 50),
               (3, 1, 5, 1), (3, 2, 5, 2)]
    return write_ml100k(tmp_path / "ml-100k", ratings, {1: ["Action"], 2: ["Action", "Comedy"], 3: [],
                                                        4: ["unknown"]})


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    """A fresh local MLflow store (SQLite + artifacts) in a temp dir, used as the working directory."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PADIREC_CACHE_DIR", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(uri)
    yield uri
    if mlflow.active_run():
        mlflow.end_run()


@pytest.fixture()
def ray_cluster():
    """A local Ray cluster started by the test (2 logical CPUs beyond the trial's needs), shut down after."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def _seed():
    """torch's global RNG seeded with 0; modules ask for it with `pytestmark = pytest.mark.usefixtures("_seed")`."""
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def free_port():
    """`free_port()`: a loopback port held bound till the session ends; no bind(0) or connect() can take it."""
    # held with SO_REUSEADDR and never listening, so the server it is for still binds it: Ray's GCS, dashboard,
    # agent and client server, the Serve proxy and mlflow's uvicorn all set SO_REUSEADDR (a bind without it,
    # e.g. Ray's own free-port probe, gets EADDRINUSE). Closing it first would leave a window until that bind.
    held = []

    def reserve() -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        held.append(s)
        return s.getsockname()[1]

    try:
        yield reserve
    finally:
        for s in held:
            s.close()


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> dict:
    """A tiny SASRec on synthetic data and a gathered sweep of its adapters: w_acc 0, 0.5, 1 x seeds 0, 1 x
    2 kept epochs, written in `gather`'s Parquet format. Keys: data, spec, backbone, backbone_path, adapter
    (the sweep's AdapterConfig), dataset_path, arrays."""
    from dataclasses import replace

    import numpy as np

    from padirec.config import DataSpec, load_data
    from padirec.contracts.dataset import dataset_arrays, read_dataset, write_dataset
    from padirec.models import save_backbone
    from padirec.training import AdapterConfig, PretrainConfig, pretrain_backbone, train_adapters

    root = tmp_path_factory.mktemp("tiny_sweep")
    spec = DataSpec(kind="synthetic", synthetic_users=100, synthetic_items=60)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PADIREC_CACHE_DIR", str(root / "cache"))
        data = load_data(spec)
    backbone, _ = pretrain_backbone(data, PretrainConfig(epochs=1, dropout=0.0), progress=False)
    backbone_path = root / "backbone.pt"
    save_backbone(backbone, backbone_path, extra={"data": spec.to_dict()})
    adapter = AdapterConfig(epochs=2, keep_last=2)
    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], dtype=np.float32)
    rows = []
    for seed in (0, 1):
        result = train_adapters(backbone, data, weights, replace(adapter, seed=seed), progress=False)
        rows += [{"w": e["w"], "seed": seed, "epoch": e["epoch"], "params": e["params"],
                  "ndcg10": e["val_ndcg10"], "alpha_ndcg10": e["val_alpha_ndcg10"], "test_ndcg10": e["test_ndcg10"],
                  "test_alpha_ndcg10": e["test_alpha_ndcg10"], "backbone_run_id": "",
                  "run_id": f"w{e['w'][0]}-s{seed}-e{e['epoch']}", "slot": e["slot"]} for e in result.examples()]
    dataset_path = write_dataset(rows, root / "dataset")["path"]
    return {"data": data, "spec": spec, "backbone": backbone, "backbone_path": backbone_path, "adapter": adapter,
            "dataset_path": dataset_path, "arrays": dataset_arrays(read_dataset(dataset_path)[0])}


@pytest.fixture
def postgres_uri(tmp_path, free_port) -> str:
    """A PostgreSQL server of its own (`mlflow/postgres.sh`: initdb in a temp dir, loopback only), stopped after.
    Skipped where Debian's `postgresql` or the psycopg driver is missing (`apt-get install postgresql`,
    `pip install -e ".[postgres]"`)."""
    import shutil
    import subprocess

    from support import ROOT

    if not (shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))):
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="the psycopg driver (pip install -e '.[postgres]')")
    root = Path(tempfile.mkdtemp(prefix="padirec-pg-", dir="/tmp"))  # short: the socket path lives under it
    root.chmod(0o755)  # under root the cluster belongs to the `postgres` user, who must reach it
    script = [str(ROOT / "mlflow/postgres.sh")]
    done = subprocess.run([*script, "start", str(root / "db"), str(free_port())], capture_output=True, text=True)
    if done.returncode:
        log = root / "db" / "server.log"
        pytest.fail(f"postgres.sh start: {done.stderr}\n{log.read_text()[-2000:] if log.exists() else ''}")
    try:
        yield done.stdout.strip()
    finally:
        subprocess.run([*script, "stop", str(root / "db")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite"])
def mlflow_server(request, tmp_path, free_port):
    """`mlflow/server.sh` on a free loopback port, artifacts proxied into tmp_path; its database is SQLite under
    tmp_path, or PostgreSQL with `@pytest.mark.parametrize("mlflow_server", ["postgresql"], indirect=True)`."""
    from support import ROOT, base_env, http_ok, start, stop, wait_for

    port, log = free_port(), tmp_path / "mlflow-server.log"
    env = {**base_env(), "MLFLOW_DATA_DIR": str(tmp_path / "mlflow"), "MLFLOW_HOST": "127.0.0.1",
           "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "2"}
    if request.param == "postgresql":
        env["MLFLOW_BACKEND_STORE_URI"] = request.getfixturevalue("postgres_uri")
    proc = start([ROOT / "mlflow/server.sh"], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{url}/health"), "mlflow server", 120, [proc], log)
        yield url
    finally:
        stop(proc)
