"""Gather a sweep's child runs into one Parquet dataset: the diffusion model's training set.

Rows are sorted by (w, seed, epoch) and the file carries the adapter layout and per-tensor
mean/std in its metadata, so gathering twice writes the same bytes (same sha256).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.diffusion.objective import ParamNormalizer
from padirec.models import N_PARAMS, layout_dict
from padirec.sweep.run import logged_children

DATASET_ARTIFACT = "dataset"
DATASET_FILE = "adapters.parquet"
MAX_ABS_PARAM = 1e3  # adapters beyond this are treated as diverged and dropped


def adapter_table(rows: list[dict]) -> pa.Table:
    """The dataset schema: w list<float32>, seed, epoch, params fixed_size_list<float32, 1096>, metrics, ids."""
    params = np.stack([r["params"] for r in rows]).astype(np.float32)
    columns = {
        "w": pa.array([r["w"] for r in rows], type=pa.list_(pa.float32())),
        "seed": pa.array([r["seed"] for r in rows], type=pa.int64()),
        "epoch": pa.array([r["epoch"] for r in rows], type=pa.int64()),
        "params": pa.FixedSizeListArray.from_arrays(pa.array(params.reshape(-1)), N_PARAMS),
    }
    for name in ("ndcg10", "alpha_ndcg10", "test_ndcg10", "test_alpha_ndcg10"):
        columns[name] = pa.array([r[name] for r in rows], type=pa.float32())
    columns["backbone_run_id"] = pa.array([r["backbone_run_id"] for r in rows], type=pa.string())
    columns["run_id"] = pa.array([r["run_id"] for r in rows], type=pa.string())
    return pa.table(columns)


def write_dataset(rows: list[dict], out_dir: str | Path, sweep_run_id: str = "", dropped: list[str] = ()) -> dict:
    """Rows (sorted by w, seed, epoch) → `adapters.parquet` with layout + normaliser metadata, and its manifest."""
    rows = sorted(rows, key=lambda r: (list(r["w"]), r["seed"], r["epoch"]))
    params = np.stack([r["params"] for r in rows])
    normalizer = ParamNormalizer.fit(torch.as_tensor(params)).to_dict()  # per-tensor mean/std (+ range)
    metadata = {"layout": layout_dict(), "normalizer": normalizer, "sweep_run_id": sweep_run_id,
                "objectives": ["accuracy", "diversity"], "dropped": list(dropped)}
    table = adapter_table(rows).replace_schema_metadata({"padirec": json.dumps(metadata, sort_keys=True)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DATASET_FILE
    pq.write_table(table, path, compression="zstd")
    manifest = {"rows": len(rows), "sha256": tracking.sha256_file(path), "file": DATASET_FILE,
                "sweep_run_id": sweep_run_id, "dropped": len(dropped), "columns": table.column_names,
                "weights": len({tuple(r["w"]) for r in rows}),
                "seeds": sorted({r["seed"] for r in rows}), "epochs": sorted({r["epoch"] for r in rows})}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return {**manifest, "path": str(path)}


def gather(parent_run_id: str, output: str | None = None, log: bool = True) -> dict:
    """Collect the sweep's adapters (sha256 verified) into Parquet + a manifest, logged to the parent run."""
    uri = tracking.setup()
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    children = logged_children(client, parent.info.experiment_id, parent_run_id)
    if not children:
        raise ValueError(f"sweep {parent_run_id} has no finished adapter runs to gather")
    rows, dropped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key, run in sorted(children.items()):
            path = tracking.download(run.info.run_id, "adapter/adapter.npy", f"{tmp}/{run.info.run_id}")
            digest = tracking.sha256_file(path)
            if digest != run.data.tags.get("adapter_sha256"):
                raise ValueError(f"adapter of run {run.info.run_id} ({key}) fails its sha256 check")
            params = np.load(path).astype(np.float32)
            if params.shape != (N_PARAMS,) or not np.isfinite(params).all() or np.abs(params).max() > MAX_ABS_PARAM:
                dropped.append(key)
                continue
            p, m = run.data.params, run.data.metrics
            n_objectives = sum(1 for name in p if name.startswith("w_"))
            rows.append({
                "w": [float(p[f"w_{i}"]) for i in range(n_objectives)], "seed": int(p["seed"]),
                "epoch": int(p["epoch"]), "params": params,
                "ndcg10": m.get("val_ndcg10", np.nan), "alpha_ndcg10": m.get("val_alpha_ndcg10", np.nan),
                "test_ndcg10": m.get("test_ndcg10", np.nan), "test_alpha_ndcg10": m.get("test_alpha_ndcg10", np.nan),
                "backbone_run_id": p.get("backbone_run_id", ""), "run_id": run.info.run_id,
            })
    out_dir = Path(output) if output else Path(tempfile.mkdtemp(prefix="padirec-dataset-"))
    manifest = write_dataset(rows, out_dir, parent_run_id, dropped)
    path = Path(manifest["path"])
    if log:
        client.log_artifact(parent_run_id, str(path), DATASET_ARTIFACT)
        client.log_artifact(parent_run_id, str(out_dir / "manifest.json"), DATASET_ARTIFACT)
        client.set_tag(parent_run_id, "dataset_sha256", manifest["sha256"])
        client.log_metric(parent_run_id, "dataset_rows", len(rows))
    print(f"gathered {len(rows)} adapters ({len(dropped)} dropped) into {path} sha256={manifest['sha256'][:12]}")
    return manifest


def read_dataset(path: str | Path) -> tuple[pa.Table, dict]:
    """The gathered table and its PaDiRec metadata (layout, tensor stats, sweep run)."""
    table = pq.read_table(path)
    metadata = json.loads(table.schema.metadata[b"padirec"])
    return table, metadata


def dataset_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """w [N, p], params [N, 1096] and metric columns as numpy arrays."""
    params = table.column("params").combine_chunks()
    arrays = {"params": params.values.to_numpy().reshape(len(table), N_PARAMS),
              "w": np.array(table.column("w").to_pylist(), dtype=np.float32)}
    for name in ("seed", "epoch", "ndcg10", "alpha_ndcg10", "test_ndcg10", "test_alpha_ndcg10"):
        arrays[name] = table.column(name).to_numpy()
    return arrays


def download_dataset(parent_run_id: str, dst: str | None = None) -> Path:
    """Local path of a sweep's gathered Parquet file."""
    tracking.setup()
    return tracking.download(parent_run_id, f"{DATASET_ARTIFACT}/{DATASET_FILE}", dst)

