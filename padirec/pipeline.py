"""The whole chain on the embedded default: data → backbone → sweep → gather → Retrain curve → DiT → generate.

Each stage is the same function its own command runs; this only passes run ids along. On a
laptop it uses a local Ray cluster and the local MLflow store; with `RAY_ADDRESS` and
`MLFLOW_TRACKING_URI` set it runs unchanged on a cluster.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow

from padirec import tracking
from padirec.config import DataSpec, build, load_data
from padirec.data import SequenceData


@dataclass
class PipelineConfig:
    data: dict = field(default_factory=dict)  # DataSpec
    pretrain: dict = field(default_factory=lambda: {"epochs": 30, "patience": 5})  # PretrainConfig
    sweep: dict = field(default_factory=lambda: {"grid_step": 0.1, "seeds": [0, 1], "pack_size": 11})  # SweepConfig
    adapter: dict = field(default_factory=lambda: {"epochs": 10, "keep_last": 5})  # AdapterConfig
    # DiTTrainConfig; a small DiT by default so that the chain finishes in minutes on 2 CPU cores
    dit_train: dict = field(default_factory=lambda: {
        "epochs": 120, "batch_size": 64, "lr": 1e-3, "prediction": "v", "checkpoint_every": 40, "log_every": 10,
        "dit": {"hidden": 128, "depth": 2, "heads": 4, "ffn": 512}})
    dit_workers: int = 2  # Ray Train DDP workers (0 = in-process)
    # EvaluateConfig of the controllability report; every method, sized for a quick pipeline
    evaluate: dict = field(default_factory=lambda: {"samples": 1, "timing_repeats": 3, "cmr": {"epochs": 5},
                                                    "hypernetwork": {"steps": 500}})
    output_dir: str = "padirec-output"
    experiment: str = tracking.DEFAULT_EXPERIMENT


def pretrain_stage(spec: DataSpec, config, experiment: str = tracking.DEFAULT_EXPERIMENT,
                   output: str | Path | None = None, progress: bool = True) -> tuple[str, dict]:
    """Phase 1 as an MLflow run: params, metrics per epoch, test metrics vs most-popular, the checkpoint."""
    import tempfile

    from padirec.training import EvalSet, popularity_metrics, pretrain_backbone, rank_metrics, save_backbone

    data = load_data(spec)
    extra = {"data": spec.to_dict(), "pretrain": vars(config)}
    with tracking.start_run(f"backbone-{config.backbone}", experiment, tags={"padirec.stage": "backbone"}) as run:
        mlflow.log_params({**{f"data.{k}": v for k, v in spec.to_dict().items()}, **vars(config)})
        backbone, info = pretrain_backbone(data, config, on_epoch=tracking.log_epoch_metrics, progress=progress)
        test = EvalSet.build(data, "test")
        metrics = {f"test_{k}": float(v[0]) for k, v in rank_metrics(backbone, test).items()}
        metrics.update({f"most_popular_test_{k}": v for k, v in popularity_metrics(data, test).items()})
        metrics.update({k: float(v) for k, v in info.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            save_backbone(backbone, Path(tmp) / "backbone.pt", extra=extra)
            mlflow.log_artifact(str(Path(tmp) / "backbone.pt"), "backbone")
        if output:
            save_backbone(backbone, output, extra=extra)
    return run.info.run_id, metrics


def run_pipeline(config: PipelineConfig, progress: bool = True) -> dict:
    """Run every stage in order and return the run ids and headline numbers."""
    from padirec.sweep import SweepConfig, gather, run_sweep, sweep_report
    from padirec.training import PretrainConfig

    started = time.perf_counter()
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = build(DataSpec, config.data)
    for name in ("path", "categories_path"):
        if getattr(spec, name):
            setattr(spec, name, str(Path(getattr(spec, name)).resolve()))
    summary: dict = {"tracking_uri": tracking.setup(config.experiment)}

    print("== 1/6 data")
    data = load_data(spec)
    summary["data"] = data.stats()
    print(json.dumps(summary["data"]))

    print("== 2/6 backbone")
    summary["backbone_run_id"], summary["backbone"] = pretrain_stage(
        spec, build(PretrainConfig, config.pretrain), config.experiment, out / "backbone.pt", progress)
    print(json.dumps(summary["backbone"]))

    print("== 3/6 adapter sweep (Ray Tune) and gather")
    sweep = build(SweepConfig, config.sweep, {"backbone_run_id": summary["backbone_run_id"], "adapter": config.adapter,
                                              "storage_path": str(out / "ray_results")})
    result = run_sweep(sweep, experiment=config.experiment, progress=progress)
    summary["sweep_run_id"] = result["parent_run_id"]
    summary["dataset"] = gather(result["parent_run_id"], str(out / "dataset"))

    print("== 4/6 Retrain curve")
    report = sweep_report(result["parent_run_id"], str(out / "report"))
    summary["retrain_curve_png"] = report["png"]

    print("== 5/6 DiT generator (Ray Train DDP), registered in MLflow")
    summary["generator"] = train_generator_stage(result["parent_run_id"], config, out)

    print("== 6/6 controllability report: PaDiRec vs Retrain and the baselines")
    report = report_stage(summary["generator"]["checkpoint_path"], out / "backbone.pt", data,
                          summary["dataset"]["path"], config, out / "report",
                          {"padirec.sweep_run_id": summary["sweep_run_id"]}, progress)
    summary["controllability"] = report["table"]
    summary["report_run_id"] = report["run_id"]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"pipeline done in {summary['seconds']} s; summary in {out / 'summary.json'}; "
          f"browse runs with `mlflow ui --backend-store-uri {summary['tracking_uri']}`")
    return summary


def train_generator_stage(sweep_run_id: str, config: PipelineConfig, out: Path) -> dict:
    """`padirec train-dit` on the sweep's dataset, with the pipeline's DiT settings."""
    import yaml

    from padirec.cli import build_parser
    from padirec.diffusion.commands import train_generator

    config_path = out / "dit_train.yaml"
    config_path.write_text(yaml.safe_dump({"dit_train": config.dit_train}))
    args = build_parser().parse_args(["train-dit", "--sweep", sweep_run_id, "--workers", str(config.dit_workers),
                                      "--config", str(config_path), "--experiment", config.experiment,
                                      "--storage-path", str(out / "ray_results")])
    summary = train_generator(args)
    print(json.dumps(summary))
    return summary


def report_stage(checkpoint: str, backbone_path: Path, data: SequenceData, dataset_path: str, config: PipelineConfig,
                 out: Path, tags: dict, progress: bool = True) -> dict:
    """`padirec evaluate` on the pipeline's own files and its data (stage 1's, which the backbone was trained on):
    every method on w_acc ∈ {0, 0.1, …, 1}, one MLflow run."""
    from padirec.diffusion.train import load_generator
    from padirec.evaluation.report import EvaluateConfig, run_report
    from padirec.sweep import dataset_arrays, read_dataset
    from padirec.training import AdapterConfig, load_backbone

    backbone, _ = load_backbone(backbone_path)
    arrays = dataset_arrays(read_dataset(dataset_path)[0])
    params = {"generator": checkpoint, "backbone": str(backbone_path), "backbone_name": backbone.config.name}
    return run_report(backbone, data, arrays, {"": load_generator(checkpoint)}, build(AdapterConfig, config.adapter),
                      build(EvaluateConfig, config.evaluate), out, config.experiment, tags, params, progress)


def pipeline_config(path: str | None = None, overrides: dict | None = None) -> PipelineConfig:
    from padirec.config import load_yaml

    return build(PipelineConfig, load_yaml(path) if path else None, overrides)


def describe(config: PipelineConfig) -> str:
    return json.dumps(asdict(config), indent=2)
