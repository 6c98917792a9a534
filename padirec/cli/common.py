"""What every command shares: `--config/--experiment/--quiet`, the data flags, and reading a YAML section."""

from __future__ import annotations

import argparse
import json

from padirec import tracking
from padirec.cli.flags import add_flags, flag_values
from padirec.config import DataSpec, load_yaml

DATA_FLAGS = {"kind": "--dataset", "path": "--data-dir", "categories_path": "--categories", "users_path": "--users"}


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """`--dataset --data-dir --categories --users --min-interactions --max-len` (a command's `data` section)."""
    add_flags(parser.add_argument_group("data"), DataSpec, ["kind", "path", "categories_path", "users_path",
                                                             "min_interactions", "max_len"], section="data",
              flags=DATA_FLAGS)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with sections data/pretrain/adapter/...; flags override it")
    parser.add_argument("--experiment", default=tracking.DEFAULT_EXPERIMENT,
                        help=f"MLflow experiment (default: {tracking.DEFAULT_EXPERIMENT})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def section(args: argparse.Namespace, name: str) -> dict:
    """A section of the `--config` YAML file ({} without one)."""
    return load_yaml(args.config).get(name, {}) if getattr(args, "config", None) else {}


def given(args: argparse.Namespace, name: str) -> dict:
    """The flags given for one section (see `flags.flag_values`)."""
    return flag_values(args).get(name, {})


def data_overrides(args: argparse.Namespace) -> dict:
    """The YAML `data` section updated by the data flags: what replaces a backbone's recorded data."""
    return {**section(args, "data"), **given(args, "data")}


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))
