"""Joining or starting the Ray cluster every Ray layer runs on, and keeping a long stage's output off the console."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# what ray.init says when it found a `ray start` cluster to join and was given a size for a new one
JOINING_MESSAGE = "When connecting to an existing cluster"
# Ray Train's watchdog for its placement groups asks the State API, served by the dashboard, once a second
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def init_ray(cpus_needed: float = 0, progress: bool = True) -> None:
    """Join the cluster in `RAY_ADDRESS` (e.g. inside `ray job submit`) or the one `ray start` left on this machine
    (what `ray.init()` joins), else start a local one.

    A local cluster gets logical CPU headroom above the cores: Ray Train workers plus Ray Data
    tasks deadlock when the logical CPUs are exactly the workers' (seen with 2 workers on 2 cores).
    """
    import ray

    if ray.is_initialized():
        return
    # workers of a local cluster inherit the driver's environment: share one data cache
    os.environ.setdefault("PADIREC_CACHE_DIR", str(Path(".padirec/cache").resolve()))
    if os.environ.get("RAY_ADDRESS", "local") != "local":
        ray.init(log_to_driver=progress)
        return
    cpus = max(4, (os.cpu_count() or 2) + 2, int(cpus_needed) + 2)
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=progress,
                 runtime_env={"worker_process_setup_hook": "padirec.runtime.quiet_local_workers"})
    except ValueError as error:  # `ray start` left a cluster on this machine: ray.init joins it, sized as it is
        if JOINING_MESSAGE not in str(error):
            raise
        print("Ray: joining the cluster started on this machine with `ray start` (RAY_ADDRESS=local starts a "
              "private one)", file=sys.stderr, flush=True)
        ray.init(log_to_driver=progress)


def quiet_local_workers() -> None:
    """Setup hook of a local cluster's workers: it has no dashboard, so Ray Train's placement-group cleaner cannot
    reach the State API and would warn once a second all through a DiT run (what it guards, a dead controller's
    placement group, ends with the local cluster anyway); its errors still show."""
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


def storage_uri(path: str | None, default: str = "ray_results") -> str:
    """Where Ray Tune / Train keep results: a URI (`s3://`, `gs://`, ...) as given, a local path made absolute
    (workers start in other directories)."""
    path = path or default
    return path if "://" in path else str(Path(path).resolve())


@contextlib.contextmanager
def output_to(path: Path, tail_chars: int = 3000) -> Iterator[Path]:
    """Send what this process writes to its stdout and stderr while the block runs to `path` (appended).

    At the descriptor level, so Ray's driver-side lines, Tune's tables, MLflow's and C libraries' output go
    there too, not only Python's `print`; processes started meanwhile inherit it. On an error the log's tail
    is shown on the real stderr, with the log's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved, streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
    try:
        with open(path, "a", buffering=1, errors="replace") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            sys.stdout = sys.stderr = log  # also where Python's own streams are not descriptors 1 and 2
            try:
                yield path
            finally:
                log.flush()
                sys.stdout, sys.stderr = streams
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except BaseException:
        tail = path.read_text(errors="replace")[-tail_chars:]
        print(f"{tail}\n(the last {len(tail)} characters of {path})", file=sys.stderr, flush=True)
        raise
    finally:
        os.close(saved[0])
        os.close(saved[1])
