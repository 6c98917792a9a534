"""What the report measures besides the curves: response time from w to a servable adapter (paper Table 2) and
robustness to parameter noise (paper RQ1)."""

from __future__ import annotations

import time

import numpy as np

from padirec.diffusion.sampling import sampler_label
from padirec.evaluation.baselines import AdapterMethod, PaDiRec, Retrain, Scorer
from padirec.evaluation.select import BestOf


def response_times(retrain: Retrain | None, padirec: PaDiRec | None, weights: np.ndarray, full_epochs: int,
                   repeats: int, seed: int = 0, epochs: int = 1, selected: BestOf | None = None) -> list[dict]:
    """Wall time from a task w to a servable adapter (paper Table 2), tasks taken in turn.

    PaDiRec: one generation with the model already loaded (as a server holds it); `selected`, best-of-N: its N
    samples generated and scored on the validation sample, the best kept (issue 14.1). Retrain: one
    adapter trained on demand with the sweep's settings for `retrain_timing_epochs` epochs; the full
    run is estimated as the measured set-up (encoding the training users) plus the measured epochs
    scaled to the sweep's `full_epochs`.
    """
    rows = []
    if padirec is not None:
        label = sampler_label(padirec.sampler, padirec.generator.schedule.num_steps)
        rows.append(timed_row(lambda i: padirec.generator.generate(weights[i % len(weights)][None], padirec.sampler,
                                                                   seed=seed + i),
                              repeats, f"generate one adapter ({label}, γ={padirec.sampler.guidance:g})"))
    if selected is not None:
        inner = selected.inner
        label = sampler_label(inner.sampler, inner.generator.schedule.num_steps)
        rows.append(timed_row(lambda i: selected.adapters(weights[i % len(weights)][None]), repeats,
                              f"best of {inner.samples} ({label}): generate, score on "
                              f"{len(selected.selector.eval_set.instances)} validation users, keep the best"))
    if retrain is not None and epochs > 0 and retrain.backbone is not None:
        total, loop = [], []
        for i in range(repeats):
            started = time.perf_counter()
            result = retrain.train(weights[i % len(weights)][None], seed=i, epochs=epochs)
            total.append(time.perf_counter() - started)
            loop.append(result.seconds)
        rows.append({"approach": "Retrain", "what": f"train one adapter, {epochs} epoch(s)",
                     "seconds_mean": float(np.mean(total)), "seconds_std": float(np.std(total)),
                     "repeats": len(total), "measured": True})
        if epochs != full_epochs:
            estimate = np.array(total) - np.array(loop) + np.array(loop) * full_epochs / epochs
            rows.append({"approach": "Retrain", "what": f"train one adapter, {full_epochs} epochs (the sweep's): "
                                                        f"set-up + {full_epochs}/{epochs} x measured epochs",
                         "seconds_mean": float(estimate.mean()), "seconds_std": float(estimate.std()),
                         "repeats": len(total), "measured": False})
    return rows


def timed_row(answer, repeats: int, what: str) -> dict:
    """A Table 2 row for PaDiRec: `answer(i)` (one task's adapter) once to warm up, then timed `repeats` times."""
    answer(0)
    seconds = []
    for i in range(repeats):
        started = time.perf_counter()
        answer(i)
        seconds.append(time.perf_counter() - started)
    return {"approach": "PaDiRec", "what": what, "seconds_mean": float(np.mean(seconds)),
            "seconds_std": float(np.std(seconds)), "repeats": len(seconds), "measured": True}


def robustness(methods: dict[str, AdapterMethod], weights: np.ndarray, scorer: Scorer, std: float, repeats: int,
               seed: int = 0) -> list[dict]:
    """Paper RQ1: Gaussian noise N(0, std²) on every parameter; change of both metrics per adapter.

    Also the mean L2 distance of each method's adapters to the mean Retrain adapter of the same task.
    """
    rng = np.random.default_rng(seed)
    served = {name: method.adapters(weights) for name, method in methods.items()}
    reference = [a.mean(0) for a in served["Retrain"]]
    rows = []
    for name, adapters in served.items():
        flat = np.concatenate(adapters).astype(np.float32)
        clean = scorer.per_adapter(flat)
        deltas = {k: [] for k in clean}
        for _ in range(repeats):
            noisy = scorer.per_adapter(flat + rng.normal(0.0, std, flat.shape).astype(np.float32))
            for k in clean:
                deltas[k].append(noisy[k] - clean[k])
        distance = np.concatenate([np.linalg.norm(a - r, axis=1) for a, r in zip(adapters, reference)])
        row = {"method": name, "noise_std": std, "adapters": len(flat), "repeats": repeats}
        for k, d in deltas.items():
            d = np.concatenate(d)
            row.update({f"delta_{k}_mean": float(d.mean()), f"delta_{k}_std": float(d.std()),
                        f"abs_delta_{k}": float(np.abs(d).mean())})
        row["l2_to_retrain"] = float(distance.mean())
        rows.append(row)
    return rows


