"""Controllability against Retrain: the paper's Table 1 and metrics that reward following w on any dataset.

The paper's (Table 1): Avg.HV, min–max normalised over the methods of one report, and Pearson r-a / r-d
of each metric's curve with Retrain's. Beside them, metrics whose values do not depend on which other methods
are in the report, or that check the direction of control itself: the hypervolume of a method's task points
at the fixed reference point (0, 0) in raw metric units, IGD+ to Retrain's non-dominated points, w-utility
regret (how far, at each task w, a method falls short of the best utility any method reached there) and
Spearman ρ of each metric with w_acc. These are means ± std over seeds (the paper's three are taken on the
seed-mean curves, with the std of their per-seed values), and `paired_tests` says whether one method's regret
differs from each other method's beyond seed and task noise.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from padirec.metrics import (
    avg_hv,
    fixed_hypervolume,
    hypervolumes,
    igd_plus,
    minmax_bounds,
    pareto_front,
    pearson,
    spearman,
    w_regret,
    w_utility,
)

if TYPE_CHECKING:  # annotations only: the methods are run by the report, this module only measures them
    from padirec.evaluation.baselines import Method, Scorer

PAPER = {"avg_hv": "Avg.HV", "r_a": "r-a", "r_d": "r-d"}
FOLLOW = {"hv": "HV at (0, 0) ↑", "igd_plus": "IGD+ to Retrain ↓", "regret": "w-utility regret ↓",
          "rho_a": "ρ(NDCG@10, w_acc) ↑", "rho_d": "ρ(α-NDCG@10, w_acc) ↓"}
REFERENCE_POINT = (0.0, 0.0)  # the worst value of both metrics: every point counts, nothing depends on the methods
HEADLINE = (("hv", "hypervolume at (0, 0)", True), ("igd_plus", "IGD+ to Retrain's front", False),
            ("regret", "w-utility regret", False), ("avg_hv", "Avg.HV (paper)", True))
SIGNIFICANCE = 0.05  # p at or above it: a tie
METRICS = ("ndcg10", "alpha_ndcg10")


def joint_bounds(per_seed: dict[str, dict[str, np.ndarray]]) -> tuple[float, float, float, float]:
    """`minmax_bounds` over every method's per-seed points: the one scale of a report (dataset, backbone)."""
    return minmax_bounds(*(np.concatenate([np.ravel(s[k]) for s in per_seed.values()]) for k in METRICS))


def seed_utilities(per_seed: dict[str, dict[str, np.ndarray]], w_acc: np.ndarray) -> dict[str, np.ndarray]:
    """`w_utility` `[seeds, tasks]` of every method's per-seed points under their `joint_bounds`."""
    bounds = joint_bounds(per_seed)
    w = np.stack([w_acc, 1.0 - w_acc], axis=1)
    return {m: w_utility(w, s["ndcg10"], s["alpha_ndcg10"], bounds) for m, s in per_seed.items()}


