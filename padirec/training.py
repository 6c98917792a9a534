"""Phase 1 (backbone, BCE, early stopping) and phase 2 (adapters only, weighted objectives).

Both are plain functions: no Ray, no MLflow; callers log through the `on_epoch` callback
(`padirec.phases` records them as MLflow runs).
Phase 2 freezes the backbone, so its user states are computed once and K adapters are
trained together on them (one backbone pass, K adapter heads; Adam is elementwise, so a
stacked `[K, 1096]` parameter is exactly K independent optimisers).
This module runs over 400 lines: phase 2 calls the calibration of the objectives' scales, which trains
pilot adapters with phase 2; split in two modules they would import each other.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from scipy.optimize import isotonic_regression
from tqdm.auto import tqdm

from padirec.data import Instances, SequenceData, sample_negatives
from padirec.evaluation.ranking import SCORE_CHUNK, EvalSet, encode_instances, rank_metrics, to_tensors
from padirec.metrics import minmax_bounds, point_bounds, w_utility_points
from padirec.models import (
    Backbone,
    BackboneConfig,
    apply_adapters,
    build_backbone,
    init_adapter_flat,
    unflatten,
)
from padirec.objectives import (
    OBJECTIVES,
    CategoryTable,
    ObjectiveData,
    bce_loss,
    metric_keys,
    objective_losses,
    resolve_objectives,
    weighted_loss,
)

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
    keep_last: int = 5  # adapters kept per weight as separate examples (see `keep`)
    keep: Literal["last", "best"] = "last"  # the last keep_last epochs, or those of best validation w-utility
    # none: the paper's raw w·losses; range, initial: loss divisors; even: a map from w to the loss weights
    objective_scale: Literal["none", "range", "initial", "even"] = "none"
    scales: list[float] = field(default_factory=list)  # per-objective loss divisors; empty: computed from the data
    weight_map: list[float] = field(default_factory=list)  # "even": accuracy loss weight at w_acc = 0, 1/(n-1), …, 1
    # (with more than two objectives the rest of the loss weight is shared among the others in proportion to w)
    # linear: Σ w_j·loss_j (paper eq. 4); tchebycheff: smooth max_j w_j·(normalised distance to the ideal loss_j)
    scalarization: Literal["linear", "tchebycheff"] = "linear"
    ideal: list[float] = field(default_factory=list)  # "tchebycheff": each loss at its single-objective adapter
    smoothing: float = 0.05  # "tchebycheff": μ of μ·logsumexp(·/μ), in units of the losses' ideal–nadir span
    augmentation: float = 0.0  # "tchebycheff": ρ of the augmented form, + ρ·Σ_j d_j (no weakly-efficient ends)
    utility_bounds: list[float] = field(default_factory=list)  # validation (lo, hi) of each objective's metric
    scale_epochs: int = 5  # "range" / "even": epochs of the adapters that measure the scales / the map; 0: `epochs`
    map_seeds: int = 1  # "even": seeds of the first pilot round (its points pooled: the seeds' mean curve)
    map_refinements: int = 0  # "even": pilot rounds at the map's own knots (a new seed each) that redraw it
    # "even": w_acc 0 / 1 at loss weight 0 / 1, or ("efficient") at the most diverse / accurate pilot one beyond noise
    map_ends: Literal["pure", "efficient"] = "pure"
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.1  # soft-rank temperature of the α-DCG loss
    diversity_topk: int = 0  # > 0: the diversity loss also ranks each adapter's current top-m items
    # bce: the paper's, on the training interactions; backbone: KL from the frozen backbone's ranking of the
    # candidates and of its and the adapter's top items (w_acc 1 is then the backbone: BCE can over-fit past the
    # backbone's early stop and fall below it; BENCHMARKS §7, seventh session)
    accuracy_loss: Literal["bce", "backbone"] = "bce"
    alpha: float = 0.5
    n_negatives: int = 9
    init_seed: int = 0  # one initial adapter for a whole sweep (DESIGN §2.3)
    seed: int = 0  # data order and negative sampling
    device: str = "cpu"
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))  # names in `objectives.REGISTRY`

    def __post_init__(self):
        p = len(resolve_objectives(self.objectives))
        self.objectives = list(self.objectives.split(",") if isinstance(self.objectives, str) else self.objectives)
        if not 1 <= self.keep_last <= self.epochs:
            raise ValueError(f"keep_last must be in [1, epochs={self.epochs}], got {self.keep_last}")
        if self.scales and (len(self.scales) != p or min(self.scales) <= 0):
            raise ValueError(f"scales must be {p} positive numbers, got {self.scales}")
        if self.scalarization == "tchebycheff" and self.objective_scale not in ("range", "even"):
            raise ValueError('scalarization "tchebycheff" measures its distances on the ideal–nadir scale: it needs '
                             f'objective_scale "range" (or "even", a map over it), got {self.objective_scale!r}')
        if self.ideal and len(self.ideal) != p:
            raise ValueError(f"ideal must be {p} losses, got {self.ideal}")
        if self.scale_epochs < 0:
            raise ValueError(f"scale_epochs must be >= 0 (0: the adapters' epochs), got {self.scale_epochs}")
        if self.smoothing <= 0:
            raise ValueError(f"smoothing must be positive, got {self.smoothing}")
        if self.augmentation < 0 or self.map_refinements < 0 or self.map_seeds < 1:
            raise ValueError(f"augmentation and map_refinements must be >= 0 and map_seeds >= 1, got "
                             f"{self.augmentation}, {self.map_refinements}, {self.map_seeds}")
        if self.weight_map and (len(self.weight_map) < 2 or min(self.weight_map) < 0 or max(self.weight_map) > 1
                                or np.any(np.diff(self.weight_map) < 0)):
            raise ValueError(f"weight_map must rise within [0, 1] in at least two knots, got {self.weight_map}")
        if self.utility_bounds and len(self.utility_bounds) != 2 * p:
            raise ValueError(f"utility_bounds must be (lo, hi) of each of the {p} objectives' metrics, "
                             f"got {self.utility_bounds}")

    def calibration_epochs(self) -> int:
        """How long the adapters that calibrate the scales or the map train: `scale_epochs`, at most `epochs`."""
        return min(self.scale_epochs or self.epochs, self.epochs)

    def slots(self) -> list[str]:
        """What tells a run's kept adapters of one (w, seed) apart, in `AdapterResult.params` order (the chosen
        one last): their epochs with `keep="last"`, their rank by validation utility (0 = best) with "best"."""
        if self.keep == "last":
            return [f"epoch={e}" for e in range(self.epochs - self.keep_last, self.epochs)]
        return [f"rank={r}" for r in reversed(range(self.keep_last))]


BACKBONE_TOP = 10  # accuracy_loss "backbone": the backbone's own top items in the compared list, at least this many

# the AdapterConfig fields that say what an adapter minimises and how w is mapped onto it: `sweep` and `adapt` take
# them as flags, `cluster/pipeline.yaml` writes the pipeline's values out
OBJECTIVE_FIELDS = ("objective_scale", "scalarization", "scale_epochs", "map_seeds", "map_refinements", "map_ends",
                    "augmentation", "diversity_topk", "accuracy_loss")


EVEN_PILOT = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0)
EVEN_KNOTS = 11  # user weights w_acc = 0, 0.1, …, 1 at which the "even" map is recorded


def loss_weights(weights, config: AdapterConfig) -> torch.Tensor:
    """What the per-objective losses are multiplied by for the user's weights `[..., p]` (on their device): w
    itself, or, with a calibrated `weight_map`, the accuracy loss weight v interpolated at w_acc and the rest,
    1 − v, shared among the other objectives in proportion to their w (two objectives: w_div's is 1 − v; with
    w_acc = 1, equally)."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if not config.weight_map:
        return weights
    knots = torch.as_tensor(config.weight_map, dtype=weights.dtype, device=weights.device)
    position = weights[..., 0].clamp(0, 1) * (len(knots) - 1)  # the knots sit at w_acc = 0, 1/(n-1), ..., 1
    low = position.floor().long().clamp(max=len(knots) - 2)
    v = knots[low] + (position - low) * (knots[low + 1] - knots[low])
    others = weights[..., 1:].clamp(min=0)
    total = others.sum(-1, keepdim=True)
    share = torch.where(total > 1e-8, others / total.clamp(min=1e-8), torch.full_like(others, 1 / others.shape[-1]))
    return torch.cat([v[..., None], (1 - v)[..., None] * share], dim=-1)


