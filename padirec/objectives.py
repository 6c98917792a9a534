"""Training objectives: BCE for accuracy, differentiable α-DCG for diversity (paper eq. 4–6).

All losses take candidate scores `[..., B, C]` whose first column is the positive item and
return one value per leading index (e.g. one per packed adapter), averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

OBJECTIVES = ("accuracy", "diversity")


def bce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: the positive (column 0) against the sampled negatives."""
    positive = -F.logsigmoid(scores[..., 0])
    negative = -F.logsigmoid(-scores[..., 1:]).mean(-1)
    return (positive + negative).mean(-1)


@dataclass(frozen=True)
class CategoryTable:
    """Each item's categories as padded ids, so that the α-DCG loss costs C²·Q per list (Q: the most categories
    of any one item) instead of C²·M (M: the catalogue's categories, 19 on ML-100K, hundreds elsewhere)."""

    ids: torch.Tensor  # long [n_items + 1, Q]: each item's category columns, padded with M
    member: torch.Tensor  # float [n_items + 1, M + 1]: multi-hot with a zero column M for the padding

    @classmethod
    def from_multi_hot(cls, multi_hot, device: torch.device | str | None = None) -> CategoryTable:
        member = torch.as_tensor(multi_hot, device=device) > 0
        n, m = member.shape
        counts = member.sum(1)
        q = max(int(counts.max()) if n else 0, 1)
        first = torch.argsort((~member).to(torch.int8), dim=1, stable=True)[:, :q]  # an item's categories first
        ids = torch.where(torch.arange(q, device=member.device)[None] < counts[:, None], first, m)
        padded = torch.cat([member.float(), torch.zeros(n, 1, device=member.device)], dim=1)
        return cls(ids=ids, member=padded)

    def to(self, device: torch.device | str) -> CategoryTable:
        return CategoryTable(ids=self.ids.to(device), member=self.member.to(device))

    def overlap(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For lists `items [..., C]`: `shared [..., C, C, Q]`, 1 where item j carries the q-th category of item
        k, and `present [..., C, Q]`, 1 where item k has a q-th category."""
        ids = self.ids[items]  # [..., k, q]
        shared = self.member[items[..., :, None, None], ids[..., None, :, :]]  # [..., j, k, q]
        return shared, (ids < self.member.shape[1] - 1).float()


def soft_alpha_dcg(scores: torch.Tensor, shared: torch.Tensor, present: torch.Tensor, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Smoothed α-DCG of the ranking that `scores [..., C]` induce, per row (paper eq. 5–6).

    `σ_jk = σ((s_j − s_k)/T)` is the soft event "j ranked above k"; `Rank_k = 1 + Σ_{j≠k} σ_jk`
    and `C_kq = Σ_{j≠k} y_j(l_kq) σ_jk` counts the items ranked *above* k that carry k's q-th category l_kq.
    The gain is `Σ_q (1−α)^C_kq` — α-DCG's power; the paper prints `(1−α)C_kl`, which is a typo.
    `shared [..., C, C, Q]` and `present [..., C, Q]` (`CategoryTable.overlap`) must broadcast against scores.
    """
    above = torch.sigmoid((scores[..., :, None] - scores[..., None, :]) / temperature)  # [.., j, k]
    above = above * (1 - torch.eye(scores.shape[-1], device=scores.device, dtype=scores.dtype))
    rank = 1 + above.sum(-2)  # [.., k]
    covered = (above[..., None] * shared).sum(-3)  # [.., k, q]
    gain = (present * (1 - alpha) ** covered).sum(-1)  # [.., k]
    return (gain / torch.log2(1 + rank)).sum(-1)


def diversity_loss(scores: torch.Tensor, shared: torch.Tensor, present: torch.Tensor, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Negative smoothed α-DCG over each instance's candidates, averaged over the batch."""
    return -soft_alpha_dcg(scores, shared, present, alpha, temperature).mean(-1)


def objective_losses(scores: torch.Tensor, shared: torch.Tensor, present: torch.Tensor, alpha: float = 0.5,
                     temperature: float = 0.1) -> torch.Tensor:
    """Stack of the per-objective losses `[..., p]` in `OBJECTIVES` order."""
    return torch.stack([bce_loss(scores), diversity_loss(scores, shared, present, alpha, temperature)], dim=-1)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`Σ_j w_j · loss_j` (paper eq. 4): `losses [..., p]`, `weights [..., p]` → `[...]`."""
    return (losses * weights).sum(-1)
