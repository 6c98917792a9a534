"""The adapter sweep: Ray Tune trials over blocks of the weight grid, one MLflow child run per adapter.

The plain function `train_block` trains one block (K weights, one seed) on a frozen backbone;
`run_sweep` spreads blocks over a Ray cluster as Tune trials. MLflow is the source of truth:
every kept adapter is a child run of the sweep's parent run, keyed by (w, seed, epoch), and a
trial skips keys that are already logged, so retries and resumes neither lose nor duplicate.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.config import DataSpec, build, data_spec, load_data
from padirec.contracts.artifacts import resolve_backbone_file, write_adapter
from padirec.contracts.names import (
    ADAPTER_DIR,
    ADAPTER_EXPERIMENT_SUFFIX,
    ADAPTER_EXPERIMENT_TAG,
    ADAPTER_SHA256_TAG,
    BACKBONE_RUN_TAG,
    EXAMPLE_KEY_TAG,
    GRID_FILE,
    OBJECTIVES_TAG,
    STAGE_ADAPTER,
    STAGE_SWEEP,
    STAGE_TAG,
    SWEEP_CONFIG_FILE,
)
from padirec.data import SequenceData
from padirec.models import Backbone, load_backbone
from padirec.runtime import init_ray, output_to, storage_uri
from padirec.sweep.calibration import ray_pilots
from padirec.sweep.grid import Block, example_key, pack_blocks, simplex_grid
from padirec.training import AdapterConfig, AdapterResult, calibrate, is_calibrated, scale_params, train_adapters


@dataclass
class SweepConfig:
    backbone_run_id: str = ""
    grid_step: float = 0.05
    n_objectives: int = 0  # 0: as many as adapter.objectives (the grid's dimension; kept for older configs)
    seeds: list[int] = field(default_factory=lambda: [0])
    pack_size: int = 21  # grid points per trial (K); 1 = one trial per point
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractional GPUs allowed, e.g. 0.25
    max_concurrent_trials: int = 0  # 0 = as many as resources allow
    max_failures: int = 2  # retries per trial
    storage_path: str = ""  # Tune results; shared storage on a cluster (default ./ray_results)
    name: str = ""  # Tune experiment name (default: sweep-<parent run id>)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self):
        if self.n_objectives not in (0, len(self.adapter.objectives)):
            raise ValueError(f"n_objectives = {self.n_objectives}, but adapter.objectives names "
                             f"{len(self.adapter.objectives)}: {self.adapter.objectives} (set the objectives; the "
                             "grid follows)")

    def grid(self) -> np.ndarray:
        """The weights on the simplex of the sweep's objectives, `[G, p]` (66 for three at step 0.1)."""
        return simplex_grid(self.grid_step, len(self.adapter.objectives))

    def blocks(self) -> list[Block]:
        return pack_blocks(self.grid(), self.seeds, self.pack_size)

    def expected_examples(self) -> int:
        return len(self.grid()) * len(self.seeds) * self.adapter.keep_last


def block_keys(block: Block, adapter: AdapterConfig) -> list[str]:
    return [example_key(w, block.seed, slot) for w in block.weights for slot in adapter.slots()]


def train_block(block: Block, backbone, data, adapter: AdapterConfig, progress: bool = False,
                on_epoch=None) -> AdapterResult:
    """Plain function: the block's K adapters, trained together on one frozen backbone."""
    config = replace(adapter, seed=block.seed)
    return train_adapters(backbone, data, np.array(block.weights, dtype=np.float32), config, progress=progress,
                          on_epoch=on_epoch)


def adapter_experiment_id(sweep_run: mlflow.entities.Run) -> str:
    """Where a sweep's adapter runs are: its tag, or the sweep's own experiment for sweeps logged before the tag."""
    return sweep_run.data.tags.get(ADAPTER_EXPERIMENT_TAG, sweep_run.info.experiment_id)


