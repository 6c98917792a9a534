"""Controllability against Retrain: the paper's Table 1 and metrics that reward following w on any dataset.

The paper's (Table 1): Avg.HV, min–max normalised over the methods of one report, and Pearson r-a / r-d
of each metric's curve with Retrain's. Beside them, metrics whose values do not depend on which other methods
are in the report, or that check the direction of control itself: the hypervolume of a method's task points
at the fixed reference point (0, 0) in raw metric units, IGD+ to Retrain's non-dominated points, w-utility
regret (how far, at each task w, a method falls short of the best utility any method reached there) and
Spearman ρ of each metric with w_acc (with its own objective's weight for more than two objectives: every
function takes the report's `objectives`, the paper's pair by default). These are means ± std over seeds (the
paper's are taken on the seed-mean curves, with the std of their per-seed values), and `paired_tests` says whether
one method's regret differs from each other method's beyond seed and task noise.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from padirec.metrics import (
    avg_hv_points,
    front_points,
    hypervolume_points,
    igd_plus_points,
    normalised_points,
    pearson,
    point_bounds,
    spearman,
    w_regret,
    w_utility_points,
)
from padirec.objectives import OBJECTIVES, REGISTRY, Objective, metric_keys, resolve_objectives

if TYPE_CHECKING:  # annotations only: the methods are run by the report, this module only measures them
    from padirec.evaluation.baselines import Method, Scorer

REFERENCE_POINT = (0.0, 0.0)  # the worst value of both metrics: every point counts, nothing depends on the methods
SIGNIFICANCE = 0.05  # p at or above it: a tie
METRICS = ("ndcg10", "alpha_ndcg10")  # the paper's pair (`objectives.metric_keys` for others)


def paper_labels(objectives=OBJECTIVES) -> dict[str, str]:
    """The paper's Table 1 columns: Avg.HV and a Pearson r per objective (r-a, r-d, r-f, ...)."""
    return {"avg_hv": "Avg.HV", **{f"r_{o.short}": f"r-{o.short}" for o in resolve_objectives(objectives)}}


def follow_labels(objectives=OBJECTIVES) -> dict[str, str]:
    """The w-following columns: fixed-reference HV, IGD+, regret, and a Spearman ρ per objective (with w_acc for
    the paper's pair, as before; with the objective's own weight for more)."""
    found = resolve_objectives(objectives)
    reference = ", ".join(f"{o.worst:g}" for o in found)
    labels = {"hv": f"HV at ({reference}) ↑", "igd_plus": "IGD+ to Retrain ↓", "regret": "w-utility regret ↓"}
    if len(found) == 2:
        return {**labels, "rho_a": "ρ(NDCG@10, w_acc) ↑", "rho_d": "ρ(α-NDCG@10, w_acc) ↓"}
    return {**labels, **{f"rho_{o.short}": f"ρ({o.label}, w_{o.name}) {'↑' if o.maximise else '↓'}" for o in found}}


def headline_keys(objectives=OBJECTIVES) -> tuple[tuple[str, str, bool], ...]:
    """(key, label, higher is better) of the metrics the headline ranks methods on."""
    reference = ", ".join(f"{o.worst:g}" for o in resolve_objectives(objectives))
    return (("hv", f"hypervolume at ({reference})", True), ("igd_plus", "IGD+ to Retrain's front", False),
            ("regret", "w-utility regret", False), ("avg_hv", "Avg.HV (paper)", True))



def task_matrix(w) -> np.ndarray:
    """Task weights `[T, p]` from rows or, for the paper's pair, from w_acc values `[T]`."""
    w = np.asarray(w, dtype=float)
    return np.stack([w, 1.0 - w], axis=1) if w.ndim == 1 else w


def points_of(curve: dict, objectives=OBJECTIVES) -> np.ndarray:
    """A method's metric points `[..., p]` (per task; per seed and task for per-seed curves)."""
    return np.stack([np.asarray(curve[k], dtype=float) for k in metric_keys(objectives)], axis=-1)


def joint_bounds(per_seed: dict[str, dict[str, np.ndarray]], objectives=OBJECTIVES) -> list[float]:
    """`point_bounds` over every method's per-seed points: the one scale of a report (dataset, backbone)."""
    return point_bounds(np.concatenate([points_of(s, objectives).reshape(-1, len(metric_keys(objectives)))
                                        for s in per_seed.values()]))


