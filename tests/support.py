"""Helpers shared by test modules: a tiny DiT, datasets in `gather`'s format, a config file, the `padirec` CLI.

Imported as `from support import ...`: there is no tests/__init__.py, so pytest's default (`prepend`) import mode
puts tests/ on sys.path, under `pytest` and `python -m pytest` alike. Test modules never import each other.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import yaml

from padirec.cli.generator import add_commands
from padirec.contracts.dataset import write_dataset as write_gathered

TINY_DIT = {"hidden": 32, "depth": 1, "heads": 2, "ffn": 64, "freq_dim": 32, "cond_freq_dim": 16}


def write_dataset(rows: list[dict], directory: Path, sweep_run_id: str = "") -> Path:
    """A dataset in `gather`'s format (Parquet + metadata + manifest), without a sweep."""
    return Path(write_gathered(rows, directory, sweep_run_id)["path"])


def dataset_row(w_acc: float, params: np.ndarray, seed: int = 0, epoch: int = 0, backbone_run_id: str = "",
                metrics: dict | None = None) -> dict:
    metrics = metrics or {}
    return {"w": [w_acc, 1.0 - w_acc], "seed": seed, "epoch": epoch, "params": params.astype(np.float32),
            "ndcg10": metrics.get("val_ndcg10", 0.0), "alpha_ndcg10": metrics.get("val_alpha_ndcg10", 0.0),
            "test_ndcg10": metrics.get("test_ndcg10", 0.0),
            "test_alpha_ndcg10": metrics.get("test_alpha_ndcg10", 0.0),
            "backbone_run_id": backbone_run_id, "run_id": f"run-{w_acc}-{seed}-{epoch}"}


def write_config(tmp_path: Path, **train) -> Path:
    path = tmp_path / "config.yaml"
    values = {"batch_size": 8, "lr": 3e-3, "ema_decay": 0.9, "prediction": "v", "dit": TINY_DIT,
              "schedule": {"steps": 100}, **train}
    path.write_text(yaml.safe_dump({"dit_train": values}))
    return path


def cli(argv: list[str]) -> dict:
    """Run a `padirec` command of this package through its own parser; return the JSON it prints."""
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args.func(args)
    text = out.getvalue()
    return json.loads(text[text.index("{\n"):])
