"""`padirec serve`: the generation API (`padirec.serving.app`) on a local Ray cluster or the one at RAY_ADDRESS."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from padirec.cli.common import given, print_json
from padirec.cli.flags import add_flags
from padirec.serving.app import AppArgs
from padirec.serving.stage import ServeOptions, serve

APP_FIELDS = ["checkpoint", "backbone", "cache_size", "precision", "sampler", "steps", "guidance", "dtype", "seed",
              "select", "select_users", "num_replicas", "num_cpus", "num_gpus", "max_batch_size",
              "batch_wait_timeout_s", "max_history", "models", "data_dir"]


def add_commands(commands) -> None:
    """Add `serve` to the `padirec` subparsers."""
    parser = commands.add_parser(
        "serve", help="serve generated adapters and recommendations over HTTP (Ray Serve)",
        description="Start (or join, with RAY_ADDRESS) a Ray cluster and run the PaDiRec Serve application: "
                    "a control page at /, POST /v1/adapters, POST /v1/recommendations, GET /v1/model, GET /healthz, "
                    "/docs. Blocks until Ctrl-C unless --no-block.")
    add_flags(parser, AppArgs, APP_FIELDS, section="app", flags={"checkpoint": "--model"})
    add_flags(parser, ServeOptions, ["host", "port", "blocking", "metrics_port"], section="options",
              flags={"blocking": "--block"})
    parser.set_defaults(func=cmd_serve)


def app_args(args: argparse.Namespace) -> AppArgs:
    """`build_app`'s arguments from the flags (validated: a bad value is a clear error before Ray starts)."""
    return AppArgs.model_validate(given(args, "app"))


def serve_options(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(**given(args, "options"))


def cmd_serve(args: argparse.Namespace) -> None:
    print_json(asdict(serve(app_args(args), serve_options(args))))
