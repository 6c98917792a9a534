"""Test-time generation (paper Alg. 2) evaluated on the backbone: w -> adapter -> full-ranking metrics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import mlflow
import numpy as np
import torch

from padirec import tracking
from padirec.config import data_spec, load_data
from padirec.contracts.artifacts import log_adapter, resolve_backbone_file, resolve_generator_file
from padirec.contracts.names import DEFAULT_MODEL_URI, STAGE_GENERATE, STAGE_TAG
from padirec.diffusion.generator import Generator, load_generator
from padirec.diffusion.sampling import SamplerConfig, default_sampler, make_sampler
from padirec.evaluation.baselines import PaDiRec, Scorer
from padirec.evaluation.ranking import EvalSet, rank_metrics
from padirec.evaluation.select import BestOf
from padirec.models import load_backbone
from padirec.objectives import simplex_weights


def task_weights(w_acc_values) -> np.ndarray:
    """`[w_acc, 1 - w_acc]` rows for the two-objective tasks."""
    w_acc = np.atleast_1d(np.asarray(w_acc_values, dtype=np.float32))
    if w_acc.ndim != 1 or ((w_acc < 0) | (w_acc > 1)).any():
        raise ValueError(f"w_acc values must be numbers in [0, 1], got {w_acc_values!r}")
    return np.stack([w_acc, 1.0 - w_acc], axis=1)


def generate_and_evaluate(generator: Generator, backbone, data, weights, sampler: SamplerConfig = SamplerConfig(),
                          seed: int = 0, split: str = "test", eval_set: EvalSet | None = None, select: int = 0,
                          select_users: int = 256) -> list[dict]:
    """One generated adapter per task, all sampled in one batch and evaluated in one batched `rank_metrics` call.

    `weights`: w_acc values (two objectives: w_div = 1 - w_acc) or rows `[K, p]` in the generator's objectives.
    `select` > 0: best-of-N (issue 14.1): `select` samples per task, scored on `select_users` validation users,
    the best w-utility kept (on the training adapters' validation range, recorded in the checkpoint).
    Rows: w (and w_acc, w_div for two objectives), each objective's metric, params (float32 [1096]),
    generation_seconds (for the whole batch, selection included)."""
    weights = np.asarray(weights, dtype=np.float32)
    weights = task_weights(weights) if weights.ndim <= 1 else weights
    if weights.shape[1] != generator.cond_dim:
        raise ValueError(f"the generator is conditioned on {generator.cond_dim} objectives "
                         f"({', '.join(generator.objectives)}); tasks here have {weights.shape[1]}")
    best_of = best_of_n(generator, backbone, data, sampler, select, select_users, seed) if select else None
    started = time.perf_counter()
    adapters = (np.concatenate(best_of.adapters(weights)) if best_of
                else generator.generate(weights, sampler, seed=seed))
    seconds = time.perf_counter() - started
    eval_set = eval_set or EvalSet.build(data, split, objectives=generator.objectives)
    device = next(backbone.parameters()).device
    metrics = rank_metrics(backbone, eval_set, torch.as_tensor(adapters, device=device))
    rows = []
    for i, w in enumerate(weights):
        row = {"w": [round(float(x), 6) for x in w]}
        if len(w) == 2:
            row.update(w_acc=round(float(w[0]), 6), w_div=round(float(w[1]), 6))
        row.update({name: float(values[i]) for name, values in metrics.items()})
        rows.append({**row, "params": adapters[i], "generation_seconds": seconds})
    return rows


def best_of_n(generator: Generator, backbone, data, sampler: SamplerConfig, select: int, users: int,
              seed: int = 0) -> BestOf:
    """evaluate's best-of-N (`BestOf` over `PaDiRec`'s samples) on `users` validation users, on the training
    adapters' validation range from the checkpoint (older checkpoints: the candidates' own); the validation
    sample is built here, once, outside the timed generation."""
    if select < 0 or users < 1:
        raise ValueError(f"select must be >= 0 and select_users >= 1, got {select}, {users}")
    selector = Scorer.build(backbone, data, "valid", generator.objectives).sample(users, seed)
    bounds = generator.metadata.get("utility_bounds") or None
    if bounds and (len(bounds) != 2 * generator.cond_dim or not np.isfinite(bounds).all()):
        bounds = None  # written before p objectives' bounds, or a metric the sweep did not measure: the samples' own
    return BestOf(PaDiRec(generator, sampler, select, seed), selector, bounds, objectives=generator.objectives)


@dataclass
class GenerateConfig:
    """`padirec generate`: adapters for some w_acc with a trained generator, scored on the backbone."""

    w_acc: list[float] = field(default_factory=lambda: [0.5])  # accuracy weights in [0, 1]; w_div = 1 - w_acc
    # p numbers per w in the generator's objectives, concatenated (3 objectives: 0.5,0.3,0.2); replaces w_acc
    weights: list[float] = field(default_factory=list)
    model: str = DEFAULT_MODEL_URI  # models:/name@alias, models:/name/version, a training run id or a dit.pt path
    # dpm: DPM-Solver++(2M), second order, for few steps; default: ddim, or dpm with 10 steps under --select
    sampler: Literal["ddim", "ddpm", "dpm"] | None = None
    steps: int | None = None  # ddim/dpm steps (default 1: one x0 prediction from noise); ddpm always runs all T
    # step spacing (default: linspace for ddim, logsnr for dpm; trailing suits 2-4 ddim steps)
    spacing: Literal["linspace", "trailing", "logsnr"] | None = None
    eta: float = 0.0  # ddim noise (0 deterministic)
    guidance: float = 0.0  # classifier-free guidance gamma
    dtype: Literal["float32", "bfloat16"] = "float32"  # bfloat16: the DiT under autocast (fast on CPUs with AMX)
    seed: int = 0
    select: int = 0  # > 0: best-of-N, this many samples per w scored on validation users, the best kept (14.1)
    select_users: int = 256  # validation users best-of-N scores its candidates on
    backbone: str = ""  # backbone run id or checkpoint (default: the generator's)
    split: Literal["valid", "test"] = "test"
    device: str = "cpu"  # device of the generator
    output: str = ""  # save the adapter here (.npy: [1096], or [K, 1096] for several w)
    log: bool = True  # log the adapter and its metrics to an MLflow run
    experiment: str = tracking.DEFAULT_EXPERIMENT

    def sampler_config(self, num_steps: int | None = None) -> SamplerConfig:
        """The sampler these settings name, checked against the generator's T when given."""
        method, steps = default_sampler(self.sampler, self.steps, self.select)
        return make_sampler(method, steps, num_steps, self.spacing, self.eta, self.guidance, self.dtype)


