"""The one exception the data package raises for bad input, always pointing at the culprit."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad input data; message names the file and the line (1-based) or column."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None,
                 column: str | None = None):
        self.reason, self.line, self.column = message, line, column
        self.path = None if path is None else os.fspath(path)
        where = " ".join(
            part for part in (
                self.path,
                None if line is None else f"line {line}",
                None if column is None else f"column {column!r}",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)
