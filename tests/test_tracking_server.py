"""The sweep against a real tracking server on PostgreSQL: concurrent trials write child runs at once.

`mlflow/postgres.sh` starts a PostgreSQL cluster in a temp dir and `mlflow/server.sh` serves MLflow on it, as the
README's cluster set-up does; a local Ray cluster runs the sweep's Tune trials four at a time. The store must end
with exactly one FINISHED run per adapter (checked through MLflow and in PostgreSQL's own tables) and a resume
must add none.
"""

from __future__ import annotations

import json

import mlflow
import psycopg
import pytest
from mlflow.tracking import MlflowClient

from padirec.cli import main
from padirec.contracts.names import ADAPTER_EXPERIMENT_TAG, EXAMPLE_KEY_TAG, STAGE_ADAPTER, STAGE_TAG
from padirec.sweep import SweepConfig, run_sweep
from padirec.training import AdapterConfig

# about 2 min here (2 cores): PostgreSQL, a server with 2 workers, a backbone and 4 trials; run with -m slow
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mlflow_server", ["postgresql"], indirect=True)
def test_four_concurrent_trials_log_each_adapter_once_to_a_postgresql_tracking_server(
        mlflow_server, postgres_uri, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PADIREC_CACHE_DIR", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(mlflow_server)
    main(["pretrain", "--dataset", "synthetic", "--epochs", "2", "--quiet"])
    backbone = mlflow.search_runs(experiment_names=["padirec"], filter_string="tags.`padirec.stage` = 'backbone'")
    config = SweepConfig(backbone_run_id=backbone.iloc[0]["run_id"], grid_step=0.1, seeds=[0], pack_size=3,
                         max_concurrent_trials=4, storage_path=str(tmp_path / "ray_results"),
                         adapter=AdapterConfig(epochs=3, keep_last=2))
    assert len(config.blocks()) == 4
    summary = run_sweep(config, progress=False)
    assert summary.adapters == summary.expected == 11 * 2

    client = MlflowClient(mlflow_server)
    sweep = client.get_run(summary.parent_run_id)
    adapters = sweep.data.tags[ADAPTER_EXPERIMENT_TAG]
    children = client.search_runs([adapters], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'", max_results=1000)
    keys = [run.data.tags[EXAMPLE_KEY_TAG] for run in children]
    assert len(keys) == len(set(keys)) == 22
    assert {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.tags[STAGE_TAG] for run in children} == {STAGE_ADAPTER}
    # the four trials were alive at once: each had started (Tune's first result less its time) before any had
    # made its last report, which follows its logging burst
    trials = [[json.loads(line) for line in path.read_text().splitlines()]
              for path in (tmp_path / "ray_results").glob("*/*/result.json")]
    assert len(trials) == 4 and all(rows[-1]["adapters_logged"] > 0 for rows in trials)
    assert max(rows[0]["timestamp"] - rows[0]["time_total_s"] for rows in trials) < min(
        rows[-1]["timestamp"] for rows in trials)

    with psycopg.connect(postgres_uri.replace("postgresql+psycopg", "postgresql")) as db:  # the server wrote here
        counts = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    assert counts == {"FINISHED": 22 + 2}  # the adapters, the backbone run and the sweep run

    again = run_sweep(config, parent_run_id=summary.parent_run_id, progress=False)
    assert again.adapters == 22
    assert len(client.search_runs([adapters], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'",
                                  max_results=1000)) == 22
