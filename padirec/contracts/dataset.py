"""The gathered adapter dataset (`adapters.parquet` + `manifest.json`): what the sweep's gather writes and the
generator, the baselines and the report read. One schema, one writer, one reader that validates.

Rows are sorted by (w, seed, epoch) and the file carries the adapter layout and the per-tensor normaliser in
its metadata, so gathering twice writes the same bytes (same sha256).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from padirec import tracking
from padirec.contracts.names import DATASET_ARTIFACT, DATASET_FILE, MANIFEST_ARTIFACT, MANIFEST_FILE
from padirec.models import N_PARAMS, ParamNormalizer, layout_dict
from padirec.objectives import OBJECTIVES, REGISTRY, metric_keys

METRIC_COLUMNS = ("ndcg10", "alpha_ndcg10", "test_ndcg10", "test_alpha_ndcg10")  # validation, then test
# the further objectives' metrics (validation, then test): NaN where the sweep did not measure them
EXTRA_METRIC_COLUMNS = tuple(f"{prefix}{o.metric}" for prefix in ("", "test_") for o in REGISTRY.values()
                             if o.name not in OBJECTIVES)
SCHEMA = pa.schema([
    ("w", pa.list_(pa.float32())),
    ("seed", pa.int64()),
    ("epoch", pa.int64()),
    ("params", pa.list_(pa.float32(), N_PARAMS)),
    *[(name, pa.float32()) for name in METRIC_COLUMNS],
    ("backbone_run_id", pa.string()),
    ("run_id", pa.string()),
])
# added later: written always, filled with "" (NaN) when an older file lacks them
OPTIONAL = {"slot": pa.string(), **{name: pa.float32() for name in EXTRA_METRIC_COLUMNS}}


def weight_column(objective: str) -> str:
    """The column holding one objective's weight (beside the list column `w`, the generator's condition)."""
    return f"w_{objective}"
METADATA_KEY = b"padirec"


def adapter_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with the schema's names; `params` float32 [1096]) as a table of `SCHEMA`."""
    params = np.stack([r["params"] for r in rows]).astype(np.float32)
    columns = {name: pa.array([r[name] for r in rows], type=SCHEMA.field(name).type)
               for name in SCHEMA.names if name != "params"}
    columns["params"] = pa.FixedSizeListArray.from_arrays(pa.array(params.reshape(-1)), N_PARAMS)
    columns.update({name: pa.array([r.get(name, "" if kind == pa.string() else float("nan")) for r in rows],
                                   type=kind) for name, kind in OPTIONAL.items()})
    return pa.table({name: columns[name] for name in [*SCHEMA.names, *OPTIONAL]})


def write_dataset(rows: list[dict], out_dir: str | os.PathLike, sweep_run_id: str = "", dropped: list[str] = (),
                  objectives: list[str] = OBJECTIVES) -> dict:
    """Rows → `out_dir/adapters.parquet` with layout + normaliser metadata, and `manifest.json` beside it; one
    `w_<objective>` column per objective beside `w`."""
    rows = sorted(rows, key=lambda r: (list(r["w"]), r["seed"], r["epoch"]))
    params = np.stack([r["params"] for r in rows])
    normalizer = ParamNormalizer.fit(torch.as_tensor(params)).to_dict()  # per-tensor mean/std (+ range)
    metadata = {"layout": layout_dict(), "normalizer": normalizer, "sweep_run_id": sweep_run_id,
                "objectives": list(objectives), "dropped": list(dropped)}
    table = adapter_table(rows)
    if rows and len(rows[0]["w"]) != len(objectives):
        raise ValueError(f"rows have {len(rows[0]['w'])} weights, but the objectives are {list(objectives)}")
    for j, name in enumerate(objectives):
        table = table.append_column(weight_column(name), pa.array([r["w"][j] for r in rows], pa.float32()))
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DATASET_FILE
    pq.write_table(table, path, compression="zstd")
    manifest = {"rows": len(rows), "sha256": tracking.sha256_file(path), "file": DATASET_FILE,
                "sweep_run_id": sweep_run_id, "dropped": len(dropped), "columns": table.column_names,
                "weights": len({tuple(r["w"]) for r in rows}),
                "seeds": sorted({r["seed"] for r in rows}), "epochs": sorted({r["epoch"] for r in rows})}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return {**manifest, "path": str(path)}


