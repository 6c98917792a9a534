"""How fast the sweep's adapter runs reach the tracking store, by backend and number of concurrent writers.

    python benchmarks/bench_logging.py [--backends sqlite-file,sqlite,postgresql] [--writers 1,4,8] \
        [--adapters 24] [--server-workers 4] [--workdir /tmp/padirec-bench-logging]

Each writer is a process that logs `--adapters` adapter runs with the sweep's own `log_example` (and its
retries), as a packed trial does after training: one child run per adapter with params, metrics, the
adapter's `.npy` and its sha256 tag. Backends: `sqlite-file` is the embedded default (`sqlite:///mlflow.db`,
no server); `sqlite` and `postgresql` are `mlflow/server.sh` (`--server-workers` gunicorn workers, artifacts
proxied by the server) on an SQLite file or on PostgreSQL started by `mlflow/postgres.sh`. Prints adapters per
second from the first run created to the last one finished, and checks that the store holds exactly the runs
that were logged (no duplicate keys, none left RUNNING). A Markdown table and the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from bench_serve import free_port  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the tracking server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {timeout:.0f} s")


def start_store(backend: str, workdir: Path, server_workers: int) -> tuple[str, list]:
    """A fresh store of that kind; returns its tracking URI and what to stop afterwards."""
    if backend == "sqlite-file":
        return f"sqlite:///{workdir}/mlflow.db", []
    stops = []
    env = {**os.environ, "MLFLOW_DATA_DIR": str(workdir / "server"), "MLFLOW_PORT": str(port := free_port()),
           "MLFLOW_WORKERS": str(server_workers), "MLFLOW_HOST": "127.0.0.1"}
    if backend == "postgresql":
        pg_dir = workdir / "postgres"
        uri = subprocess.run([ROOT / "mlflow/postgres.sh", "start", pg_dir, str(free_port())], check=True,
                             capture_output=True, text=True).stdout.strip()
        stops.append(lambda: subprocess.run([ROOT / "mlflow/postgres.sh", "stop", pg_dir], check=False))
        env["MLFLOW_BACKEND_STORE_URI"] = uri
    log = open(workdir / f"server-{backend}.log", "wb")
    proc = subprocess.Popen([ROOT / "mlflow/server.sh"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    stops.insert(0, lambda: (os.killpg(proc.pid, signal.SIGTERM), proc.wait(30)))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc)
    return url, stops


def writer(uri: str, experiment_id: str, parent_run_id: str, index: int, adapters: int, start_at: float) -> None:
    """One trial's logging burst: `adapters` child runs through the sweep's own code."""
    from mlflow.tracking import MlflowClient

    from padirec.models import N_PARAMS
    from padirec.sweep.run import log_example, with_retries

    client = MlflowClient(uri)
    rng = np.random.default_rng(index)
    time.sleep(max(0.0, start_at - time.time()))  # every writer starts together
    for slot in range(adapters):
        w = round(float(rng.random()), 4)
        row = {"w": [w, 1 - w], "epoch": slot, "slot": f"epoch={slot}", "params": rng.standard_normal(N_PARAMS),
               "val_ndcg10": 0.1, "val_alpha_ndcg10": 0.5, "test_ndcg10": 0.1, "test_alpha_ndcg10": 0.5}
        key = f"writer={index}/slot={slot}"
        with_retries(lambda row=row, key=key: log_example(client, experiment_id, parent_run_id, key, row, index,
                                                          {"backbone_run_id": "bench", "block_id": index}))


def measure(uri: str, writers: int, adapters: int) -> dict:
    import mlflow
    from mlflow.tracking import MlflowClient

    from padirec.sweep.run import logged_children

    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    experiment_id = client.create_experiment(f"bench-logging-{writers}-{time.time_ns()}")
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    start_at = time.time() + 3.0  # the processes import mlflow first
    procs = [mp.get_context("spawn").Process(target=writer, args=(uri, experiment_id, parent, i, adapters, start_at))
             for i in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=50000)
    first = min(r.info.start_time for r in runs) / 1000
    last = max(r.info.end_time for r in runs) / 1000
    finished = logged_children(client, experiment_id, parent)
    assert len(runs) == len(finished) == writers * adapters, (len(runs), len(finished))
    return {"writers": writers, "adapters": len(runs), "seconds": round(last - first, 2),
            "adapters_per_s": round(len(runs) / (last - first), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite-file,sqlite,postgresql")
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--adapters", type=int, default=24, help="adapter runs per writer")
    parser.add_argument("--server-workers", type=int, default=4)
    parser.add_argument("--workdir", default="/tmp/padirec-bench-logging")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    results = []
    for backend in args.backends.split(","):
        workdir = Path(args.workdir) / backend
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        os.chmod(workdir, 0o755)  # postgres.sh under root hands its directory to the postgres user
        uri, stops = start_store(backend, workdir, args.server_workers)
        try:
            for writers in map(int, args.writers.split(",")):
                results.append({"backend": backend, **measure(uri, writers, args.adapters)})
                print(json.dumps(results[-1]), flush=True)
        finally:
            for stop in stops:
                stop()
    print("\n| backend | writers | adapters | seconds | adapters/s |\n| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['backend']} | {r['writers']} | {r['adapters']} | {r['seconds']} | {r['adapters_per_s']} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
