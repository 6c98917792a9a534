"""The README's main command, end to end at smoke-test size: every stage lands in the MLflow store."""

import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from padirec.cli import build_parser
from padirec.cli.main import deploy_options
from padirec.contracts.names import (
    ALIGNED_FILE,
    BACKBONE_RUN_TAG,
    DATASET_SHA256_TAG,
    GENERATOR_RUN_TAG,
    MODEL_VERSION_TAG,
    STAGE_TAG,
)


def test_pipeline_runs_every_stage_into_mlflow(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local cluster of its own
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "padirec.cli", "pipeline", "--small", "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # --quiet: one line per stage, the report's headline and the closing line; Ray's, Tune's and MLflow's output
    # (and the per-artifact progress bars) only in the stages' logs
    lines = done.stdout.splitlines()
    assert [line.split("]")[0] for line in lines[:6]] == [f"[{i}/6" for i in range(1, 7)], done.stdout
    assert any(line.startswith("- w-utility regret: ") for line in lines[6:]) and "pipeline done" in lines[-1]
    for noise in ("Downloading artifacts", "(raylet)", "Configuration for experiment", "INFO", "View run"):
        assert noise not in done.stdout + done.stderr
    logs = sorted(p.name for p in (tmp_path / "padirec-output" / "logs").iterdir())
    assert logs == ["1-data.log", "2-backbone.log", "3-sweep.log", "4-curve.log", "5-generator.log", "6-report.log",
                    "ray-shutdown.log"]
    sweep_log = (tmp_path / "padirec-output" / "logs" / "3-sweep.log").read_text()
    assert "sweep run" in lines[2] and "adapters" in sweep_log
    # the calibration (minutes on real data) says what it trains before the trials start
    for step in ("calibrate: ideal and nadir, 2 single-objective adapters", "calibrate: even map, round 1/2",
                 "× 2 seed(s)", "calibrate: even map, round 2/2", "sweep: calibrated in"):
        assert step in sweep_log, sweep_log[:3000]
    tune_log = next((tmp_path / "padirec-output" / "ray_results").glob("sweep-*/driver.log"))  # beside Tune's results
    assert "Configuration for experiment" in tune_log.read_text()
    summary = json.loads((tmp_path / "padirec-output" / "summary.json").read_text())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(summary["backbone_run_id"]).info.status == "FINISHED"
    sweep = client.get_run(summary["sweep_run_id"])
    assert sweep.data.tags[DATASET_SHA256_TAG] == summary["dataset"]["sha256"]
    assert summary["dataset"]["rows"] == 5 * 1 * 2  # grid 0.25 x seed 0 x 2 kept epochs
    assert str(client.get_model_version_by_alias("padirec-dit", "champion").version) == summary["generator"]["version"]
    # the default chain aligns the generator (APA) and registers the aligned checkpoint
    assert summary["generator"]["checkpoint_path"].endswith(ALIGNED_FILE)
    assert "preference_loss" in client.get_run(summary["generator"]["run_id"]).data.metrics
    assert list(summary["controllability"]) == ["Retrain", "Soup", "MMR", "DPP", "CMR", "PHN", "YOTO", "Hypernetwork",
                                                "PaDiRec"]
    assert (tmp_path / "padirec-output" / "report" / "controllability.png").exists()
    report = client.get_run(summary["report_run_id"])
    assert report.data.tags[STAGE_TAG] == "report"
    version = f"padirec-dit/{summary['generator']['version']}"  # lineage: from the model version to its reports
    assert (report.data.tags[GENERATOR_RUN_TAG], report.data.tags[BACKBONE_RUN_TAG]) == (
        summary["generator"]["run_id"], summary["backbone_run_id"])
    found = client.search_runs([report.info.experiment_id], f"tags.`{MODEL_VERSION_TAG}` = '{version}'")
    assert [r.info.run_id for r in found] == [report.info.run_id]
    assert {"padirec_avg_hv", "padirec_r_a", "retrain_avg_hv", "response_padirec_measured_seconds"} <= set(
        report.data.metrics)
    assert {a.path for a in client.list_artifacts(report.info.run_id, "report")} >= {
        f"report/{name}" for name in ("controllability.md", "controllability.png", "curves.csv", "table1.csv")}


def test_pipeline_deploy_serves_the_version_it_registered(monkeypatch):
    summary = {"generator": {"model_uri": "models:/padirec-dit/7"}}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    app, options = deploy_options(summary)
    assert (app.checkpoint, options.blocking, options.host) == ("models:/padirec-dit/7", True, "127.0.0.1")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    app, options = deploy_options(summary)
    assert (app.checkpoint, options.blocking, options.host) == ("models:/padirec-dit/7", False, "0.0.0.0")
    assert build_parser().parse_args(["pipeline", "--deploy"]).deploy


CONSOLE_DEMO = """
import sys, time
from pathlib import Path
from padirec.console import Console

console = Console(2, Path(sys.argv[1]), sys.argv[2])
with console.stage("first", "first stage") as said:
    print("step 1 of 3: reading", flush=True)
    time.sleep(1.5)
    said.text = "made 3 things"
with console.stage("second", "second stage") as said:
    said.text = "made nothing"
"""


@pytest.mark.parametrize("mode", ["bar", "quiet", "verbose"])
def test_console_shows_one_line_per_stage_and_keeps_the_stage_output_in_its_log(tmp_path, mode):
    """On a terminal (a pty here): "bar" follows the stage's log on a live line, "quiet" does not, "verbose"
    streams everything and keeps no logs."""
    import pty

    main_fd, child_fd = pty.openpty()
    done = subprocess.run([sys.executable, "-c", CONSOLE_DEMO, str(tmp_path / "logs"), mode], stdin=child_fd,
                          stdout=child_fd, stderr=child_fd, timeout=60)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the pty is closed once the child is gone and everything is read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    shown = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, shown
    if mode == "verbose":
        assert "== 1/2 first stage" in shown and "step 1 of 3: reading" in shown
        assert not (tmp_path / "logs").exists()
        return
    assert "[1/2] first stage: made 3 things (" in shown and "[2/2] second stage: made nothing (" in shown
    assert (tmp_path / "logs" / "1-first.log").read_text() == "step 1 of 3: reading\n"
    # the stage's own output reaches the terminal only on the live line of "bar"
    assert ("step 1 of 3: reading" in shown) == (mode == "bar")


def test_the_pipeline_trains_adapters_on_the_measured_defaults_and_keeps_them_for_more_objectives():
    """Two objectives: the top-10 diversity term, Tchebycheff and the even map, the last 2 epochs kept for a 300-epoch
    DiT whose w is jittered by half the grid's step (BENCHMARKS §7); more: the losses divided by their initial values
    on the weighted sum, 5 kept epochs and a 120-epoch DiT without jitter (BENCHMARKS §13), unless a file or flag
    says otherwise."""
    from padirec.pipeline import pipeline_config

    two = pipeline_config().adapter
    assert (two.diversity_topk, two.scalarization, two.objective_scale, two.calibration_epochs()) == (
        10, "tchebycheff", "even", two.epochs)
    assert (two.map_seeds, two.map_refinements, two.map_ends, two.accuracy_loss) == (2, 1, "efficient", "bce")
    assert (two.keep_last, pipeline_config().dit_train.epochs) == (2, 300)  # the generator learns the last 2 epochs
    assert pipeline_config().dit_train.cond_jitter == 0.05  # half the 0.1 grid's step: w between the swept ones
    finer = pipeline_config(None, {"sweep": {"grid_step": 0.05}})
    assert finer.dit_train.cond_jitter == 0.025  # a finer grid: half its step, not the neighbours' weights
    given_jitter = pipeline_config(None, {"sweep": {"grid_step": 0.05}}, {"dit_train": {"cond_jitter": 0.1}})
    assert given_jitter.dit_train.cond_jitter == 0.1
    given = pipeline_config(None, {"adapter": {"objectives": "accuracy,diversity,fairness"}})
    three = given.adapter
    assert (three.objective_scale, three.scalarization, three.diversity_topk) == ("initial", "linear", 0)
    assert (three.keep_last, given.dit_train.epochs, given.dit_train.dit.hidden) == (5, 120, 128)  # as measured
    assert given.dit_train.cond_jitter == 0.0
    chosen = pipeline_config(None, {"adapter": {"objectives": ["accuracy", "diversity", "novelty"],
                                                "objective_scale": "even", "scalarization": "tchebycheff",
                                                "diversity_topk": 10}}).adapter
    assert (chosen.objective_scale, chosen.scalarization, chosen.diversity_topk) == ("even", "tchebycheff", 10)


def test_the_cluster_config_writes_out_the_pipelines_adapter_objective():
    """`cluster/pipeline.yaml` says in full what the adapters train on; it must not drift from the defaults."""
    from pathlib import Path

    import yaml

    from padirec.pipeline import pipeline_config
    from padirec.training import OBJECTIVE_FIELDS, AdapterConfig

    written = yaml.safe_load((Path(__file__).parents[1] / "cluster" / "pipeline.yaml").read_text())["adapter"]
    default = pipeline_config().adapter
    assert {k: written.get(k, getattr(AdapterConfig(), k)) for k in OBJECTIVE_FIELDS} == {
        k: getattr(default, k) for k in OBJECTIVE_FIELDS}
