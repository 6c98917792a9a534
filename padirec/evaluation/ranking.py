"""Full-ranking evaluation of a backbone with or without adapters: NDCG@10 and α-NDCG@10 (DESIGN §5).

Every stage measures through these: early stopping in pretraining, the sweep's per-epoch metrics, the
report's methods and the generator's samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from padirec.data import Instances, SequenceData
from padirec.metrics import alpha_ndcg_at_k, ideal_alpha_dcg, ndcg_at_k, topk_full_ranking
from padirec.models import Backbone, apply_adapters, unflatten


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
    """One split prepared for full-ranking evaluation: instances, excluded items, ideal α-DCG."""

    instances: Instances
    excluded: torch.Tensor  # bool [N, n_items + 1]
    item_categories: torch.Tensor
    ideal: float
    alpha: float = 0.5
    k: int = 10

    @classmethod
    def build(cls, data: SequenceData, split: str, k: int = 10, alpha: float = 0.5) -> EvalSet:
        instances = data.eval_instances(split)
        excluded = torch.zeros(len(instances), data.n_items + 1, dtype=torch.bool)
        rows, items = data.seen_items(split)
        excluded[torch.as_tensor(rows), torch.as_tensor(items)] = True
        excluded[:, 0] = True
        categories = torch.as_tensor(data.item_categories, dtype=torch.float32)
        return cls(instances, excluded, categories, ideal_alpha_dcg(categories, k, alpha), alpha, k)


@torch.no_grad()
def rank_metrics(backbone: Backbone, eval_set: EvalSet, adapters: torch.Tensor | None = None,
                 states: torch.Tensor | None = None, chunk: int = 256) -> dict[str, np.ndarray]:
    """NDCG@k and α-NDCG@k (full ranking) of K adapters `[K, 1096]` (or the bare backbone)."""
    if states is None:
        states = encode_instances(backbone, eval_set.instances)
    targets = torch.as_tensor(eval_set.instances.targets, device=states.device)
    n_adapters = 1 if adapters is None else adapters.shape[0]
    ndcg = torch.zeros(n_adapters, len(targets))
    diversity = torch.zeros(n_adapters, len(targets))
    for start in range(0, len(targets), chunk):
        rows = slice(start, start + chunk)
        h = states[rows][None] if adapters is None else apply_adapters(states[rows], unflatten(adapters))
        top = topk_full_ranking(backbone.score(h), eval_set.excluded[rows].to(h.device), eval_set.k).cpu()
        ndcg[:, rows] = ndcg_at_k(top.flatten(0, 1), targets[rows].cpu().repeat(n_adapters)).view(n_adapters, -1)
        diversity[:, rows] = alpha_ndcg_at_k(top, eval_set.item_categories, eval_set.alpha, eval_set.ideal)
    return {"ndcg10": ndcg.mean(1).numpy(), "alpha_ndcg10": diversity.mean(1).numpy()}


@torch.no_grad()
def popularity_metrics(data: SequenceData, eval_set: EvalSet) -> dict[str, float]:
    """The most-popular baseline: items ranked by training-interaction count, same masking."""
    position = np.arange(len(data.seq_items))
    training_part = position < np.repeat(data.seq_offsets[1:] - 2, np.diff(data.seq_offsets))  # all but last two
    counts = np.bincount(data.seq_items[training_part], minlength=data.n_items + 1)
    counts = torch.as_tensor(counts, dtype=torch.float32)
    scores = counts[None].expand(len(eval_set.instances), -1)
    top = topk_full_ranking(scores, eval_set.excluded, eval_set.k)
    targets = torch.as_tensor(eval_set.instances.targets)
    diversity = alpha_ndcg_at_k(top, eval_set.item_categories, eval_set.alpha, eval_set.ideal)
    return {"ndcg10": float(ndcg_at_k(top, targets).mean()), "alpha_ndcg10": float(diversity.mean())}
