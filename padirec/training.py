"""Phase 1 (backbone, BCE, early stopping) and phase 2 (adapters only, weighted objectives).

`pretrain_backbone` and `train_adapters` are plain functions (no Ray, no MLflow; callers log through the
`on_epoch` callback); `pretrain` and `adapt` are their stages, each recorded as one MLflow run.
Phase 2 freezes the backbone, so its user states are computed once and K adapters are
trained together on them (one backbone pass, K adapter heads; Adam is elementwise, so a
stacked `[K, 1096]` parameter is exactly K independent optimisers).
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import torch
from tqdm.auto import tqdm

from padirec import tracking
from padirec.config import DataSpec, data_spec, load_data
from padirec.contracts.artifacts import log_adapter, resolve_backbone_file
from padirec.contracts.names import (
    BACKBONE_DIR,
    BACKBONE_FILE,
    BACKBONE_RUN_TAG,
    STAGE_ADAPTER,
    STAGE_BACKBONE,
    STAGE_TAG,
)
from padirec.data import Instances, SequenceData, sample_negatives
from padirec.evaluation.ranking import EvalSet, encode_instances, popularity_metrics, rank_metrics, to_tensors
from padirec.models import (
    Backbone,
    BackboneConfig,
    apply_adapters,
    build_backbone,
    init_adapter_flat,
    load_backbone,
    save_backbone,
    unflatten,
)
from padirec.objectives import bce_loss, diversity_loss, objective_losses, weighted_loss

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    backbone: Literal["sasrec", "gru4rec", "tisasrec", "comirec"] = "sasrec"
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


# ------------------------------------------------------------------------------------ recorded stages


@dataclass
class BackboneRun:
    """A pretrained backbone's MLflow run (artifact `backbone/backbone.pt`) and its test metrics."""

    run_id: str
    metrics: dict[str, float]


def pretrain(spec: DataSpec, config: PretrainConfig = PretrainConfig(), experiment: str = tracking.DEFAULT_EXPERIMENT,
             output: str | Path | None = None, progress: bool = True) -> BackboneRun:
    """Phase 1 as an MLflow run: params, metrics per epoch, test metrics vs most-popular, the checkpoint."""
    data = load_data(spec)
    extra = {"data": spec.to_dict(), "pretrain": asdict(config)}
    with tracking.start_run(f"backbone-{config.backbone}", experiment, tags={STAGE_TAG: STAGE_BACKBONE}) as run:
        mlflow.log_params({**{f"data.{k}": v for k, v in spec.to_dict().items()}, **asdict(config)})
        backbone, info = pretrain_backbone(data, config, on_epoch=tracking.log_epoch_metrics, progress=progress)
        test = EvalSet.build(data, "test")
        metrics = {f"test_{k}": float(v[0]) for k, v in rank_metrics(backbone, test).items()}
        metrics.update({f"most_popular_test_{k}": v for k, v in popularity_metrics(data, test).items()})
        metrics.update({k: float(v) for k, v in info.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            save_backbone(backbone, Path(tmp) / BACKBONE_FILE, extra=extra)
            mlflow.log_artifact(str(Path(tmp) / BACKBONE_FILE), BACKBONE_DIR)
        if output:
            save_backbone(backbone, output, extra=extra)
    return BackboneRun(run.info.run_id, metrics)


@dataclass
class AdapterRun:
    """One adapter's MLflow run (artifact `adapter/adapter.npy`), its final metrics and the adapter itself."""

    run_id: str
    w: list[float]
    seconds: float
    metrics: dict[str, float]
    adapter: np.ndarray  # float32 [1096]


def adapt(backbone: str, w_acc: float, config: AdapterConfig = AdapterConfig(), data_overrides: dict | None = None,
          experiment: str = tracking.DEFAULT_EXPERIMENT, progress: bool = True) -> AdapterRun:
    """Phase 2 for one weight as an MLflow run: the adapter of `backbone` (run id or file) trained on
    `w_acc·BCE + (1 − w_acc)·L_div`, on the backbone's data unless `data_overrides` (DataSpec fields) say else."""
    if not 0.0 <= w_acc <= 1.0:
        raise ValueError(f"w_acc must be in [0, 1], got {w_acc}")
    model, extra = load_backbone(resolve_backbone_file(backbone))
    data = load_data(data_spec(extra.get("data"), data_overrides))
    weights = np.array([[w_acc, 1.0 - w_acc]], dtype=np.float32)
    tags = {STAGE_TAG: STAGE_ADAPTER, BACKBONE_RUN_TAG: backbone}
    with tracking.start_run(f"adapter-w{w_acc:.2f}", experiment, tags=tags) as run:
        mlflow.log_params({"w_acc": w_acc, "w_div": 1.0 - w_acc, "backbone_run_id": backbone, **asdict(config)})
        result = train_adapters(model, data, weights, config, on_epoch=tracking.log_epoch_metrics, progress=progress)
        final = result.params[-1, 0]
        log_adapter(final)
        metrics = {name: float(values[-1, 0]) for name, values in result.metrics.items()}
        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
    return AdapterRun(run.info.run_id, weights[0].tolist(), result.seconds, metrics, final)