def seed_utilities(per_seed: dict[str, dict[str, np.ndarray]], w, objectives=OBJECTIVES) -> dict[str, np.ndarray]:
    """w-utility `[seeds, tasks]` of every method's per-seed points under their `joint_bounds`; `w` the tasks'
    weights (`task_matrix`)."""
    bounds, maximise = joint_bounds(per_seed, objectives), [o.maximise for o in resolve_objectives(objectives)]
    weights, names = task_matrix(w), metric_keys(objectives)
    return {m: w_utility_points(weights, np.stack([np.atleast_2d(s[k]) for k in names], axis=-1), bounds, maximise)
            for m, s in per_seed.items()}


def std(values: np.ndarray) -> float:
    """Sample standard deviation over seeds; NaN for a single seed (no spread to report)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def seed_agreement(points: np.ndarray) -> tuple[float, float]:
    """A method's seeds' curves `[S, T]` of one metric: their mean pairwise Pearson r, and the r against their
    mean curve that the noise-free curve would reach (S·r / (1 + (S − 1)·r), Spearman–Brown, then its square
    root); NaN for one seed. A Pearson bar above that ceiling asks for the seeds' own noise to be reproduced."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    pairs = [pearson(points[i], points[j]) for i in range(len(points)) for j in range(i + 1, len(points))]
    if not pairs or not np.all(np.isfinite(pairs)):
        return float("nan"), float("nan")
    r, seeds = float(np.mean(pairs)), len(points)
    reliability = seeds * r / (1 + (seeds - 1) * r) if 1 + (seeds - 1) * r > 0 else 0.0
    return r, float(np.sqrt(max(reliability, 0.0)))


def controllability_table(curves: dict[str, dict[str, np.ndarray]], reference: str = "Retrain",
                          per_seed: dict[str, dict[str, np.ndarray]] | None = None,
                          objectives=OBJECTIVES) -> dict[str, dict]:
    """Per method: the paper's Avg.HV and Pearson r per objective, and the w-following metrics, with their std
    over seeds.

    `curves[method]` holds each objective's metric over the same tasks in the same order (the mean over seeds),
    and on the reference's curve the tasks' weights: `w` `[T, p]`, or `w_acc` for the paper's pair (without
    them regret and ρ are NaN); `per_seed[method]` the same metrics `[seeds, tasks]` (default: each curve as its
    only seed). The paper's are taken on the mean curves, as the paper averages Retrain's seeds; `hv`,
    `igd_plus`, `regret`, `rho_*` are means over seeds; `<key>_std` is the std over seeds of every one (a seed's
    Avg.HV normalised by the bounds of all per-seed points, its r against the reference's mean curve), `seeds`
    their number. Two objectives give the keys r_a, r_d, rho_a, rho_d (ρ with w_acc); p give r_<letter> and
    rho_<letter> (ρ with that objective's own weight).
    """
    found: tuple[Objective, ...] = resolve_objectives(objectives)
    names = metric_keys(objectives)
    maximise = [o.maximise for o in found]
    per_seed = per_seed or {m: {k: np.atleast_2d(c[k]) for k in names} for m, c in curves.items()}
    paper_hv = avg_hv_points({m: points_of(c, objectives) for m, c in curves.items()}, maximise)
    ref = curves[reference]
    w = ref.get("w", ref.get("w_acc"))
    weights = task_matrix(w) if w is not None else None
    regret = w_regret(seed_utilities(per_seed, weights, objectives)) if weights is not None else None
    bounds = joint_bounds(per_seed, objectives)
    front = front_points(points_of(ref, objectives), maximise)
    worst = [o.worst for o in found]
    control = ([weights[:, 0]] * 2 if len(found) == 2 else list(weights.T)) if weights is not None else None
    nan = float("nan")
    table = {}
    for m, c in curves.items():
        points = np.stack([np.atleast_2d(per_seed[m][k]) for k in names], axis=-1)  # [seeds, tasks, p]
        seeds = {"avg_hv": [normalised_points(pt, bounds, maximise).prod(-1).mean() for pt in points],
                 "hv": [hypervolume_points(pt, worst, maximise) for pt in points],
                 "igd_plus": [igd_plus_points(pt, front, maximise) for pt in points],
                 "regret": regret[m] if regret is not None else [nan] * len(points)}
        row = {"avg_hv": paper_hv[m]}
        for j, o in enumerate(found):
            seeds[f"r_{o.short}"] = [pearson(pt[:, j], ref[names[j]]) for pt in points]
            seeds[f"rho_{o.short}"] = [spearman(pt[:, j], control[j]) if control is not None else nan for pt in points]
            row[f"r_{o.short}"] = pearson(c[names[j]], ref[names[j]])
            if m == reference and len(points) > 1:  # how far the reference's own seeds agree: the attainable r
                row[f"r_{o.short}_seeds"], row[f"r_{o.short}_ceiling"] = seed_agreement(points[:, :, j])
        row.update({k: float(np.mean(seeds[k])) for k in follow_labels(objectives)})
        table[m] = {**row, **{f"{k}_std": std(np.asarray(v, dtype=float)) for k, v in seeds.items()},
                    "seeds": len(points)}
    return table


