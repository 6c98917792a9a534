"""The adapter sweep for real: a local Ray cluster, Tune trials, an MLflow store in a temp dir."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.cli import main
from padirec.contracts.dataset import dataset_arrays, read_dataset
from padirec.contracts.names import ADAPTER_SHA256_TAG, EXAMPLE_KEY_TAG, STAGE_TAG
from padirec.sweep import SweepConfig, gather, pack_blocks, retrain_curve, run_sweep, simplex_grid
from padirec.sweep.calibration import ray_pilots, split_runs
from padirec.sweep.grid import example_key
from padirec.sweep.run import adapter_experiment_id, logged_children
from padirec.training import AdapterConfig

SYNTHETIC = ["--dataset", "synthetic"]


def test_simplex_grid_and_packing():
    grid = simplex_grid(0.05)
    assert grid.shape == (21, 2) and np.allclose(grid.sum(1), 1) and grid[0].tolist() == [0.0, 1.0]
    assert simplex_grid(0.5, 3).shape == (6, 3)
    blocks = pack_blocks(grid, [0, 1], 8)
    assert [len(b.weights) for b in blocks] == [8, 8, 5, 8, 8, 5]
    assert Counter(w for b in blocks for w in b.weights) == Counter({tuple(map(float, w)): 2 for w in grid})
    with pytest.raises(ValueError, match="divide"):
        simplex_grid(0.3)


def pretrain_tiny_backbone() -> str:
    main(["pretrain", *SYNTHETIC, "--epochs", "2", "--quiet"])
    runs = mlflow.search_runs(experiment_names=["padirec"], filter_string="tags.`padirec.stage` = 'backbone'")
    return runs.iloc[0]["run_id"]


def sha_matches(client: MlflowClient, run) -> bool:
    path = tracking.download(run.info.run_id, "adapter/adapter.npy")
    return tracking.sha256_file(path) == run.data.tags[ADAPTER_SHA256_TAG]


def test_sweep_logs_one_run_per_adapter_and_gathers_them(mlflow_store, ray_cluster, tmp_path, capfd):
    backbone_run = pretrain_tiny_backbone()
    config = SweepConfig(backbone_run_id=backbone_run, grid_step=0.25, seeds=[0, 1], pack_size=3,
                         storage_path=str(tmp_path / "ray_results"), adapter=AdapterConfig(epochs=3, keep_last=2))
    capfd.readouterr()
    summary = run_sweep(config, progress=False)
    # without progress, Tune's own printing goes to a log beside its results, not to the console
    assert "Configuration for experiment" not in capfd.readouterr().out
    assert "Configuration for experiment" in next((tmp_path / "ray_results").glob("*/driver.log")).read_text()
    expected = 5 * 2 * 2  # grid x seeds x kept epochs
    assert summary.adapters == summary.expected == expected

    client = MlflowClient(mlflow_store)
    parent = client.get_run(summary.parent_run_id)
    adapters = client.get_experiment_by_name("padirec-adapters").experiment_id
    assert adapter_experiment_id(parent) == adapters != parent.info.experiment_id
    children = logged_children(client, adapters, parent.info.run_id)
    assert len(children) == expected
    assert all(sha_matches(client, run) for run in children.values())
    all_children = client.search_runs([adapters], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(all_children) == expected  # no duplicates hidden behind the key map
    # the sweep's own experiment keeps only stage runs: the UI lists them on its first page
    assert {r.data.tags[STAGE_TAG] for r in client.search_runs([parent.info.experiment_id])} == {"backbone", "sweep"}

    manifest = gather(parent.info.run_id, str(tmp_path / "dataset"))
    table, metadata = read_dataset(manifest["path"])
    assert manifest["rows"] == table.num_rows == expected
    assert table.schema.field("params").type.list_size == 1096
    assert [s["name"] for s in metadata["layout"]] == ["down.weight", "down.bias", "up.weight", "up.bias"]
    assert len(metadata["normalizer"]["mean"]) == len(metadata["normalizer"]["std"]) == 4
    arrays = dataset_arrays(table)
    assert sorted(set(arrays["seed"])) == [0, 1] and set(arrays["epoch"]) <= {0, 1, 2}
    assert float(parent.data.params["scale.accuracy"]) > 0 and float(parent.data.params["scale.diversity"]) > 0
    assert np.isfinite(arrays["params"]).all()
    # gathering twice gives the same file
    again = gather(parent.info.run_id, str(tmp_path / "dataset2"))
    assert again["sha256"] == manifest["sha256"]
    assert pq.read_metadata(again["path"]).num_rows == expected
    curve = retrain_curve(arrays, tasks=np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert curve["w_acc"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and (curve["n"] == 2).all()
    # each trial reported every epoch to Tune before its final counts: progress shows while it trains
    progress = sorted((tmp_path / "ray_results").rglob("progress.csv"))
    assert len(progress) == len(config.blocks())
    finals = []
    for path in progress:
        rows = pd.read_csv(path)
        assert rows["epochs_done"].tolist()[:3] == [1, 2, 3] and (rows["eta_s"].iloc[:3] >= 0).all()
        # the last 2 of 3 epochs are kept: none after the first epoch, all of them (then logged) after the third
        assert rows["adapters_kept"].iloc[0] == 0 < rows["adapters_kept"].iloc[1] < rows["adapters_kept"].iloc[2]
        assert rows["adapters_kept"].iloc[2] == rows["adapters_logged"].iloc[-1] and "val_utility" in rows
        finals.append(rows["adapters_logged"].iloc[-1])
    assert sum(finals) == expected
    history = client.get_metric_history(parent.info.run_id, "epochs_done.block_0")
    assert [m.value for m in history] == [1, 2, 3]


@pytest.fixture
def shutdown_ray():
    """For a test whose `padirec` command starts Ray in this process (`init_ray`): shut it down after the test."""
    import ray

    try:
        yield
    finally:
        ray.shutdown()


def test_the_calibration_spreads_the_pilot_runs_in_pieces_over_the_cluster():
    runs = [(np.zeros((17, 2)), None), (np.zeros((17, 2)), None)]
    assert [len(p) for p in split_runs(runs, slots=2)] == [1, 1]  # one task per seed on two CPUs
    assert [[len(x) for x in p] for p in split_runs(runs, slots=8)] == [[5, 4, 4, 4], [5, 4, 4, 4]]
    assert [len(x) for x in split_runs([(np.zeros((9, 2)), None)], slots=8)[0]] == [3, 3, 3]  # ≥ 3 weights each
    assert [len(p) for p in split_runs(runs, slots=1)] == [1, 1]


def test_the_calibration_on_ray_tasks_draws_the_map_a_local_run_draws(mlflow_store, ray_cluster, capsys):
    """The sweep trains the even map's pilots as Ray tasks, each run split over the CPUs: the map is the same, and
    each finished piece says so (a round takes minutes on a large catalogue)."""
    from padirec.config import DataSpec, load_data
    from padirec.contracts.artifacts import resolve_backbone_file
    from padirec.models import load_backbone
    from padirec.training import calibrate

    backbone_run = pretrain_tiny_backbone()
    backbone, extra = load_backbone(resolve_backbone_file(backbone_run))
    spec = DataSpec(**extra["data"])
    config = AdapterConfig(epochs=2, keep_last=1, objective_scale="even", scalarization="tchebycheff", scale_epochs=0,
                           map_seeds=2, map_refinements=1, map_ends="efficient", diversity_topk=5)
    here = calibrate(backbone, load_data(spec), config)
    capsys.readouterr()
    spread = calibrate(backbone, load_data(spec), config, run_pilots=ray_pilots(backbone_run, spec, 1.0, True),
                       progress=True)
    said = capsys.readouterr().out
    assert "calibrate: 1/" in said and " pilot pieces trained (" in said
    assert len(here.weight_map) == len(spread.weight_map) == 11
    np.testing.assert_allclose(spread.weight_map, here.weight_map, atol=1e-3)
    assert spread.scales == here.scales and spread.ideal == here.ideal


def test_interrupted_sweep_resumes_without_losing_or_duplicating(mlflow_store, shutdown_ray, tmp_path):
    backbone_run = pretrain_tiny_backbone()
    client = MlflowClient(mlflow_store)
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    common = ["--max-concurrent-trials", "1", "--storage-path", str(tmp_path / "ray_results"), "--quiet"]
    log = tmp_path / "sweep-subprocess.log"  # a file, not a pipe: nothing reads a pipe while the sweep runs

    def log_tail() -> str:
        return log.read_text(errors="replace")[-3000:]

    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "padirec.cli", "sweep", "--backbone-run", backbone_run, "--grid-step", "0.5",
             "--pack-size", "1", "--epochs", "2", "--keep-last", "2", *common],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        parent_id = None
        while time.time() < deadline:  # interrupt (Ctrl-C) once some but not all adapters are logged
            sweeps = mlflow.search_runs(experiment_names=["padirec"], filter_string="tags.`padirec.stage` = 'sweep'")
            if len(sweeps):
                parent_id = sweeps.iloc[0]["run_id"]
                experiment_id = adapter_experiment_id(client.get_run(parent_id))
                if 2 <= len(logged_children(client, experiment_id, parent_id)) < 6:
                    break
            assert process.poll() is None, log_tail()
            time.sleep(0.5)
        else:
            pytest.fail(f"sweep did not log adapters in time\n{log_tail()}")
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sweep still running 120 s after SIGINT\n{log_tail()}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    partial = len(logged_children(client, experiment_id, parent_id))
    assert 2 <= partial < 6
    # what a trial SIGKILLed while logging leaves: a child run that stays RUNNING
    stuck = client.create_run(experiment_id, run_name="killed", tags={
        "mlflow.parentRunId": parent_id, EXAMPLE_KEY_TAG: example_key([0.0, 1.0], 0, "epoch=1")}).info.run_id

    main(["sweep", "--resume", parent_id, *common])
    assert client.get_run(stuck).info.status == "FAILED"
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    keys = Counter(r.data.tags[EXAMPLE_KEY_TAG] for r in finished)
    assert len(keys) == 3 * 2 and set(keys.values()) == {1}  # complete, and no key logged twice
    assert gather(parent_id)["rows"] == 6


def test_sweeps_logged_before_the_adapter_experiment_tag_find_their_adapters_beside_them(mlflow_store):
    client = MlflowClient(mlflow_store)
    experiment_id = tracking.ensure_experiment("padirec")
    old_sweep = client.get_run(client.create_run(experiment_id, tags={STAGE_TAG: "sweep"}).info.run_id)
    assert adapter_experiment_id(old_sweep) == experiment_id
