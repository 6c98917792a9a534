"""`padirec train-dit` (Ray Train DDP, MLflow registry) and `padirec generate` (registered model -> adapter)."""

from __future__ import annotations

import argparse

from padirec.cli.common import add_common, add_data_flags, data_overrides, given, print_json, section
from padirec.cli.flags import add_flags
from padirec.config import build
from padirec.contracts.dataset import download_dataset
from padirec.diffusion.generate import GenerateConfig, generate
from padirec.diffusion.model import DiTConfig
from padirec.diffusion.preference import PreferenceConfig
from padirec.diffusion.stage import GeneratorRunConfig, train_generator
from padirec.diffusion.task import TaskLossConfig
from padirec.diffusion.train import DiTTrainConfig

TRAIN_FIELDS = ["epochs", "batch_size", "lr", "prediction", "checkpoint_every", "seed", "cond_jitter",
                "consistency_weight", "last_step_prob", "task_loss_weight"]
RUN_FIELDS = ["workers", "gpu", "cpus_per_worker", "storage_path", "name", "max_failures", "model_name", "alias",
              "register"]


def add_commands(commands) -> None:
    """Add `train-dit` and `generate` to the `padirec` subparsers."""
    train = commands.add_parser(
        "train-dit", help="train the DiT generator on a gathered sweep (Ray Train DDP) and register it in MLflow",
        description="Train the parameter-diffusion generator on a sweep's gathered adapters with Ray Train "
                    "(DDP over --workers; 0 = in this process), log per-epoch metrics and the final model to "
                    "MLflow and register it. Running again with the same --storage-path and --name continues "
                    "from the last checkpoint. YAML section: dit_train (with dit, schedule, task, preference).")
    add_common(train)
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", metavar="SWEEP_RUN_ID", help="sweep (parent) run whose gathered dataset to use")
    source.add_argument("--dataset-path", help="a gathered adapters.parquet")
    add_flags(train, GeneratorRunConfig, RUN_FIELDS, section="run")
    add_flags(train, DiTTrainConfig, TRAIN_FIELDS, section="dit_train")
    add_flags(train, DiTConfig, ["conditioning", "reference"], section="dit_train.dit",
              helps={"reference": "mcgln: condition on the sweep's mean adapter (FatsMB's agnostic -> specific)"})
    add_flags(train, TaskLossConfig, ["backbone"], section="dit_train.task", flags={"backbone": "--task-backbone"})
    add_flags(train, PreferenceConfig, ["epochs", "beta", "lr"], section="dit_train.preference",
              flags={"epochs": "--preference-epochs", "beta": "--preference-beta", "lr": "--preference-lr"},
              helps={"epochs": "TA-Rec's preference alignment (APA) after training: DPO epochs on the sweep's own "
                               "ranking of adapters by w·(NDCG, α-NDCG); writes dit-aligned.pt (0 = off)",
                     "beta": "APA's DPO temperature", "lr": "APA's learning rate"})
    train.set_defaults(func=cmd_train_dit)

    generate_parser = commands.add_parser(
        "generate", help="generate an adapter for a preference weight with a registered generator and evaluate it",
        description="Sample adapters for --w-acc (w_div = 1 - w_acc), or --weights for a generator of more "
                    "objectives, load them into the backbone the generator was trained for and print full-ranking "
                    "NDCG@10 / α-NDCG@10 (and the further objectives' metrics) as JSON.")
    add_data_flags(generate_parser)
    add_common(generate_parser)
    add_flags(generate_parser, GenerateConfig, ["w_acc", "weights", "model", "sampler", "steps", "spacing", "eta",
                                                "dtype", "guidance", "seed", "select", "select_users", "backbone",
                                                "split", "device", "output", "log"],
              section="generate", flags={"backbone": "--backbone-run"})
    generate_parser.set_defaults(func=cmd_generate)


def train_config(args: argparse.Namespace) -> DiTTrainConfig:
    """The YAML `dit_train` section updated by the flags."""
    return build(DiTTrainConfig, section(args, "dit_train"), given(args, "dit_train"))


def run_config(args: argparse.Namespace) -> GeneratorRunConfig:
    return build(GeneratorRunConfig, {"experiment": args.experiment}, given(args, "run"))


def cmd_train_dit(args: argparse.Namespace) -> None:
    config, run = train_config(args), run_config(args)  # bad options fail before anything is downloaded
    dataset = download_dataset(args.sweep) if args.sweep else args.dataset_path
    print_json(train_generator(dataset, config, run).to_dict())


def generate_config(args: argparse.Namespace) -> GenerateConfig:
    sources = (section(args, "generate"), given(args, "generate"))
    if not any(s.get("w_acc") or s.get("weights") for s in sources):
        raise SystemExit("padirec generate: give --w-acc (two objectives) or --weights (p numbers per w)")
    return build(GenerateConfig, {"experiment": args.experiment}, *sources)


def cmd_generate(args: argparse.Namespace) -> None:
    print_json(generate(generate_config(args), data_overrides(args)))
