"""Phase 1 (backbone, BCE, early stopping) and phase 2 (adapters only, weighted objectives).

Both are plain functions: no Ray, no MLflow. Callers log through the `on_epoch` callback.
Phase 2 freezes the backbone, so its user states are computed once and K adapters are
trained together on them (one backbone pass, K adapter heads; Adam is elementwise, so a
stacked `[K, 1096]` parameter is exactly K independent optimisers).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from padirec.data import Instances, SequenceData, sample_negatives
from padirec.metrics import alpha_ndcg_at_k, ideal_alpha_dcg, ndcg_at_k, topk_full_ranking
from padirec.models import Backbone, BackboneConfig, apply_adapters, build_backbone, init_adapter_flat, unflatten
from padirec.objectives import bce_loss, diversity_loss, objective_losses, weighted_loss

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    backbone: str = "sasrec"
    epochs: int = 200
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.2
    n_negatives: int = 9
    seed: int = 0
    device: str = "cpu"


@dataclass
class AdapterConfig:
    epochs: int = 20
    keep_last: int = 5  # adapters of the last N epochs are kept as separate examples
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.1  # soft-rank temperature of the α-DCG loss
    diversity_topk: int = 0  # > 0: the diversity loss also ranks each adapter's current top-m items
    alpha: float = 0.5
    n_negatives: int = 9
    init_seed: int = 0  # one initial adapter for a whole sweep (DESIGN §2.3)
    seed: int = 0  # data order and negative sampling
    device: str = "cpu"


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


def candidate_batches(data: SequenceData, instances: Instances, n_negatives: int, batch_size: int,
                      rng: np.random.Generator):
    """One epoch of (index, candidates [B, 1+n]) batches, negatives resampled each epoch."""
    negatives = sample_negatives(data, instances, n_negatives, rng)
    candidates = np.concatenate([instances.targets[:, None], negatives], axis=1)
    order = rng.permutation(len(instances))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield index, torch.as_tensor(candidates[index])


EpochCallback = Callable[[int, dict], None]


def pretrain_backbone(data: SequenceData, config: PretrainConfig = PretrainConfig(),
                      on_epoch: EpochCallback | None = None, progress: bool = True) -> tuple[Backbone, dict]:
    """Phase 1: the backbone on BCE with early stopping on validation NDCG@10; best weights kept."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    backbone = build_backbone(BackboneConfig(name=config.backbone, n_items=data.n_items,
                                             max_len=data.max_len, dropout=config.dropout)).to(config.device)
    optimizer = torch.optim.Adam(backbone.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = data.train_instances()
    histories, times = to_tensors(train, config.device)
    valid = EvalSet.build(data, "valid")
    best = {"ndcg10": -1.0, "epoch": -1, "state": None}
    started = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"pretrain {config.backbone}", disable=not progress)
    for epoch in bar:
        backbone.train()
        losses = []
        for index, candidates in candidate_batches(data, train, config.n_negatives, config.batch_size, rng):
            index = torch.as_tensor(index)
            state = backbone.encode(histories[index], times[index])
            loss = bce_loss(backbone.score(state, candidates.to(config.device)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        metrics = {k: float(v[0]) for k, v in rank_metrics(backbone, valid).items()}
        metrics = {"loss": float(np.mean(losses)), "val_ndcg10": metrics["ndcg10"],
                   "val_alpha_ndcg10": metrics["alpha_ndcg10"]}
        if metrics["val_ndcg10"] > best["ndcg10"]:
            best = {"ndcg10": metrics["val_ndcg10"], "epoch": epoch, "state": copy.deepcopy(backbone.state_dict())}
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", val_ndcg10=f"{metrics['val_ndcg10']:.4f}",
                        best=f"{best['ndcg10']:.4f}@{best['epoch']}")
        if on_epoch:
            on_epoch(epoch, metrics)
        if epoch - best["epoch"] >= config.patience:
            break
    backbone.load_state_dict(best["state"])
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    summary = {"best_epoch": best["epoch"], "best_val_ndcg10": best["ndcg10"], "epochs_run": epoch + 1,
               "train_seconds": time.perf_counter() - started}
    return backbone, summary


@dataclass
class AdapterResult:
    """Kept adapters of a packed run: `params [E, K, 1096]` for kept epochs E and weights K."""

    weights: np.ndarray  # [K, p]
    epochs: list[int]
    params: np.ndarray  # float32 [E, K, 1096]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [E, K]
    train_loss: list[float] = field(default_factory=list)  # mean weighted loss per epoch (summed over K)
    seconds: float = 0.0

    def examples(self) -> list[dict]:
        """One dict per kept adapter: w, epoch, params and its metrics."""
        rows = []
        for e, epoch in enumerate(self.epochs):
            for k in range(len(self.weights)):
                row = {"w": self.weights[k].tolist(), "epoch": epoch, "params": self.params[e, k]}
                row.update({name: float(values[e, k]) for name, values in self.metrics.items()})
                rows.append(row)
        return rows


def adapter_losses(h: torch.Tensor, candidates: torch.Tensor, backbone: Backbone, categories: torch.Tensor,
                   config: AdapterConfig) -> torch.Tensor:
    """Per-objective losses `[K, 2]` of K adapted states `h [K, B, ..., d]` on each instance's candidates,
    scored by the (frozen) backbone.

    With `diversity_topk = m > 0` the diversity term also sees each adapter's current top-m items
    over the whole catalogue: random candidates almost never hold two of the items a full ranking
    puts first, so without them the α-DCG loss cannot see redundancy at the top of the real list.
    """
    scores = backbone.score(h, candidates)
    if config.diversity_topk <= 0:
        return objective_losses(scores, categories[candidates], config.alpha, config.temperature)
    with torch.no_grad():
        top = backbone.score(h)[..., 1:].topk(config.diversity_topk, dim=-1).indices + 1
    top_scores = backbone.score(h, top)
    div_scores = torch.cat([scores, top_scores], dim=-1)
    div_categories = torch.cat([categories[candidates].expand(h.shape[0], -1, -1, -1), categories[top]], dim=-2)
    return torch.stack([bce_loss(scores), diversity_loss(div_scores, div_categories, config.alpha, config.temperature)],
                       dim=-1)


def train_adapters(backbone: Backbone, data: SequenceData, weights: np.ndarray,
                   config: AdapterConfig = AdapterConfig(), on_epoch: EpochCallback | None = None,
                   progress: bool = True, eval_splits: tuple[str, ...] = ("valid", "test")) -> AdapterResult:
    """Phase 2: K adapters for K preference weights `[K, p]` on one frozen backbone."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    if weights.shape[1] != 2:
        raise ValueError(f"weights must have 2 columns (accuracy, diversity), got shape {weights.shape}")
    if config.keep_last > config.epochs:
        raise ValueError(f"keep_last ({config.keep_last}) cannot exceed epochs ({config.epochs})")
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone = backbone.to(config.device).eval()
    rng = np.random.default_rng(config.seed)
    train = data.train_instances()
    states = encode_instances(backbone, train)
    categories = torch.as_tensor(data.item_categories, dtype=torch.float32, device=config.device)
    w = torch.as_tensor(weights, device=config.device)
    K = len(weights)
    params = init_adapter_flat(config.init_seed, backbone.config.hidden).to(config.device).repeat(K, 1)
    params.requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=config.lr)
    eval_sets = {split: EvalSet.build(data, split) for split in eval_splits}
    eval_states = {split: encode_instances(backbone, s.instances) for split, s in eval_sets.items()}
    kept, metrics, losses = [], {}, []
    first_kept = config.epochs - config.keep_last
    started = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"adapters x{K}", disable=not progress)
    for epoch in bar:
        epoch_loss = []
        for index, candidates in candidate_batches(data, train, config.n_negatives, config.batch_size, rng):
            candidates = candidates.to(config.device)
            h = apply_adapters(states[torch.as_tensor(index, device=config.device)], unflatten(params))
            per_objective = adapter_losses(h, candidates, backbone, categories, config)
            loss = weighted_loss(per_objective, w).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss.append(loss.item())
        losses.append(float(np.mean(epoch_loss)))
        epoch_metrics = {"loss": losses[-1]}
        if epoch >= first_kept:
            snapshot = params.detach().clone()
            kept.append((epoch, snapshot.cpu().numpy()))
            for split, eval_set in eval_sets.items():
                prefix = "val_" if split == "valid" else "test_"
                for name, values in rank_metrics(backbone, eval_set, snapshot, eval_states[split]).items():
                    metrics.setdefault(prefix + name, []).append(values)
                    epoch_metrics[prefix + name] = float(values.mean())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if on_epoch:
            on_epoch(epoch, epoch_metrics)
    return AdapterResult(weights=weights, epochs=[e for e, _ in kept],
                         params=np.stack([p for _, p in kept]).astype(np.float32),
                         metrics={k: np.stack(v) for k, v in metrics.items()}, train_loss=losses,
                         seconds=time.perf_counter() - started)


def save_backbone(backbone: Backbone, path, extra: dict | None = None) -> None:
    """A checkpoint of config + weights (+ where its data came from), loadable with weights_only."""
    torch.save({"config": backbone.config.to_dict(), "state_dict": backbone.state_dict(),
                "extra": extra or {}}, path)


def load_backbone(path, device: str = "cpu") -> tuple[Backbone, dict]:
    """Frozen backbone from `save_backbone`, plus its extra metadata."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    backbone = build_backbone(BackboneConfig(**checkpoint["config"]))
    backbone.load_state_dict(checkpoint["state_dict"])
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone, checkpoint.get("extra", {})

