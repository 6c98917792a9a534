"""Configuration: dataclasses filled from a YAML file and then from command-line overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")


@dataclass
class DataSpec:
    """Which data a stage reads; stored in every checkpoint so later stages reload the same."""

    kind: str = "synthetic"  # ml-100k | ml-1m | rechorus | table | synthetic
    path: str | None = None  # directory (or interactions table); ml-*: falls back to $PADIREC_DATA_DIR
    categories_path: str | None = None  # kind=table: the item-categories table
    min_interactions: int = 5
    max_len: int = 20
    synthetic_seed: int = 0
    synthetic_users: int = 300
    synthetic_items: int = 200

    def to_dict(self) -> dict:
        return asdict(self)


def load_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping; a clear error names the file when it is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path) as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level, got {type(content).__name__}")
    return content


def build(cls: type[T], *sources: dict | None) -> T:
    """`cls(**merged sources)`, later sources winning, None values skipped, unknown keys rejected."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict = {}
    for source in sources:
        for key, value in (source or {}).items():
            key = key.replace("-", "_")
            if key not in names:
                raise ValueError(f"unknown {cls.__name__} option {key!r}; known: {', '.join(sorted(names))}")
            if value is not None:
                values[key] = value
    return cls(**values)


def load_data(spec: DataSpec):
    """The preprocessed dataset a spec names (cached as Parquet)."""
    from padirec.data import PreprocessConfig, SyntheticConfig, load_dataset

    synthetic = SyntheticConfig(n_users=spec.synthetic_users, n_items=spec.synthetic_items, seed=spec.synthetic_seed)
    return load_dataset(spec.kind, spec.path, spec.categories_path,
                        PreprocessConfig(min_interactions=spec.min_interactions, max_len=spec.max_len),
                        synthetic=synthetic if spec.kind == "synthetic" else None)