def seed_curves(runs: list[Method], weights: np.ndarray, scorer: Scorer,
                rows_are_seeds: bool = False) -> dict[str, np.ndarray]:
    """The objectives' metrics `[seeds, tasks]` of one method from its runs (`Method`s, one per seed) on `scorer`.

    `rows_are_seeds`: one run whose adapters of a task are one per seed (Retrain's and Soup's are the sweep's
    seeds): a row per adapter, or one mean row where the tasks have different numbers of them."""
    if rows_are_seeds and len(runs) == 1:
        adapters = runs[0].adapters(weights)
        if len({len(a) for a in adapters}) == 1:
            per_adapter = scorer.per_adapter(np.concatenate(adapters).astype(np.float32))
            return {k: v.reshape(len(adapters), -1).T for k, v in per_adapter.items()}
    rows = [run.metrics(weights, scorer) for run in runs]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def paired_tests(per_seed: dict[str, dict[str, np.ndarray]], w, name: str = "PaDiRec",
                 objectives=OBJECTIVES) -> list[dict]:
    """`name` against every other method on w-utility regret: a two-sided Wilcoxon signed-rank test.

    The pairs are the two methods' utilities (`seed_utilities`) at the same task and seed index, over the first
    min(seeds) seeds of each; a regret difference is a utility difference, since the best utility at a task is
    shared. Wilcoxon rather than a paired t-test: the differences mix tasks of very different spread and are far
    from normal, and a rank test needs no such assumption. p >= 0.05: a tie."""
    utilities = seed_utilities(per_seed, w, objectives)
    mine = np.atleast_2d(utilities[name])
    rows = []
    for other, theirs in utilities.items():
        if other == name:
            continue
        n = min(len(mine), len(np.atleast_2d(theirs)))
        a, b = mine[:n].ravel(), np.atleast_2d(theirs)[:n].ravel()
        keep = np.isfinite(a) & np.isfinite(b)
        difference = float(np.mean(a[keep] - b[keep])) if keep.any() else float("nan")  # their regret − ours
        if np.any(a[keep] != b[keep]):
            test = stats.wilcoxon(a[keep], b[keep])
            statistic, p = float(test.statistic), float(test.pvalue)
        else:  # identical utilities: nothing to test
            statistic, p = float("nan"), 1.0
        outcome = "tie" if not p < SIGNIFICANCE else "better" if difference > 0 else "worse"
        rows.append({"method": name, "versus": other, "seeds": n, "pairs": int(keep.sum()),
                     "regret_difference": difference, "statistic": statistic, "p_value": p, "outcome": outcome})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    """`rows` (dicts) as a CSV with a header."""
    with open(path, "w", newline="") as f:  # every row's keys, in first-seen order (a missing one: empty)
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def weight_columns(w, objectives=OBJECTIVES) -> list[dict]:
    """Per task, its weights as CSV columns: w_acc alone for the paper's pair, w_<objective> each for more."""
    weights = task_matrix(w)
    if weights.shape[1] == 2:
        return [{"w_acc": float(row[0])} for row in weights]
    names = [o.name for o in resolve_objectives(objectives)]
    return [{"w_acc": float(row[0]), **{f"w_{n}": float(x) for n, x in zip(names, row)}} for row in weights]