def logged_children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, mlflow.entities.Run]:
    """Finished child runs of a sweep by example key (the newest wins if a key repeats)."""
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=50000, order_by=["attributes.start_time ASC"])
    return {r.data.tags[EXAMPLE_KEY_TAG]: r for r in runs
            if EXAMPLE_KEY_TAG in r.data.tags and r.info.status == "FINISHED"}


def close_stale_children(client: MlflowClient, experiment_id: str, parent_run_id: str,
                         keys: list[str] | None = None) -> int:
    """Mark FAILED the child runs (of `keys`, or all) that a killed trial left RUNNING, so that the UI shows no run
    that never ends; resume and gather read only FINISHED runs either way. Returns how many were closed."""
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                              "attributes.status = 'RUNNING'", max_results=50000)
    stale = [r for r in runs if keys is None or r.data.tags.get(EXAMPLE_KEY_TAG) in keys]
    for run in stale:
        client.set_terminated(run.info.run_id, "FAILED")
    return len(stale)


def log_example(client: MlflowClient, experiment_id: str, parent_run_id: str, key: str, row: dict,
                seed: int, extra_params: dict) -> str:
    """One child run: params w_*, seed, epoch, slot; metrics; the adapter as .npy with its sha256.

    Four requests per adapter (create with tags, one batch of params and metrics, the file, the end): a trial logs
    its K x keep_last adapters in a burst, and each request is a round trip to the tracking server."""
    params = {f"w_{i}": f"{x:.4f}" for i, x in enumerate(row["w"])}
    params.update({"seed": seed, "epoch": row["epoch"], "slot": row.get("slot", ""), **extra_params})
    now = int(time.time() * 1000)
    metrics = [Metric(name, float(value), now, 0) for name, value in row.items()
               if name not in ("w", "epoch", "slot", "params")]
    with tempfile.TemporaryDirectory() as tmp:
        path, digest = write_adapter(row["params"], tmp)
        run = client.create_run(experiment_id, run_name=key, tags={
            "mlflow.parentRunId": parent_run_id, EXAMPLE_KEY_TAG: key, STAGE_TAG: STAGE_ADAPTER,
            BACKBONE_RUN_TAG: extra_params.get("backbone_run_id", ""), ADAPTER_SHA256_TAG: digest})
        run_id = run.info.run_id
        try:
            client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
            client.log_artifact(run_id, str(path), ADAPTER_DIR)
            client.set_terminated(run_id, "FINISHED")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
    return run_id


def with_retries(fn, attempts: int = 8, delay: float = 0.5):
    """SQLite stores refuse concurrent writers now and then ("database is locked"): retry."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - MLflow wraps the driver's OperationalError
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(delay * (attempt + 1))


def sweep_trial(config: dict) -> None:
    """Ray Tune trainable: train one block and log its adapters as child runs of the sweep."""
    import torch
    from ray import tune

    block = Block.from_dict(config["block"])
    sweep = config["sweep"]
    adapter = build(AdapterConfig, sweep["adapter"])
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    mlflow.set_tracking_uri(sweep["tracking_uri"])
    client = MlflowClient(sweep["tracking_uri"])
    keys = block_keys(block, adapter)
    # a retried trial: its killed predecessor's half-logged runs (one trial per block is alive at a time)
    with_retries(lambda: close_stale_children(client, sweep["experiment_id"], sweep["parent_run_id"], keys))
    done = with_retries(lambda: logged_children(client, sweep["experiment_id"], sweep["parent_run_id"]))
    missing = [k for k in keys if k not in done]
    # one set of keys in every report: Tune's progress.csv takes its columns from the first
    status = {"block_id": block.block_id, "epochs_done": 0, "epochs": adapter.epochs, "eta_s": float("nan"),
              "loss": float("nan"), "val_ndcg10": float("nan"), "val_alpha_ndcg10": float("nan"),
              "val_utility": float("nan"), "adapters_kept": 0, "adapters_logged": 0,
              "adapters_skipped": len(keys) - len(missing)}
    if missing:
        # each trial fetches the backbone itself: on a cluster its node may not see the driver's files
        backbone, _ = load_backbone(resolve_backbone_file(sweep["backbone_run_id"]))
        data = load_data(DataSpec(**sweep["data"]))
        started = time.time()

        def report_epoch(epoch: int, metrics: dict) -> None:
            """Tune's status table (and each trial's progress.csv) show the block's epochs as they pass."""
            done = epoch + 1
            status.update({k: metrics.get(k, float("nan")) for k in ("loss", "val_ndcg10", "val_alpha_ndcg10",
                                                                      "val_utility")})
            status["adapters_kept"] = metrics.get("adapters_kept", status["adapters_kept"])
            status.update(epochs_done=done, eta_s=round((time.time() - started) / done * (adapter.epochs - done), 1))
            tune.report(dict(status))
            with_retries(lambda: client.log_metric(sweep["parent_run_id"], f"epochs_done.block_{block.block_id}",
                                                   done, step=done))  # the parent run shows it in the MLflow UI

        result = train_block(block, backbone, data, adapter, on_epoch=report_epoch)
        extra = {"backbone_run_id": sweep["backbone_run_id"], "block_id": block.block_id}
        for row in result.examples():
            key = example_key(row["w"], block.seed, row["slot"])
            if key in missing:
                with_retries(lambda row=row, key=key: log_example(
                    client, sweep["experiment_id"], sweep["parent_run_id"], key, row, block.seed, extra))
    status.update(epochs_done=adapter.epochs, eta_s=0.0, adapters_logged=len(missing))
    tune.report(status)


