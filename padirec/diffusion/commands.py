"""`padirec train-dit` (Ray Train DDP, MLflow registry) and `padirec generate` (registered model -> adapter)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np


def add_commands(commands) -> None:
    """Add `train-dit` and `generate` to the `padirec` subparsers (`build_parser`'s `add_subparsers`).

    `padirec.cli` is imported here and in the commands, not at module level, so that `padirec.cli` may
    import this module at its top without a circular-import error."""
    from padirec.cli import add_common, add_data_arguments

    train = commands.add_parser(
        "train-dit", help="train the DiT generator on a gathered sweep (Ray Train DDP) and register it in MLflow",
        description="Train the parameter-diffusion generator on a sweep's gathered adapters with Ray Train "
                    "(DDP over --workers; 0 = in this process), log per-epoch metrics and the final model to "
                    "MLflow and register it. Running again with the same --storage-path and --name continues "
                    "from the last checkpoint.")
    add_common(train)
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", metavar="SWEEP_RUN_ID", help="sweep (parent) run whose gathered dataset to use")
    source.add_argument("--dataset-path", help="a gathered adapters.parquet")
    train.add_argument("--workers", type=int, default=2, help="Ray Train workers (default 2; 0 = no Ray)")
    train.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL)")
    train.add_argument("--cpus-per-worker", type=float, help="default 1")
    train.add_argument("--epochs", type=int, help="default 200")
    train.add_argument("--batch-size", type=int, help="global batch (default 64)")
    train.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4)")
    train.add_argument("--prediction", choices=["eps", "v", "x0"], help="default eps")
    train.add_argument("--conditioning", choices=["adanorm", "pre", "pre_post", "mcgln"], help="default adanorm")
    train.add_argument("--reference", action="store_true",
                       help="mcgln: condition on the sweep's mean adapter (FatsMB's agnostic -> specific)")
    train.add_argument("--consistency-weight", type=float,
                       help="TA-Rec's temporal consistency of x0 predictions (0 = off; TA-Rec: 0.4-0.8)")
    train.add_argument("--last-step-prob", type=float, help="share of rows trained at t = T-1 (one-step sampling)")
    train.add_argument("--task-loss-weight", type=float,
                       help="DimeRec's task loss: x̂0 as the frozen backbone's adapter on w·(BCE, L_div) (0 = off)")
    train.add_argument("--task-backbone", help="backbone run id or checkpoint for the task loss (default: the data's)")
    train.add_argument("--preference-epochs", type=int,
                       help="TA-Rec's preference alignment (APA) after training: DPO epochs on the sweep's own "
                            "ranking of adapters by w·(NDCG, α-NDCG); writes dit-aligned.pt (0 = off)")
    train.add_argument("--preference-beta", type=float, help="APA's DPO temperature (default 1000)")
    train.add_argument("--preference-lr", type=float, help="APA's learning rate (default 1e-5)")
    train.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints (default 10)")
    train.add_argument("--seed", type=int)
    train.add_argument("--storage-path", help="Ray Train results (shared storage on a cluster; default ./ray_results)")
    train.add_argument("--name", help="Ray Train run name; reuse it to resume (default dit-<dataset sha>-<time>)")
    train.add_argument("--max-failures", type=int, default=0, help="worker-group restarts from the last checkpoint")
    train.add_argument("--model-name", default="padirec-dit", help="registered model name (default padirec-dit)")
    train.add_argument("--alias", default="champion", help="alias set on the new version (default champion)")
    train.add_argument("--no-register", action="store_true", help="log the checkpoint but do not register it")
    train.set_defaults(func=cmd_train_dit)

    generate = commands.add_parser(
        "generate", help="generate an adapter for a preference weight with a registered generator and evaluate it",
        description="Sample adapters for --w-acc (w_div = 1 - w_acc) with the generator, load them into the "
                    "backbone the generator was trained for and print full-ranking NDCG@10 / α-NDCG@10 as JSON.")
    add_data_arguments(generate)
    add_common(generate)
    generate.add_argument("--w-acc", required=True, help="accuracy weight in [0, 1], or several comma-separated")
    generate.add_argument("--model", default="models:/padirec-dit@champion",
                          help="models:/name@alias, models:/name/version, a training run id or a dit.pt path")
    generate.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    generate.add_argument("--steps", type=int, help="ddim steps (default 50; 1 = one x0 prediction from noise); "
                                                    "ddpm always runs all T")
    generate.add_argument("--spacing", choices=["linspace", "trailing"], default="linspace",
                          help="ddim step spacing (trailing suits 2-4 steps)")
    generate.add_argument("--eta", type=float, default=0.0, help="ddim noise (0 deterministic)")
    generate.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance gamma")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--backbone-run", help="backbone run id or checkpoint (default: the generator's)")
    generate.add_argument("--split", choices=["valid", "test"], default="test")
    generate.add_argument("--device", default="cpu", help="device of the generator")
    generate.add_argument("--output", help="save the adapter (.npy: [1096], or [K, 1096] for several w)")
    generate.add_argument("--no-log", action="store_true", help="do not log the adapter to MLflow")
    generate.set_defaults(func=cmd_generate)


def train_config(args: argparse.Namespace):
    from padirec.cli import section
    from padirec.config import build
    from padirec.diffusion.train import DiTTrainConfig

    stored = section(args, "dit_train")
    dit = {**stored.get("dit", {}), **({"conditioning": args.conditioning} if args.conditioning else {}),
           **({"reference": True} if args.reference else {})}
    task = {**stored.get("task", {}), **({"backbone": args.task_backbone} if args.task_backbone else {})}
    preference = {**stored.get("preference", {}),
                  **{k: v for k, v in {"epochs": args.preference_epochs, "beta": args.preference_beta,
                                       "lr": args.preference_lr}.items() if v is not None}}
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "prediction": args.prediction,
             "checkpoint_every": args.checkpoint_every, "seed": args.seed,
             "consistency_weight": args.consistency_weight, "last_step_prob": args.last_step_prob,
             "task_loss_weight": args.task_loss_weight, "device": "cuda" if args.gpu and args.workers == 0 else None}
    return build(DiTTrainConfig, stored, flags, {"dit": dit or None, "task": task or None,
                                                 "preference": preference or None})


def sweep_dataset(sweep_run_id: str) -> Path:
    """Download a sweep's gathered dataset and its manifest side by side."""
    from padirec import tracking
    from padirec.sweep.gather import download_dataset

    directory = tempfile.mkdtemp(prefix="padirec-dataset-")
    path = download_dataset(sweep_run_id, directory)
    try:
        tracking.download(sweep_run_id, "dataset/manifest.json", directory)
    except Exception as err:  # noqa: BLE001 - older sweeps have no manifest: one is built from the file
        print(f"no manifest for sweep {sweep_run_id} ({err}); using the Parquet file's own metadata")
    return path


def train_generator(args: argparse.Namespace) -> dict:
    """What `padirec train-dit` does; returns the run id, model version and final metrics."""
    import mlflow

    from padirec import tracking
    from padirec.diffusion.preference import align_file
    from padirec.diffusion.registry import log_and_register, log_checkpoint, log_training_params
    from padirec.diffusion.train import (
        dataset_info,
        dataset_manifest,
        mlflow_epoch_logger,
        resolve_device,
        train_dit,
        train_dit_ray,
    )

    uri = tracking.setup(args.experiment)
    config = train_config(args)
    path = sweep_dataset(args.sweep) if args.sweep else Path(args.dataset_path)
    manifest = dataset_manifest(path)
    info = dataset_info(path)
    name = args.name or f"dit-{info['sha256'][:12]}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = str(Path(args.storage_path or "ray_results").resolve())
    tags = {"padirec.stage": "generator", "ray_train_name": name, "dataset_sha256": info["sha256"],
            "sweep_run_id": info["sweep_run_id"], "backbone_run_id": info["backbone_run_id"]}
    with tracking.start_run(f"dit-{name}", args.experiment, tags=tags) as run:
        log_training_params({"train_config": asdict(config), "dit_config": asdict(config.dit_config(info["cond_dim"])),
                             "schedule_config": asdict(config.schedule_config())})
        mlflow.log_params({"workers": args.workers, "gpu": args.gpu, "dataset_rows": info["rows"]})
        on_epoch = mlflow_epoch_logger(uri, run.info.run_id)
        if args.workers == 0:
            result = train_dit(path, config, on_epoch=on_epoch, output_dir=Path(storage) / name)
        else:
            resources = {"CPU": args.cpus_per_worker or 1}
            if args.gpu:
                resources["GPU"] = 1
            result = train_dit_ray(path, config, args.workers, args.gpu, storage, name, resources,
                                   tracking={"uri": uri, "run_id": run.info.run_id}, max_failures=args.max_failures)
        preference = config.preference_config()
        if preference.epochs > 0:  # TA-Rec's second stage, in this process: the pairs are a few thousand rows
            aligned = align_file(result["checkpoint_path"], path, preference, resolve_device(config.device),
                                 on_epoch=lambda epoch, metrics: mlflow.log_metrics(metrics, step=epoch))
            result = {**result, "checkpoint_path": str(aligned)}
        version = None
        if args.no_register:
            log_checkpoint(result["checkpoint_path"])
        else:
            _, version = log_and_register(result["checkpoint_path"], manifest, args.model_name, args.alias)
    summary = {"run_id": run.info.run_id, "model_name": None if args.no_register else args.model_name,
               "version": version, "alias": None if args.no_register else args.alias,
               "model_uri": f"models:/{args.model_name}/{version}" if version else None,
               "epoch": result["epoch"], "loss": result["metrics"].get("loss"), "name": name, "storage_path": storage,
               "checkpoint_path": result["checkpoint_path"]}
    return summary


def cmd_train_dit(args: argparse.Namespace) -> None:
    if args.workers < 0:
        raise SystemExit("--workers must be >= 0")
    print(json.dumps(train_generator(args), indent=2))


def sampler_config(args: argparse.Namespace):
    from padirec.diffusion.sampling import SamplerConfig

    if args.sampler == "ddpm" and args.steps is not None:
        raise SystemExit("--steps applies to --sampler ddim; ddpm runs all T steps")
    steps = None if args.sampler == "ddpm" else (args.steps or 50)
    return SamplerConfig(method=args.sampler, steps=steps, spacing=args.spacing, eta=args.eta, guidance=args.guidance)


def cmd_generate(args: argparse.Namespace) -> None:
    import mlflow

    from padirec import tracking
    from padirec.cli import data_spec, resolve_backbone
    from padirec.config import load_data
    from padirec.diffusion.generate import generate_and_evaluate
    from padirec.diffusion.registry import resolve_checkpoint
    from padirec.diffusion.train import load_generator

    try:
        w_acc = [float(x) for x in str(args.w_acc).split(",")]
    except ValueError as err:
        raise SystemExit(f"--w-acc must be numbers in [0, 1], got {args.w_acc!r}") from err
    tracking.setup(args.experiment)
    generator = load_generator(resolve_checkpoint(args.model), args.device)
    backbone_ref = args.backbone_run or generator.metadata.get("backbone_run_id")
    if not backbone_ref:
        raise SystemExit("the generator's dataset names no backbone run; pass --backbone-run")
    backbone, extra = resolve_backbone(backbone_ref)
    data = load_data(data_spec(args, extra.get("data")))
    sampler = sampler_config(args)
    steps = sampler.steps or generator.schedule.num_steps
    if steps > generator.schedule.num_steps:
        raise SystemExit(f"--steps {steps} exceeds the generator's T = {generator.schedule.num_steps}")
    rows = generate_and_evaluate(generator, backbone, data, w_acc, sampler, args.seed, args.split)
    adapters = np.stack([r.pop("params") for r in rows])
    if args.output:
        np.save(args.output, adapters[0] if len(rows) == 1 else adapters)
    header = {"model": args.model, "generator_epoch": generator.metadata.get("epoch"), "split": args.split,
              "backbone_run_id": backbone_ref, "sampler": asdict(sampler), "seed": args.seed}
    if not args.no_log:
        from padirec.tracking import sha256_file

        with tracking.start_run("generate", args.experiment, tags={"padirec.stage": "generate"}) as run:
            mlflow.log_params({"model": args.model, "w_acc": args.w_acc, "backbone_run_id": backbone_ref,
                               "seed": args.seed, "split": args.split,
                               **{f"sampler.{k}": v for k, v in asdict(sampler).items()}})
            for step, row in enumerate(rows):
                mlflow.log_metrics({k: row[k] for k in ("w_acc", "ndcg10", "alpha_ndcg10")}, step=step)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "adapter.npy"
                np.save(path, adapters[0] if len(rows) == 1 else adapters)
                mlflow.set_tag("adapter_sha256", sha256_file(path))
                mlflow.log_artifact(str(path), "adapter")
        header["run_id"] = run.info.run_id
    report = {**header, **rows[0]} if len(rows) == 1 else {**header, "results": rows}
    print(json.dumps(report, indent=2))
