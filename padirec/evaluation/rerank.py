"""Re-ranking a backbone's candidates for diversity, batched over users (DESIGN §5: the MMR and DPP baselines).

Both take each row's candidate scores `[B, N]` (−inf = unavailable) and the candidates' multi-hot categories
`[B, N, M]`, and pick k positions greedily; λ = w_acc weighs relevance (the row's min–max scaled scores, so
λ means the same for every user and backbone) against diversity, and λ = 1 keeps the score order.

- `mmr_rerank`: coverage-aware MMR (xQuAD / α-nDCG style): the novelty term is α-DCG's own marginal gain, so
  items with many categories are judged by the categories they add (Jaccard overlap is not that signal).
- `dpp_rerank`: fast greedy MAP inference of a DPP (Chen, Zhang, Zhou, NeurIPS 2018), incremental Cholesky, whose
  similarity counts shared categories (a larger category set spans more volume, as it earns more α-DCG).
"""

from __future__ import annotations

import torch


def min_max_relevance(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores `[B, N]` min–max scaled to [0, 1] per row over the available (finite) ones, 0 elsewhere; and that mask."""
    available = torch.isfinite(scores)
    lo = scores.masked_fill(~available, float("inf")).amin(-1, keepdim=True)
    hi = scores.masked_fill(~available, float("-inf")).amax(-1, keepdim=True)
    return ((scores - lo) / (hi - lo).clamp(min=1e-12)).masked_fill(~available, 0.0), available


def pick(value: torch.Tensor, available: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """Each row's best available position not taken yet, else its first untaken one (a list never repeats)."""
    open_ = available & ~taken
    best = value.masked_fill(~open_, float("-inf")).argmax(-1)
    return torch.where(open_.any(-1), best, (~taken).to(torch.uint8).argmax(-1))


def mmr_rerank(scores: torch.Tensor, categories: torch.Tensor, lam: float, k: int = 10,
               alpha: float = 0.5) -> torch.Tensor:
    """Positions `[B, k]` picked greedily by λ·relevance + (1 − λ)·coverage gain.

    The gain of item i on the list S so far is α-DCG's: Σ_c y_ic (1 − α)^(times c is in S). It is divided by the
    row's largest gain on an empty list (not by the item's own category count), so it lies in [0, 1] and λ = 0 is
    the greedy α-DCG maximiser over the candidates: the metric does reward an item for each new category it adds.
    """
    relevance, available = min_max_relevance(scores)
    y = categories.float()
    scale = y.sum(-1).masked_fill(~available, 0.0).amax(-1, keepdim=True).clamp(min=1e-12)
    counts = y.new_zeros(y.shape[0], y.shape[-1])  # times each category is in the list so far
    taken = torch.zeros_like(available)
    rows = torch.arange(len(scores))
    picked = torch.empty(len(scores), k, dtype=torch.long)
    for position in range(k):
        gain = (y * (1 - alpha) ** counts[:, None]).sum(-1) / scale
        best = pick(lam * relevance + (1 - lam) * gain, available, taken)
        picked[:, position] = best
        taken[rows, best] = True
        counts += y[rows, best]
    return picked


def category_kernel(categories: torch.Tensor, jitter: float = 1e-3) -> torch.Tensor:
    """S `[..., N, N]`: shared-category counts of the multi-hot `[..., N, M]` over the row's largest count, + jitter·I.

    Not cosine: like Jaccard it forgets how many categories an item carries, which α-DCG credits (cosine DPP at λ = 0
    fell below the backbone's α-NDCG). The jitter keeps S positive definite, so greedy MAP runs all k steps.
    """
    x = categories.double()
    scale = x.sum(-1).amax(-1).clamp(min=1.0)[..., None, None]
    return x @ x.transpose(-1, -2) / scale + jitter * torch.eye(x.shape[-2], dtype=x.dtype)


def dpp_rerank(scores: torch.Tensor, categories: torch.Tensor, lam: float, k: int = 10,
               jitter: float = 1e-3) -> torch.Tensor:
    """Positions `[B, k]`: greedy MAP of the DPP L = diag(r)·S·diag(r), r_i = exp(θ·relevance_i), θ = λ/(2(1 − λ)).

    Chen et al.'s incremental Cholesky, O(N k²) per row. Adding i to Y multiplies det L_Y by r_i² d_i², d_i² the
    conditional variance of i given Y under S; (1 − λ)·log(r_i² d_i²) = λ·relevance_i + (1 − λ)·log d_i² is what is
    maximised, so r is never formed: no overflow as λ → 1, and λ = 1 is the score order.
    """
    relevance, available = min_max_relevance(scores)
    similarity = category_kernel(categories, jitter)
    variance = similarity.diagonal(dim1=-2, dim2=-1).clone()  # d_i², S_ii before anything is picked
    factor = similarity.new_zeros(len(scores), k, scores.shape[-1])  # rows of the Cholesky factor, c_i
    taken = torch.zeros_like(available)
    rows = torch.arange(len(scores))
    picked = torch.empty(len(scores), k, dtype=torch.long)
    for position in range(k):
        log_variance = variance.clamp(min=jitter).log()  # ≥ jitter in exact arithmetic; the clamp only mends rounding
        best = pick(lam * relevance.double() + (1 - lam) * log_variance, available, taken)
        picked[:, position] = best
        taken[rows, best] = True
        projection = torch.einsum("bt,btn->bn", factor[rows, :, best], factor)  # <c_best, c_i>
        e = (similarity[rows, best] - projection) / variance[rows, best, None].clamp(min=jitter).sqrt()
        factor[:, position] = e
        variance = variance - e**2
    return picked
