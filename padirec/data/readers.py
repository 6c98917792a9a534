"""Readers that turn dataset files into `RawData`: MovieLens 100K / 1M, ReChorus, and (`tables`) generic tables.

Files are parsed line by line in Python so that every complaint names the file and the 1-based
line at fault (ML-1M's million lines take a couple of seconds). Parquet tables are read with
pyarrow; there a complaint names the row and the column.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .errors import DataError
from .parsing import _column, _int, _parsed, _read_csv, _require_file, _split_lines, _time
from .raw import RawData
from .synthetic import make_synthetic
from .tables import read_interactions_table

log = logging.getLogger(__name__)

KINDS = ("ml-100k", "ml-1m", "rechorus", "table", "synthetic")

# -------------------------------------------------------------------------------------------------
# MovieLens


def _read_ratings(path: Path, separator: str) -> tuple[list, list, list]:
    """MovieLens rating lines `user item rating timestamp` → users, items, timestamps (rating unused)."""
    users, items, times = [], [], []
    for line, (user, item, _rating, t) in _split_lines(path, separator, 4, "latin-1"):
        users.append(_int(user, "user id", path, line, positive=True))
        items.append(_int(item, "item id", path, line, positive=True))
        times.append(_time(t, path, line))
    return users, items, times


def _read_user_genders(path: Path, separator: str, field: int, n_fields: int) -> dict:
    """MovieLens user files: user id -> gender ("M" / "F"), the paper's groups for user fairness (A.9)."""
    groups = {}
    for line, fields in _split_lines(path, separator, n_fields, "latin-1"):
        gender = fields[field].strip()
        if gender not in ("M", "F"):
            raise DataError(f"gender must be M or F, got {gender!r}", path, line)
        groups[_int(fields[0], "user id", path, line, positive=True)] = gender
    return groups


def read_movielens_100k(directory: str | os.PathLike) -> RawData:
    """Read MovieLens 100K (`u.data`, `u.item`, `u.genre`) as GroupLens ships it; genres are categories, and
    the users' gender in `u.user` (where present) their groups."""
    directory = Path(directory)
    users, items, times = _read_ratings(_require_file(directory / "u.data"), "\t")

    genre_path = _require_file(directory / "u.genre")
    genres = {}
    for line, (name, index) in _split_lines(genre_path, "|", 2, "latin-1"):
        genres[_int(index, "genre index", genre_path, line)] = name
    if sorted(genres) != list(range(len(genres))):
        raise DataError(f"genre indices must be 0..{len(genres) - 1}, got {sorted(genres)}", genre_path)
    names = [genres[k] for k in range(len(genres))]

    item_path = _require_file(directory / "u.item")
    categories, titles = {}, {}
    for line, fields in _split_lines(item_path, "|", 5 + len(names), "latin-1", exact=False):
        flags = fields[-len(names):]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"genre flags must be 0 or 1, got {'|'.join(flags)}", item_path, line)
        item = _int(fields[0], "item id", item_path, line, positive=True)
        categories[item] = [name for name, flag in zip(names, flags) if flag == "1"]
        titles[item] = fields[1].strip()
    user_path = directory / "u.user"
    groups = _read_user_genders(user_path, "|", 2, 5) if user_path.is_file() else {}
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"MovieLens 100K at {directory}", item_titles=titles, user_groups=groups)


def read_movielens_1m(directory: str | os.PathLike) -> RawData:
    """Read MovieLens 1M (`ratings.dat`, `movies.dat`, '::'-separated, latin-1); genres are categories, the
    gender in `users.dat` (where present) the user groups."""
    directory = Path(directory)
    users, items, times = _read_ratings(_require_file(directory / "ratings.dat"), "::")

    movies_path = _require_file(directory / "movies.dat")
    categories, titles = {}, {}
    for line, fields in _split_lines(movies_path, "::", 3, "latin-1", exact=False):
        item = _int(fields[0], "item id", movies_path, line, positive=True)
        genres = fields[-1].strip()
        categories[item] = [] if genres in ("", "(no genres listed)") else genres.split("|")
        titles[item] = "::".join(fields[1:-1]).strip()
    user_path = directory / "users.dat"
    groups = _read_user_genders(user_path, "::", 1, 5) if user_path.is_file() else {}
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"MovieLens 1M at {directory}", item_titles=titles, user_groups=groups)


# -------------------------------------------------------------------------------------------------
# ReChorus


def read_rechorus(directory: str | os.PathLike) -> RawData:
    """Read a ReChorus dataset directory: train/dev/test.csv joined back together, plus item_meta.csv.

    Category columns of item_meta.csv are those named c_* or i_*; value v of column c becomes
    the category "c=v" (0 or empty means none). Other columns (r_*, neg_items, ...) are ignored.
    """
    directory = Path(directory)
    users, items, times = [], [], []
    for name in ("train.csv", "dev.csv", "test.csv"):
        path = _require_file(directory / name)
        header, rows = _read_csv(path, "\t")
        u, i, t = (_column(header, c, path) for c in ("user_id", "item_id", "time"))
        for line, fields in rows:
            users.append(_int(fields[u], "user id", path, line))
            items.append(_int(fields[i], "item id", path, line))
            times.append(_time(fields[t], path, line))

    meta_path = _require_file(directory / "item_meta.csv")
    header, rows = _read_csv(meta_path, "\t")
    item_col = _column(header, "item_id", meta_path)
    category_cols = [k for k, c in enumerate(header) if c.startswith(("c_", "i_"))]
    if not category_cols:
        raise DataError(f"no category column (a name starting with 'c_' or 'i_'); the header has {header}",
                        meta_path, 1)
    categories = {}
    for line, fields in rows:
        item = _int(fields[item_col], "item id", meta_path, line)
        values = [(header[k], fields[k].strip()) for k in category_cols]
        categories[item] = [f"{c}={v}" for c, v in values if v and _parsed(float, v) != 0]
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"ReChorus dataset at {directory}")


def read_raw(kind: str, path: str | os.PathLike | None = None,
             categories_path: str | os.PathLike | None = None, users_path: str | os.PathLike | None = None) -> RawData:
    """Read any supported dataset by kind, so that callers and configs name data with two strings."""
    if kind == "synthetic":
        return make_synthetic()
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
    if path is None:
        raise ValueError(f"dataset kind {kind!r} needs a path")
    if kind == "table":
        return read_interactions_table(path, categories_path, users_path)
    if users_path is not None:
        raise ValueError(f"a users table (--users) is read with --dataset table; {kind} has its own user files")
    return {"ml-100k": read_movielens_100k, "ml-1m": read_movielens_1m, "rechorus": read_rechorus}[kind](path)