def std(values: np.ndarray) -> float:
    """Sample standard deviation over seeds; NaN for a single seed (no spread to report)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def controllability_table(curves: dict[str, dict[str, np.ndarray]], reference: str = "Retrain",
                          per_seed: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, dict]:
    """Per method: the paper's Avg.HV, r-a, r-d and the w-following metrics, with their std over seeds.

    `curves[method]` holds `ndcg10` and `alpha_ndcg10` over the same tasks in the same order (the mean over
    seeds) and `w_acc` (on the reference's curve; without it regret and ρ are NaN); `per_seed[method]` the
    same metrics `[seeds, tasks]` (default: each curve as its only seed). The paper's three are taken on the
    mean curves, as the paper averages Retrain's seeds; `hv`, `igd_plus`, `regret`, `rho_a`, `rho_d` are
    means over seeds; `<key>_std` is the std over seeds of every one (a seed's Avg.HV normalised by the bounds of
    all per-seed points, its r against the reference's mean curve), `seeds` their number.
    """
    per_seed = per_seed or {m: {k: np.atleast_2d(c[k]) for k in METRICS} for m, c in curves.items()}
    paper_hv = avg_hv({m: (c["ndcg10"], c["alpha_ndcg10"]) for m, c in curves.items()})
    ref = curves[reference]
    w_acc = np.asarray(ref["w_acc"], dtype=float) if "w_acc" in ref else None
    regret = w_regret(seed_utilities(per_seed, w_acc)) if w_acc is not None else None
    bounds = joint_bounds(per_seed)
    front = pareto_front(ref["ndcg10"], ref["alpha_ndcg10"])
    nan = float("nan")
    table = {}
    for m, c in curves.items():
        ndcg, alpha = np.atleast_2d(per_seed[m]["ndcg10"]), np.atleast_2d(per_seed[m]["alpha_ndcg10"])
        seeds = {
            "avg_hv": [hypervolumes(a, d, bounds).mean() for a, d in zip(ndcg, alpha)],
            "r_a": [pearson(a, ref["ndcg10"]) for a in ndcg], "r_d": [pearson(d, ref["alpha_ndcg10"]) for d in alpha],
            "hv": [fixed_hypervolume(a, d, REFERENCE_POINT) for a, d in zip(ndcg, alpha)],
            "igd_plus": [igd_plus(a, d, front) for a, d in zip(ndcg, alpha)],
            "regret": regret[m] if regret is not None else [nan] * len(ndcg),
            "rho_a": [spearman(a, w_acc) if w_acc is not None else nan for a in ndcg],
            "rho_d": [spearman(d, w_acc) if w_acc is not None else nan for d in alpha]}
        row = {"avg_hv": paper_hv[m], "r_a": pearson(c["ndcg10"], ref["ndcg10"]),
               "r_d": pearson(c["alpha_ndcg10"], ref["alpha_ndcg10"]),
               **{k: float(np.mean(seeds[k])) for k in FOLLOW}}
        table[m] = {**row, **{f"{k}_std": std(np.asarray(v, dtype=float)) for k, v in seeds.items()},
                    "seeds": len(ndcg)}
    return table


def seed_curves(runs: list[Method], weights: np.ndarray, scorer: Scorer,
                rows_are_seeds: bool = False) -> dict[str, np.ndarray]:
    """NDCG@10 and α-NDCG@10 `[seeds, tasks]` of one method from its runs (`Method`s, one per seed) on `scorer`.

    `rows_are_seeds`: one run whose adapters of a task are one per seed (Retrain's and Soup's are the sweep's
    seeds): a row per adapter, or one mean row where the tasks have different numbers of them."""
    if rows_are_seeds and len(runs) == 1:
        adapters = runs[0].adapters(weights)
        if len({len(a) for a in adapters}) == 1:
            per_adapter = scorer.per_adapter(np.concatenate(adapters).astype(np.float32))
            return {k: per_adapter[k].reshape(len(adapters), -1).T for k in METRICS}
    rows = [run.metrics(weights, scorer) for run in runs]
    return {k: np.stack([r[k] for r in rows]) for k in METRICS}


def paired_tests(per_seed: dict[str, dict[str, np.ndarray]], w_acc: np.ndarray, name: str = "PaDiRec") -> list[dict]:
    """`name` against every other method on w-utility regret: a two-sided Wilcoxon signed-rank test.

    The pairs are the two methods' utilities (`seed_utilities`) at the same task and seed index, over the first
    min(seeds) seeds of each; a regret difference is a utility difference, since the best utility at a task is
    shared. Wilcoxon rather than a paired t-test: the differences mix tasks of very different spread and are far
    from normal, and a rank test needs no such assumption. p >= 0.05: a tie."""
    utilities = seed_utilities(per_seed, w_acc)
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
    """`rows` (dicts with the same keys) as a CSV with a header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def curve_rows(curves: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """The curves as `CURVES_ARTIFACT` rows: method, w_acc, ndcg10, alpha_ndcg10."""
    return [{"method": m, "w_acc": float(w), "ndcg10": float(n), "alpha_ndcg10": float(d)}
            for m, c in curves.items() for w, n, d in zip(c["w_acc"], c["ndcg10"], c["alpha_ndcg10"])]


def seed_rows(per_seed: dict[str, dict[str, np.ndarray]], w_acc: np.ndarray) -> list[dict]:
    """Every method's per-seed curves as CSV rows (method, seed index, w_acc, both metrics)."""
    return [{"method": m, "seed": i, "w_acc": float(w), "ndcg10": float(n), "alpha_ndcg10": float(d)}
            for m, s in per_seed.items() for i, (ns, ds) in enumerate(zip(s["ndcg10"], s["alpha_ndcg10"]))
            for w, n, d in zip(w_acc, ns, ds)]


def cell(row: dict, key: str, spec: str = ".4f") -> str:
    """`value ± std` (the std left out for one seed)."""
    spread = row.get(f"{key}_std", float("nan"))
    return f"{row[key]:{spec}}" + (f" ± {spread:{spec}}" if np.isfinite(spread) else "")


def tables_markdown(table: dict[str, dict], tests: list[dict]) -> list[str]:
    """The report's sections on `table` and `tests`: the paper's Table 1 with its verdict, the w-following
    metrics with how each is measured, and the paired tests."""
    seeds = max(r["seeds"] for r in table.values())
    lines = [f"## Table 1 (paper): Avg.HV and Pearson r-a / r-d against Retrain, of the curves averaged over seeds "
             f"(± std of the per-seed values, up to {seeds} seeds)", "", table_markdown(table), "",
             verdict(table) if "PaDiRec" in table else "", "",
             "## Following w: mean ± std over seeds", "",
             "HV: the area dominated by a method's task points above the fixed reference point (NDCG@10, α-NDCG@10) "
             "= (0, 0), in raw metric units. IGD+: to Retrain's non-dominated points, raw units. Regret: per task, "
             "the best w-utility of any method and seed minus this one's (metrics min–max normalised over all points "
             "of this report), averaged over tasks. ρ: Spearman with w_acc (+1 / −1 is monotone control).", "",
             follow_markdown(table), ""]
    if tests:
        lines += ["## Paired tests on w-utility regret (two-sided Wilcoxon signed-rank over (task, seed) pairs; "
                  f"p ≥ {SIGNIFICANCE} is a tie)", "", significance_markdown(tests), ""]
    return lines


def table_markdown(table: dict[str, dict]) -> str:
    """The paper's Table 1: Avg.HV and r-a / r-d of the mean curves, ± their std over seeds."""
    lines = ["| method | Avg.HV | r-a | r-d |", "| --- | --- | --- | --- |"]
    lines += [f"| {m} | " + " | ".join(cell(r, k) for k in PAPER) + " |" for m, r in table.items()]
    return "\n".join(lines)


def follow_markdown(table: dict[str, dict]) -> str:
    """The w-following metrics, mean ± std over seeds."""
    lines = ["| method | seeds | " + " | ".join(FOLLOW.values()) + " |", "| --- |" + " --- |" * (len(FOLLOW) + 1)]
    lines += [f"| {m} | {r['seeds']} | " + " | ".join(cell(r, k, ".4g") for k in FOLLOW) + " |"
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
    for key, label, higher in HEADLINE:
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
    if tests:
        parts = [f"{t['outcome']} {'with' if t['outcome'] == 'tie' else 'than'} {t['versus']} (p = {t['p_value']:.3g})"
                 for t in tests]
        lines.append(f"- {tests[0]['method']} on w-utility regret (Wilcoxon signed-rank, paired (task, seed), "
                     f"p < {SIGNIFICANCE}): " + ", ".join(parts))
    return lines


def verdict(table: dict[str, dict], name: str = "PaDiRec", reference: str = "Retrain") -> str:
    """One sentence on where `name` stands: against the reference, and which baselines beat it."""
    row, ref = table[name], table[reference]
    ratio = row["avg_hv"] / ref["avg_hv"] if ref["avg_hv"] > 0 else float("nan")
    text = (f"{name}: Avg.HV {row['avg_hv']:.4f} = {100 * ratio:.1f}% of {reference}'s, "
            f"r-a {row['r_a']:.4f}, r-d {row['r_d']:.4f}.")
    for key, label in PAPER.items():
        ahead = [m for m, r in table.items() if m not in (name, reference) and r[key] > row[key]]
        text += f" Ahead of {name} on {label}: {', '.join(ahead)}." if ahead else \
            f" No baseline beats {name} on {label}."
    return text
