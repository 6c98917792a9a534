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
    """The items' categories in the form that makes the α-DCG loss cheap for this catalogue.

    The coverage term counts, for each candidate k and each of its categories, the candidates above it that share
    it. Over the dense multi-hot that is a `[C, C] @ [C, M]` product per list (M: the catalogue's categories);
    over padded category ids it is `C²·Q` gathers (Q: the most categories of any one item). Dense wins while M
    is within `SPARSE_RATIO`·Q (ML-100K: M 19, Q 6); ids win by 18× at 600 categories of ~4 per item
    (`benchmarks/bench_sweep_packing.py`)."""

    member: torch.Tensor  # float [n_items + 1, M + 1]: multi-hot with a zero column M for the padding
    ids: torch.Tensor  # long [n_items + 1, Q]: each item's category columns, padded with M
    sparse: bool  # use `ids` (C²·Q) rather than the dense product (C²·M)

    SPARSE_RATIO = 16

    @classmethod
    def from_multi_hot(cls, multi_hot, device: torch.device | str | None = None,
                       sparse: bool | None = None) -> CategoryTable:
        member = torch.as_tensor(multi_hot, device=device) > 0
        n, m = member.shape
        counts = member.sum(1)
        q = max(int(counts.max()) if n else 0, 1)
        first = torch.argsort((~member).to(torch.int8), dim=1, stable=True)[:, :q]  # an item's categories first
        ids = torch.where(torch.arange(q, device=member.device)[None] < counts[:, None], first, m)
        padded = torch.cat([member.float(), torch.zeros(n, 1, device=member.device)], dim=1)
        return cls(member=padded, ids=ids, sparse=m > cls.SPARSE_RATIO * q if sparse is None else sparse)

    def to(self, device: torch.device | str) -> CategoryTable:
        return CategoryTable(member=self.member.to(device), ids=self.ids.to(device), sparse=self.sparse)

    def coverage_gain(self, above: torch.Tensor, items: torch.Tensor, alpha: float) -> torch.Tensor:
        """`Σ_l y_kl (1−α)^C_kl` per candidate `[..., C]`, where `C_kl = Σ_{j≠k} y_jl σ_jk` counts the candidates
        above k (soft, `above [..., j, k]`) that carry k's category l; `items [..., C]` broadcast against above."""
        if not self.sparse:
            y = self.member[items]  # [..., C, M + 1]
            covered = above.transpose(-1, -2) @ y  # [..., k, l]
            return (y * (1 - alpha) ** covered).sum(-1)
        ids = self.ids[items]  # [..., k, q]
        shared = self.member[items[..., :, None, None], ids[..., None, :, :]]  # [..., j, k, q]: j carries l_kq
        covered = (above[..., None] * shared).sum(-3)  # [..., k, q]
        return ((ids < self.member.shape[1] - 1) * (1 - alpha) ** covered).sum(-1)


def soft_alpha_dcg(scores: torch.Tensor, items: torch.Tensor, categories: CategoryTable, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Smoothed α-DCG of the ranking that `scores [..., C]` induce over the lists `items [..., C]`, per row
    (paper eq. 5–6).

    `σ_jk = σ((s_j − s_k)/T)` is the soft event "j ranked above k"; `Rank_k = 1 + Σ_{j≠k} σ_jk`
    and `C_kl = Σ_{j≠k} y_jl σ_jk` counts the items of category l ranked *above* k. The gain is
    `(1−α)^C_kl` — α-DCG's power; the paper prints `(1−α)C_kl`, which is a typo.
    """
    above = torch.sigmoid((scores[..., :, None] - scores[..., None, :]) / temperature)  # [.., j, k]
    above = above * (1 - torch.eye(scores.shape[-1], device=scores.device, dtype=scores.dtype))
    rank = 1 + above.sum(-2)  # [.., k]
    return (categories.coverage_gain(above, items, alpha) / torch.log2(1 + rank)).sum(-1)


def diversity_loss(scores: torch.Tensor, items: torch.Tensor, categories: CategoryTable, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Negative smoothed α-DCG over each instance's candidates, averaged over the batch."""
    return -soft_alpha_dcg(scores, items, categories, alpha, temperature).mean(-1)


def objective_losses(scores: torch.Tensor, items: torch.Tensor, categories: CategoryTable, alpha: float = 0.5,
                     temperature: float = 0.1) -> torch.Tensor:
    """Stack of the per-objective losses `[..., p]` in `OBJECTIVES` order."""
    return torch.stack([bce_loss(scores), diversity_loss(scores, items, categories, alpha, temperature)], dim=-1)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`Σ_j w_j · loss_j` (paper eq. 4): `losses [..., p]`, `weights [..., p]` → `[...]`."""
    return (losses * weights).sum(-1)