def curve_rows(curves: dict[str, dict[str, np.ndarray]], objectives=OBJECTIVES) -> list[dict]:
    """The curves as `CURVES_ARTIFACT` rows: method, w_acc (and w_<objective> for more than two), the metrics."""
    names = metric_keys(objectives)
    return [{"method": m, **weights, **{k: float(c[k][t]) for k in names}}
            for m, c in curves.items()
            for t, weights in enumerate(weight_columns(c.get("w", c["w_acc"]), objectives))]


def seed_rows(per_seed: dict[str, dict[str, np.ndarray]], w, objectives=OBJECTIVES) -> list[dict]:
    """Every method's per-seed curves as CSV rows (method, seed index, the task's weights, the metrics)."""
    names, columns = metric_keys(objectives), weight_columns(w, objectives)
    return [{"method": m, "seed": i, **weights, **{k: float(np.atleast_2d(s[k])[i, t]) for k in names}}
            for m, s in per_seed.items() for i in range(len(np.atleast_2d(s[names[0]])))
            for t, weights in enumerate(columns)]


def table_objectives(table: dict[str, dict]) -> list[str]:
    """The objectives a `controllability_table` was computed for (from its r_<letter> columns; a table without them:
    the paper's pair)."""
    row = next(iter(table.values()))
    found = [o.name for o in REGISTRY.values() if f"r_{o.short}" in row]
    return found if len(found) >= 2 else list(OBJECTIVES)


def cell(row: dict, key: str, spec: str = ".4f") -> str:
    """`value ± std` (the std left out for one seed)."""
    spread = row.get(f"{key}_std", float("nan"))
    return f"{row[key]:{spec}}" + (f" ± {spread:{spec}}" if np.isfinite(spread) else "")


def tables_markdown(table: dict[str, dict], tests: list[dict]) -> list[str]:
    """The report's sections on `table` and `tests`: the paper's Table 1 with its verdict, the w-following
    metrics with how each is measured, and the paired tests."""
    seeds = max(r["seeds"] for r in table.values())
    found = resolve_objectives(table_objectives(table))
    rs = " / ".join(f"r-{o.short}" for o in found)
    metrics = ", ".join(o.label for o in found)
    reference = ", ".join(f"{o.worst:g}" for o in found)
    rho = ("Spearman with w_acc (+1 / −1 is monotone control)" if len(found) == 2 else
           "Spearman of each metric with its own objective's weight (±1 is monotone control)")
    lines = [f"## Table 1 (paper): Avg.HV and Pearson {rs} against Retrain, of the curves averaged over seeds "
             f"(± std of the per-seed values, up to {seeds} seeds)", "", table_markdown(table), "",
             verdict(table) if "PaDiRec" in table else "", "",
             "## Following w: mean ± std over seeds", "",
             f"HV: the volume dominated by a method's task points above the fixed reference point ({metrics}) "
             f"= ({reference}), in raw metric units. IGD+: to Retrain's non-dominated points, raw units. Regret: per "
             "task, the best w-utility of any method and seed minus this one's (metrics min–max normalised over all "
             f"points of this report), averaged over tasks. ρ: {rho}.", "",
             follow_markdown(table), ""]
    if tests:
        lines += ["## Paired tests on w-utility regret (two-sided Wilcoxon signed-rank over (task, seed) pairs; "
                  f"p ≥ {SIGNIFICANCE} is a tie)", "", significance_markdown(tests), ""]
    return lines


def table_markdown(table: dict[str, dict]) -> str:
    """The paper's Table 1: Avg.HV and a Pearson r per objective (r-a / r-d) of the mean curves, ± their std."""
    labels = paper_labels(table_objectives(table))
    lines = ["| method | " + " | ".join(labels.values()) + " |", "| --- |" + " --- |" * len(labels)]
    lines += [f"| {m} | " + " | ".join(cell(r, k) for k in labels) + " |" for m, r in table.items()]
    return "\n".join(lines)


def follow_markdown(table: dict[str, dict]) -> str:
    """The w-following metrics, mean ± std over seeds."""
    labels = follow_labels(table_objectives(table))
    lines = ["| method | seeds | " + " | ".join(labels.values()) + " |", "| --- |" + " --- |" * (len(labels) + 1)]
    lines += [f"| {m} | {r['seeds']} | " + " | ".join(cell(r, k, ".4g") for k in labels) + " |"
              for m, r in table.items()]
    return "\n".join(lines)


