"""The `padirec` command: each stage by hand (data, pretrain, adapt, evaluate-adapter) and the later stages.

Every command reads an optional `--config file.yaml` (sections `data`, `pretrain`, `adapter`, ...)
and lets flags override it. Results go to MLflow (`MLFLOW_TRACKING_URI`, default a local
SQLite store `./mlflow.db`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", dest="kind", choices=["ml-100k", "ml-1m", "rechorus", "table", "synthetic"],
                       help="dataset format (default: synthetic)")
    group.add_argument("--data-dir", dest="path",
                       help="dataset directory, or the interactions table for --dataset table "
                            "(ml-100k/ml-1m default: $PADIREC_DATA_DIR, else downloaded)")
    group.add_argument("--categories", dest="categories_path", help="item-categories table for --dataset table")
    group.add_argument("--min-interactions", type=int, help="drop users with fewer interactions (default 5)")
    group.add_argument("--max-len", type=int, help="history window (default 20)")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file with sections data/pretrain/adapter/...; flags override it")
    parser.add_argument("--experiment", default="padirec", help="MLflow experiment (default: padirec)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def section(args: argparse.Namespace, name: str) -> dict:
    from padirec.config import load_yaml

    return load_yaml(args.config).get(name, {}) if args.config else {}


def data_spec(args: argparse.Namespace, stored: dict | None = None):
    from padirec.config import DataSpec, build

    flags = {k: getattr(args, k, None) for k in ("kind", "path", "categories_path", "min_interactions", "max_len")}
    spec = build(DataSpec, stored, section(args, "data"), flags)
    # absolute, so that Ray workers and later stages (which read it from checkpoints) find the same files
    for name in ("path", "categories_path"):
        if getattr(spec, name):
            setattr(spec, name, str(Path(getattr(spec, name)).resolve()))
    return spec


def resolve_backbone(reference: str):
    """A backbone from a checkpoint path or an MLflow run id."""
    from padirec import tracking
    from padirec.training import load_backbone

    path = Path(reference)
    if not path.exists():
        tracking.setup()
        path = tracking.download(reference, "backbone/backbone.pt")
    return load_backbone(path)


def cmd_data_stats(args: argparse.Namespace) -> None:
    from padirec.config import load_data

    data = load_data(data_spec(args))
    for key, value in data.stats().items():
        print(f"{key:>28}: {value}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from padirec.config import build
    from padirec.pipeline import pretrain_stage
    from padirec.training import PretrainConfig

    spec = data_spec(args)
    config = build(PretrainConfig, section(args, "pretrain"),
                   {"backbone": args.backbone, "epochs": args.epochs, "patience": args.patience, "lr": args.lr,
                    "batch_size": args.batch_size, "seed": args.seed, "device": args.device})
    run_id, metrics = pretrain_stage(spec, config, args.experiment, args.output, progress=not args.quiet)
    print(json.dumps({"run_id": run_id, **metrics}, indent=2))


def cmd_adapt(args: argparse.Namespace) -> None:
    import mlflow

    from padirec import tracking
    from padirec.config import build, load_data
    from padirec.training import AdapterConfig, train_adapters

    backbone, extra = resolve_backbone(args.backbone_run)
    spec = data_spec(args, extra.get("data"))
    config = build(AdapterConfig, section(args, "adapter"),
                   {"epochs": args.epochs, "keep_last": args.keep_last, "lr": args.lr, "seed": args.seed,
                    "init_seed": args.init_seed, "device": args.device})
    if not 0.0 <= args.w_acc <= 1.0:
        raise SystemExit(f"--w-acc must be in [0, 1], got {args.w_acc}")
    weights = np.array([[args.w_acc, 1.0 - args.w_acc]], dtype=np.float32)
    data = load_data(spec)
    with tracking.start_run(f"adapter-w{args.w_acc:.2f}", args.experiment, tags={"padirec.stage": "adapter"}):
        mlflow.log_params({"w_acc": args.w_acc, "w_div": 1.0 - args.w_acc, "backbone_run_id": args.backbone_run,
                           **vars(config)})
        result = train_adapters(backbone, data, weights, config, on_epoch=tracking.log_epoch_metrics,
                                progress=not args.quiet)
        final = result.params[-1, 0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "adapter.npy"
            np.save(path, final)
            mlflow.set_tag("adapter_sha256", tracking.sha256_file(path))
            mlflow.log_artifact(str(path), "adapter")
        if args.output:
            np.save(args.output, final)
        metrics = {name: float(values[-1, 0]) for name, values in result.metrics.items()}
        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
        print(json.dumps({"w": weights[0].tolist(), "seconds": round(result.seconds, 2), **metrics}, indent=2))


def cmd_evaluate_adapter(args: argparse.Namespace) -> None:
    import torch

    from padirec import tracking
    from padirec.config import load_data
    from padirec.training import EvalSet, popularity_metrics, rank_metrics

    backbone, extra = resolve_backbone(args.backbone_run)
    data = load_data(data_spec(args, extra.get("data")))
    eval_set = EvalSet.build(data, args.split)
    report = {"backbone": {k: float(v[0]) for k, v in rank_metrics(backbone, eval_set).items()},
              "most_popular": popularity_metrics(data, eval_set)}
    adapter_path = args.adapter
    if args.adapter_run:
        tracking.setup()
        adapter_path = tracking.download(args.adapter_run, "adapter/adapter.npy")
    if adapter_path:
        flat = torch.as_tensor(np.load(adapter_path), dtype=torch.float32)[None]
        report["adapter"] = {k: float(v[0]) for k, v in rank_metrics(backbone, eval_set, flat).items()}
    print(json.dumps({"split": args.split, **report}, indent=2))


def cmd_sweep(args: argparse.Namespace) -> None:
    from padirec.config import build
    from padirec.sweep import SweepConfig, load_sweep_config, run_sweep

    if args.sweep_command == "report":
        from padirec.sweep import sweep_report

        sweep_report(args.sweep, args.output)
        return
    if args.resume:
        config = load_sweep_config(args.resume)
    else:
        if not args.backbone_run and not section(args, "sweep").get("backbone_run_id"):
            raise SystemExit("padirec sweep: --backbone-run is required (or --resume SWEEP_RUN_ID)")
        flags = {"backbone_run_id": args.backbone_run, "grid_step": args.grid_step, "pack_size": args.pack_size,
                 "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                 "max_failures": args.max_failures, "storage_path": args.storage_path,
                 "max_concurrent_trials": args.max_concurrent_trials,
                 "seeds": [int(s) for s in args.seeds.split(",")] if args.seeds else None}
        adapter = {**section(args, "adapter"), **{k: v for k, v in {"epochs": args.epochs, "keep_last": args.keep_last,
                                                                    "lr": args.lr}.items() if v is not None}}
        config = build(SweepConfig, section(args, "sweep"), flags, {"adapter": adapter})
    summary = run_sweep(config, args.resume, args.experiment, progress=not args.quiet)
    if summary["adapters"] != summary["expected"]:
        raise SystemExit(f"sweep incomplete: {summary['adapters']}/{summary['expected']} adapters; "
                         f"run `padirec sweep --resume {summary['parent_run_id']}`")
    if args.gather:
        from padirec.sweep import gather

        gather(summary["parent_run_id"])


def cmd_gather(args: argparse.Namespace) -> None:
    from padirec.sweep import gather

    manifest = gather(args.sweep, args.output)
    print(json.dumps(manifest, indent=2))


def cmd_pipeline(args: argparse.Namespace) -> None:
    from padirec.pipeline import pipeline_config, run_pipeline

    data = {k: getattr(args, k) for k in ("kind", "path", "categories_path", "min_interactions", "max_len")
            if getattr(args, k) is not None}
    overrides = {"output_dir": args.output_dir, "experiment": args.experiment}
    config = pipeline_config(args.config, {k: v for k, v in overrides.items() if v is not None})
    config.data = {**config.data, **data}
    if args.small:
        config.pretrain = {**config.pretrain, "epochs": 3}
        config.sweep = {**config.sweep, "grid_step": 0.25, "seeds": [0]}
        config.adapter = {**config.adapter, "epochs": 3, "keep_last": 2}
        config.dit_train = {**config.dit_train, "epochs": 5, "dit": {"hidden": 32, "depth": 1, "heads": 2, "ffn": 64}}
        config.evaluate = {**config.evaluate, "samplers": ["ddim:10"], "timing_repeats": 2, "cmr": {"epochs": 2},
                           "hypernetwork": {"steps": 200}}
    summary = run_pipeline(config, progress=not args.quiet)
    if args.deploy:
        from padirec.serving.commands import cmd_serve

        cmd_serve(build_parser().parse_args(deploy_arguments(summary)))


def deploy_arguments(summary: dict) -> list[str]:
    """`padirec serve` for the generator version the pipeline just registered: it returns at once on a cluster
    (RAY_ADDRESS, like jobs/deploy.py), and serves until Ctrl-C on a local one."""
    arguments = ["serve", "--model", summary["generator"]["model_uri"]]
    if os.environ.get("RAY_ADDRESS"):
        arguments += ["--host", "0.0.0.0", "--no-block"]
    return arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padirec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="load, preprocess (cached) and print dataset statistics")
    add_data_arguments(stats)
    add_common(stats)
    stats.set_defaults(func=cmd_data_stats)

    pretrain = commands.add_parser("pretrain", help="phase 1: train a backbone on BCE with early stopping")
    add_data_arguments(pretrain)
    add_common(pretrain)
    pretrain.add_argument("--backbone", choices=["sasrec", "gru4rec", "tisasrec", "comirec"], help="default sasrec")
    pretrain.add_argument("--epochs", type=int, help="maximum epochs (default 200)")
    pretrain.add_argument("--patience", type=int, help="early-stopping patience in epochs (default 10)")
    pretrain.add_argument("--lr", type=float)
    pretrain.add_argument("--batch-size", type=int)
    pretrain.add_argument("--seed", type=int)
    pretrain.add_argument("--device", help="cpu or cuda")
    pretrain.add_argument("--output", help="also save the checkpoint to this path")
    pretrain.set_defaults(func=cmd_pretrain)

    adapt = commands.add_parser("adapt", help="phase 2: train one adapter for a preference weight, backbone frozen")
    add_data_arguments(adapt)
    add_common(adapt)
    adapt.add_argument("--backbone-run", required=True, help="MLflow run id of the backbone, or a checkpoint path")
    adapt.add_argument("--w-acc", type=float, required=True, help="accuracy weight in [0, 1]; w_div = 1 - w_acc")
    adapt.add_argument("--epochs", type=int, help="default 20")
    adapt.add_argument("--keep-last", type=int, help="epochs kept as examples (default 5)")
    adapt.add_argument("--lr", type=float)
    adapt.add_argument("--seed", type=int, help="data order and negative sampling")
    adapt.add_argument("--init-seed", type=int, help="the initial adapter (shared by a sweep)")
    adapt.add_argument("--device")
    adapt.add_argument("--output", help="also save the adapter (.npy, 1096 float32) here")
    adapt.set_defaults(func=cmd_adapt)

    evaluate = commands.add_parser("evaluate-adapter",
                                   help="full-ranking NDCG@10 / α-NDCG@10 of the backbone, most-popular and an adapter")
    add_data_arguments(evaluate)
    add_common(evaluate)
    evaluate.add_argument("--backbone-run", required=True, help="MLflow run id of the backbone, or a checkpoint path")
    evaluate.add_argument("--adapter", help="adapter .npy file")
    evaluate.add_argument("--adapter-run", help="MLflow run id of an `adapt` run")
    evaluate.add_argument("--split", choices=["valid", "test"], default="test")
    evaluate.set_defaults(func=cmd_evaluate_adapter)

    sweep = commands.add_parser("sweep", help="Ray Tune sweep of adapters over the weight grid (one MLflow run each)",
                                description="Train adapters for every weight on a simplex grid x seeds as Ray Tune "
                                            "trials (packed K weights per trial), logging each kept adapter as a "
                                            "child MLflow run of one sweep run. `padirec sweep report` plots the "
                                            "Retrain curve of a gathered sweep.")
    add_common(sweep)
    sweep.add_argument("--backbone-run", help="MLflow run id of the backbone (from `padirec pretrain`)")
    sweep.add_argument("--resume", metavar="SWEEP_RUN_ID", help="finish an interrupted sweep: only missing adapters")
    sweep.add_argument("--grid-step", type=float, help="w_acc step (default 0.05: 21 points)")
    sweep.add_argument("--seeds", help="comma-separated data-order seeds (default 0)")
    sweep.add_argument("--pack-size", type=int, help="grid points per trial, trained together (default 21)")
    sweep.add_argument("--cpus-per-trial", type=float)
    sweep.add_argument("--gpus-per-trial", type=float, help="fractional GPUs allowed, e.g. 0.25")
    sweep.add_argument("--max-concurrent-trials", type=int)
    sweep.add_argument("--max-failures", type=int, help="retries per failed trial (default 2)")
    sweep.add_argument("--storage-path", help="Tune results directory (shared storage on a cluster)")
    sweep.add_argument("--epochs", type=int, help="adapter epochs (default 20)")
    sweep.add_argument("--keep-last", type=int, help="kept epochs per adapter (default 5)")
    sweep.add_argument("--lr", type=float)
    sweep.add_argument("--gather", action="store_true", help="gather the dataset when the sweep completes")
    sweep.set_defaults(func=cmd_sweep, sweep_command=None)
    sweep_commands = sweep.add_subparsers(dest="sweep_command")
    report = sweep_commands.add_parser("report", help="print and plot the Retrain curve of a gathered sweep")
    report.add_argument("--sweep", required=True, help="sweep (parent) run id")
    report.add_argument("--output", help="directory for retrain_curve.md/png (default: a temp dir)")

    gather = commands.add_parser("gather", help="collect a sweep's adapter runs into one Parquet dataset")
    add_common(gather)
    gather.add_argument("--sweep", required=True, help="sweep (parent) run id")
    gather.add_argument("--output", help="also keep the Parquet file and manifest in this directory")
    gather.set_defaults(func=cmd_gather)

    from padirec.diffusion.commands import add_commands

    add_commands(commands)  # train-dit, generate
    from padirec.serving.commands import add_commands as add_serving_commands

    add_serving_commands(commands)  # serve
    from padirec.evaluation.commands import add_commands as add_evaluation_commands

    add_evaluation_commands(commands)  # evaluate

    pipeline = commands.add_parser("pipeline", help="the whole chain on a local Ray cluster and MLflow store",
                                   description="data -> backbone -> Ray Tune adapter sweep -> gather -> Retrain "
                                               "curve (-> DiT -> generation), each stage logged to MLflow. "
                                               "Defaults: synthetic data, small settings (minutes on 2 cores).")
    add_data_arguments(pipeline)
    pipeline.add_argument("--config", help="YAML with sections data/pretrain/sweep/adapter/dit_train/output_dir")
    pipeline.add_argument("--experiment", help="MLflow experiment (default: padirec)")
    pipeline.add_argument("--output-dir", help="local copies of the backbone, dataset and report")
    pipeline.add_argument("--small", action="store_true", help="a smoke-test size (used by the tests)")
    pipeline.add_argument("--quiet", action="store_true", help="no progress bars")
    pipeline.add_argument("--deploy", action="store_true",
                          help="end by serving the new generator (`padirec serve`; returns at once with RAY_ADDRESS)")
    pipeline.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from padirec.data import DataError

    try:
        args.func(args)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"padirec: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
