"""Joining or starting the Ray cluster every Ray layer runs on."""

from __future__ import annotations

import os
from pathlib import Path


def init_ray(cpus_needed: float = 0, progress: bool = True) -> None:
    """Join the cluster in `RAY_ADDRESS` (e.g. inside `ray job submit`), else start a local one.

    A local cluster gets logical CPU headroom above the cores: Ray Train workers plus Ray Data
    tasks deadlock when the logical CPUs are exactly the workers' (seen with 2 workers on 2 cores).
    """
    import ray

    if ray.is_initialized():
        return
    # workers of a local cluster inherit the driver's environment: share one data cache
    os.environ.setdefault("PADIREC_CACHE_DIR", str(Path(".padirec/cache").resolve()))
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=progress)
    else:
        cpus = max(4, (os.cpu_count() or 2) + 2, int(cpus_needed) + 2)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=progress)


def storage_uri(path: str | None, default: str = "ray_results") -> str:
    """Where Ray Tune / Train keep results: a URI (`s3://`, `gs://`, ...) as given, a local path made absolute
    (workers start in other directories)."""
    path = path or default
    return path if "://" in path else str(Path(path).resolve())