UTOPIA_MARGIN = 0.1  # Tchebycheff's reference lies this share of the span below the ideal: no term vanishes at it


def scalarized_loss(losses: torch.Tensor, weights, config: AdapterConfig) -> torch.Tensor:
    """What an adapter minimises for the user's weights: `losses [..., p]` (from `adapter_losses`) and
    `weights [..., p]` → `[...]`.

    "linear" is the paper's `Σ_j w_j·loss_j` on `loss_weights`. A weighted sum only reaches the convex part of a
    Pareto front: where the front bends the other way, its minimiser jumps from one end to the other as w moves.
    "tchebycheff" minimises a smooth `max_j w_j·(loss_j − utopia_j)` on the ideal–nadir scale, whose minimiser
    for any front sits where the weighted distances are equal: on a straight front in that scale, the accuracy
    loss's distance to its ideal is `1 − w_acc`, so equal steps of w are equal steps along the front. With a
    zero weight the max ignores that objective, so the end adapters are only weakly efficient: `augmentation` ρ
    adds `ρ·Σ_j d_j`, which keeps every objective in view (the augmented Tchebycheff form).
    """
    w = loss_weights(weights, config).to(losses.device)
    if config.scalarization == "linear":
        return weighted_loss(losses, w)
    if not (config.scales and config.ideal):
        raise ValueError('scalarization "tchebycheff" needs calibrated scales and ideal (training.calibrate)')
    scales, ideal = (torch.as_tensor(v, dtype=losses.dtype, device=losses.device)
                     for v in (config.scales, config.ideal))
    distance = losses - ideal / scales + UTOPIA_MARGIN  # losses arrive divided by the spans
    value = config.smoothing * torch.logsumexp(w * distance / config.smoothing, dim=-1)
    return value + config.augmentation * distance.sum(-1) if config.augmentation else value


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
        if not progress:  # no bar (the pipeline's console, a job log): a line per epoch says how far it is
            log.info("pretrain %s: epoch %d/%d, loss %.4f, val NDCG@10 %.4f (best %.4f at epoch %d)",
                     config.backbone, epoch + 1, config.epochs, metrics["loss"], metrics["val_ndcg10"],
                     best["ndcg10"], best["epoch"] + 1)
        if on_epoch:
            on_epoch(epoch, metrics)
        if epoch - best["epoch"] >= config.patience:
            break
    backbone.load_state_dict(best["state"])
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    # stopped by the cap while still improving: the cap is a safety net, not a training length
    converged = epoch + 1 < config.epochs or config.epochs - 1 - best["epoch"] >= config.patience
    if not converged:
        log.warning("the backbone was still improving at the %d-epoch cap (best epoch %d, patience %d): raise "
                    "PretrainConfig.epochs", config.epochs, best["epoch"], config.patience)
    summary = {"best_epoch": best["epoch"], "best_val_ndcg10": best["ndcg10"], "epochs_run": epoch + 1,
               "converged": float(converged), "train_seconds": time.perf_counter() - started}
    return backbone, summary


