"""Line-by-line parsing helpers shared by the readers: every failure names the file and the 1-based line."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError

SEPARATOR_NAMES = {"\t": "tab", "|": "pipe", "::": "'::'", ",": "comma"}


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