def start_sweep(config: SweepConfig, experiment: str = tracking.DEFAULT_EXPERIMENT) -> str:
    """Create the parent run (config, backbone, grid) before any trial writes to the store."""
    tracking.setup(experiment)
    tags = {STAGE_TAG: STAGE_SWEEP, BACKBONE_RUN_TAG: config.backbone_run_id,
            ADAPTER_EXPERIMENT_TAG: tracking.ensure_experiment(experiment + ADAPTER_EXPERIMENT_SUFFIX),
            OBJECTIVES_TAG: ",".join(config.adapter.objectives)}
    with mlflow.start_run(run_name="sweep", tags=tags) as run:
        mlflow.log_params(scale_params(config.adapter))
        mlflow.log_params({"backbone_run_id": config.backbone_run_id, "grid_step": config.grid_step,
                           "seeds": ",".join(map(str, config.seeds)), "pack_size": config.pack_size,
                           "n_blocks": len(config.blocks()), "expected_adapters": config.expected_examples(),
                           "objectives": ",".join(config.adapter.objectives)})
        mlflow.log_dict(asdict(config), SWEEP_CONFIG_FILE)
        mlflow.log_dict({"weights": config.grid().tolist(), "objectives": config.adapter.objectives}, GRID_FILE)
    return run.info.run_id


@dataclass
class SweepRun:
    """What a sweep left in MLflow: its parent run, how many of its adapters are logged, and the adapter
    settings it trained with (objective scales filled in by `calibrate`, as `sweep_config.json` records them)."""

    parent_run_id: str
    adapters: int
    expected: int
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    @property
    def complete(self) -> bool:
        return self.adapters == self.expected


