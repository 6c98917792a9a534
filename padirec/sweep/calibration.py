"""The sweep's calibration on the Ray cluster: the even map's pilot runs as Ray tasks instead of one after another
in the driver (they were two thirds of an ML-100K sweep's time, on one process whatever the cluster's size).

An adapter's training does not depend on the others of its packed run (they share the batches and negatives drawn
from the run's seed, nothing else), so each pilot run is split into pieces, enough for every CPU of the cluster to
work, and the pieces' points are put back in order: the map is the one `training.local_pilots` would draw.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import numpy as np
import torch

from padirec.config import DataSpec, build, load_data
from padirec.contracts.artifacts import resolve_backbone_file
from padirec.models import load_backbone
from padirec.training import AdapterConfig, PilotRunner, PilotRuns, calibration_step, train_adapters

MIN_PILOT_PIECE = 3  # weights per task at least: smaller packs spend more on loading than they gain


def pilot_piece(backbone_ref: str, data: dict, weights: np.ndarray, config: dict, threads: int) -> np.ndarray:
    """One piece of a pilot run on a Ray worker: its chosen validation points `[K, metrics]`."""
    torch.set_num_threads(threads)
    adapter = build(AdapterConfig, config)
    backbone, _ = load_backbone(resolve_backbone_file(backbone_ref))
    weights = np.array(weights)  # a writable copy: Ray hands arguments over read-only, which torch warns about
    result = train_adapters(backbone, load_data(DataSpec(**data)), weights, adapter, progress=False,
                            eval_splits=("valid",))
    return result.chosen_points(adapter.objectives)


def task_slots(cpus_per_task: float) -> int:
    """How many pilot tasks the cluster runs at once: its CPUs over each task's, on one machine at most its cores
    (a local cluster declares logical CPUs above them: `runtime.init_ray`)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    if len(ray.nodes()) == 1:
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, int(cpus // max(cpus_per_task, 1e-9)))


def split_runs(runs: PilotRuns, slots: int) -> list[list[np.ndarray]]:
    """Each run's weights in pieces, about `slots` pieces over all runs, none under `MIN_PILOT_PIECE` weights."""
    pieces = max(1, slots // max(len(runs), 1))
    return [np.array_split(weights, max(1, min(pieces, len(weights) // MIN_PILOT_PIECE))) for weights, _ in runs]


def ray_pilots(backbone_ref: str, data: DataSpec, cpus_per_task: float = 1.0, progress: bool = False) -> PilotRunner:
    """A `training.PilotRunner` on the current Ray cluster (`ray.init` first); a line per finished piece (a round
    takes minutes on a large catalogue), printed with `progress`, else logged."""
    import ray

    task = ray.remote(pilot_piece).options(num_cpus=cpus_per_task)
    threads = max(1, int(cpus_per_task))

    def run(runs: PilotRuns) -> list[np.ndarray]:
        pieces = split_runs(runs, task_slots(cpus_per_task))
        refs = [[task.remote(backbone_ref, asdict(data), part, asdict(config), threads) for part in parts]
                for parts, (_, config) in zip(pieces, runs, strict=True)]
        pending, total, started = [ref for run_refs in refs for ref in run_refs], sum(map(len, refs)), time.time()
        while pending:
            _, pending = ray.wait(pending, num_returns=1)
            calibration_step(f"{total - len(pending)}/{total} pilot pieces trained "
                             f"({time.time() - started:.0f} s)", progress)
        return [np.concatenate(ray.get(run_refs)) for run_refs in refs]

    return run
