"""Accuracy and diversity metrics as the paper measures them (section 5.1, DESIGN §5).

NDCG@K of the single held-out item under full ranking (history items masked); α-NDCG@K with
categories as subtopics, normalised by the greedy ideal α-DCG over *items* (the authors' code
built it over categories, which made its values meaningless); hypervolume, Avg.HV, Pearson r.
Beside the paper's: hypervolume at a fixed reference point, IGD+ to a reference front (`moocore`), w-utility
regret and Spearman ρ against w_acc: they reward following w and do not move when methods are added.
"""

from __future__ import annotations

import moocore
import numpy as np
import torch


def topk_full_ranking(scores: torch.Tensor, excluded: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Top-k items of `scores [..., N, n_items+1]`, skipping `excluded [N, n_items+1]` (True = masked).

    The caller marks padding (item 0) and each user's history items as excluded.
    """
    return scores.masked_fill(excluded, float("-inf")).topk(k, dim=-1).indices


def ndcg_at_k(topk: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """NDCG@K with one relevant item per row: `1/log2(rank+1)` if the target is in the list."""
    hit = topk == targets[:, None]
    discount = 1.0 / torch.log2(torch.arange(2, topk.shape[-1] + 2, dtype=torch.float32, device=topk.device))
    return (hit.float() * discount).sum(-1)


def alpha_dcg(lists: torch.Tensor, item_categories: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """α-DCG of ranked item lists `[..., K]`: each category's gain decays by (1−α) per repeat."""
    y = item_categories[lists]  # [..., K, M]
    before = torch.cumsum(y, dim=-2) - y  # times each category appeared above
    gain = (y * (1 - alpha) ** before).sum(-1)
    discount = 1.0 / torch.log2(torch.arange(2, lists.shape[-1] + 2, dtype=torch.float32, device=lists.device))
    return (gain * discount).sum(-1)


def ideal_alpha_dcg(item_categories: torch.Tensor, k: int = 10, alpha: float = 0.5) -> float:
    """Greedy ideal α-DCG@K over all items: at each position pick the largest marginal gain."""
    y = item_categories.double()
    counts = torch.zeros(y.shape[1], dtype=torch.float64, device=y.device)
    taken = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    total = 0.0
    for position in range(min(k, int((y.sum(1) > 0).sum()))):
        gains = (y * (1 - alpha) ** counts).sum(1).masked_fill(taken, -1.0)
        best = int(gains.argmax())
        total += float(gains[best]) / np.log2(position + 2)
        counts += y[best]
        taken[best] = True
    return total


def alpha_ndcg_at_k(topk: torch.Tensor, item_categories: torch.Tensor, alpha: float = 0.5,
                    ideal: float | None = None) -> torch.Tensor:
    """α-NDCG@K of each list against the greedy ideal over the item set."""
    if ideal is None:
        ideal = ideal_alpha_dcg(item_categories, topk.shape[-1], alpha)
    return alpha_dcg(topk, item_categories, alpha) / max(ideal, 1e-12)


def hypervolumes(ndcg: np.ndarray, alpha_ndcg: np.ndarray, bounds: tuple | None = None) -> np.ndarray:
    """HV of each (NDCG, α-NDCG) point w.r.t. (0, 0) after min–max normalisation.

    `bounds = (ndcg_min, ndcg_max, div_min, div_max)` are taken over all methods and tasks of one
    (dataset, backbone); by default over the given points.
    """
    ndcg, alpha_ndcg = np.asarray(ndcg, dtype=float), np.asarray(alpha_ndcg, dtype=float)
    if bounds is None:
        bounds = (ndcg.min(), ndcg.max(), alpha_ndcg.min(), alpha_ndcg.max())
    a_lo, a_hi, d_lo, d_hi = bounds
    a = (ndcg - a_lo) / max(a_hi - a_lo, 1e-12)
    d = (alpha_ndcg - d_lo) / max(d_hi - d_lo, 1e-12)
    return a * d


def minmax_bounds(ndcg, alpha_ndcg) -> tuple[float, float, float, float]:
    """`(ndcg_min, ndcg_max, div_min, div_max)` over the given points: the common scale of a comparison."""
    return tuple(point_bounds(np.column_stack([np.ravel(ndcg), np.ravel(alpha_ndcg)])))


def curve_gaps(ndcg, alpha_ndcg) -> np.ndarray:
    """Distances between consecutive points of a curve in min–max normalised (NDCG@10, α-NDCG@10) space."""
    a_lo, a_hi, d_lo, d_hi = minmax_bounds(ndcg, alpha_ndcg)
    points = np.stack([(np.asarray(ndcg, dtype=float) - a_lo) / max(a_hi - a_lo, 1e-12),
                       (np.asarray(alpha_ndcg, dtype=float) - d_lo) / max(d_hi - d_lo, 1e-12)], axis=1)
    return np.linalg.norm(np.diff(points, axis=0), axis=1)


def w_utility(w, ndcg, alpha_ndcg, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """How well points serve their tasks: `w · (NDCG@10, α-NDCG@10)`, each metric min–max normalised by `bounds`.

    `w [..., 2]` broadcasts against the metric arrays; one definition for checkpoint selection in the sweep,
    the report's w-utility regret and choosing among generated adapters (`w_utility_points` for p objectives)."""
    points = np.stack(np.broadcast_arrays(np.asarray(ndcg, dtype=float), np.asarray(alpha_ndcg, dtype=float)), -1)
    return w_utility_points(w, points, bounds)


def point_bounds(points) -> list[float]:
    """`[lo_1, hi_1, …, lo_p, hi_p]` of points `[..., p]` (NaN ignored): the common scale of a comparison."""
    points = np.asarray(points, dtype=float).reshape(-1, np.shape(points)[-1])
    return [float(v) for j in range(points.shape[1]) for v in (np.nanmin(points[:, j]), np.nanmax(points[:, j]))]


def normalised_points(points, bounds, maximise=None) -> np.ndarray:
    """Points `[..., p]` min–max normalised by `bounds` (`point_bounds`' layout) and oriented so that 1 is the best
    value of each metric (`maximise[j]` False: lower is better, e.g. a gap)."""
    points = np.asarray(points, dtype=float)
    lo, hi = np.asarray(bounds, dtype=float)[0::2], np.asarray(bounds, dtype=float)[1::2]
    scaled = (points - lo) / np.maximum(hi - lo, 1e-12)
    maximise = np.ones(points.shape[-1], bool) if maximise is None else np.asarray(maximise, bool)
    return np.where(maximise, scaled, 1 - scaled)


def w_utility_points(w, points, bounds, maximise=None) -> np.ndarray:
    """`w · normalised_points(points)`: the w-utility of points `[..., p]` for weights `w [..., p]` (broadcast)."""
    return (np.asarray(w, dtype=float) * normalised_points(points, bounds, maximise)).sum(-1)


def metric_points(ndcg, alpha_ndcg) -> np.ndarray:
    """`[n, 2]` points (NDCG@10, α-NDCG@10), both maximised; rows with a NaN metric dropped."""
    return _finite(np.column_stack([np.ravel(ndcg), np.ravel(alpha_ndcg)]))


def _finite(points) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    return points[np.isfinite(points).all(1)]


def _directions(points: np.ndarray, maximise) -> list[bool]:
    """`maximise` per metric (default: every metric maximised)."""
    return [True] * points.shape[1] if maximise is None else list(maximise)


def fixed_hypervolume(ndcg, alpha_ndcg, reference: tuple[float, float] = (0.0, 0.0)) -> float:
    """Area dominated by the points (NDCG@10, α-NDCG@10) above a fixed `reference` in raw metric units.

    Unlike Avg.HV it needs no min–max scale, so a method's value does not change with the other methods in
    the report; (0, 0) is the worst value of both metrics, so every point counts. NaN without points."""
    return hypervolume_points(metric_points(ndcg, alpha_ndcg), reference)


def hypervolume_points(points, reference, maximise=None) -> float:
    """The hypervolume of points `[n, p]` (rows with a NaN dropped) against a fixed `reference` in raw metric
    units, each metric maximised or minimised (`maximise`); NaN without points."""
    points = _finite(points)
    return float(moocore.hypervolume(points, ref=reference, maximise=_directions(points, maximise))) \
        if len(points) else float("nan")


def pareto_front(ndcg, alpha_ndcg) -> np.ndarray:
    """The non-dominated points `[m, 2]` of (NDCG@10, α-NDCG@10), both maximised."""
    return front_points(metric_points(ndcg, alpha_ndcg))


def front_points(points, maximise=None) -> np.ndarray:
    """The non-dominated rows of points `[n, p]`."""
    points = _finite(points)
    return moocore.filter_dominated(points, maximise=_directions(points, maximise))


def igd_plus(ndcg, alpha_ndcg, front: np.ndarray) -> float:
    """IGD+ of the points to a reference `front` `[m, 2]` in raw metric units (0: they reach every front point).

    The mean over front points of the distance to the nearest point, counting only where that point falls
    short (Ishibuchi et al., 2015), so it is Pareto compliant. NaN without points."""
    return igd_plus_points(metric_points(ndcg, alpha_ndcg), front)


def igd_plus_points(points, front: np.ndarray, maximise=None) -> float:
    """`igd_plus` for points `[n, p]` and a front `[m, p]`, each metric maximised or minimised (`maximise`)."""
    points = _finite(points)
    return float(moocore.igd_plus(points, ref=front, maximise=_directions(points, maximise))) \
        if len(points) else float("nan")


def w_regret(utilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per method, the w-utility regret of each seed: the mean over tasks of (best utility at that task − its own).

    `utilities[method]` is `[seeds, tasks]` (`w_utility` of its points under one `bounds`); the best at a task
    is over every method and seed, so a regret is >= 0 and a method's mean regret is that of its mean curve."""
    best = np.nanmax(np.concatenate([np.atleast_2d(u) for u in utilities.values()]), axis=0)
    return {m: (best - np.atleast_2d(u)).mean(1) for m, u in utilities.items()}


def avg_hv(table: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Avg.HV per method from `{method: (ndcg per task, α-ndcg per task)}`, normalised jointly."""
    return avg_hv_points({m: np.stack([np.asarray(a, dtype=float), np.asarray(d, dtype=float)], -1)
                          for m, (a, d) in table.items()})


def avg_hv_points(table: dict[str, np.ndarray], maximise=None) -> dict[str, float]:
    """Avg.HV per method from `{method: points [tasks, p]}`: the mean over tasks of the volume between a point and
    the worst corner, every metric min–max normalised over all methods' points (the paper's, for p metrics)."""
    bounds = point_bounds(np.concatenate([np.asarray(v, dtype=float) for v in table.values()]))
    return {m: float(normalised_points(v, bounds, maximise).prod(-1).mean()) for m, v in table.items()}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant up to float rounding (`[0.1] * 3` less its mean)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    xc, yc = x - x.mean(), y - y.mean()
    if any(np.abs(c).max(initial=0.0) <= 1e-12 * max(np.abs(v).max(initial=0.0), 1.0) for c, v in ((xc, x), (yc, y))):
        return float("nan")
    return float((xc * yc).sum() / np.sqrt((xc**2).sum() * (yc**2).sum()))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):
            r[v == value] = r[v == value].mean()
        return r
    return pearson(ranks(x), ranks(y))