def read_dataset(path: str | os.PathLike) -> tuple[pa.Table, dict]:
    """The table and its metadata, checked against `SCHEMA` and this build's adapter layout."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"adapter dataset {path} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: not a Parquet file ({err})") from err
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a gathered adapter dataset: missing columns {', '.join(missing)}")
    for name in SCHEMA.names:
        expected, found = SCHEMA.field(name).type, table.schema.field(name).type
        if found != expected:
            raise ValueError(f"{path}: column {name!r} has type {found}, expected {expected}")
    for name, kind in OPTIONAL.items():
        if name not in table.column_names:
            fill = "" if kind == pa.string() else float("nan")
            table = table.append_column(name, pa.array([fill] * table.num_rows, type=kind))
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: no PaDiRec metadata (layout, normaliser): write it with `padirec gather`")
    metadata = json.loads(raw)
    if metadata.get("layout") != layout_dict():
        raise ValueError(f"{path}: adapter layout {metadata.get('layout')} differs from this build's {layout_dict()}")
    return table, metadata


def dataset_params(table: pa.Table) -> np.ndarray:
    """The adapters of a dataset table as float32 `[N, 1096]` (one copy out of Arrow)."""
    return table.column("params").combine_chunks().values.to_numpy().reshape(table.num_rows, N_PARAMS)


def dataset_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """w [N, p], params [N, 1096], seed, epoch and the metric columns as numpy arrays."""
    arrays = {"params": dataset_params(table), "w": np.array(table.column("w").to_pylist(), dtype=np.float32)}
    for name in ("seed", "epoch", *METRIC_COLUMNS, *EXTRA_METRIC_COLUMNS):
        arrays[name] = table.column(name).to_numpy()
    arrays["slot"] = np.array(table.column("slot").to_pylist(), dtype=object)
    return arrays


def dataset_info(path: str | os.PathLike) -> dict:
    """What generator training needs besides the rows: size, digest, condition width, normaliser, lineage."""
    table, metadata = read_dataset(path)
    if table.num_rows == 0:
        raise ValueError(f"{path}: the dataset has no rows")
    backbones = sorted({b for b in table.column("backbone_run_id").to_pylist() if b})
    if len(backbones) > 1:
        raise ValueError(f"{path}: adapters of several backbones ({', '.join(backbones)}) in one dataset")
    params = dataset_params(table)
    return {"path": str(Path(path).resolve()), "sha256": tracking.sha256_file(path), "rows": table.num_rows,
            "cond_dim": len(table.column("w")[0].as_py()), "normalizer": metadata["normalizer"],
            "mean_adapter": params.mean(0, dtype=np.float64).tolist(),  # the mcgln reference adapter
            "sweep_run_id": metadata.get("sweep_run_id", ""), "backbone_run_id": backbones[0] if backbones else "",
            "objectives": dataset_objectives(metadata),  # and (lo, hi) of each one's validation metric (NaN: none)
            "utility_bounds": [v for c in metric_keys(dataset_objectives(metadata))
                               for v in _finite_range(table.column(c).to_numpy())]}


def _finite_range(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    return [float(finite.min()), float(finite.max())] if len(finite) else [float("nan")] * 2


def dataset_objectives(metadata: dict) -> list[str]:
    """The objectives a dataset's w columns are in (files written before they were recorded: the paper's pair)."""
    return list(metadata.get("objectives") or OBJECTIVES)


def dataset_manifest(path: str | os.PathLike) -> dict:
    """The manifest beside the Parquet file, or a minimal one built from the file itself."""
    path = Path(path)
    manifest_path = path.parent / MANIFEST_FILE
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    else:
        info = dataset_info(path)
        manifest = {"rows": info["rows"], "sha256": info["sha256"], "file": path.name,
                    "sweep_run_id": info["sweep_run_id"]}
    return {**manifest, "path": str(path.resolve())}


def download_dataset(sweep_run_id: str, dst: str | os.PathLike | None = None) -> Path:
    """A sweep's gathered Parquet file (and its manifest, where the sweep has one) in a local directory."""
    tracking.setup()
    directory = str(dst) if dst else tracking.scratch_dir("padirec-dataset-")
    try:
        path = tracking.download(sweep_run_id, DATASET_ARTIFACT, directory)
    except Exception as err:  # noqa: BLE001 - MLflow's error for a missing artifact names neither run nor fix
        raise FileNotFoundError(f"sweep {sweep_run_id} has no gathered dataset ({DATASET_ARTIFACT}): run "
                                f"`padirec gather --sweep {sweep_run_id}` ({err})") from err
    try:
        tracking.download(sweep_run_id, MANIFEST_ARTIFACT, directory)
    except Exception:  # noqa: BLE001 - sweeps gathered before manifests existed: dataset_manifest builds one
        pass
    return path
