"""The `padirec` command: each stage by hand (data, pretrain, adapt, evaluate-adapter, sweep, gather, train-dit,
generate, evaluate, serve) and the whole chain (pipeline).

Every command reads an optional `--config file.yaml` (sections `data`, `pretrain`, `adapter`, ...) and lets
flags override it. Results go to MLflow (`MLFLOW_TRACKING_URI`, default a local SQLite store `./mlflow.db`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from padirec.cli.common import add_common, add_data_flags, data_overrides, given, print_json, section
from padirec.cli.evaluation import add_commands as add_evaluation_commands
from padirec.cli.flags import add_flags, comma_list
from padirec.cli.generator import add_commands as add_generator_commands
from padirec.cli.serving import add_commands as add_serving_commands
from padirec.config import build, data_spec, load_data
from padirec.data import DataError
from padirec.evaluation.stage import evaluate_adapter
from padirec.phases import adapt, pretrain
from padirec.pipeline import pipeline_config, run_pipeline
from padirec.runtime import output_to
from padirec.serving.app import AppArgs
from padirec.serving.stage import ServeOptions, serve
from padirec.sweep import SweepConfig, gather, load_sweep_config, run_sweep, sweep_report
from padirec.training import OBJECTIVE_FIELDS, AdapterConfig, PretrainConfig


def cmd_data_stats(args: argparse.Namespace) -> None:
    data = load_data(data_spec(section(args, "data"), given(args, "data")))
    for key, value in data.stats().items():
        print(f"{key:>28}: {value}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    spec = data_spec(section(args, "data"), given(args, "data"))
    config = build(PretrainConfig, section(args, "pretrain"), given(args, "pretrain"))
    run = pretrain(spec, config, args.experiment, args.output, progress=not args.quiet)
    print_json({"run_id": run.run_id, **run.metrics})


def cmd_adapt(args: argparse.Namespace) -> None:
    config = build(AdapterConfig, section(args, "adapter"), given(args, "adapter"))
    w = args.w_acc if args.weights is None else args.weights
    run = adapt(args.backbone_run, w, config, data_overrides(args), args.experiment, not args.quiet)
    if args.output:
        np.save(args.output, run.adapter)
    print_json({"run_id": run.run_id, "w": run.w, "seconds": round(run.seconds, 2), **run.metrics})


def cmd_evaluate_adapter(args: argparse.Namespace) -> None:
    print_json(evaluate_adapter(args.backbone_run, args.adapter or "", args.adapter_run or "", args.split,
                                data_overrides(args)))


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.sweep_command == "report":
        sweep_report(args.sweep, args.output)
        return
    if args.resume:
        config = load_sweep_config(args.resume)
    else:
        config = build(SweepConfig, section(args, "sweep"), given(args, "sweep"),
                       {"adapter": section(args, "adapter")}, {"adapter": given(args, "adapter")})
        if not config.backbone_run_id:
            raise SystemExit("padirec sweep: --backbone-run is required (or --resume SWEEP_RUN_ID)")
    summary = run_sweep(config, args.resume, args.experiment, progress=not args.quiet)
    if not summary.complete:
        raise SystemExit(f"sweep incomplete: {summary.adapters}/{summary.expected} adapters; "
                         f"run `padirec sweep --resume {summary.parent_run_id}`")
    if args.gather:
        gather(summary.parent_run_id)


def cmd_gather(args: argparse.Namespace) -> None:
    print_json(gather(args.sweep, args.output))


def cmd_pipeline(args: argparse.Namespace) -> None:
    overrides = {k: v for k, v in {"output_dir": args.output_dir, "experiment": args.experiment}.items() if v}
    config = pipeline_config(args.config, {"data": given(args, "data"), "adapter": given(args, "adapter")}, overrides)
    config = config.small() if args.small else config
    summary = run_pipeline(config, "quiet" if args.quiet else "verbose" if args.verbose else "bar")
    if args.deploy:
        print_json(asdict(serve(*deploy_options(summary))))
    elif not args.verbose:  # Ray's driver prints late warnings (e.g. the worker pool's size) until it shuts down
        import ray

        with output_to(Path(config.output_dir).resolve() / "logs" / "ray-shutdown.log"):
            ray.shutdown()


def deploy_options(summary: dict) -> tuple[AppArgs, ServeOptions]:
    """`padirec serve` for the generator version the pipeline just registered: it returns at once on a cluster
    (RAY_ADDRESS, like jobs/deploy.py), and serves until Ctrl-C on a local one."""
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))
    options = ServeOptions(host="0.0.0.0", blocking=False) if on_cluster else ServeOptions()
    return AppArgs(checkpoint=summary["generator"]["model_uri"]), options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="padirec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="load, preprocess (cached) and print dataset statistics")
    add_data_flags(stats)
    add_common(stats)
    stats.set_defaults(func=cmd_data_stats)

    pretrain_parser = commands.add_parser("pretrain", help="phase 1: train a backbone on BCE with early stopping")
    add_data_flags(pretrain_parser)
    add_common(pretrain_parser)
    add_flags(pretrain_parser, PretrainConfig, ["backbone", "epochs", "patience", "lr", "batch_size", "seed",
                                                "device"], section="pretrain")
    pretrain_parser.add_argument("--output", help="also save the checkpoint to this path")
    pretrain_parser.set_defaults(func=cmd_pretrain)

    adapt_parser = commands.add_parser("adapt", help="phase 2: one adapter for a preference weight, backbone frozen")
    add_data_flags(adapt_parser)
    add_common(adapt_parser)
    adapt_parser.add_argument("--backbone-run", required=True, help="MLflow run id of the backbone, or a checkpoint")
    weight = adapt_parser.add_mutually_exclusive_group(required=True)
    weight.add_argument("--w-acc", type=float, help="accuracy weight in [0, 1]; w_div = 1 - w_acc")
    weight.add_argument("--weights", type=comma_list(float), metavar="W1,W2,...",
                        help="one weight per objective (--objectives' order), summing to 1")
    add_flags(adapt_parser, AdapterConfig, ["objectives", "epochs", "keep_last", "keep", *OBJECTIVE_FIELDS, "lr",
                                            "seed", "init_seed", "device"], section="adapter")
    adapt_parser.add_argument("--output", help="also save the adapter (.npy, 1096 float32) here")
    adapt_parser.set_defaults(func=cmd_adapt)

    evaluate_adapter_parser = commands.add_parser(
        "evaluate-adapter", help="full-ranking NDCG@10 / α-NDCG@10 of the backbone, most-popular and an adapter")
    add_data_flags(evaluate_adapter_parser)
    add_common(evaluate_adapter_parser)
    evaluate_adapter_parser.add_argument("--backbone-run", required=True,
                                         help="MLflow run id of the backbone, or a checkpoint path")
    evaluate_adapter_parser.add_argument("--adapter", help="adapter .npy file")
    evaluate_adapter_parser.add_argument("--adapter-run", help="MLflow run id of an `adapt` run")
    evaluate_adapter_parser.add_argument("--split", choices=["valid", "test"], default="test")
    evaluate_adapter_parser.set_defaults(func=cmd_evaluate_adapter)

    sweep = commands.add_parser("sweep", help="Ray Tune sweep of adapters over the weight grid (one MLflow run each)",
                                description="Train adapters for every weight on a simplex grid x seeds as Ray Tune "
                                            "trials (packed K weights per trial), logging each kept adapter as a "
                                            "child MLflow run of one sweep run. `padirec sweep report` plots the "
                                            "Retrain curve of a gathered sweep.")
    add_common(sweep)
    add_flags(sweep, SweepConfig, ["backbone_run_id", "grid_step", "seeds", "pack_size", "cpus_per_trial",
                                   "gpus_per_trial", "max_concurrent_trials", "max_failures", "storage_path"],
              section="sweep", flags={"backbone_run_id": "--backbone-run"},
              helps={"backbone_run_id": "MLflow run id of the backbone (from `padirec pretrain`)"})
    sweep.add_argument("--resume", metavar="SWEEP_RUN_ID", help="finish an interrupted sweep: only missing adapters")
    add_flags(sweep, AdapterConfig, ["objectives", "epochs", "keep_last", "keep", *OBJECTIVE_FIELDS, "lr"],
              section="adapter", helps={"epochs": "adapter epochs"})
    sweep.add_argument("--gather", action="store_true", help="gather the dataset when the sweep completes")
    sweep.set_defaults(func=cmd_sweep, sweep_command=None)
    sweep_commands = sweep.add_subparsers(dest="sweep_command")
    report = sweep_commands.add_parser("report", help="print and plot the Retrain curve of a gathered sweep")
    report.add_argument("--sweep", required=True, help="sweep (parent) run id")
    report.add_argument("--output", help="directory for retrain_curve.md/png (default: a temp dir)")

    gather_parser = commands.add_parser("gather", help="collect a sweep's adapter runs into one Parquet dataset")
    add_common(gather_parser)
    gather_parser.add_argument("--sweep", required=True, help="sweep (parent) run id")
    gather_parser.add_argument("--output", help="also keep the Parquet file and manifest in this directory")
    gather_parser.set_defaults(func=cmd_gather)

    add_generator_commands(commands)  # train-dit, generate
    add_serving_commands(commands)  # serve
    add_evaluation_commands(commands)  # evaluate

    pipeline = commands.add_parser("pipeline", help="the whole chain on a local Ray cluster and MLflow store",
                                   description="data -> backbone -> Ray Tune adapter sweep -> gather -> Retrain "
                                               "curve -> DiT -> controllability report, each stage logged to "
                                               "MLflow. Defaults: synthetic data, small settings (minutes on 2 cores).")
    add_data_flags(pipeline)
    pipeline.add_argument("--config", help="YAML with sections data/pretrain/sweep/adapter/dit_train/evaluate/...")
    pipeline.add_argument("--experiment", help="MLflow experiment (default: padirec)")
    pipeline.add_argument("--output-dir", help="local copies of the backbone, dataset and report")
    pipeline.add_argument("--small", action="store_true", help="a smoke-test size (used by the tests)")
    add_flags(pipeline, AdapterConfig, ["objectives"], section="adapter")
    output = pipeline.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="one line per stage (no live line on a terminal)")
    output.add_argument("--verbose", action="store_true", help="everything the stages print (default: one live "
                                                                "line per stage; their output in OUTPUT_DIR/logs)")
    pipeline.add_argument("--deploy", action="store_true",
                          help="end by serving the new generator (`padirec serve`; returns at once with RAY_ADDRESS)")
    pipeline.set_defaults(func=cmd_pipeline)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    # MLflow draws a bar per downloaded artifact (hundreds in a gather): off with --quiet, and in the pipeline
    # unless --verbose (there the stages' output goes to their logs)
    if getattr(args, "quiet", False) or (args.command == "pipeline" and not args.verbose):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        args.func(args)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"padirec: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
