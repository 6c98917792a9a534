"""Configuration: dataclasses filled from a YAML file and then from command-line overrides."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypeVar

import yaml

from padirec.data import PreprocessConfig, SequenceData, SyntheticConfig, load_dataset

T = TypeVar("T")


@dataclass
class DataSpec:
    """Which data a stage reads; stored in every checkpoint so later stages reload the same."""

    kind: Literal["ml-100k", "ml-1m", "rechorus", "table", "synthetic"] = "synthetic"  # dataset format
    path: str | None = None  # directory (or interactions table); ml-*: falls back to $PADIREC_DATA_DIR
    categories_path: str | None = None  # kind=table: the item-categories table
    users_path: str | None = None  # kind=table: a `user,group` table (user fairness)
    min_interactions: int = 5
    max_len: int = 20
    synthetic_seed: int = 0
    synthetic_users: int = 300
    synthetic_items: int = 200
    synthetic_categories: int = 8
    synthetic_extra_categories: float = 0.0  # mean further categories per item (dense-category catalogues)
    synthetic_groups: int = 0  # > 0: users in that many groups that the backbone serves unequally (fairness)

    def to_dict(self) -> dict:
        return asdict(self)


def data_spec(*sources: dict | None) -> DataSpec:
    """A `DataSpec` from sources merged in order (typically: what a backbone recorded, a YAML `data` section,
    flags), with paths made absolute so that Ray workers and later stages find the same files."""
    spec = build(DataSpec, *sources)
    for name in ("path", "categories_path", "users_path"):
        if getattr(spec, name):
            setattr(spec, name, str(Path(getattr(spec, name)).resolve()))
    return spec


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


def _nested_type(hint) -> type | None:
    """The dataclass a field holds (`Foo` or `Foo | None`), else None."""
    candidates = [hint, *typing.get_args(hint)] if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else [hint]
    return next((c for c in candidates if dataclasses.is_dataclass(c) and isinstance(c, type)), None)


def _field_default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def build(cls: type[T], *sources: dict | object | None) -> T:
    """`cls(**merged sources)`, later sources winning, None values skipped, unknown keys rejected.

    A field that holds a dataclass is built the same way, from the field's own default updated by each
    source's section (a dict or an instance), so a YAML file or a flag changes one nested value only."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict = {}
    sections: dict[str, list] = {}
    for source in sources:
        if dataclasses.is_dataclass(source) and not isinstance(source, type):
            source = {name: getattr(source, name) for name in fields}
        for key, value in (source or {}).items():
            key = key.replace("-", "_")
            if key not in fields:
                raise ValueError(f"unknown {cls.__name__} option {key!r}; known: {', '.join(sorted(fields))}")
            if value is None:
                continue
            if _nested_type(hints[key]) is not None:
                sections.setdefault(key, []).append(value)
            else:
                values[key] = value
    for key, parts in sections.items():
        nested = _nested_type(hints[key])
        default = _field_default(fields[key])
        values[key] = build(nested, default if dataclasses.is_dataclass(default) else None, *parts)
    return cls(**values)


def load_data(spec: DataSpec) -> SequenceData:
    """The preprocessed dataset a spec names (cached as Parquet)."""
    synthetic = SyntheticConfig(n_users=spec.synthetic_users, n_items=spec.synthetic_items, seed=spec.synthetic_seed,
                                n_categories=spec.synthetic_categories,
                                extra_categories=spec.synthetic_extra_categories, groups=spec.synthetic_groups)
    return load_dataset(spec.kind, spec.path, spec.categories_path,
                        PreprocessConfig(min_interactions=spec.min_interactions, max_len=spec.max_len),
                        synthetic=synthetic if spec.kind == "synthetic" else None, users_path=spec.users_path)