def generate(config: GenerateConfig, data_overrides: dict | None = None) -> dict:
    """Generate, score and (optionally) log; returns the report `padirec generate` prints."""
    weights = task_weights(config.w_acc)  # validates the w_acc values before anything loads
    tracking.setup(config.experiment)
    generator = load_generator(resolve_generator_file(config.model), config.device)
    if config.weights or generator.cond_dim != 2:
        if not config.weights:
            names = ", ".join(generator.objectives)
            raise ValueError(f"this generator weighs {generator.cond_dim} objectives ({names}): give --weights "
                             "with that many numbers per w")
        weights = simplex_weights(config.weights, generator.objectives)
    backbone_ref = config.backbone or generator.metadata.get("backbone_run_id")
    if not backbone_ref:
        raise ValueError("the generator's dataset names no backbone run; pass the backbone")
    backbone, extra = load_backbone(resolve_backbone_file(backbone_ref))
    data = load_data(data_spec(extra.get("data"), data_overrides))
    sampler = config.sampler_config(generator.schedule.num_steps)
    rows = generate_and_evaluate(generator, backbone, data, weights, sampler, config.seed, config.split,
                                 select=config.select, select_users=config.select_users)
    adapters = np.stack([r.pop("params") for r in rows])
    adapters = adapters[0] if len(rows) == 1 else adapters
    if config.output:
        np.save(config.output, adapters)
    header = {"model": config.model, "generator_epoch": generator.metadata.get("epoch"), "split": config.split,
              "objectives": generator.objectives,
              "backbone_run_id": backbone_ref, "sampler": asdict(sampler), "seed": config.seed,
              **({"select": config.select, "select_users": config.select_users} if config.select else {})}
    if config.log:
        with tracking.start_run("generate", config.experiment, tags={STAGE_TAG: STAGE_GENERATE}) as run:
            mlflow.log_params({"model": config.model, "w_acc": ",".join(f"{w:g}" for w in weights[:, 0]),
                               "weights": ";".join(",".join(f"{x:g}" for x in w) for w in weights),
                               "backbone_run_id": backbone_ref, "seed": config.seed, "split": config.split,
                               "select": config.select, "select_users": config.select_users,
                               **{f"sampler.{k}": v for k, v in asdict(sampler).items()}})
            for step, row in enumerate(rows):
                mlflow.log_metrics({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
            log_adapter(adapters)
        header["run_id"] = run.info.run_id
    return {**header, **rows[0]} if len(rows) == 1 else {**header, "results": rows}