def run_sweep(config: SweepConfig, parent_run_id: str | None = None, experiment: str = tracking.DEFAULT_EXPERIMENT,
              progress: bool = True) -> SweepRun:
    """Run (or finish) a sweep on the current Ray cluster; returns counts. Resumable by parent run id."""
    from ray import tune

    uri = tracking.setup(experiment)
    client = MlflowClient(uri)
    backbone, extra = load_backbone(resolve_backbone_file(config.backbone_run_id))
    data = DataSpec(**extra.get("data", {}))
    resuming = parent_run_id is not None
    if not resuming:  # the scales are fixed once, recorded on the sweep run, and every trial uses them
        calibrating = not is_calibrated(config.adapter)
        pilots = None
        if calibrating:
            print(f"sweep: calibrating how w weighs the objectives ({config.adapter.objective_scale}, "
                  f"{config.adapter.scalarization})", flush=True)
            init_ray(progress=progress)
            pilots = ray_pilots(config.backbone_run_id, data, config.cpus_per_trial, progress)
        started = time.perf_counter()
        config = replace(config, adapter=calibrate(backbone, load_data(data), config.adapter, progress, pilots))
        if calibrating:
            print(f"sweep: calibrated in {time.perf_counter() - started:.0f} s: "
                  + ", ".join(f"{k} {v}" for k, v in scale_params(config.adapter).items()), flush=True)
        parent_run_id = start_sweep(config, experiment)
    experiment_id = adapter_experiment_id(client.get_run(parent_run_id))
    adapter = config.adapter
    if resuming and (closed := close_stale_children(client, experiment_id, parent_run_id)):
        print(f"sweep {parent_run_id}: marked {closed} adapter run(s) left RUNNING by dead trials as FAILED")
    done = logged_children(client, experiment_id, parent_run_id)
    blocks = [b for b in config.blocks() if any(k not in done for k in block_keys(b, adapter))]
    print(f"sweep {parent_run_id}: {len(config.blocks())} blocks of ≤{config.pack_size} weights, "
          f"{len(blocks)} with adapters still missing; {len(done)}/{config.expected_examples()} adapters logged")
    if blocks:
        init_ray(progress=progress)
        sweep = {"parent_run_id": parent_run_id, "experiment_id": experiment_id, "tracking_uri": uri,
                 "backbone_run_id": config.backbone_run_id,
                 "data": asdict(data), "adapter": asdict(adapter)}
        trainable = tune.with_resources(sweep_trial, {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})
        storage = storage_uri(config.storage_path)
        tuner_name = config.name or f"sweep-{parent_run_id}-{int(time.time())}"
        tuner = tune.Tuner(
            trainable,
            param_space={"block": tune.grid_search([b.to_dict() for b in blocks]), "sweep": sweep,
                         "threads": max(1, int(config.cpus_per_trial))},
            tune_config=tune.TuneConfig(max_concurrent_trials=config.max_concurrent_trials or None),
            run_config=tune.RunConfig(name=tuner_name,
                                      storage_path=storage, verbose=1 if progress else 0,
                                      failure_config=tune.FailureConfig(max_failures=config.max_failures)),
        )
        if progress:
            results = tuner.fit()
        else:  # Tune prints its configuration box and results path at any verbosity: into a log beside its results
            log = Path(storage) / tuner_name / "driver.log" if "://" not in storage else Path("sweep-driver.log")
            with output_to(log):
                results = tuner.fit()
        errors = [r.error for r in results if r.error]
        if errors:
            raise RuntimeError(f"{len(errors)} sweep trial(s) failed after retries; rerun with --resume "
                               f"{parent_run_id} to finish the missing adapters. First error: {errors[0]}")
    done = logged_children(client, experiment_id, parent_run_id)
    summary = SweepRun(parent_run_id, len(done), config.expected_examples(), config.adapter)
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metric("adapters_logged", len(done))
    print(json.dumps({"parent_run_id": parent_run_id, "adapters": len(done), "expected": summary.expected}))
    return summary


def load_sweep_config(parent_run_id: str) -> SweepConfig:
    """The config a sweep was started with (for `--resume`)."""
    tracking.setup()
    path = tracking.download(parent_run_id, SWEEP_CONFIG_FILE)
    return build(SweepConfig, json.loads(Path(path).read_text()))


@dataclass
class SweepSetting:
    """What the stages after a sweep start from: its config, a frozen backbone and the data it was trained on."""

    config: SweepConfig
    backbone: Backbone
    data: SequenceData
    spec: DataSpec


def load_sweep_setting(parent_run_id: str, backbone: str = "", data_overrides: dict | None = None) -> SweepSetting:
    """The sweep's config with its backbone (or `backbone`, a run id or file) and the data that backbone recorded
    (`data_overrides`: e.g. where it lies on this machine)."""
    config = load_sweep_config(parent_run_id)
    model, extra = load_backbone(resolve_backbone_file(backbone or config.backbone_run_id))
    spec = data_spec(extra.get("data"), data_overrides)
    return SweepSetting(config, model, load_data(spec), spec)
