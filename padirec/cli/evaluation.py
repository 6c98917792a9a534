"""`padirec evaluate`: the controllability report of a sweep and its generator(s), logged to one MLflow run."""

from __future__ import annotations

import argparse

from padirec.cli.common import add_common, add_data_flags, data_overrides, given, print_json, section
from padirec.cli.flags import add_flags
from padirec.config import build
from padirec.contracts.names import DEFAULT_MODEL_URI
from padirec.evaluation.hypernetworks import END_TO_END
from padirec.evaluation.report import EvaluateConfig
from padirec.evaluation.stage import evaluate

EVALUATE_FIELDS = ["methods", "tasks", "task_step", "samplers", "guidance", "samples", "seeds", "seed", "split",
                   "mmr_candidates", "dpp_candidates", "noise_std", "noise_repeats", "timing_repeats",
                   "retrain_timing_epochs", "select", "select_sampler", "select_users"]


def add_commands(commands) -> None:
    """Add `evaluate` to the `padirec` subparsers."""
    parser = commands.add_parser(
        "evaluate",
        help="controllability report: PaDiRec vs Retrain, Soup, MMR, DPP, CMR, PHN, YOTO, Hypernetwork (paper §5)",
        description="For w_acc in {0, 0.1, ..., 1}: test NDCG@10 / α-NDCG@10 (full ranking) of every method, "
                    "Avg.HV and Pearson r-a / r-d against Retrain (Table 1), the curves (Figure 3), response "
                    "time (Table 2), optional noise robustness (RQ1) and generator ablations (Figure 5). "
                    "Markdown + CSV + PNG, logged to one MLflow run tagged padirec.stage=report. "
                    "YAML section: evaluate.")
    add_data_flags(parser)
    add_common(parser)
    parser.add_argument("--sweep", required=True, help="sweep (parent) run id: its gathered dataset and backbone")
    parser.add_argument("--model", default=DEFAULT_MODEL_URI,
                        help="the generator: models:/name@alias, models:/name/version, a run id or a dit.pt path")
    parser.add_argument("--generators", help="compare several generators instead, as name=REF,... "
                                             "(e.g. pre=a/dit.pt,pre_post=b/dit.pt,adanorm=c/dit.pt)")
    parser.add_argument("--backbone", help="backbone run id or checkpoint (default: the sweep's backbone run)")
    add_flags(parser, EvaluateConfig, EVALUATE_FIELDS, section="evaluate")
    for name, method in END_TO_END.items():  # --cmr-epochs, --cmr-min-steps, --cmr-keep, --phn-epochs, ...
        key = name.lower()
        add_flags(parser, method.config_type, ["epochs", "min_steps", "keep"], section=f"evaluate.{key}",
                  flags={"epochs": f"--{key}-epochs", "min_steps": f"--{key}-min-steps", "keep": f"--{key}-keep"},
                  helps={"epochs": f"{name}'s training epochs",
                         "min_steps": f"{name}'s least optimizer steps (epochs added where an epoch is short)",
                         "keep": f"{name}'s weights kept: the last epoch's, or the best epoch's by validation "
                                 "w-utility"})
    parser.add_argument("--output", help="directory for the report files (default: a temp dir)")
    parser.set_defaults(func=cmd_evaluate)


def evaluate_config(args: argparse.Namespace) -> EvaluateConfig:
    return build(EvaluateConfig, section(args, "evaluate"), given(args, "evaluate"))


def generator_references(args: argparse.Namespace) -> dict[str, str]:
    """`{"": --model}`, or the labelled generators of `--generators name=REF,...`."""
    if not args.generators:
        return {"": args.model}
    pairs = [item.strip().split("=", 1) for item in args.generators.split(",") if item.strip()]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise SystemExit(f"--generators must be name=REF,..., got {args.generators!r}")
    return dict(pairs)


def cmd_evaluate(args: argparse.Namespace) -> None:
    result = evaluate(args.sweep, evaluate_config(args), generator_references(args), args.backbone or "",
                      args.output, data_overrides(args), args.experiment, progress=not args.quiet)
    print_json({"run_id": result.run_id, "output_dir": result.output_dir, "table": result.table})
