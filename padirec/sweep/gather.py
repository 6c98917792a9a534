"""Gather a sweep's child runs into one Parquet dataset: the generator's training set (`contracts.dataset`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.contracts.artifacts import load_adapter
from padirec.contracts.dataset import EXTRA_METRIC_COLUMNS, METRIC_COLUMNS, dataset_objectives, write_dataset
from padirec.contracts.names import DATASET_DIR, DATASET_SHA256_TAG, MANIFEST_FILE, OBJECTIVES_TAG
from padirec.models import N_PARAMS
from padirec.sweep.run import adapter_experiment_id, logged_children

MAX_ABS_PARAM = 1e3  # adapters beyond this are treated as diverged and dropped


def gather(parent_run_id: str, output: str | None = None, log: bool = True) -> dict:
    """Collect the sweep's adapters (sha256 verified) into Parquet + a manifest, logged to the parent run.
    Returns the manifest (with the local `path` of the Parquet file)."""
    uri = tracking.setup()
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    children = logged_children(client, adapter_experiment_id(parent), parent_run_id)
    if not children:
        raise ValueError(f"sweep {parent_run_id} has no finished adapter runs to gather")
    recorded = [name for name in parent.data.tags.get(OBJECTIVES_TAG, "").split(",") if name]
    objectives = dataset_objectives({"objectives": recorded})
    rows, dropped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key, run in sorted(children.items()):
            params = load_adapter(run, f"{tmp}/{run.info.run_id}")
            if params.shape != (N_PARAMS,) or not np.isfinite(params).all() or np.abs(params).max() > MAX_ABS_PARAM:
                dropped.append(key)
                continue
            p, m = run.data.params, run.data.metrics
            n_objectives = sum(1 for name in p if name.startswith("w_"))
            rows.append({
                "w": [float(p[f"w_{i}"]) for i in range(n_objectives)], "seed": int(p["seed"]),
                "epoch": int(p["epoch"]), "params": params,
                # the run logs validation metrics as val_<metric>; the dataset's columns are <metric>, test_<metric>
                **{c: m.get(c if c.startswith("test_") else f"val_{c}", np.nan)
                   for c in (*METRIC_COLUMNS, *EXTRA_METRIC_COLUMNS)},
                "backbone_run_id": p.get("backbone_run_id", ""), "run_id": run.info.run_id, "slot": p.get("slot", ""),
            })
    out_dir = Path(output) if output else Path(tempfile.mkdtemp(prefix="padirec-dataset-"))
    manifest = write_dataset(rows, out_dir, parent_run_id, dropped, objectives)
    path = Path(manifest["path"])
    if log:
        client.log_artifact(parent_run_id, str(path), DATASET_DIR)
        client.log_artifact(parent_run_id, str(out_dir / MANIFEST_FILE), DATASET_DIR)
        client.set_tag(parent_run_id, DATASET_SHA256_TAG, manifest["sha256"])
        client.log_metric(parent_run_id, "dataset_rows", len(rows))
    print(f"gathered {len(rows)} adapters ({len(dropped)} dropped) into {path} sha256={manifest['sha256'][:12]}")
    return manifest
