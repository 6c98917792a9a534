"""Readers that turn dataset files into `RawData`: MovieLens 100K / 1M, ReChorus, generic tables.

Files are parsed line by line in Python so that every complaint names the file and the 1-based
line at fault (ML-1M's million lines take a couple of seconds). Parquet tables are read with
pyarrow; there a complaint names the row and the column.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError
from .raw import RawData
from .synthetic import make_synthetic

log = logging.getLogger(__name__)

KINDS = ("ml-100k", "ml-1m", "rechorus", "table", "synthetic")
SEPARATOR_NAMES = {"\t": "tab", "|": "pipe", "::": "'::'", ",": "comma"}


# -------------------------------------------------------------------------------------------------
# small parsing helpers: each failure names the file and the line


def _parsed(cast, text: str):
    """`cast(text)`, or None where it does not parse."""
    try:
        return cast(text)
    except ValueError:
        return None


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", path)
    return path


def _int(text: str, what: str, path: Path, line: int, positive: bool = False) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{what} {text!r} is not an integer", path, line) from None
    if positive and value < 1:
        raise DataError(f"{what} {value} is out of range (ids start at 1)", path, line)
    return value


def _time(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"timestamp {text!r} is not a number", path, line) from None
    if not math.isfinite(value):
        raise DataError(f"timestamp {text!r} is not a finite number", path, line)
    return value


def _split_lines(path: Path, sep: str, n_fields: int, encoding: str = "utf-8",
                 exact: bool = True) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line of a `sep`-separated file without header."""
    lineno = 0
    try:
        with open(path, encoding=encoding, newline="") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split(sep)
                if len(fields) < n_fields or (exact and len(fields) != n_fields):
                    at_least = "" if exact else "at least "
                    raise DataError(f"expected {at_least}{n_fields} {SEPARATOR_NAMES[sep]}-separated fields, "
                                    f"got {len(fields)}", path, lineno)
                yield lineno, fields
    except UnicodeDecodeError as e:
        raise DataError(f"not valid {encoding} text ({e.reason})", path, lineno + 1) from None


