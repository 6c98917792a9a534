"""Choosing among a method's adapters for a task (issue 14.1): the diffusion model is a distribution over good
adapters for w, so draw N, score them on a validation sample of users and keep the best by w-utility. Retrain
gets the same treatment (its best seed), so the comparison stays fair."""

from __future__ import annotations

import numpy as np

from padirec.diffusion.sampling import parse_sampler
from padirec.evaluation.baselines import AdapterMethod, PaDiRec, Retrain, Scorer
from padirec.metrics import minmax_bounds, w_utility

UTILITY_METRICS = ("ndcg10", "alpha_ndcg10")  # what the two-objective w-utility weighs


class BestOf(AdapterMethod):
    """`inner`'s adapters for each task, reduced to the one with the best w-utility (`metrics.w_utility` on
    `bounds`; None: the candidates' own range) on `selector`, a validation sample of users: what a deployment can
    do with a distribution over adapters (issue 14.1). Scored on another split, the choice is out of sample."""

    def __init__(self, inner: AdapterMethod, selector: Scorer, bounds: tuple[float, float, float, float] | None,
                 name: str = ""):
        self.inner, self.selector, self.bounds = inner, selector, bounds
        self.name = name or f"{inner.name} (best of candidates)"

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        candidates = self.inner.adapters(weights)
        scores = self.selector.per_candidate(candidates)  # all tasks' candidates in one pass
        bounds = self.bounds or minmax_bounds(*(np.concatenate([s[k] for s in scores]) for k in UTILITY_METRICS))
        return [c[int(np.argmax(w_utility(w, s["ndcg10"], s["alpha_ndcg10"], tuple(bounds))))][None]
                for w, c, s in zip(weights, candidates, scores)]


def best_of_runs(retrain: Retrain, main: PaDiRec, valid: Scorer, arrays: dict[str, np.ndarray], n: int,
                 sampler_spec: str = "ddim:50", users: int = 256, seeds: int = 1) -> dict[str, list[AdapterMethod]]:
    """Best-of-`n`: PaDiRec's n samples per task (`sampler_spec`, a run per seed) and Retrain's seeds, each reduced
    to the best w-utility on `users` users of `valid`, on the range of the training adapters' validation metrics."""
    selector = valid.sample(users, main.seed)
    bounds = minmax_bounds(arrays["ndcg10"], arrays["alpha_ndcg10"])
    label, sampler = parse_sampler(sampler_spec)
    name = f"PaDiRec (best of {n}, {label})"
    return {name: [BestOf(PaDiRec(main.generator, sampler, n, main.seed + i), selector, bounds, name)
                   for i in range(seeds)],
            "Retrain (best seed)": [BestOf(retrain, selector, bounds, "Retrain (best seed)")]}
