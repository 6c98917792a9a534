"""Controllability against Retrain (paper Table 1): Avg.HV and Pearson r-a / r-d across the 11 tasks."""

from __future__ import annotations

import numpy as np

from padirec.metrics import avg_hv, pearson


def controllability_table(curves: dict[str, dict[str, np.ndarray]], reference: str = "Retrain") -> dict[str, dict]:
    """Per method: Avg.HV (normalised jointly over all methods), r-a and r-d against `reference`.

    `curves[method]` holds `ndcg10` and `alpha_ndcg10` over the same tasks in the same order.
    """
    hv = avg_hv({m: (c["ndcg10"], c["alpha_ndcg10"]) for m, c in curves.items()})
    ref = curves[reference]
    return {m: {"avg_hv": hv[m], "r_a": pearson(c["ndcg10"], ref["ndcg10"]),
                "r_d": pearson(c["alpha_ndcg10"], ref["alpha_ndcg10"])} for m, c in curves.items()}


def table_markdown(table: dict[str, dict]) -> str:
    lines = ["| method | Avg.HV | r-a | r-d |", "| --- | --- | --- | --- |"]
    lines += [f"| {m} | {r['avg_hv']:.4f} | {r['r_a']:.4f} | {r['r_d']:.4f} |" for m, r in table.items()]
    return "\n".join(lines)
