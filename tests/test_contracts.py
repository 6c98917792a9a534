"""The contracts between stages: the generator checkpoint's format check, the dataset schema and its reader,
adapter artifacts with their sha256, one resolver for backbone and generator references, old tag names."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from support import dataset_row, write_dataset

from padirec import tracking
from padirec.contracts.artifacts import (
    generator_lineage,
    load_adapter,
    log_adapter,
    log_checked_file,
    resolve_backbone_file,
    resolve_generator_file,
)
from padirec.contracts.checkpoint import VERSION, GeneratorCheckpoint, load_checkpoint, save_checkpoint
from padirec.contracts.dataset import EXTRA_METRIC_COLUMNS, OPTIONAL, SCHEMA, dataset_arrays, read_dataset
from padirec.contracts.names import (
    ADAPTER_SHA256_TAG,
    BACKBONE_ARTIFACT,
    BACKBONE_DIR,
    BACKBONE_SHA256_TAG,
    CHECKPOINT_ARTIFACT,
    GENERATOR_RUN_TAG,
    SWEEP_RUN_TAG,
    tag,
)
from padirec.models import N_PARAMS, BackboneConfig, build_backbone, save_backbone
from padirec.runtime import storage_uri


def tiny_checkpoint(**changes) -> GeneratorCheckpoint:
    checkpoint = GeneratorCheckpoint(
        dit_config={"cond_dim": 2}, schedule_config={"steps": 10}, train_config={"prediction": "v"},
        normalizer={}, model={"w": torch.zeros(2)}, ema={"module": {"w": torch.zeros(2)}}, optimizer={},
        epoch=3, dataset_sha256="abc", dataset_rows=4, sweep_run_id="s", backbone_run_id="b")
    return replace(checkpoint, **changes)


def test_checkpoint_round_trips_and_refuses_foreign_or_other_version_files(tmp_path):
    path = save_checkpoint(tiny_checkpoint(), tmp_path / "dit.pt")
    loaded = load_checkpoint(path)
    assert (loaded.epoch, loaded.prediction, loaded.lineage()) == (3, "v", {
        "dataset_sha256": "abc", "sweep_run_id": "s", "backbone_run_id": "b"})
    assert torch.equal(loaded.ema["module"]["w"], torch.zeros(2)) and loaded.preference is None

    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")  # a backbone, say
    with pytest.raises(ValueError, match="foreign.pt is not a PaDiRec generator checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({**tiny_checkpoint().to_dict(), "version": VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=f"format version {VERSION + 1}.*retrain"):
        load_checkpoint(tmp_path / "newer.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match="text.pt is not a PaDiRec generator checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    first_release = {k: v for k, v in tiny_checkpoint().to_dict().items() if k != "version"} | {"format": 1}
    torch.save(first_release, tmp_path / "old.pt")  # what the first release wrote: same fields, format=1
    assert load_checkpoint(tmp_path / "old.pt").epoch == 3
    torch.save({"format": "padirec.generator", "version": VERSION, "epoch": 1}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="lacks .*dit_config"):
        load_checkpoint(tmp_path / "partial.pt")


def test_dataset_reader_checks_schema_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = write_dataset([dataset_row(w, rng.normal(size=N_PARAMS)) for w in (0.0, 1.0)], tmp_path / "ok")
    table, metadata = read_dataset(path)
    expected = SCHEMA
    for name, kind in OPTIONAL.items():
        expected = expected.append(pa.field(name, kind))
    for name in ("w_accuracy", "w_diversity"):  # one weight column per objective, beside the list `w`
        expected = expected.append(pa.field(name, pa.float32()))
    assert table.schema.remove_metadata() == expected
    assert table.column("w_accuracy").to_pylist() == [0.0, 1.0]
    assert dataset_arrays(table)["params"].shape == (2, N_PARAMS)
    older = table.drop_columns(["slot", *EXTRA_METRIC_COLUMNS])  # written before the slot and further metrics
    pq.write_table(older, tmp_path / "older.parquet")
    assert read_dataset(tmp_path / "older.parquet")[0].column("slot").to_pylist() == ["", ""]
    assert np.isnan(dataset_arrays(read_dataset(tmp_path / "older.parquet")[0])["test_ndcg_gap10"]).all()

    bad = table.drop_columns(["epoch"])
    pq.write_table(bad, tmp_path / "no-epoch.parquet")
    with pytest.raises(ValueError, match="no-epoch.parquet: not a gathered adapter dataset: missing columns epoch"):
        read_dataset(tmp_path / "no-epoch.parquet")
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "bare.parquet")
    with pytest.raises(ValueError, match="bare.parquet: no PaDiRec metadata"):
        read_dataset(tmp_path / "bare.parquet")
    other = {**metadata, "layout": metadata["layout"][:2]}
    pq.write_table(table.replace_schema_metadata({b"padirec": json.dumps(other)}), tmp_path / "layout.parquet")
    with pytest.raises(ValueError, match="layout.parquet: adapter layout"):
        read_dataset(tmp_path / "layout.parquet")
    (tmp_path / "junk.parquet").write_text("x")
    with pytest.raises(ValueError, match="junk.parquet: not a Parquet file"):
        read_dataset(tmp_path / "junk.parquet")
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_dataset(tmp_path / "missing.parquet")


def test_adapter_artifact_is_checked_and_references_resolve(mlflow_store, tmp_path):
    adapter = np.arange(N_PARAMS, dtype=np.float32)
    backbone = build_backbone(BackboneConfig(n_items=5, max_len=4))
    save_backbone(backbone, tmp_path / "backbone.pt")
    with tracking.start_run("adapter") as run:
        digest = log_adapter(adapter)
        mlflow.log_artifact(str(tmp_path / "backbone.pt"), BACKBONE_DIR)
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.tags[ADAPTER_SHA256_TAG] == digest
    np.testing.assert_array_equal(load_adapter(logged), adapter)
    mlflow.MlflowClient().set_tag(run.info.run_id, ADAPTER_SHA256_TAG, "0" * 64)
    with pytest.raises(ValueError, match="fails its sha256 check"):
        load_adapter(mlflow.get_run(run.info.run_id))

    for reference in (tmp_path / "backbone.pt", tmp_path, run.info.run_id, f"runs:/{run.info.run_id}/backbone"):
        assert resolve_backbone_file(reference).name == "backbone.pt", reference
    with pytest.raises(FileNotFoundError, match="neither a file nor an MLflow run"):
        resolve_backbone_file("0123456789abcdef")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_generator_file(tmp_path / "nowhere" / "dit.pt")
    save_checkpoint(tiny_checkpoint(), tmp_path / "run" / "dit.pt")
    save_checkpoint(tiny_checkpoint(epoch=4), tmp_path / "run" / "dit-aligned.pt")
    assert resolve_generator_file(tmp_path / "run").name == "dit-aligned.pt"  # a run directory: aligned first


def test_backbone_and_checkpoint_downloads_are_checked_against_their_logged_sha256(mlflow_store, tmp_path):
    from urllib.parse import urlparse

    save_backbone(build_backbone(BackboneConfig(n_items=5, max_len=4)), tmp_path / "backbone.pt")
    save_checkpoint(tiny_checkpoint(), tmp_path / "dit.pt")
    with tracking.start_run("stage") as run:
        digest = log_checked_file(tmp_path / "backbone.pt", BACKBONE_ARTIFACT)
        log_checked_file(tmp_path / "dit.pt", CHECKPOINT_ARTIFACT)
    run_id = run.info.run_id
    assert mlflow.get_run(run_id).data.tags[BACKBONE_SHA256_TAG] == digest == tracking.sha256_file(
        tmp_path / "backbone.pt")
    for reference in (run_id, f"runs:/{run_id}/backbone"):
        assert resolve_backbone_file(reference).read_bytes() == (tmp_path / "backbone.pt").read_bytes()
    for reference in (run_id, f"runs:/{run_id}/checkpoint/dit.pt"):  # models:/ in test_diffusion_train
        assert resolve_generator_file(reference).read_bytes() == (tmp_path / "dit.pt").read_bytes()

    store = Path(urlparse(run.info.artifact_uri).path)
    (store / BACKBONE_ARTIFACT).write_bytes(b"not the logged backbone")
    (store / CHECKPOINT_ARTIFACT).write_bytes(b"not the logged checkpoint")
    for reference in (run_id, f"runs:/{run_id}/backbone"):
        with pytest.raises(ValueError, match=f"backbone backbone.pt of run {run_id} fails its sha256 check"):
            resolve_backbone_file(reference)
    with pytest.raises(ValueError, match="generator checkpoint dit.pt of run .* fails its sha256 check"):
        resolve_generator_file(run_id)
    with pytest.raises(ValueError, match="must be named backbone.pt"):
        log_checked_file(tmp_path / "dit.pt", BACKBONE_ARTIFACT)
    # lineage of a report: a run id names its run (models:/ and its version: test_pipeline); a file names none
    assert generator_lineage(run_id) == generator_lineage(f"runs:/{run_id}/checkpoint") == {GENERATOR_RUN_TAG: run_id}
    assert generator_lineage(tmp_path / "dit.pt") == {}


def test_downloaded_copies_are_removed_when_their_process_exits(mlflow_store, tmp_path):
    import subprocess
    import sys

    save_backbone(build_backbone(BackboneConfig(n_items=5, max_len=4)), tmp_path / "backbone.pt")
    with tracking.start_run("stage") as run:
        log_checked_file(tmp_path / "backbone.pt", BACKBONE_ARTIFACT)
    code = ("import sys; from padirec.contracts.artifacts import resolve_backbone_file; "
            "path = resolve_backbone_file(sys.argv[1]); assert path.is_file(); print(path)")
    paths = [Path(subprocess.run([sys.executable, "-c", code, run.info.run_id], capture_output=True, text=True,
                                 check=True).stdout.strip()) for _ in range(2)]
    assert paths[0] != paths[1] and all(p.name == "backbone.pt" for p in paths)
    roots = [next(a for a in p.parents if a.name.startswith("padirec-scratch-")) for p in paths]  # one per process
    assert roots[0] != roots[1] and not any(p.exists() or root.exists() for p, root in zip(paths, roots))


def test_tags_fall_back_to_their_names_before_the_prefix():
    assert tag({"sweep_run_id": "old"}, SWEEP_RUN_TAG) == "old"
    assert tag({"sweep_run_id": "old", SWEEP_RUN_TAG: "new"}, SWEEP_RUN_TAG) == "new"
    assert tag({}, SWEEP_RUN_TAG) == ""


def test_storage_uri_keeps_uris_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage_uri("s3://bucket/results") == "s3://bucket/results"
    assert storage_uri("runs") == str(tmp_path / "runs") and storage_uri(None) == str(tmp_path / "ray_results")
