"""Read + preprocess once, then reuse: `SequenceData` cached as Parquet, keyed by a content fingerprint.

A cache entry is a folder holding `interactions.parquet` (user, item, time rows in sequence order,
with the metadata JSON in the schema metadata), `items.parquet` (item, raw id, multi-hot
categories, title: null when the data has none) and `users.parquet` (user, raw id, group: −1 when unknown or
the data has none). It is written to a
temporary folder and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .dataset import PreprocessConfig, SequenceData, preprocess
from .download import download_movielens
from .errors import DataError
from .readers import KINDS, read_raw
from .synthetic import SyntheticConfig, make_synthetic

log = logging.getLogger(__name__)
FORMAT, VERSION = "padirec.sequence_data", 3  # 2: item titles; 3: user groups
MOVIELENS_MARKER = {"ml-100k": "u.data", "ml-1m": "ratings.dat"}


def fingerprint(paths: list, settings: dict) -> str:
    """sha256 over the bytes of the given files (every file under a directory, sorted) and the settings."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            names = [p.relative_to(path).as_posix() for p in files]
        elif path.is_file():
            files, names = [path], [path.name]
        else:
            raise DataError("file not found", path)
        for file, name in zip(files, names):
            h.update(f"{name}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


# -------------------------------------------------------------------------------------------------
# Parquet round trip


def _raw_ids(ids: np.ndarray | None, n: int) -> tuple[pa.Array, str]:
    if ids is None:
        return pa.nulls(n, pa.string()), "none"
    kind = "int" if ids.dtype.kind in "iu" else "str"
    return pa.array([str(i) for i in ids.tolist()], pa.string()), kind


def _from_raw(column: pa.ChunkedArray, kind: str) -> np.ndarray | None:
    values = column.to_pylist()
    if kind == "none":
        return None
    return np.array([int(v) for v in values], np.int64) if kind == "int" else np.array(values, dtype=object)


def save_sequence_data(data: SequenceData, path: str | os.PathLike) -> Path:
    """Write `data` as a folder of Parquet files (atomically: temporary folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    user_raw, user_kind = _raw_ids(data.user_ids, data.n_users)
    item_raw, item_kind = _raw_ids(data.item_ids, data.n_items + 1)
    meta = {"format": FORMAT, "version": VERSION, "n_users": data.n_users, "n_items": data.n_items,
            "category_names": list(data.category_names), "max_len": data.max_len,
            "user_ids": user_kind, "item_ids": item_kind, "titles": data.item_titles is not None,
            "group_names": data.group_names}
    user_of = np.repeat(np.arange(data.n_users, dtype=np.int64), np.diff(data.seq_offsets))
    interactions = pa.table({"user": user_of, "item": data.seq_items.astype(np.int64),
                             "time": data.seq_times.astype(np.float64)})
    n_cat = len(data.category_names)
    categories = pa.ListArray.from_arrays(pa.array(np.arange(data.n_items + 2, dtype=np.int32) * n_cat),
                                          pa.array(data.item_categories.astype(np.int8).ravel()))
    titles = pa.array(data.item_titles if data.item_titles is not None else [None] * (data.n_items + 1), pa.string())
    items = pa.table({"item": np.arange(data.n_items + 1, dtype=np.int64), "raw_id": item_raw,
                      "categories": categories, "title": titles})
    groups = data.user_groups if data.user_groups is not None else np.full(data.n_users, -1, np.int64)
    users = pa.table({"user": np.arange(data.n_users, dtype=np.int64), "raw_id": user_raw,
                      "group": groups.astype(np.int64)})
    try:
        pq.write_table(interactions.replace_schema_metadata({"padirec": json.dumps(meta)}),
                       tmp / "interactions.parquet")
        pq.write_table(items, tmp / "items.parquet")
        pq.write_table(users, tmp / "users.parquet")
        if path.exists():  # replace an older copy: move it aside first, a folder rename cannot overwrite
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, path)
    except OSError:
        if not (path / "interactions.parquet").is_file():  # otherwise a concurrent writer won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_sequence_data(path: str | os.PathLike) -> SequenceData:
    """Read a folder written by `save_sequence_data`, checking that ids are in range."""
    path = Path(path)
    for name in ("interactions.parquet", "items.parquet", "users.parquet"):
        if not (path / name).is_file():
            raise DataError("file not found", path / name)
    interactions = pq.read_table(path / "interactions.parquet")
    meta = json.loads((interactions.schema.metadata or {}).get(b"padirec", b"{}"))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"not a {FORMAT} v{VERSION} file", path / "interactions.parquet")
    n_users, n_items, n_cat = meta["n_users"], meta["n_items"], len(meta["category_names"])
    user = interactions.column("user").to_numpy()
    item = interactions.column("item").to_numpy()
    time = interactions.column("time").to_numpy()
    where = path / "interactions.parquet"
    if user.size and (user.min() < 0 or user.max() >= n_users or np.any(np.diff(user) < 0)):
        raise DataError(f"user ids must be sorted and in 0..{n_users - 1}", where, column="user")
    if item.size and (item.min() < 1 or item.max() > n_items):
        raise DataError(f"item ids must be in 1..{n_items}", where, column="item")
    if not np.isfinite(time).all():
        raise DataError("timestamps must be finite", where, column="time")
    items = pq.read_table(path / "items.parquet")
    flat = items.column("categories").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if items.num_rows != n_items + 1 or flat.size != (n_items + 1) * n_cat:
        raise DataError(f"expected {n_items + 1} items with {n_cat} category flags", path / "items.parquet")
    users = pq.read_table(path / "users.parquet")
    group_names = meta.get("group_names")
    groups = users.column("group").to_numpy() if group_names is not None else None
    if groups is not None and (len(groups) != n_users or groups.min(initial=0) < -1
                               or groups.max(initial=-1) >= len(group_names)):
        raise DataError(f"expected {n_users} user groups in -1..{len(group_names) - 1}", path / "users.parquet",
                        column="group")
    return SequenceData(
        n_users=n_users,
        n_items=n_items,
        category_names=meta["category_names"],
        item_categories=flat.reshape(n_items + 1, n_cat).astype(np.float32),
        seq_offsets=np.concatenate([[0], np.cumsum(np.bincount(user, minlength=n_users))]).astype(np.int64),
        seq_items=item.astype(np.int64),
        seq_times=time.astype(np.float64),
        max_len=meta["max_len"],
        user_ids=_from_raw(users.column("raw_id"), meta["user_ids"]),
        item_ids=_from_raw(items.column("raw_id"), meta["item_ids"]),
        item_titles=items.column("title").to_pylist() if meta.get("titles") else None,
        group_names=group_names,
        user_groups=groups.astype(np.int64) if groups is not None else None,
    )


# -------------------------------------------------------------------------------------------------
# the entry point the pipeline uses


def _movielens_dir(kind: str) -> Path:
    """A local MovieLens folder from $PADIREC_DATA_DIR (itself or its <kind>/ child), else a download."""
    env = os.environ.get("PADIREC_DATA_DIR")
    if env:
        for candidate in (Path(env) / kind, Path(env)):
            if (candidate / MOVIELENS_MARKER[kind]).is_file():
                return candidate
        log.info("PADIREC_DATA_DIR=%s holds no %s; downloading it there", env, kind)
    return download_movielens(kind, env or None)


def load_dataset(kind: str, path: str | os.PathLike | None = None,
                 categories_path: str | os.PathLike | None = None,
                 config: PreprocessConfig = PreprocessConfig(), cache_dir: str | os.PathLike | None = None,
                 synthetic: SyntheticConfig | None = None, users_path: str | os.PathLike | None = None) -> SequenceData:
    """Read and preprocess a dataset, or load it from the cache when its files and settings are unchanged."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
    if path is None and kind in MOVIELENS_MARKER:
        path = _movielens_dir(kind)
    if kind == "synthetic":
        synthetic = synthetic or SyntheticConfig()
        paths = []
    elif path is None:
        raise ValueError(f"dataset kind {kind!r} needs a path")
    else:
        paths = [path] + [p for p in (categories_path, users_path) if p is not None]
    settings = {"kind": kind, "format_version": VERSION, "preprocess": asdict(config),
                "synthetic": asdict(synthetic) if synthetic else None}
    key = fingerprint(paths, settings)
    cache_dir = Path(cache_dir or os.environ.get("PADIREC_CACHE_DIR") or Path(".padirec") / "cache")
    entry = cache_dir / f"{kind}-{key[:20]}"
    if entry.is_dir():
        try:
            data = load_sequence_data(entry)
            log.info("loaded %s from cache %s", kind, entry)
            return data
        except (DataError, pa.ArrowException, OSError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable cache entry %s (%s)", entry, e)
    raw = make_synthetic(synthetic) if kind == "synthetic" else read_raw(kind, path, categories_path, users_path)
    data = preprocess(raw, config)
    save_sequence_data(data, entry)
    log.info("preprocessed %s (%s) and cached it at %s", raw.source, data.stats(), entry)
    return data
