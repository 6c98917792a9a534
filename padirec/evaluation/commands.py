"""`padirec evaluate`: the controllability report of a sweep and its generator(s), logged to one MLflow run."""

from __future__ import annotations

import argparse
import json


def add_commands(commands) -> None:
    """Add `evaluate` to the `padirec` subparsers (`padirec.cli` is imported here, not at module level)."""
    from padirec.cli import add_common, add_data_arguments
    from padirec.evaluation.baselines import METHODS

    evaluate = commands.add_parser(
        "evaluate", help="controllability report: PaDiRec vs Retrain, Soup, MMR, CMR, Hypernetwork (paper §5)",
        description="For w_acc in {0, 0.1, ..., 1}: test NDCG@10 / α-NDCG@10 (full ranking) of every method, "
                    "Avg.HV and Pearson r-a / r-d against Retrain (Table 1), the curves (Figure 3), response "
                    "time (Table 2), optional noise robustness (RQ1) and generator ablations (Figure 5). "
                    "Markdown + CSV + PNG, logged to one MLflow run tagged padirec.stage=report.")
    add_data_arguments(evaluate)
    add_common(evaluate)
    evaluate.add_argument("--sweep", required=True, help="sweep (parent) run id: its gathered dataset and backbone")
    evaluate.add_argument("--model", default="models:/padirec-dit@champion",
                          help="the generator: models:/name@alias, models:/name/version, a run id or a dit.pt path")
    evaluate.add_argument("--generators", help="compare several generators instead, as name=REF,... "
                                               "(e.g. pre=a/dit.pt,pre_post=b/dit.pt,adanorm=c/dit.pt)")
    evaluate.add_argument("--backbone", help="backbone run id or checkpoint (default: the sweep's backbone run)")
    evaluate.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    evaluate.add_argument("--samplers", help="comma-separated ddim:STEPS or ddpm (default ddim:50)")
    evaluate.add_argument("--guidance", help="comma-separated classifier-free guidance γ values (default 0)")
    evaluate.add_argument("--samples", type=int, help="generated adapters per task, metrics averaged (default 3)")
    evaluate.add_argument("--seed", type=int)
    evaluate.add_argument("--split", choices=["valid", "test"])
    evaluate.add_argument("--mmr-candidates", type=int, help="backbone top-N that MMR re-ranks (default 100)")
    evaluate.add_argument("--cmr-epochs", type=int, help="CMR hypernetwork epochs (default 10)")
    evaluate.add_argument("--noise-std", type=float, help="RQ1 robustness: Gaussian noise σ on the adapters")
    evaluate.add_argument("--noise-repeats", type=int, help="noise draws per adapter (default 5)")
    evaluate.add_argument("--timing-repeats", type=int, help="response-time repeats per approach (default 5)")
    evaluate.add_argument("--retrain-timing-epochs", type=int,
                          help="epochs timed for Retrain's response time, scaled to the sweep's (default 1; 0 = skip)")
    evaluate.add_argument("--output", help="directory for the report files (default: a temp dir)")
    evaluate.set_defaults(func=cmd_evaluate)


def split_list(text: str | None, cast=str) -> list | None:
    return None if text is None else [cast(x.strip()) for x in text.split(",") if x.strip()]


def evaluate_config(args: argparse.Namespace):
    from padirec.cli import section
    from padirec.config import build
    from padirec.evaluation.report import EvaluateConfig

    stored = section(args, "evaluate")
    flags = {"methods": split_list(args.methods), "samplers": split_list(args.samplers),
             "guidance": split_list(args.guidance, float), "samples": args.samples, "seed": args.seed,
             "split": args.split, "mmr_candidates": args.mmr_candidates, "noise_std": args.noise_std,
             "noise_repeats": args.noise_repeats, "timing_repeats": args.timing_repeats,
             "retrain_timing_epochs": args.retrain_timing_epochs}
    cmr = {**stored.get("cmr", {}), **({"epochs": args.cmr_epochs} if args.cmr_epochs is not None else {})}
    return build(EvaluateConfig, stored, flags, {"cmr": cmr or None})


def generator_references(args: argparse.Namespace) -> dict[str, str]:
    if not args.generators:
        return {"": args.model}
    pairs = [item.split("=", 1) for item in split_list(args.generators)]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise SystemExit(f"--generators must be name=REF,..., got {args.generators!r}")
    return dict(pairs)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from padirec import tracking
    from padirec.cli import data_spec, resolve_backbone
    from padirec.config import load_data
    from padirec.diffusion.registry import resolve_checkpoint
    from padirec.diffusion.train import load_generator
    from padirec.evaluation.report import run_report
    from padirec.sweep import dataset_arrays, download_dataset, load_sweep_config, read_dataset

    config = evaluate_config(args)
    tracking.setup(args.experiment)
    sweep = load_sweep_config(args.sweep)
    backbone_ref = args.backbone or sweep.backbone_run_id
    backbone, extra = resolve_backbone(backbone_ref)
    spec = data_spec(args, extra.get("data"))
    data = load_data(spec)
    arrays = dataset_arrays(read_dataset(download_dataset(args.sweep))[0])
    references = generator_references(args) if "PaDiRec" in config.methods else {}
    generators = {}
    for name, reference in references.items():
        generators[name] = load_generator(resolve_checkpoint(reference))
        trained_on = generators[name].metadata.get("sweep_run_id")
        if trained_on and trained_on != args.sweep:
            print(f"warning: generator {reference} was trained on sweep {trained_on}, not {args.sweep}")
    params = {"sweep_run_id": args.sweep, "backbone": backbone_ref, "backbone_name": backbone.config.name,
              "data": f"{spec.kind} {spec.path or ''}".strip(), "users": data.n_users, "items": data.n_items,
              **{f"generator{'.' + n if n else ''}": ref for n, ref in references.items()}}
    result = run_report(backbone, data, arrays, generators, sweep.adapter_config(), config, args.output,
                        args.experiment, tags={"padirec.sweep_run_id": args.sweep}, params=params,
                        progress=not args.quiet)
    print(json.dumps({"run_id": result["run_id"], "output_dir": result["output_dir"], "table": result["table"]},
                     indent=2))
