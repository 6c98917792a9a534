"""Generic tables (CSV, comma or tab, or Parquet): interactions, item categories (and titles), user groups.

In CSV a complaint names the file and line; in Parquet the row and the column.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError
from .parsing import _column, _parsed, _read_csv, _require_file, _time
from .raw import RawData

log = logging.getLogger(__name__)


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
                            categories_path: str | os.PathLike | None = None,
                            users_path: str | os.PathLike | None = None) -> RawData:
    """Read a user/item/timestamp table, an item/categories table and a user/group table (CSV or Parquet, by
    extension).

    In CSV the categories field is '|'-separated; in Parquet it is list<string> (or such a string). An optional
    `title` column of the categories table names the items for people (the serving control page). The users
    table gives each user a group (e.g. gender, age band), what the fairness objective compares. Ids stay
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
    groups = read_user_groups(users_path, users.dtype == np.int64) if users_path is not None else {}
    return RawData(users, items, times, categories, f"table {interactions_path}"
                   + (f" with categories {categories_path}" if categories_path is not None else "")
                   + (f" and users {users_path}" if users_path is not None else ""), item_titles=titles,
                   user_groups=groups)


def read_user_groups(path: str | os.PathLike, as_int: bool) -> dict:
    """A `user,group` table (CSV or Parquet) as raw user id -> group name; a user listed twice with two groups,
    or an empty group, is an error naming the line."""
    table = _read_table(path, ("user", "group"))
    groups: dict = {}
    for k, (user, group) in enumerate(zip(_table_ids(table, "user", as_int=as_int).tolist(),
                                          _column_values(table, "group"))):
        name = "" if group is None else str(group).strip()
        if not name:
            raise table.fail(k, "group", f"user {user!r} has an empty group")
        if groups.setdefault(user, name) != name:
            raise table.fail(k, "group", f"user {user!r} is in group {groups[user]!r} and {name!r}")
    return groups


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