def significance_markdown(tests: list[dict]) -> str:
    """The paired tests as a table (regret difference > 0: the other method's regret is higher)."""
    lines = ["| method | versus | seeds | pairs | regret difference (theirs − ours) | p (Wilcoxon) | outcome |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t['method']} | {t['versus']} | {t['seeds']} | {t['pairs']} | {t['regret_difference']:+.4f} | "
              f"{t['p_value']:.3g} | {t['outcome']} |" for t in tests]
    return "\n".join(lines)


def headline(table: dict[str, dict], tests: list[dict], reference: str = "Retrain") -> list[str]:
    """Bullets naming the best method (the reference aside) on each headline metric and its margin over the
    runner-up, then the paired tests' outcomes."""
    lines = []
    for key, label, higher in headline_keys(table_objectives(table)):
        ranked = sorted((m for m in table if m != reference and np.isfinite(table[m][key])),
                        key=lambda m: table[m][key], reverse=higher)
        if not ranked:
            continue
        best = table[ranked[0]][key]
        tied = [m for m in ranked[1:] if abs(table[m][key] - best) <= 1e-12 * max(abs(best), 1.0)]
        if tied:  # no single best: say so instead of "ahead by 0"
            lines.append(f"- {label}: tie at {best:.4g} between {', '.join([ranked[0], *tied])}"
                         + (f"; {reference}: {table[reference][key]:.4g}" if reference in table else ""))
            continue
        line = f"- {label}: **{ranked[0]}** {best:.4g}"
        if len(ranked) > 1:
            runner = table[ranked[1]][key]
            relative = f" ({100 * abs(best - runner) / abs(runner):.1f}%)" if abs(runner) > 1e-12 else ""
            line += f", ahead of {ranked[1]} ({runner:.4g}) by {abs(best - runner):.4g}{relative}"
        lines.append(line + (f"; {reference}: {table[reference][key]:.4g}" if reference in table else ""))
    return lines + tests_headline(tests)


def tests_headline(tests: list[dict]) -> list[str]:
    """One bullet with the outcome of each paired test of `tests[0]['method']` (none without tests)."""
    if not tests:
        return []
    parts = [f"{t['outcome']} {'with' if t['outcome'] == 'tie' else 'than'} {t['versus']} (p = {t['p_value']:.3g})"
             for t in tests]
    return [f"- {tests[0]['method']} on w-utility regret (Wilcoxon signed-rank, paired (task, seed), "
            f"p < {SIGNIFICANCE}): " + ", ".join(parts)]


def verdict(table: dict[str, dict], name: str = "PaDiRec", reference: str = "Retrain") -> str:
    """One sentence on where `name` stands: against the reference, and which baselines beat it."""
    row, ref = table[name], table[reference]
    ratio = row["avg_hv"] / ref["avg_hv"] if ref["avg_hv"] > 0 else float("nan")
    labels = paper_labels(table_objectives(table))
    rs = ", ".join(f"{label} {row[key]:.4f}" for key, label in labels.items() if key != "avg_hv")
    text = f"{name}: Avg.HV {row['avg_hv']:.4f} = {100 * ratio:.1f}% of {reference}'s, {rs}."
    for key, label in labels.items():
        ahead = [m for m, r in table.items() if m not in (name, reference) and r[key] > row[key]]
        text += f" Ahead of {name} on {label}: {', '.join(ahead)}." if ahead else \
            f" No baseline beats {name} on {label}."
    agreement = {label: (ref[f"{key}_seeds"], ref[f"{key}_ceiling"]) for key, label in labels.items()
                 if np.isfinite(ref.get(f"{key}_ceiling", float("nan")))}  # label: (seeds' mean r, attainable r)
    if agreement:
        agree = ", ".join(f"{k} {r:.4f}" for k, (r, _) in agreement.items())
        reach = ", ".join(f"{k} {c:.4f}" for k, (_, c) in agreement.items())
        text += (f" {reference}'s own seeds agree at {agree} (mean pairwise Pearson over {ref['seeds']} seeds), so a "
                 f"method that drew the noise-free curve would reach about {reach} against their mean: a bar above "
                 "that asks for the seeds' noise.")
    return text
