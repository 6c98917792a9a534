"""Choosing among a method's adapters for a task (issue 14.1): the diffusion model is a distribution over good
adapters for w, so draw N, score them on a validation sample of users and keep the best by w-utility. Retrain
gets the same treatment (its best seed), so the comparison stays fair."""

from __future__ import annotations

import numpy as np

from padirec.diffusion.sampling import SELECT_STEPS, parse_sampler
from padirec.evaluation.baselines import AdapterMethod, PaDiRec, Retrain, Scorer
from padirec.evaluation.controllability import points_of
from padirec.metrics import point_bounds, w_utility_points
from padirec.objectives import OBJECTIVES, metric_keys, resolve_objectives


class BestOf(AdapterMethod):
    """`inner`'s adapters for each task, reduced to the one with the best w-utility (`metrics.w_utility_points` of
    the `objectives`' metrics on `bounds`, `point_bounds`' layout; None: the candidates' own range) on `selector`, a
    validation sample of users: what a deployment can do with a distribution over adapters (issue 14.1). Scored on
    another split, the choice is out of sample."""

    def __init__(self, inner: AdapterMethod, selector: Scorer, bounds: list[float] | None, name: str = "",
                 objectives=OBJECTIVES):
        self.inner, self.selector, self.bounds = inner, selector, bounds
        self.name = name or f"{inner.name} (best of candidates)"
        self.objectives, self.keys = objectives, metric_keys(objectives)  # the metrics the utility weighs
        self.maximise = [o.maximise for o in resolve_objectives(objectives)]
        if bounds is not None and len(bounds) != 2 * len(self.maximise):
            raise ValueError(f"utility bounds must be (lo, hi) of each of the {len(self.maximise)} objectives' "
                             f"metrics, got {list(bounds)}")

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        candidates = self.inner.adapters(weights)
        scores = self.selector.per_candidate(candidates)  # all tasks' candidates in one pass
        points = [points_of(s, self.objectives) for s in scores]
        bounds = self.bounds or point_bounds(np.concatenate(points))
        return [c[int(np.argmax(w_utility_points(w, p, bounds, self.maximise)))][None]
                for w, c, p in zip(weights, candidates, points)]


class ValidationUtility:
    """The mean w-utility of a method's adapters over `weights` on a validation sample (`selector`), on the range
    of the training adapters' validation metrics: how an end-to-end baseline picks its checkpoint (`keep: best`),
    as each swept adapter can keep its best validation epochs."""

    def __init__(self, selector: Scorer, arrays: dict[str, np.ndarray], weights: np.ndarray, objectives=OBJECTIVES):
        self.selector, self.weights, self.objectives = selector, np.asarray(weights, dtype=np.float32), objectives
        self.bounds = point_bounds(points_of(arrays, objectives))
        self.maximise = [o.maximise for o in resolve_objectives(objectives)]

    def __call__(self, method: AdapterMethod) -> float:
        points = points_of(self.selector.per_task(method.adapters(self.weights)), self.objectives)
        return float(np.mean(w_utility_points(self.weights, points, self.bounds, self.maximise)))


def best_of_runs(retrain: Retrain, main: PaDiRec, valid: Scorer, arrays: dict[str, np.ndarray], n: int,
                 sampler_spec: str = f"dpm:{SELECT_STEPS}", users: int = 256, seeds: int = 1,
                 objectives=OBJECTIVES) -> dict[str, list[AdapterMethod]]:
    """Best-of-`n`: PaDiRec's n samples per task (`sampler_spec`, a run per seed) and Retrain's seeds, each reduced
    to the best w-utility on `users` users of `valid`, on the range of the training adapters' validation metrics."""
    selector = valid.sample(users, main.seed)
    bounds = point_bounds(points_of(arrays, objectives))
    label, sampler = parse_sampler(sampler_spec)
    name = f"PaDiRec (best of {n}, {label})"
    return {name: [BestOf(PaDiRec(main.generator, sampler, n, main.seed + i), selector, bounds, name, objectives)
                   for i in range(seeds)],
            "Retrain (best seed)": [BestOf(retrain, selector, bounds, "Retrain (best seed)", objectives)]}
