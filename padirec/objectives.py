"""Training objectives: BCE for accuracy, differentiable α-DCG for diversity (paper eq. 4–6).

All losses take candidate scores `[..., B, C]` whose first column is the positive item and
return one value per leading index (e.g. one per packed adapter), averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("accuracy", "diversity")


def bce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: the positive (column 0) against the sampled negatives."""
    positive = -F.logsigmoid(scores[..., 0])
    negative = -F.logsigmoid(-scores[..., 1:]).mean(-1)
    return (positive + negative).mean(-1)


def soft_alpha_dcg(scores: torch.Tensor, categories: torch.Tensor, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Smoothed α-DCG of the ranking that `scores [..., C]` induce, per row (paper eq. 5–6).

    `σ_jk = σ((s_j − s_k)/T)` is the soft event "j ranked above k"; `Rank_k = 1 + Σ_{j≠k} σ_jk`
    and `C_kl = Σ_{j≠k} y_jl σ_jk` counts the items of category l ranked *above* k. The gain is
    `(1−α)^C_kl` — α-DCG's power; the paper prints `(1−α)C_kl`, which is a typo.
    `categories [..., C, M]` must broadcast against scores.
    """
    above = torch.sigmoid((scores[..., :, None] - scores[..., None, :]) / temperature)  # [.., j, k]
    above = above * (1 - torch.eye(scores.shape[-1], device=scores.device, dtype=scores.dtype))
    rank = 1 + above.sum(-2)  # [.., k]
    covered = above.transpose(-1, -2) @ categories  # [.., k, l]; categories broadcast over leading dims
    gain = (categories * (1 - alpha) ** covered).sum(-1)  # [.., k]
    return (gain / torch.log2(1 + rank)).sum(-1)


def diversity_loss(scores: torch.Tensor, categories: torch.Tensor, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Negative smoothed α-DCG over each instance's candidates, averaged over the batch."""
    return -soft_alpha_dcg(scores, categories, alpha, temperature).mean(-1)


def objective_losses(scores: torch.Tensor, categories: torch.Tensor, alpha: float = 0.5,
                     temperature: float = 0.1) -> torch.Tensor:
    """Stack of the per-objective losses `[..., p]` in `OBJECTIVES` order."""
    return torch.stack([bce_loss(scores), diversity_loss(scores, categories, alpha, temperature)], dim=-1)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`Σ_j w_j · loss_j` (paper eq. 4): `losses [..., p]`, `weights [..., p]` → `[...]`."""
    return (losses * weights).sum(-1)
