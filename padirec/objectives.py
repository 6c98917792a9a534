"""Training objectives: BCE for accuracy, differentiable α-DCG for diversity (paper eq. 4–6), and the two the
paper's appendix A.9 and platforms add: user-group fairness (a soft NDCG gap) and item novelty (long-tail exposure).

The registry (`REGISTRY`) names each objective's training loss, its evaluation metric and that metric's direction;
a sweep names its objectives and every later stage reads them from its run. All losses take candidate scores
`[..., B, C]` whose first column is the positive item and return one value per leading index (e.g. one per packed
adapter), averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Objective:
    """One objective: its name in configs, weights and requests; its metric (a `rank_metrics` key); direction."""

    name: str
    metric: str  # key of `evaluation.ranking.rank_metrics` (test metrics are "test_" + it)
    label: str  # the metric as tables print it
    maximise: bool  # False: lower is better (a gap)
    short: str  # the letter of report keys: r-a, r-d, r-f, ...
    worst: float = 0.0  # the metric's worst value: the fixed hypervolume reference point's coordinate


REGISTRY = {o.name: o for o in (
    Objective("accuracy", "ndcg10", "NDCG@10", True, "a"),
    Objective("diversity", "alpha_ndcg10", "α-NDCG@10", True, "d"),
    Objective("fairness", "ndcg_gap10", "NDCG_GAP@10", False, "f", worst=1.0),  # needs user groups
    Objective("novelty", "tail10", "Tail@10", True, "n"),
)}
OBJECTIVES = ("accuracy", "diversity")  # the paper's pair: the default of every stage
TAIL_SHARE = 0.8  # the long tail: all items but the 20% with the most training interactions


def resolve_objectives(names) -> tuple[Objective, ...]:
    """The registry entries of `names` (a list, or a comma-separated string), checked: known, distinct, at least
    two, accuracy first (the served list is a ranking by relevance, traded against the others)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown}; known: {list(REGISTRY)}")
    if len(set(names)) != len(names) or len(names) < 2 or names[0] != "accuracy":
        raise ValueError(f"objectives must be at least two distinct names starting with 'accuracy', got {names}")
    return tuple(REGISTRY[n] for n in names)


def metric_keys(names) -> list[str]:
    """The metrics of the objectives `names`, in their order (e.g. ["ndcg10", "alpha_ndcg10"])."""
    return [o.metric for o in resolve_objectives(names)]


def simplex_weights(values, objectives: list[str]) -> np.ndarray:
    """Rows `[K, p]` from `values`: p numbers per w for the p `objectives`, concatenated; each row non-negative and
    summing to 1 (within 1e-3)."""
    values = np.asarray(values, dtype=np.float32).ravel()
    p = len(objectives)
    if values.size == 0 or values.size % p:
        raise ValueError(f"weights must be {p} numbers per w ({', '.join(objectives)}), got {values.size} numbers")
    weights = values.reshape(-1, p)
    if (weights < 0).any() or (np.abs(weights.sum(1) - 1) > 1e-3).any() or not np.isfinite(weights).all():
        raise ValueError(f"each w ({', '.join(objectives)}) must be non-negative and sum to 1, got {weights.tolist()}")
    return weights


def bce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: the positive (column 0) against the sampled negatives."""
    positive = -F.logsigmoid(scores[..., 0])
    negative = -F.logsigmoid(-scores[..., 1:]).mean(-1)
    return (positive + negative).mean(-1)


def backbone_kl(scores: torch.Tensor, reference: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(reference/T) ‖ softmax(scores/T)) over each instance's list `[..., B, C]`, averaged over the batch:
    how far an adapted ranking has moved from the frozen backbone's (`reference`, broadcast). Zero at the identity
    adapter, so this accuracy term's optimum is the backbone itself, the model early stopping chose on validation."""
    target = F.log_softmax(reference / temperature, dim=-1)
    return (target.exp() * (target - F.log_softmax(scores / temperature, dim=-1))).sum(-1).mean(-1)


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