@dataclass
class AdapterResult:
    """Kept adapters of a packed run: `params [E, K, 1096]` for E kept slots (the chosen one last) and K weights."""

    weights: np.ndarray  # [K, p]
    epochs: np.ndarray  # int [E, K]: the epoch each kept adapter is from
    slots: list[str]  # [E]: `AdapterConfig.slots()`
    params: np.ndarray  # float32 [E, K, 1096]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [E, K]
    train_loss: list[float] = field(default_factory=list)  # mean weighted loss per epoch (summed over K)
    scales: list[float] = field(default_factory=list)  # the per-objective loss divisors used
    weight_map: list[float] = field(default_factory=list)  # the calibrated map from w to the loss weights, if any
    seconds: float = 0.0

    def chosen_points(self, objectives, split: str = "val") -> np.ndarray:
        """`[K, p]`: the chosen adapters' metrics of `objectives` on a split ("val" or "test")."""
        return np.stack([self.metrics[f"{split}_{m}"][-1] for m in metric_keys(objectives)], axis=-1)

    def examples(self) -> list[dict]:
        """One dict per kept adapter: w, epoch, slot, params and its metrics."""
        rows = []
        for e, slot in enumerate(self.slots):
            for k in range(len(self.weights)):
                row = {"w": self.weights[k].tolist(), "epoch": int(self.epochs[e, k]), "slot": slot,
                       "params": self.params[e, k]}
                row.update({name: float(values[e, k]) for name, values in self.metrics.items()})
                rows.append(row)
        return rows


