"""The methods a controllability report compares (paper §5.1, DESIGN §5): each answers a task w.

An `AdapterMethod` maps task weights `[K, p]` to adapters (a list of K arrays `[S_k, 1096]`; a
task's metrics are the mean over its S_k adapters, e.g. Retrain's seeds or PaDiRec's samples):

- Retrain: the sweep's own adapters at exactly that w (last kept epoch, every seed), trained on
  demand with the sweep's settings when w is off the grid;
- Soup: `Σ_j w_j · θ(e_j)` over the simplex's vertices (two objectives: `w_acc · θ(1, 0) + (1 − w_acc) · θ(0, 1)`),
  seed by seed;
- CMR, PHN, YOTO and the Hypernetwork (`evaluation.hypernetworks`): one network w → adapter, trained end to end on
  the w-weighted loss or regressing the swept adapters;
- PaDiRec: adapters sampled from the trained DiT;
- BestOf (`evaluation.select`): another method's candidates per task, reduced to the best on a validation sample.

MMR and DPP are not adapters: they re-rank the frozen backbone's top candidates for diversity
(`padirec.evaluation.rerank`: α-DCG coverage gain; greedy MAP of a category-similarity DPP), so they are defined for
the paper's pair (accuracy, diversity) only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np
import torch

from padirec.data import SequenceData
from padirec.diffusion.generator import Generator
from padirec.diffusion.sampling import SamplerConfig
from padirec.evaluation.ranking import EvalSet, encode_instances, rank_metrics
from padirec.evaluation.rerank import dpp_rerank, mmr_rerank
from padirec.metrics import alpha_ndcg_at_k, ndcg_at_k, topk_full_ranking
from padirec.models import Backbone
from padirec.objectives import OBJECTIVES
from padirec.sweep.report import chosen_adapters
from padirec.training import AdapterConfig, AdapterResult, train_adapters

# the report's methods (best-of-N rows come with `EvaluateConfig.select`)
METHODS = ("Retrain", "Soup", "MMR", "DPP", "CMR", "PHN", "YOTO", "Hypernetwork", "PaDiRec")


@dataclass
class Scorer:
    """A frozen backbone with one split prepared for full ranking: scores adapters and re-ranked lists."""

    backbone: Backbone
    eval_set: EvalSet
    states: torch.Tensor  # the split's user states [N, d]
    chunk: int = 32  # adapters per rank_metrics call (bounds the [chunk, users, items] score tensor)

    @classmethod
    def build(cls, backbone: Backbone, data: SequenceData, split: str = "test", objectives=OBJECTIVES) -> Scorer:
        eval_set = EvalSet.build(data, split, objectives=objectives)
        return cls(backbone, eval_set, encode_instances(backbone, eval_set.instances))

    def sample(self, n_users: int, seed: int = 0) -> Scorer:
        """The same split on `n_users` users drawn at random (all of them when it has fewer): a selection sample."""
        n = len(self.eval_set.instances)
        if n_users >= n:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(n, n_users, replace=False))
        return replace(self, eval_set=self.eval_set.subset(rows), states=self.states[torch.as_tensor(rows)])

    def per_adapter(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics (NDCG@10, α-NDCG@10 and the split's further ones) of each adapter in `flat [n, 1096]`."""
        parts = [rank_metrics(self.backbone, self.eval_set, torch.as_tensor(flat[i : i + self.chunk]), self.states)
                 for i in range(0, len(flat), self.chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def per_candidate(self, adapters: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per task: the metrics of each of its adapters (all tasks' adapters scored in one pass)."""
        metrics = self.per_adapter(np.concatenate(adapters).astype(np.float32))
        ends = np.cumsum([len(a) for a in adapters])[:-1]
        parts = {k: np.split(v, ends) for k, v in metrics.items()}
        return [{k: parts[k][i] for k in parts} for i in range(len(adapters))]

    def per_task(self, adapters: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Per task: the mean metric over that task's adapters."""
        tasks = self.per_candidate(adapters)
        return {k: np.array([task[k].mean() for task in tasks]) for k in tasks[0]}

    def list_metrics(self, top: torch.Tensor) -> dict[str, float]:
        """Mean NDCG@k and α-NDCG@k of ranked lists `[N, k]` (one per user of the split)."""
        targets = torch.as_tensor(self.eval_set.instances.targets)
        diversity = alpha_ndcg_at_k(top, self.eval_set.item_categories, self.eval_set.alpha, self.eval_set.ideal)
        return {"ndcg10": float(ndcg_at_k(top, targets).mean()), "alpha_ndcg10": float(diversity.mean())}


class Method(ABC):
    """Something that serves a task w; `metrics` gives its test NDCG@10 and α-NDCG@10 per task."""

    name: str

    @abstractmethod
    def metrics(self, weights: np.ndarray, scorer: Scorer) -> dict[str, np.ndarray]: ...


class AdapterMethod(Method):
    """A method that answers w with adapter parameters loaded into the frozen backbone."""

    @abstractmethod
    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        """Task weights `[K, p]` -> K arrays `[S_k, 1096]`."""

    def metrics(self, weights: np.ndarray, scorer: Scorer) -> dict[str, np.ndarray]:
        return scorer.per_task(self.adapters(weights))


# ----------------------------------------------------------------------------------------- Retrain, Soup


class Retrain(AdapterMethod):
    """The sweep's adapters at exactly w: every seed's chosen adapter (`chosen_adapters`, as `retrain_curve`)."""

    name = "Retrain"

    def __init__(self, arrays: dict[str, np.ndarray], backbone: Backbone | None = None,
                 data: SequenceData | None = None, config: AdapterConfig = AdapterConfig()):
        last = chosen_adapters(arrays)
        self.w, self.seed, self.params = arrays["w"][last], arrays["seed"][last], arrays["params"][last]
        self.seeds = sorted({int(s) for s in arrays["seed"]})
        self.backbone, self.data, self.config = backbone, data, config
        self.trained: dict[tuple, np.ndarray] = {}  # on-demand adapters by w (rounded)

    def train(self, weights: np.ndarray, seed: int = 0, epochs: int | None = None) -> AdapterResult:
        """Train adapters for `weights [K, p]` as the sweep did (its settings; only the chosen adapter kept)."""
        if self.backbone is None or self.data is None:
            raise ValueError("training Retrain adapters on demand needs the backbone and the data")
        config = replace(self.config, seed=seed, epochs=epochs or self.config.epochs, keep_last=1)
        splits = ("valid",) if config.keep == "best" else ()  # "best" chooses by validation utility
        return train_adapters(self.backbone, self.data, weights, config, progress=False, eval_splits=splits)

    def rows(self, weights: np.ndarray) -> list[np.ndarray]:
        """Per task, the sweep's rows at exactly that w (empty: off the grid)."""
        return [np.flatnonzero(np.abs(self.w - w).max(1) < 1e-6) for w in np.asarray(weights, dtype=np.float32)]

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape[1] != self.w.shape[1]:
            raise ValueError(f"tasks have {weights.shape[1]} weights, the sweep's adapters {self.w.shape[1]}")
        on_grid = self.rows(weights)
        key = (lambda w: tuple(np.round(w, 6).tolist()))  # noqa: E731
        missing = [w for w, rows in zip(weights, on_grid) if not len(rows) and key(w) not in self.trained]
        if missing:  # off the sweep's grid: train them now, one packed run per seed of the sweep
            missing = np.array(missing, dtype=np.float32)
            print(f"[evaluate] Retrain: training {len(missing)} off-grid adapters x {len(self.seeds)} seeds",
                  flush=True)
            runs = np.stack([self.train(missing, seed).params[-1] for seed in self.seeds], axis=1)  # [K, S, P]
            self.trained.update({key(w): p for w, p in zip(missing, runs)})
        return [self.params[rows[np.argsort(self.seed[rows], kind="stable")]] if len(rows)
                else self.trained[key(w)] for w, rows in zip(weights, on_grid)]


class Soup(AdapterMethod):
    """Model soup: the Retrain adapters of the simplex's vertices (one objective alone each) mixed by w, seed by
    seed (two objectives: linear interpolation between w_acc = 1 and w_acc = 0)."""

    name = "Soup"

    def __init__(self, retrain: Retrain):
        vertices = retrain.adapters(np.eye(retrain.w.shape[1], dtype=np.float32))
        n = min(len(v) for v in vertices)
        self.vertices = [v[:n] for v in vertices]  # per objective: [seeds, 1096]

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        if len(self.vertices) == 2:  # w_acc and its complement, exactly as the two-objective soup always has
            accuracy, diversity = self.vertices
            return [float(w) * accuracy + (1.0 - float(w)) * diversity for w in weights[:, 0]]
        return [sum(float(x) * v for x, v in zip(w, self.vertices)) for w in weights]


# ---------------------------------------------------------------------------------------- re-rankers: MMR, DPP


class Reranker(Method):
    """Re-ranks the frozen backbone's top-N candidates of every user for λ = w_acc (no adapter involved)."""

    def __init__(self, candidates: int = 100):
        self.candidates = candidates

    @abstractmethod
    def rerank(self, scores: torch.Tensor, categories: torch.Tensor, lam: float, eval_set: EvalSet) -> torch.Tensor:
        """Positions `[B, k]` into the candidates, from their scores `[B, n]` and categories `[B, n, M]`."""

    @torch.no_grad()
    def top_candidates(self, scorer: Scorer) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's top-N items `[N, n]` of every user of the split and their scores (the same for every λ)."""
        eval_set = scorer.eval_set
        n = min(self.candidates, eval_set.excluded.shape[1] - 1)
        items, values = [], []
        for start in range(0, len(scorer.states), 256):
            rows = slice(start, start + 256)
            scores = scorer.backbone.score(scorer.states[rows])
            items.append(topk_full_ranking(scores, eval_set.excluded[rows], n))
            values.append(scores.masked_fill(eval_set.excluded[rows], float("-inf")).gather(-1, items[-1]))
        return torch.cat(items), torch.cat(values)

    @torch.no_grad()
    def rankings(self, scorer: Scorer, lam: float,
                 candidates: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Re-ranked top-k item lists `[N, k]` of every user of the split (`candidates`: `top_candidates`)."""
        items, values = candidates or self.top_candidates(scorer)
        eval_set = scorer.eval_set
        lists = []
        for start in range(0, len(items), 256):
            rows = slice(start, start + 256)
            positions = self.rerank(values[rows], eval_set.item_categories[items[rows]], lam, eval_set)
            lists.append(items[rows].gather(-1, positions))
        return torch.cat(lists)

    def metrics(self, weights: np.ndarray, scorer: Scorer) -> dict[str, np.ndarray]:
        candidates = self.top_candidates(scorer)
        rows = [scorer.list_metrics(self.rankings(scorer, float(w), candidates)) for w in weights[:, 0]]
        return {k: np.array([r[k] for r in rows]) for k in ("ndcg10", "alpha_ndcg10")}


class MMR(Reranker):
    """Maximal marginal relevance, λ = w_acc, with α-DCG's coverage gain as the novelty term (`mmr_rerank`)."""

    name = "MMR"

    def rerank(self, scores: torch.Tensor, categories: torch.Tensor, lam: float, eval_set: EvalSet) -> torch.Tensor:
        return mmr_rerank(scores, categories, lam, eval_set.k, eval_set.alpha)


class DPP(Reranker):
    """Greedy MAP of a relevance-quality x category-similarity DPP, λ = w_acc (`dpp_rerank`, Chen et al., 2018)."""

    name = "DPP"

    def __init__(self, candidates: int = 100, jitter: float = 1e-3):
        super().__init__(candidates)
        self.jitter = jitter

    def rerank(self, scores: torch.Tensor, categories: torch.Tensor, lam: float, eval_set: EvalSet) -> torch.Tensor:
        return dpp_rerank(scores, categories, lam, eval_set.k, self.jitter)


# --------------------------------------------------------------------------------------------- PaDiRec


class PaDiRec(AdapterMethod):
    """Adapters sampled from the trained DiT (`samples` per task, one batch for all tasks)."""

    def __init__(self, generator: Generator, sampler: SamplerConfig = SamplerConfig(), samples: int = 1,
                 seed: int = 0, name: str = "PaDiRec"):
        self.generator, self.sampler, self.samples, self.seed, self.name = generator, sampler, samples, seed, name

    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        flat = self.generator.generate(np.repeat(weights, self.samples, axis=0), self.sampler, seed=self.seed)
        return list(flat.reshape(len(weights), self.samples, -1))