def _read_csv(path: Path, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a CSV; the delimiter (comma or tab) is sniffed if None."""
    path = _require_file(path)
    with open(path, encoding="utf-8-sig", newline="") as f:  # a byte-order mark is not part of the header
        try:
            first = f.readline()
            if delimiter is None:
                delimiter = "\t" if "\t" in first else ","
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise DataError("empty file (expected a header line)", path, 1)
            rows = []
            for fields in reader:
                if not fields or not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise DataError(f"expected {len(header)} {SEPARATOR_NAMES[delimiter]}-separated fields "
                                    f"(as in the header), got {len(fields)}", path, reader.line_num)
                rows.append((reader.line_num, fields))
        except UnicodeDecodeError as e:
            raise DataError(f"not valid utf-8 text ({e.reason})", path) from None
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path, reader.line_num) from None
    return header, rows


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        hint = " (is the file separated by the expected character?)" if len(header) == 1 else ""
        raise DataError(f"missing column {name!r}; the header has {header}{hint}", path, 1)
    return header.index(name)


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


def read_movielens_100k(directory: str | os.PathLike) -> RawData:
    """Read MovieLens 100K (`u.data`, `u.item`, `u.genre`) as GroupLens ships it; genres are categories."""
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
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"MovieLens 100K at {directory}", item_titles=titles)


def read_movielens_1m(directory: str | os.PathLike) -> RawData:
    """Read MovieLens 1M (`ratings.dat`, `movies.dat`, '::'-separated, latin-1); genres are categories."""
    directory = Path(directory)
    users, items, times = _read_ratings(_require_file(directory / "ratings.dat"), "::")

    movies_path = _require_file(directory / "movies.dat")
    categories, titles = {}, {}
    for line, fields in _split_lines(movies_path, "::", 3, "latin-1", exact=False):
        item = _int(fields[0], "item id", movies_path, line, positive=True)
        genres = fields[-1].strip()
        categories[item] = [] if genres in ("", "(no genres listed)") else genres.split("|")
        titles[item] = "::".join(fields[1:-1]).strip()
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"MovieLens 1M at {directory}", item_titles=titles)


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


# -------------------------------------------------------------------------------------------------
# generic tables: CSV (comma or tab) or Parquet


@dataclass
class _Table:
    """Columns of a CSV (lists of str, with line numbers) or of a Parquet file (pyarrow arrays)."""

    path: Path
    columns: dict
    lines: list[int] | None  # CSV line numbers; None for Parquet (complaints then name the row)

    def fail(self, index: int, column: str, message: str) -> DataError:
        if self.lines is None:
            return DataError(f"row {index + 1}: {message}", self.path, column=column)
        return DataError(message, self.path, self.lines[index])


def _read_table(path: str | os.PathLike, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> _Table:
    """The `required` columns (a missing one is an error naming the file) and those of `optional` it has."""
    path = _require_file(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read Parquet ({e})", path) from None
        for name in required:
            if name not in table.column_names:
                raise DataError(f"missing column {name!r}; the table has {table.column_names}", path,
                                column=name)
        present = [*required, *(name for name in optional if name in table.column_names)]
        return _Table(path, {name: table.column(name) for name in present}, None)
    header, rows = _read_csv(path)
    index = {name: _column(header, name, path) for name in required}
    index.update({name: header.index(name) for name in optional if name in header})
    return _Table(path, {name: [fields[k] for _, fields in rows] for name, k in index.items()},
                  [line for line, _ in rows])


def _table_ids(table: _Table, name: str, as_int: bool | None = None) -> np.ndarray:
    """Ids as int64 when they are integers (or `as_int`), else as a str object array. Negative integers and
    numbers that are not integers ('NaN', '1.5', 'inf') are errors: they are what a float column or a sign slip
    makes of ids, never ids."""
    values = table.columns[name]
    if isinstance(values, pa.ChunkedArray):
        if values.null_count:
            first = values.is_null().to_numpy(zero_copy_only=False).argmax()
            raise table.fail(first, name, f"{name} is null")
        if pa.types.is_integer(values.type) and as_int is not False:
            ids = values.to_numpy().astype(np.int64)
            negative = np.flatnonzero(ids < 0)
            if negative.size:
                raise table.fail(int(negative[0]), name, f"{name} id {ids[negative[0]]} is negative")
            return ids
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
                or pa.types.is_integer(values.type)):
            raise DataError(f"{name} ids must be integers or strings, got {values.type}", table.path,
                            column=name)
        values = [str(v) for v in values.to_pylist()]
    values = [v.strip() for v in values]
    ints = []
    for k, v in enumerate(values):
        if not v:
            raise table.fail(k, name, f"empty {name} id")
        number = _parsed(int, v)
        if number is None and (as_int or _parsed(float, v) is not None):
            raise table.fail(k, name, f"{name} id {v!r} is not an integer")
        if number is not None and number < 0:
            raise table.fail(k, name, f"{name} id {v!r} is negative")
        ints.append(number)
    if as_int is not False and None not in ints:
        return np.array(ints, np.int64)
    return np.array(values, dtype=object)


def _table_times(table: _Table, name: str) -> np.ndarray:
    values = table.columns[name]
    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_timestamp(values.type):
            scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[values.type.unit]
            values = pc.divide(values.cast(pa.int64()).cast(pa.float64()), scale)
        elif not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            raise DataError(f"timestamps must be numbers, got {values.type}", table.path, column=name)
        times = values.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls become NaN
        bad = np.flatnonzero(~np.isfinite(times))
        if bad.size:
            value = values[int(bad[0])].as_py()
            problem = "is missing (null)" if value is None else f"{value!r} is not a finite number"
            raise table.fail(bad[0], name, f"timestamp {problem}")
        return times
    return np.array([_time(v.strip(), table.path, line) for v, line in zip(values, table.lines)], np.float64)


def read_interactions_table(interactions_path: str | os.PathLike,
                            categories_path: str | os.PathLike | None = None) -> RawData:
    """Read a user/item/timestamp table and an item/categories table (CSV or Parquet, by extension).

    In CSV the categories field is '|'-separated; in Parquet it is list<string> (or such a string). An optional
    `title` column of the categories table names the items for people (the serving control page). Ids stay
    integers when every id of the column is one, else they are strings.
    """
    table = _read_table(interactions_path, ("user", "item", "timestamp"))
    users, items = _table_ids(table, "user"), _table_ids(table, "item")
    times = _table_times(table, "timestamp")
    categories: dict = {}
    titles: dict = {}
    if categories_path is not None:
        cats = _read_table(categories_path, ("item", "categories"), optional=("title",))
        cat_items = _table_ids(cats, "item", as_int=items.dtype == np.int64)
        for k, (item, value) in enumerate(zip(cat_items.tolist(), _column_values(cats, "categories"))):
            if value is None:
                names = []
            elif isinstance(value, str):
                names = [c.strip() for c in value.split("|") if c.strip()]
            elif isinstance(value, list) and all(isinstance(c, str) for c in value):
                names = [c.strip() for c in value if c and c.strip()]
            else:
                raise cats.fail(k, "categories", f"categories must be a list of strings, got {value!r}")
            known = categories.setdefault(item, [])
            known.extend(c for c in names if c not in known)
        for item, title in zip(cat_items.tolist(), _column_values(cats, "title")):
            if title is not None and str(title).strip():
                titles.setdefault(item, str(title).strip())  # the first row naming one wins
        _check_category_items(cats.path, set(categories), set(items.tolist()))
    return RawData(users, items, times, categories, f"table {interactions_path}"
                   + (f" with categories {categories_path}" if categories_path is not None else ""), item_titles=titles)


def _column_values(table: _Table, name: str) -> list:
    """A column's values as a list (empty when the table has no such column)."""
    values = table.columns.get(name, [])
    return values.to_pylist() if isinstance(values, pa.ChunkedArray) else list(values)


def _check_category_items(path: Path, listed: set, interacted: set) -> None:
    """A categories table whose items never occur in the interactions would silently drop the diversity
    objective: an error when none is known, a warning with counts when some are not."""
    unknown = listed - interacted
    if listed and unknown == listed:
        example = ", ".join(repr(i) for i in sorted(unknown, key=str)[:3])
        raise DataError(f"none of its {len(listed)} items occurs in the interactions (e.g. {example}); "
                        "do the two files use the same item ids?", path)
    if unknown:
        log.warning("%s: %d of %d items do not occur in the interactions (ignored); %d interacted items "
                    "have no categories", path, len(unknown), len(listed), len(interacted - listed))


def read_raw(kind: str, path: str | os.PathLike | None = None,
             categories_path: str | os.PathLike | None = None) -> RawData:
    """Read any supported dataset by kind, so that callers and configs name data with two strings."""
    if kind == "synthetic":
        return make_synthetic()
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
    if path is None:
        raise ValueError(f"dataset kind {kind!r} needs a path")
    if kind == "table":
        return read_interactions_table(path, categories_path)
    return {"ml-100k": read_movielens_100k, "ml-1m": read_movielens_1m, "rechorus": read_rechorus}[kind](path)
