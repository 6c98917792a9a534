"""Helpers shared by test modules: a tiny DiT, datasets in `gather`'s format, a config file, the `padirec` CLI,
and processes a test starts and stops (servers, Ray nodes) in their own process groups.

Imported as `from support import ...`: there is no tests/__init__.py, so pytest's default (`prepend`) import mode
puts tests/ on sys.path, under `pytest` and `python -m pytest` alike. Test modules never import each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from padirec.cli.main import build_parser
from padirec.contracts.dataset import write_dataset as write_gathered

ROOT = Path(__file__).resolve().parents[1]
GENRES = ["unknown", "Action", "Comedy"]
BIN = Path(sys.executable).parent
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
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args.func(args)
    text = out.getvalue()
    return json.loads(text[text.index("{\n"):])


def wait_for(check, what: str, timeout: float, procs=(), log: Path | None = None):
    """Poll `check()` until it returns a truthy value; fail early if a process we started has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} not ready after {timeout:.0f} s\n{tail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def start(cmd: list, env: dict, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A process in its own process group (its children too), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen([str(c) for c in cmd], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd)


def stop(proc: subprocess.Popen, marker: str | None = None) -> None:
    """SIGTERM then SIGKILL the process group; then any process left whose command line holds `marker`."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if marker:  # Ray workers that left the group: ours by their unique temp dir
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if marker in cmdline.read_bytes().decode(errors="replace"):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
            "PYTHONUNBUFFERED": "1"}


def write_ml100k(directory: Path, ratings: list[tuple], items: dict[int, list[str]],
                 genres: list[str] = GENRES) -> Path:
    """Write u.data / u.item / u.genre in GroupLens format; item i is titled "Movie i (1995)".

    ratings: (user, item, rating, time) tuples; items: item id -> genre names (of `genres`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in ratings))
    (directory / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(genres)) + "\n")
    flags = {i: "|".join("1" if g in gs else "0" for g in genres) for i, gs in items.items()}
    lines = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{f}" for i, f in flags.items()]
    (directory / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return directory
