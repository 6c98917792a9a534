"""The pipeline as a Ray job on a real two-node Ray cluster, logging to a real MLflow tracking server; then deployed.

Both run on loopback: `ray start --head` plus a second `ray start --address` node (each its own raylet, object
store and dashboard agent on one host), and `mlflow/server.sh` with artifacts in a temp dir, its database SQLite
or PostgreSQL (`mlflow/postgres.sh`; the test runs once on each). The test submits `jobs/pipeline.py --small`
with `JobSubmissionClient` (working_dir = this repository, MLFLOW_TRACKING_URI = the server) and finds the
sweep, its Parquet dataset, the registered DiT and the report through the server; then `jobs/deploy.py` puts
the generation API on the same cluster and it answers over HTTP.

Two nodes on one host share its ports: Ray's fixed defaults (GCS 6379, dashboard 8265, client server 10001,
dashboard agent 52365, worker ports 10002-19999) would collide with each other and with other Ray clusters on this
machine, so every fixed port is a free one and workers bind OS-assigned ports (`--min/max-worker-port 0`); the
other ports are random by default. Each node gets its own `--temp-dir`: without one the worker node joins the
head's session dir, and with it the unpacked job working_dir, which the worker node's runtime-env cleanup then
deletes under the running driver (seen: FileNotFoundError from os.getcwd() in Tune). The worker node's Serve proxy
gets its own HTTP port (RAY_SERVE_WORKER_PROXY_HTTP_PORT). Token auth is off (RAY_AUTH_MODE=disabled) for every
node, so that this client needs no token. Teardown stops only the process groups this test started and any process
left under its temp dir (never `ray stop`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from support import BIN, ROOT, base_env, http_ok, start, stop, wait_for

from padirec.contracts.names import ADAPTER_EXPERIMENT_TAG, DATASET_SHA256_TAG, STAGE_TAG

# about 3 min per database here (2 cores): the whole pipeline plus a cluster and a server start; run with -m slow
pytestmark = pytest.mark.slow


@pytest.fixture
def two_node_cluster(tmp_path, free_port):
    """Head + one worker node, 2 CPUs each, on 127.0.0.1; yields the dashboard (job API) URL."""
    # short temp dirs: Ray's Unix socket paths under them must stay below 108 characters
    temp_dir = tempfile.mkdtemp(prefix="padirec-ray-", dir="/tmp")
    gcs, dashboard = free_port(), free_port()
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--object-store-memory", 200 * 2**20,
              "--min-worker-port", "0", "--max-worker-port", "0", "--disable-usage-stats"]
    head_cmd = [BIN / "ray", "start", "--head", "--port", gcs, "--temp-dir", f"{temp_dir}/head", "--include-dashboard",
                "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", dashboard, "--ray-client-server-port",
                free_port(), "--dashboard-agent-listen-port", free_port(), *common]
    worker_cmd = [BIN / "ray", "start", "--address", f"127.0.0.1:{gcs}", "--temp-dir", f"{temp_dir}/worker",
                  "--dashboard-agent-listen-port", free_port(), *common]
    logs = tmp_path / "ray-head.log", tmp_path / "ray-worker.log"
    procs = [start(head_cmd, base_env(), logs[0])]
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for(lambda: http_ok(f"{url}/api/version"), "Ray head (dashboard)", 120, procs, logs[0])
        procs.append(start(worker_cmd, {**base_env(), "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(free_port())}, logs[1]))
        wait_for(lambda: alive_nodes(url) == 2, "second Ray node", 120, procs, logs[1])
        yield url
    finally:
        for proc in reversed(procs):
            stop(proc, marker=temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def alive_nodes(address: str) -> int:
    from ray.util.state import list_nodes

    return len(list_nodes(address=address, filters=[("state", "=", "ALIVE")]))


def run_job(client, entrypoint: str, env_vars: dict, timeout: float) -> str:
    """Submit with this repository as working_dir; wait for SUCCEEDED (the job's logs are shown otherwise)."""
    from ray.job_submission import JobStatus

    job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(ROOT), "env_vars": env_vars})
    deadline = time.monotonic() + timeout
    while (status := client.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            client.stop_job(job)
            break
        time.sleep(2)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, f"{entrypoint}: {status}\n{logs[-6000:]}"
    return logs


@pytest.mark.parametrize("mlflow_server", ["sqlite", "postgresql"], indirect=True)
def test_pipeline_job_on_two_nodes_logs_to_mlflow_server_and_deploys(tmp_path, mlflow_server, two_node_cluster,
                                                                       free_port):
    from mlflow.tracking import MlflowClient
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(two_node_cluster)
    out = tmp_path / "output"  # one host: a local path is "shared storage" for both nodes
    env_vars = {"MLFLOW_TRACKING_URI": mlflow_server, "PADIREC_CACHE_DIR": str(tmp_path / "cache"),
                "PYTHONUNBUFFERED": "1"}
    run_job(client, f"python jobs/pipeline.py --small --quiet --output-dir {out}", env_vars, timeout=900)
    assert alive_nodes(two_node_cluster) == 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["tracking_uri"] == mlflow_server
    store = MlflowClient(mlflow_server)
    sweep = store.get_run(summary["sweep_run_id"])
    assert {a.path for a in store.list_artifacts(sweep.info.run_id, "dataset")} == {"dataset/adapters.parquet",
                                                                                    "dataset/manifest.json"}
    manifest = json.loads(Path(store.download_artifacts(sweep.info.run_id, "dataset/manifest.json", str(tmp_path)))
                          .read_text())
    assert manifest["sha256"] == sweep.data.tags[DATASET_SHA256_TAG] == summary["dataset"]["sha256"]
    children = store.search_runs([sweep.data.tags[ADAPTER_EXPERIMENT_TAG]],
                                 f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    assert children and all(run.info.status == "FINISHED" for run in children)  # logged by Tune trials

    champion = store.get_model_version_by_alias("padirec-dit", "champion")
    assert str(champion.version) == summary["generator"]["version"]
    assert champion.run_id == summary["generator"]["run_id"]

    report = store.get_run(summary["report_run_id"])
    assert report.data.tags[STAGE_TAG] == "report"
    assert {a.path for a in store.list_artifacts(report.info.run_id, "report")} >= {"report/controllability.md",
                                                                                     "report/controllability.png"}
    # artifacts went through the server's proxy into its artifact root, not to a path the job chose
    assert sweep.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list((tmp_path / "mlflow" / "artifacts").rglob("adapters.parquet"))

    serve_port = free_port()
    run_job(client, f"python jobs/deploy.py --host 127.0.0.1 --port {serve_port}", env_vars, timeout=300)
    url = f"http://127.0.0.1:{serve_port}"
    wait_for(lambda: http_ok(f"{url}/healthz"), "deployed generation API", 120)
    request = urllib.request.Request(f"{url}/v1/adapters", data=json.dumps({"weights": [0.3, 0.7]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["params"]) == 1096