def soft_ranks(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """`1 + Σ_{j≠k} σ((s_j − s_k)/T)` per candidate `[..., C]`: a differentiable rank (1 = first)."""
    above = torch.sigmoid((scores[..., :, None] - scores[..., None, :]) / temperature)
    return 1 + above.sum(-2) - 0.5  # the diagonal adds σ(0) = 0.5


class GroupMeans:
    """Running means of each user group's soft NDCG (per packed adapter): which group is ahead, the fairness
    loss's direction. One batch holds too few users of a group to tell: on ML-100K the groups' gap is ≈ 0.01
    against a batch standard error of ≈ 0.04, so a batch's own max − min picks its sign by chance and its
    gradient averages to almost nothing (BENCHMARKS §13). The running means (decay 0.99: a quarter epoch there)
    fix the sign; each batch then moves the groups' means towards each other, an unbiased step."""

    def __init__(self, decay: float = 0.99):
        self.decay, self.means = decay, None

    def update(self, batch_means: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Fold in one batch's group means `[..., G]` (groups `present [G]` only); returns the running means."""
        batch_means = batch_means.detach()
        if self.means is None or self.means.shape != batch_means.shape:  # first batch, or a new packing
            self.means = torch.where(present, batch_means, torch.nan)
        else:
            mixed = self.decay * self.means + (1 - self.decay) * batch_means
            mixed = torch.where(self.means.isnan(), batch_means, mixed)
            self.means = torch.where(present, mixed, self.means)
        return self.means


def fairness_loss(scores: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1,
                  running: GroupMeans | None = None, n_groups: int | None = None) -> torch.Tensor:
    """The squared gap between user groups in soft NDCG of the positive (column 0), `ref_gap · gap`: `gap` is the
    batch's mean of the group that is ahead minus that of the group behind, `ref_gap` the same (detached) from
    `running`'s means (see `GroupMeans`), else from the batch's own. `groups [B]` holds each instance's group
    (−1: unknown, left out). Squared, the push fades as the gap closes: the gap settles lower as the fairness
    weight grows, where the plain gap either closes fully or not at all and overshoots (BENCHMARKS §13)."""
    gain = 1 / torch.log2(1 + soft_ranks(scores, temperature)[..., 0])  # [..., B]
    n_groups = n_groups or max(int(groups.max()) + 1, 1)
    onehot = F.one_hot(groups.clamp(min=0), n_groups).to(gain.dtype) * (groups >= 0)[:, None]
    count = onehot.sum(0)
    present = count > 0
    means = (gain @ onehot) / count.clamp(min=1)  # [..., G]; absent groups 0
    reference = running.update(means, present) if running is not None else means.detach()
    reference = torch.where(present, reference, torch.nan)
    if int((~reference.isnan()).sum(-1).min()) < 2:  # fewer than two groups to compare
        return gain.sum(-1) * 0
    ahead = reference.nan_to_num(-torch.inf).argmax(-1, keepdim=True)
    behind = reference.nan_to_num(torch.inf).argmin(-1, keepdim=True)
    gap = (means.gather(-1, ahead) - means.gather(-1, behind)).squeeze(-1)
    return (reference.gather(-1, ahead) - reference.gather(-1, behind)).squeeze(-1) * gap


def novelty_loss(scores: torch.Tensor, items: torch.Tensor, tail: torch.Tensor,
                 temperature: float = 0.1) -> torch.Tensor:
    """Negative share of the (soft, DCG-discounted) exposure that goes to long-tail items: `tail [n_items + 1]`
    is 1 for a tail item; `items [..., C]` broadcast against the scores."""
    exposure = 1 / torch.log2(1 + soft_ranks(scores, temperature))  # [..., B, C]
    share = (exposure * tail[items]).sum(-1) / exposure.sum(-1)
    return -share.mean(-1)


@dataclass(frozen=True)
class ObjectiveData:
    """What the objectives' losses need from the data besides the scores: categories (diversity), the long tail
    (novelty) and each training instance's user group (fairness)."""

    names: tuple[str, ...]
    categories: CategoryTable
    tail: torch.Tensor | None = None  # float [n_items + 1]
    groups: torch.Tensor | None = None  # long [n training instances]; −1: unknown
    running: GroupMeans | None = None  # the fairness loss's running group means (who is ahead), per training run
    n_groups: int = 0  # the groups in `groups`

    @classmethod
    def build(cls, data, names=OBJECTIVES, device: torch.device | str | None = None,
              instances=None) -> ObjectiveData:
        """From a `SequenceData`: the groups are those of its training instances (`instances`, the caller's
        `data.train_instances()` where it has them)."""
        names = tuple(o.name for o in resolve_objectives(names))
        tail = torch.as_tensor(data.tail_items(TAIL_SHARE), device=device) if "novelty" in names else None
        users = (instances or data.train_instances()).users if "fairness" in names else None
        groups = torch.as_tensor(data.groups_of(users), device=device) if users is not None else None
        running = GroupMeans() if groups is not None else None
        n_groups = max(int(groups.max()) + 1, 1) if groups is not None else 0
        return cls(names, CategoryTable.from_multi_hot(data.item_categories, device), tail, groups, running, n_groups)


def objective_losses(scores: torch.Tensor, items: torch.Tensor, categories: CategoryTable | ObjectiveData,
                     alpha: float = 0.5, temperature: float = 0.1, index: torch.Tensor | None = None,
                     list_scores: torch.Tensor | None = None, list_items: torch.Tensor | None = None,
                     accuracy: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Stack of the per-objective losses `[..., p]` in the objectives' order (`OBJECTIVES` for a bare
    `CategoryTable`). Accuracy and fairness judge the positive among the candidates; diversity and novelty judge
    `list_scores`/`list_items` (default: the candidates), the list whose top they shape. `index [B]`: the batch's
    training instances (fairness looks up their groups). `accuracy`: (adapted, backbone) scores of one list each,
    whose `backbone_kl` replaces BCE as the accuracy loss."""
    context = categories if isinstance(categories, ObjectiveData) else ObjectiveData(OBJECTIVES, categories)
    list_scores = scores if list_scores is None else list_scores
    list_items = items if list_items is None else list_items
    losses = []
    for name in context.names:
        if name == "accuracy":
            losses.append(bce_loss(scores) if accuracy is None else backbone_kl(*accuracy))
        elif name == "diversity":
            losses.append(diversity_loss(list_scores, list_items, context.categories, alpha, temperature))
        elif name == "fairness":
            if context.groups is None or index is None:
                raise ValueError("the fairness loss needs the users' groups and the batch's instance index")
            losses.append(fairness_loss(scores, context.groups[index], temperature, context.running,
                                        context.n_groups))
        elif name == "novelty":
            losses.append(novelty_loss(list_scores, list_items, context.tail, temperature))
        else:
            raise ValueError(f"no training loss for objective {name!r}")
    return torch.stack(losses, dim=-1)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`Σ_j w_j · loss_j` (paper eq. 4): `losses [..., p]`, `weights [..., p]` → `[...]`."""
    return (losses * weights).sum(-1)
