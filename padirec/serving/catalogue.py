"""What the control page shows beside ranked item ids: titles and categories, a user's test split (the history
the list is made for and the held-out item, so the list's NDCG@10 and α-NDCG@10 can be shown, and its Tail@10 for
a model with the novelty objective), and the served model's trade-off curve from its latest report. Plain Python,
tested without Ray; the recommender deployment holds one `Catalogue` per served model."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.config import data_spec, load_data
from padirec.contracts.names import CURVES_ARTIFACT, GENERATOR_RUN_TAG, STAGE_REPORT, STAGE_TAG
from padirec.data import SequenceData
from padirec.metrics import alpha_ndcg_at_k, ideal_alpha_dcg, ndcg_at_k
from padirec.objectives import OBJECTIVES, TAIL_SHARE

log = logging.getLogger(__name__)
METRIC_K = 10  # the report's cut-off: a list's metrics are shown at @10 (or @k for a shorter list)
LISTED_USERS = 50  # user ids the page offers to pick from (any other can be typed)


@dataclass
class Catalogue:
    """Items, users and the trade-off curve of one served model; `data` is None when its dataset was not
    readable (`reason` says why): the page then shows item ids and takes typed histories only. `objectives`: the
    generator's, which a list's metrics follow."""

    data: SequenceData | None
    curve: list[dict] = field(default_factory=list)  # CURVES_ARTIFACT rows: method, w_acc, ndcg10, alpha_ndcg10
    report_run_id: str | None = None
    reason: str = ""
    objectives: tuple[str, ...] = OBJECTIVES

    def __post_init__(self):
        self._users = {} if self.data is None or self.data.user_ids is None else {
            str(raw): dense for dense, raw in enumerate(self.data.user_ids.tolist())}
        if self.data is not None:
            self._categories = torch.as_tensor(self.data.item_categories)
            self._ideal = {}
            # novelty: the long tail as the report's Tail@10 counts it; fairness (a gap between user groups) is a
            # metric of a population of users, not of one list, so a list has none
            self._tail = (torch.as_tensor(self.data.tail_items(TAIL_SHARE)) if "novelty" in self.objectives
                          else None)

    def summary(self) -> dict:
        """What `/v1/model` tells the page about the data."""
        if self.data is None:
            return {"available": False, "reason": self.reason, "users": [], "n_users": 0, "titles": False}
        return {"available": True, "reason": "", "users": list(self._users)[:LISTED_USERS], "n_users": len(self._users),
                "titles": self.data.item_titles is not None, "categories": len(self.data.category_names)}

    def describe(self, ids: list[int]) -> dict[str, dict]:
        """`{str(id): {raw_id, title, categories}}` for dense item ids (empty without data)."""
        if self.data is None:
            return {}
        names, titles, raw = self.data.category_names, self.data.item_titles, self.data.item_ids
        out = {}
        for item in dict.fromkeys(ids):
            flags = np.flatnonzero(self.data.item_categories[item])
            out[str(item)] = {"raw_id": str(raw[item]) if raw is not None else str(item),
                              "title": titles[item] if titles else "", "categories": [names[k] for k in flags]}
        return out

    def user_case(self, user: str) -> dict:
        """A user's test split: `{"history", "times", "held_out"}`, or `{"error": reason}` for an unknown user."""
        if self.data is None:
            return {"error": f"this deployment has no user data ({self.reason}); send a history instead"}
        dense = self._users.get(str(user))
        if dense is None:
            examples = ", ".join(list(self._users)[:3])
            return {"error": f"unknown user {str(user)[:40]!r}: the model's data has {len(self._users)} users "
                             f"(e.g. {examples})"}
        start, end = self.data.seq_offsets[dense], self.data.seq_offsets[dense + 1]
        return {"history": self.data.seq_items[start:end - 1].tolist(), "times": self.data.seq_times[start:end - 1]
                .tolist(), "held_out": int(self.data.seq_items[end - 1])}

    def list_metrics(self, items: list[int], held_out: int) -> dict[str, float]:
        """NDCG and α-NDCG of a ranked list at `METRIC_K` (or its length) against the held-out item, as the
        report measures them (`padirec.metrics`); for a model with the novelty objective also `tail@k`, the share of
        long-tail items in the list (the report's Tail@10 of one user)."""
        k = min(METRIC_K, len(items))
        if self.data is None or k == 0:
            return {}
        if k not in self._ideal:
            self._ideal[k] = ideal_alpha_dcg(self._categories, k)
        top = torch.as_tensor([items[:k]], dtype=torch.long)
        metrics = {f"ndcg@{k}": float(ndcg_at_k(top, torch.as_tensor([held_out]))[0]),
                   f"alpha_ndcg@{k}": float(alpha_ndcg_at_k(top, self._categories, ideal=self._ideal[k])[0])}
        if self._tail is not None:
            metrics[f"tail@{k}"] = float(self._tail[top[0]].mean())
        return metrics


def report_curve(generator_run_id: str | None) -> tuple[list[dict], str | None]:
    """The trade-off curves of the newest report on this generator run: (rows, report run id); none without."""
    if not generator_run_id:
        return [], None
    client = MlflowClient(tracking.tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`{GENERATOR_RUN_TAG}` = '{generator_run_id}' and "
                                           f"tags.`{STAGE_TAG}` = '{STAGE_REPORT}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return [], None
    run_id = runs[0].info.run_id
    try:
        path = tracking.download(run_id, CURVES_ARTIFACT)  # into a scratch_dir
    except Exception as err:  # noqa: BLE001 - an older report without the file: the page shows no curve
        log.warning("report %s has no %s: %s", run_id, CURVES_ARTIFACT, err)
        return [], run_id
    with open(path, newline="") as f:
        rows = [{"method": r["method"], **{k: float(r[k]) for k in ("w_acc", "ndcg10", "alpha_ndcg10")}}
                for r in csv.DictReader(f)]
    return rows, run_id


def load_catalogue(data: dict | None, n_items: int, generator_run_id: str | None = None,
                   data_overrides: dict | None = None, objectives=OBJECTIVES) -> Catalogue:
    """The catalogue of a backbone trained on `data` (its recorded `DataSpec`), checked against its `n_items`, for
    a generator of `objectives`; a dataset that cannot be read (another machine, a moved folder) gives one without
    data, and says why."""
    curve, report_run_id = report_curve(generator_run_id)
    objectives = tuple(objectives)
    if not data:
        return Catalogue(None, curve, report_run_id, "the backbone records no dataset", objectives)
    spec = data_spec(data, data_overrides)
    try:
        loaded = load_data(spec)
    except Exception as err:  # noqa: BLE001 - any reader error: serve without the catalogue, say why
        where = f" at {spec.path}" if spec.path else ""
        log.warning("catalogue: cannot read %s%s: %s", spec.kind, where, err)
        return Catalogue(None, curve, report_run_id, f"cannot read {spec.kind}{where}: {str(err)[:200]}", objectives)
    if loaded.n_items != n_items:
        return Catalogue(None, curve, report_run_id, f"{spec.kind} {spec.path or ''} now has {loaded.n_items} items,"
                                                     f" the backbone {n_items}", objectives)
    return Catalogue(loaded, curve, report_run_id, objectives=objectives)

