"""Full-ranking evaluation of a backbone with or without adapters: NDCG@10 and α-NDCG@10 (DESIGN §5), and where
the objectives ask for them NDCG_GAP@10 between user groups (fairness) and Tail@10, the share of long-tail items
in the lists (novelty).

Every stage measures through these: early stopping in pretraining, the sweep's per-epoch metrics, the
report's methods and the generator's samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from padirec.data import Instances, SequenceData
from padirec.metrics import alpha_ndcg_at_k, ideal_alpha_dcg, ndcg_at_k, topk_full_ranking
from padirec.models import Backbone, apply_adapters, unflatten
from padirec.objectives import OBJECTIVES, TAIL_SHARE, resolve_objectives

# scores per chunk of a full ranking (4 MiB): one `[K, users, items]` product spills out of cache; chunks of about this
# size ranked 1.5x faster on ML-100K's 1.7k items and 2x on 9.8k, the adapters' top-k 1.15x and 1.9x (BENCHMARKS §7)
SCORE_CHUNK = 2**20


def to_tensors(instances: Instances, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(instances.histories, device=device),
            torch.as_tensor(instances.times, dtype=torch.float64, device=device))


@torch.no_grad()
def encode_instances(backbone: Backbone, instances: Instances, batch_size: int = 1024) -> torch.Tensor:
    """User states `[N, d]` of a frozen backbone (eval mode, no dropout)."""
    backbone.eval()
    device = next(backbone.parameters()).device
    histories, times = to_tensors(instances, device)
    return torch.cat([backbone.encode(histories[i : i + batch_size], times[i : i + batch_size])
                      for i in range(0, len(instances), batch_size)])


@dataclass
class EvalSet:
    """One split prepared for full-ranking evaluation: instances, excluded items, ideal α-DCG, and what the
    further objectives' metrics need (each user's group, the long-tail items)."""

    instances: Instances
    excluded: torch.Tensor  # bool [N, n_items + 1]
    item_categories: torch.Tensor
    ideal: float
    alpha: float = 0.5
    k: int = 10
    groups: torch.Tensor | None = None  # long [N]: each instance's user group (−1 unknown): NDCG_GAP@k
    tail: torch.Tensor | None = None  # float [n_items + 1]: 1 for long-tail items: Tail@k

    @classmethod
    def build(cls, data: SequenceData, split: str, k: int = 10, alpha: float = 0.5,
              objectives=OBJECTIVES) -> EvalSet:
        names = [o.name for o in resolve_objectives(objectives)]
        instances = data.eval_instances(split)
        excluded = torch.zeros(len(instances), data.n_items + 1, dtype=torch.bool)
        rows, items = data.seen_items(split)
        excluded[torch.as_tensor(rows), torch.as_tensor(items)] = True
        excluded[:, 0] = True
        categories = torch.as_tensor(data.item_categories, dtype=torch.float32)
        groups = torch.as_tensor(data.groups_of(instances.users)) if "fairness" in names else None
        tail = torch.as_tensor(data.tail_items(TAIL_SHARE)) if "novelty" in names else None
        return cls(instances, excluded, categories, ideal_alpha_dcg(categories, k, alpha), alpha, k, groups, tail)

    def subset(self, rows: np.ndarray) -> EvalSet:
        """The same split on the instances `rows` (a selection sample)."""
        index = torch.as_tensor(rows)
        return replace(self, instances=self.instances.subset(rows), excluded=self.excluded[index],
                       groups=None if self.groups is None else self.groups[index])


def group_gap(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Max − min over user groups of the groups' mean `values [K, N]` → `[K]` (|g0 − g1| for two groups)."""
    means = torch.stack([values[:, groups == g].mean(1) for g in torch.unique(groups[groups >= 0])], dim=1)
    return means.amax(1) - means.amin(1)


@torch.no_grad()
def rank_metrics(backbone: Backbone, eval_set: EvalSet, adapters: torch.Tensor | None = None,
                 states: torch.Tensor | None = None, chunk: int | None = None) -> dict[str, np.ndarray]:
    """NDCG@k and α-NDCG@k (full ranking) of K adapters `[K, 1096]` (or the bare backbone); NDCG_GAP@k and
    Tail@k too where the eval set carries groups / the long tail. `chunk` users at a time (default: `SCORE_CHUNK`
    scores)."""
    if states is None:
        states = encode_instances(backbone, eval_set.instances)
    targets = torch.as_tensor(eval_set.instances.targets, device=states.device)
    n_adapters = 1 if adapters is None else adapters.shape[0]
    chunk = chunk or max(1, SCORE_CHUNK // (n_adapters * backbone.i_embeddings.num_embeddings))
    ndcg = torch.zeros(n_adapters, len(targets))
    diversity = torch.zeros(n_adapters, len(targets))
    tail = torch.zeros(n_adapters, len(targets))
    for start in range(0, len(targets), chunk):
        rows = slice(start, start + chunk)
        h = states[rows][None] if adapters is None else apply_adapters(states[rows], unflatten(adapters))
        top = topk_full_ranking(backbone.score(h), eval_set.excluded[rows].to(h.device), eval_set.k).cpu()
        ndcg[:, rows] = ndcg_at_k(top.flatten(0, 1), targets[rows].cpu().repeat(n_adapters)).view(n_adapters, -1)
        diversity[:, rows] = alpha_ndcg_at_k(top, eval_set.item_categories, eval_set.alpha, eval_set.ideal)
        if eval_set.tail is not None:
            tail[:, rows] = eval_set.tail[top].mean(-1)
    metrics = {"ndcg10": ndcg.mean(1).numpy(), "alpha_ndcg10": diversity.mean(1).numpy()}
    if eval_set.groups is not None:
        metrics["ndcg_gap10"] = group_gap(ndcg, eval_set.groups).numpy()
    if eval_set.tail is not None:
        metrics["tail10"] = tail.mean(1).numpy()
    return metrics


@torch.no_grad()
def popularity_metrics(data: SequenceData, eval_set: EvalSet) -> dict[str, float]:
    """The most-popular baseline: items ranked by training-interaction count, same masking."""
    counts = torch.as_tensor(data.train_counts(), dtype=torch.float32)
    scores = counts[None].expand(len(eval_set.instances), -1)
    top = topk_full_ranking(scores, eval_set.excluded, eval_set.k)
    targets = torch.as_tensor(eval_set.instances.targets)
    diversity = alpha_ndcg_at_k(top, eval_set.item_categories, eval_set.alpha, eval_set.ideal)
    return {"ndcg10": float(ndcg_at_k(top, targets).mean()), "alpha_ndcg10": float(diversity.mean())}