def adapter_losses(h: torch.Tensor, candidates: torch.Tensor, backbone: Backbone,
                   context: ObjectiveData | CategoryTable, config: AdapterConfig,
                   index: torch.Tensor | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
    """Per-objective losses `[K, p]` of K adapted states `h [K, B, ..., d]` on each instance's candidates,
    scored by the (frozen) backbone; `index [B]`: the batch's training instances (the fairness loss's groups);
    `base [B, ..., d]`: their states before the adapters (`accuracy_loss="backbone"` compares the two rankings).

    With `diversity_topk = m > 0` the diversity (and novelty) term also sees each adapter's current top-m items
    over the whole catalogue: random candidates almost never hold two of the items a full ranking
    puts first, so without them the α-DCG loss cannot see redundancy at the top of the real list.
    Divided by `config.scales` when set: the objectives on one scale, so that w moves the trade-off evenly.
    """
    if isinstance(context, CategoryTable):
        context = ObjectiveData(tuple(config.objectives), context)
    scores = backbone.score(h, candidates)
    list_scores = list_items = top = accuracy = None
    if config.diversity_topk > 0:
        top = catalogue_top(backbone, h, config.diversity_topk)
        list_scores = torch.cat([scores, backbone.score(h, top)], dim=-1)
        list_items = torch.cat([candidates.expand(*top.shape[:-1], -1), top], dim=-1)
    if config.accuracy_loss == "backbone":
        if base is None:
            raise ValueError('accuracy_loss "backbone" compares with the unadapted states: pass base')
        # the list: the candidates, the backbone's top and the adapter's top; what is already scored is reused
        shown = catalogue_top(backbone, base[None], max(config.diversity_topk, BACKBONE_TOP))  # [1, B, m]
        adapted = [scores, backbone.score(h, shown.expand(*h.shape[:2], -1))]
        reference = [backbone.score(base, torch.cat([candidates, shown[0]], dim=-1)).expand(*h.shape[:2], -1)]
        if top is not None:
            adapted.append(list_scores[..., scores.shape[-1]:])
            reference.append(backbone.score(base[None], top))
        accuracy = (torch.cat(adapted, dim=-1), torch.cat(reference, dim=-1))
    losses = objective_losses(scores, candidates, context, config.alpha, config.temperature, index,
                              list_scores, list_items, accuracy)
    if config.scales:
        losses = losses / torch.as_tensor(config.scales, dtype=losses.dtype, device=losses.device)
    return losses


@torch.no_grad()
def catalogue_top(backbone: Backbone, h: torch.Tensor, k: int) -> torch.Tensor:
    """Each adapted state's top-k item ids (≥ 1) over the whole catalogue, `h [K, B, ..., d]` -> `[K, B, k]`.
    Scored `SCORE_CHUNK` scores at a time: one `[K, B, items]` product spills out of cache and took 1.8x as long on
    a 9.8k-item catalogue (BENCHMARKS §7, sixth session); the same items either way."""
    flat = h.flatten(0, 1)
    rows = max(1, SCORE_CHUNK // backbone.i_embeddings.num_embeddings)
    top = [backbone.score(flat[i : i + rows])[..., 1:].topk(k, dim=-1).indices for i in range(0, len(flat), rows)]
    return (torch.cat(top) + 1).view(*h.shape[:2], k)


@torch.no_grad()
def mean_losses(params: torch.Tensor, states: torch.Tensor, data: SequenceData, instances, backbone: Backbone,
                context: ObjectiveData, config: AdapterConfig) -> np.ndarray:
    """Per-objective losses `[K, p]` of adapters `params [K, 1096]`, unscaled, averaged over one pass over the
    instances with negatives drawn from `config.seed`."""
    raw = replace(config, scales=[])
    rng = np.random.default_rng(config.seed)
    total, count = torch.zeros(params.shape[0], len(config.objectives), dtype=torch.float64), 0
    for index, candidates in candidate_batches(data, instances, config.n_negatives, config.batch_size, rng):
        index = torch.as_tensor(index, device=states.device)
        h = apply_adapters(states[index], unflatten(params))
        losses = adapter_losses(h, candidates.to(states.device), backbone, context, raw, index, states[index])
        total += losses.double().cpu() * len(index)
        count += len(index)
    return (total / max(count, 1)).numpy()


PilotRuns = list[tuple[np.ndarray, "AdapterConfig"]]  # (weights [K, p], config) of each packed pilot run
PilotRunner = Callable[[PilotRuns], list[np.ndarray]]  # → each run's chosen validation points [K, metrics]


def local_pilots(backbone: Backbone, data: SequenceData, progress: bool = False) -> PilotRunner:
    """The even map's pilot runs one after another in this process (the sweep spreads them: `sweep.calibration`)."""
    return lambda runs: [train_adapters(backbone, data, weights, config, progress=progress, eval_splits=("valid",))
                         .chosen_points(config.objectives) for weights, config in runs]


def calibrate(backbone: Backbone, data: SequenceData, config: AdapterConfig, progress: bool = False,
              run_pilots: PilotRunner | None = None) -> AdapterConfig:
    """`config` with its `scales` (and, for "range", its `utility_bounds`) filled in: fixed once per sweep (the
    sweep records them) so that every packed run weighs and selects the same way. Given values are kept.

    Scales (`config.objective_scale`): "range", each objective's ideal–nadir span from p single-objective
    adapters trained `scale_epochs` from the shared initial adapter (the payoff table: the nadir of objective i is
    its worst loss at the others' adapters); "initial", each loss's magnitude at the initial adapter; "none", the
    paper's raw weighting. The utility bounds are those adapters' validation metrics: the corners of the Retrain
    front; the `ideal` (Tchebycheff's reference) their own losses. A line per step (minutes on real data);
    `progress`: a bar too. `run_pilots` trains the even map's pilot runs (default: `local_pilots`).
    """
    if config.objective_scale == "none":
        return replace(config, scales=list(config.scales) or [1.0] * len(config.objectives))
    if is_calibrated(config):
        return config
    if config.objective_scale == "even":
        if config.scalarization == "tchebycheff":  # the map is then drawn over Tchebycheff's range-scaled losses
            ranged = calibrate(backbone, data, replace(config, objective_scale="range"), progress)
            config = replace(ranged, objective_scale="even")
        return even_weight_map(config, run_pilots or local_pilots(backbone, data, progress), progress)
    backbone = backbone.to(config.device).eval()
    train = data.train_instances()
    states = encode_instances(backbone, train)
    context = ObjectiveData.build(data, config.objectives, config.device, train)
    init = init_adapter_flat(config.init_seed, backbone.config.hidden).to(config.device)[None]
    at_init = np.abs(mean_losses(init, states, data, train, backbone, context, config)[0])
    if config.objective_scale == "initial":
        return replace(config, scales=list(config.scales) or [float(max(v, 1e-8)) for v in at_init])
    epochs = config.calibration_epochs()
    single = replace(config, objective_scale="none", scalarization="linear", scales=[], keep="last", keep_last=1,
                     epochs=epochs)
    ends = np.eye(len(config.objectives), dtype=np.float32)
    calibration_step(f"ideal and nadir, {len(ends)} single-objective adapters × {epochs} epochs", progress)
    result = train_adapters(backbone, data, ends, single, progress=progress, eval_splits=("valid",))
    losses = mean_losses(torch.as_tensor(result.params[-1], device=config.device), states, data, train, backbone,
                         context, config)  # [adapter, objective]
    ideal, nadir = np.diag(losses), losses.max(axis=0)
    span = nadir - ideal
    scales = list(config.scales) or [float(s if s > 1e-8 else max(v, 1e-8)) for s, v in zip(span, at_init, strict=True)]
    bounds = list(config.utility_bounds) or point_bounds(result.chosen_points(config.objectives))
    ideal = list(config.ideal) or [float(v) for v in ideal]
    return replace(config, scales=scales, utility_bounds=bounds, ideal=ideal)


def is_calibrated(config: AdapterConfig) -> bool:
    """Whether `calibrate` has nothing left to measure: "none" never does; "even" once it has its map; "range" once
    it has scales, utility bounds and (for Tchebycheff) the ideal; "initial" once it has scales."""
    if config.objective_scale == "none":
        return True
    if config.objective_scale == "even":
        return bool(config.weight_map)
    return bool(config.scales) and (config.objective_scale != "range" or bool(
        config.utility_bounds and (config.ideal or config.scalarization == "linear")))


def calibration_step(what: str, progress: bool) -> None:
    """One line per calibration step, which can take minutes: printed above its bar, else logged (a stage log)."""
    if progress:
        print(f"calibrate: {what}", flush=True)
    else:
        log.info("calibrate: %s", what)


def even_weight_map(config: AdapterConfig, run_pilots: PilotRunner, progress: bool = False) -> AdapterConfig:
    """`config` with a `weight_map` under which equal steps of w_acc move the trade-off by equal steps.

    A pilot of adapters at the loss weights `EVEN_PILOT` of the (accuracy, diversity) edge (dense near both ends,
    where one objective alone takes over; further objectives at 0) is trained `scale_epochs` from the shared
    initial adapter; their validation metrics, min–max normalised and fitted monotone in the loss weight
    (isotonic: a seed's noise adds no length), give the curve's arc length as a function of the loss weight, and
    the map sends w_acc to the loss weight at the fraction w_acc of that length (with more objectives, the rest is
    shared by w: `loss_weights`). A rescaling of the losses can only shift a curve's change towards one end;
    this spreads it evenly whichever end it piles up at. Each of `map_refinements` rounds trains the map's own
    knots with a new seed and redraws it from all points: where the curve turns sharply between two pilot
    weights, the first map's linear guess is corrected where the user's weights actually land.
    """
    tchebycheff = config.scalarization == "tchebycheff"  # its scales and ideal are calibrated (range) already
    scaling = {"objective_scale": "range"} if tchebycheff else {"objective_scale": "none", "scales": []}
    single = replace(config, **scaling, weight_map=[], keep="last", keep_last=1, epochs=config.calibration_epochs())
    p = len(config.objectives)  # NDCG@10 and α-NDCG@10 the first two metrics: the edge the map is drawn on
    loss_weight, points = np.zeros(0), np.zeros((0, p))
    seeds, pilot = list(range(config.map_seeds)), np.asarray(EVEN_PILOT, dtype=np.float32)
    for round_ in range(config.map_refinements + 1):
        calibration_step(f"even map, round {round_ + 1}/{config.map_refinements + 1}: {len(pilot)} weights × "
                         f"{len(seeds)} seed(s) × {single.epochs} epochs", progress)
        edge = np.zeros((len(pilot), p), dtype=np.float32)  # (accuracy, diversity): the others at 0
        edge[:, 0], edge[:, 1] = pilot, 1 - pilot
        for chosen in run_pilots([(edge, replace(single, seed=config.seed + seed)) for seed in seeds]):
            loss_weight = np.concatenate([loss_weight, pilot])
            points = np.concatenate([points, chosen])
        weight_map = arc_length_map(loss_weight, points[:, 0], points[:, 1],
                                    efficient_ends=config.map_ends == "efficient")
        seeds, pilot = [config.map_seeds + round_], np.asarray(weight_map[1:-1], dtype=np.float32)
    return replace(config, scales=config.scales if tchebycheff else [1.0] * len(config.objectives),
                   weight_map=[round(float(v), 6) for v in weight_map],
                   utility_bounds=list(config.utility_bounds) or point_bounds(points))


def arc_length_map(loss_weight: np.ndarray, ndcg: np.ndarray, alpha: np.ndarray,
                   efficient_ends: bool = False) -> np.ndarray:
    """The accuracy loss weights at w_acc = 0, 0.1, …, 1 (`EVEN_KNOTS`) that cut the pilot curve into equal arcs:
    the points `(loss weight, NDCG@10, α-NDCG@10)` (any order; repeated weights are averaged), min–max normalised,
    with NDCG fitted non-decreasing and α non-increasing in the loss weight. The ends are the loss weights 0 and 1,
    or with `efficient_ends` the first as diverse as the most diverse and the last as accurate as the most accurate,
    within twice the seeds' noise at one weight (`replicate_std`; none measured: exactly)."""
    v, slot, count = np.unique(np.asarray(loss_weight, dtype=float), return_inverse=True, return_counts=True)
    mean_ndcg, mean_alpha = (np.bincount(slot, weights=np.asarray(m, float)) / count for m in (ndcg, alpha))
    first, last = 0, len(v) - 1
    if efficient_ends:  # the first weight as diverse as the best, the last as accurate as the best, within noise
        tol_ndcg, tol_alpha = (2 * replicate_std(np.asarray(m, float), slot, mean, count)
                               for m, mean in ((ndcg, mean_ndcg), (alpha, mean_alpha)))
        first = int(np.flatnonzero(mean_alpha >= mean_alpha.max() - tol_alpha)[0])
        last = int(np.flatnonzero(mean_ndcg >= mean_ndcg.max() - tol_ndcg)[-1])
        if first >= last:  # no curve between them: the pure ends
            first, last = 0, len(v) - 1
    v, count = v[first:last + 1], count[first:last + 1]
    mean_ndcg, mean_alpha = mean_ndcg[first:last + 1], mean_alpha[first:last + 1]
    a_lo, a_hi, d_lo, d_hi = minmax_bounds(mean_ndcg, mean_alpha)
    accuracy = isotonic_regression((mean_ndcg - a_lo) / max(a_hi - a_lo, 1e-12), weights=count).x
    diversity = isotonic_regression((mean_alpha - d_lo) / max(d_hi - d_lo, 1e-12), weights=count,
                                    increasing=False).x
    steps = np.linalg.norm(np.diff(np.stack([accuracy, diversity], 1), axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps + 1e-9)])
    weight_map = np.interp(np.linspace(0, 1, EVEN_KNOTS), arc / arc[-1], v)
    if not efficient_ends:
        weight_map[0], weight_map[-1] = 0.0, 1.0
    return weight_map


def replicate_std(values: np.ndarray, slot: np.ndarray, mean: np.ndarray, count: np.ndarray) -> float:
    """The pooled standard deviation of `values` between seeds at the same weight (`slot` per value; `mean` and
    `count` per weight); 0 where no weight has two seeds."""
    if count.max() < 2:
        return 0.0
    squares = np.bincount(slot, weights=(values - mean[slot]) ** 2)
    return float(np.sqrt(squares.sum() / (count - 1).sum()))


def scale_params(config: AdapterConfig) -> dict[str, str]:
    """A calibrated config's objective scales (and the "even" weight map, Tchebycheff's ideal) as the MLflow params
    a sweep or adapter run records (`scale.accuracy`, ..., `weight_map` = the accuracy loss weights at w_acc = 0,
    0.1, …, 1, `ideal.accuracy`, ...)."""
    params = {f"scale.{name}": f"{s:.6g}" for name, s in zip(config.objectives, config.scales, strict=True)}
    if config.weight_map:
        params["weight_map"] = ",".join(f"{v:.4g}" for v in config.weight_map)
    if config.scalarization != "linear":
        params.update({f"ideal.{name}": f"{v:.6g}" for name, v in zip(config.objectives, config.ideal, strict=True)})
    return params


def train_adapters(backbone: Backbone, data: SequenceData, weights: np.ndarray,
                   config: AdapterConfig = AdapterConfig(), on_epoch: EpochCallback | None = None,
                   progress: bool = True, eval_splits: tuple[str, ...] = ("valid", "test")) -> AdapterResult:
    """Phase 2: K adapters for K preference weights `[K, p]` on one frozen backbone.

    With `keep="best"` every epoch is validated and each weight keeps its `keep_last` epochs of highest
    validation w-utility, min–max normalised by `utility_bounds` (else by this run's own points): a drifting
    adapter keeps its best state, closer to Pareto-efficient."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    if weights.shape[1] != len(config.objectives):
        raise ValueError(f"weights must have {len(config.objectives)} columns ({', '.join(config.objectives)}), "
                         f"got shape {weights.shape}")
    metrics_of = metric_keys(config.objectives)
    maximise = [o.maximise for o in resolve_objectives(config.objectives)]
    best = config.keep == "best"
    if best and "valid" not in eval_splits:
        raise ValueError('keep="best" selects by validation utility: eval_splits must include "valid"')
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone = backbone.to(config.device).eval()
    config = calibrate(backbone, data, config)
    rng = np.random.default_rng(config.seed)
    train = data.train_instances()
    states = encode_instances(backbone, train)
    context = ObjectiveData.build(data, config.objectives, config.device, train)
    w = torch.as_tensor(weights, device=config.device)
    K = len(weights)
    params = init_adapter_flat(config.init_seed, backbone.config.hidden).to(config.device).repeat(K, 1)
    params.requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=config.lr)
    eval_sets = {split: EvalSet.build(data, split, objectives=config.objectives) for split in eval_splits}
    eval_states = {split: encode_instances(backbone, s.instances) for split, s in eval_sets.items()}
    snapshots, history, losses = [], {}, []  # per evaluated epoch: params [K, 1096] and metrics [K]
    evaluated = []
    first_kept = 0 if best else config.epochs - config.keep_last
    started = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"adapters x{K}", disable=not progress)
    for epoch in bar:
        epoch_loss = []
        for index, candidates in candidate_batches(data, train, config.n_negatives, config.batch_size, rng):
            candidates = candidates.to(config.device)
            index = torch.as_tensor(index, device=config.device)
            h = apply_adapters(states[index], unflatten(params))
            per_objective = adapter_losses(h, candidates, backbone, context, config, index, states[index])
            loss = scalarized_loss(per_objective, w, config).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss.append(loss.item())
        losses.append(float(np.mean(epoch_loss)))
        epoch_metrics = {"loss": losses[-1]}
        if epoch >= first_kept:
            snapshot = params.detach().clone()
            snapshots.append(snapshot.cpu().numpy())
            evaluated.append(epoch)
            # with keep="best" the test split waits for the chosen epochs; "last" keeps every evaluated one
            for split in eval_splits if not best else ("valid",):
                prefix = "val_" if split == "valid" else "test_"
                for name, values in rank_metrics(backbone, eval_sets[split], snapshot, eval_states[split]).items():
                    history.setdefault(prefix + name, []).append(values)
                    epoch_metrics[prefix + name] = float(values.mean())
            epoch_metrics["adapters_kept"] = min(len(evaluated), config.keep_last) * K
            if config.utility_bounds and "valid" in eval_splits:  # fixed bounds: comparable from epoch to epoch
                points = np.stack([history[f"val_{m}"][-1] for m in metrics_of], axis=-1)
                epoch_metrics["val_utility"] = float(w_utility_points(weights, points, config.utility_bounds,
                                                                      maximise).mean())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if on_epoch:
            on_epoch(epoch, epoch_metrics)
    all_params = np.stack(snapshots).astype(np.float32)  # [epochs evaluated, K, 1096]
    metrics = {k: np.stack(v) for k, v in history.items()}
    epochs = np.repeat(np.asarray(evaluated)[:, None], K, axis=1)
    if best:
        points = np.stack([metrics[f"val_{m}"] for m in metrics_of], axis=-1)  # [E, K, p]
        utility = w_utility_points(weights[None], points, config.utility_bounds or point_bounds(points), maximise)
        order = np.argsort(utility, axis=0, kind="stable")[-config.keep_last:]  # [E, K], the best last
        columns = np.arange(K)[None]
        all_params, epochs = all_params[order, columns], epochs[order, columns]
        metrics = {k: v[order, columns] for k, v in metrics.items()}
        for split in eval_splits:
            if split == "valid":
                continue
            flat = torch.as_tensor(all_params.reshape(-1, all_params.shape[-1]), device=config.device)
            for name, values in rank_metrics(backbone, eval_sets[split], flat, eval_states[split]).items():
                metrics[f"test_{name}"] = values.reshape(config.keep_last, K)
    return AdapterResult(weights=weights, epochs=epochs, slots=config.slots(), params=all_params, metrics=metrics,
                         train_loss=losses, scales=list(config.scales), weight_map=list(config.weight_map),
                         seconds=time.perf_counter() - started)
