"""Test-time generation (paper Alg. 2) evaluated on the backbone: w -> adapter -> full-ranking metrics."""

from __future__ import annotations

import time

import numpy as np
import torch

from padirec.diffusion.sampling import SamplerConfig
from padirec.diffusion.train import Generator
from padirec.training import EvalSet, rank_metrics


def task_weights(w_acc_values) -> np.ndarray:
    """`[w_acc, 1 - w_acc]` rows for the two-objective tasks."""
    w_acc = np.atleast_1d(np.asarray(w_acc_values, dtype=np.float32))
    if w_acc.ndim != 1 or ((w_acc < 0) | (w_acc > 1)).any():
        raise ValueError(f"w_acc values must be numbers in [0, 1], got {w_acc_values!r}")
    return np.stack([w_acc, 1.0 - w_acc], axis=1)


def generate_and_evaluate(generator: Generator, backbone, data, w_acc_values, sampler: SamplerConfig = SamplerConfig(),
                          seed: int = 0, split: str = "test", eval_set: EvalSet | None = None) -> list[dict]:
    """One generated adapter per w_acc (w_div = 1 - w_acc), all sampled in one batch and evaluated in one
    batched `rank_metrics` call. Rows: w_acc, w_div, ndcg10, alpha_ndcg10, params (float32 [1096]),
    generation_seconds (for the whole batch)."""
    if generator.cond_dim != 2:
        raise ValueError(f"the generator is conditioned on {generator.cond_dim} objectives; tasks here have 2")
    weights = task_weights(w_acc_values)
    started = time.perf_counter()
    adapters = generator.generate(weights, sampler, seed=seed)
    seconds = time.perf_counter() - started
    eval_set = eval_set or EvalSet.build(data, split)
    device = next(backbone.parameters()).device
    metrics = rank_metrics(backbone, eval_set, torch.as_tensor(adapters, device=device))
    return [{"w_acc": round(float(w[0]), 6), "w_div": round(float(w[1]), 6), "ndcg10": float(metrics["ndcg10"][i]),
             "alpha_ndcg10": float(metrics["alpha_ndcg10"][i]), "params": adapters[i], "generation_seconds": seconds}
            for i, w in enumerate(weights)]
