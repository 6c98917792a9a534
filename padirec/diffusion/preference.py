"""TA-Rec's Adaptive Preference Alignment (APA): a DPO fine-tuning stage of a trained generator.

The sweep ranks its own adapters: at one w, the adapter (seed, kept epoch) with the higher validation w-utility
(`metrics.w_utility_points`: each objective's metric min–max normalised over the sweep, so w weighs them on one
scale, as in best-of-N selection and the report's regret) is preferred. Diffusion-DPO (Wallace et al. 2024) then makes
the denoiser's error smaller on the preferred adapter than on the other, relative to a frozen copy of the
starting model, with TA-Rec's adaptive weight `λ(t, d) = 0.5 · ((1 − t/T) + (1 − cos(x⁺, x⁻)))`: low-noise
steps and dissimilar pairs count more. It runs after `train_dit` / `train_dit_ray` on the final
checkpoint, in one process (the pairs are a few thousand rows), and returns a checkpoint of the same form.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint, save_checkpoint
from padirec.contracts.dataset import dataset_arrays, dataset_objectives, read_dataset
from padirec.contracts.names import ALIGNED_FILE
from padirec.diffusion.generator import generator_from_checkpoint
from padirec.diffusion.model import DiT
from padirec.diffusion.objective import PREDICTIONS, prediction_target, prepare_rows
from padirec.diffusion.schedule import DiffusionSchedule
from padirec.metrics import point_bounds, w_utility_points
from padirec.objectives import metric_keys, resolve_objectives

log = logging.getLogger(__name__)


@dataclass
class PreferenceConfig:
    epochs: int = 0  # passes over the preference pairs (0 = no alignment stage)
    lr: float = 1e-5  # AdamW, far below pretraining's: DPO drifts away from the data quickly
    beta: float = 1000.0  # DPO temperature on the per-row MSE difference
    batch_size: int = 64  # pairs per step
    margin: float = 0.0  # a pair needs utility(x⁺) − utility(x⁻) > margin (normalised utility, in [0, 1])
    max_pairs_per_w: int = 64  # pairs drawn per w (all of them when fewer)
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or self.max_pairs_per_w < 1:
            raise ValueError("preference epochs must be >= 0, batch_size and max_pairs_per_w >= 1")
        if self.lr <= 0 or self.beta <= 0 or self.margin < 0:
            raise ValueError("preference lr and beta must be > 0, margin >= 0")


def preference_pairs(w: np.ndarray, metrics: np.ndarray, margin: float = 0.0, max_pairs_per_w: int = 64,
                     seed: int = 0, maximise: list[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices `(preferred, other)` of adapters trained for the same w, ranked by their w-utility.

    `w [N, p]` and `metrics [N, p]` (the objectives' validation values, in w's order; `maximise[j]` False: lower
    is better). Each metric is min–max normalised over all rows, so a metric with a small range (NDCG@10) is not
    drowned by one with a large value (α-NDCG@10). Pairs never cross grid points: an adapter for another w is not
    a worse answer to this one, only a different question.
    """
    w, metrics = np.asarray(w, dtype=np.float64), np.asarray(metrics, dtype=np.float64)
    if w.shape != metrics.shape or w.ndim != 2:
        raise ValueError(f"w and metrics must both be [N, p], got {w.shape} and {metrics.shape}")
    utility = w_utility_points(w, metrics, point_bounds(metrics), maximise)
    rng = np.random.default_rng(seed)
    preferred, other = [], []
    _, group = np.unique(np.round(w, 6), axis=0, return_inverse=True)
    for g in range(group.max() + 1):
        rows = np.flatnonzero(group.ravel() == g)
        gap = utility[rows][:, None] - utility[rows][None, :]
        i, j = np.nonzero(gap > margin)
        if len(i) > max_pairs_per_w:
            keep = rng.choice(len(i), max_pairs_per_w, replace=False)
            i, j = i[keep], j[keep]
        preferred.append(rows[i])
        other.append(rows[j])
    return np.concatenate(preferred).astype(np.int64), np.concatenate(other).astype(np.int64)


def dpo_loss(model: DiT, reference: DiT, schedule: DiffusionSchedule, x_pos: Tensor, x_neg: Tensor, w: Tensor,
             prediction: str, beta: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Diffusion-DPO with TA-Rec's weight; returns the loss and the share of pairs the model already prefers
    correctly (its implicit reward of x⁺ above x⁻'s). Both adapters of a pair share t and noise."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    B, T = x_pos.shape[0], schedule.num_steps
    t = torch.randint(0, T, (B,), device=x_pos.device, generator=generator)
    noise = torch.randn(x_pos.shape, device=x_pos.device, generator=generator, dtype=x_pos.dtype)
    x0 = torch.cat([x_pos, x_neg])
    t2, noise2, w2 = t.repeat(2), noise.repeat(2, 1, 1), w.repeat(2, 1)
    xt = schedule.q_sample(x0, t2, noise2)
    target = prediction_target(schedule, x0, t2, noise2, prediction)
    error = (model(xt, t2, w2) - target).pow(2).mean(dim=(1, 2))  # w never dropped: it is what is aligned to
    with torch.no_grad():
        ref_error = (reference(xt, t2, w2) - target).pow(2).mean(dim=(1, 2))
    model_diff = error[:B] - error[B:]  # < 0: the model fits x⁺ better than x⁻
    ref_diff = ref_error[:B] - ref_error[B:]
    cosine = F.cosine_similarity(x_pos.flatten(1), x_neg.flatten(1), dim=1)
    weight = 0.5 * ((1 - t.float() / T) + (1 - cosine))
    inside = -0.5 * beta * weight * (model_diff - ref_diff)
    return -F.logsigmoid(inside).mean(), (inside > 0).float().mean()


def align_checkpoint(checkpoint: GeneratorCheckpoint, params: np.ndarray, w: np.ndarray, metrics: np.ndarray,
                     config: PreferenceConfig, device: torch.device | str = "cpu",
                     on_epoch=None, maximise: list[bool] | None = None) -> GeneratorCheckpoint:
    """Fine-tune a `dit.pt` checkpoint's EMA weights on the sweep's preference pairs; returns a new checkpoint
    whose model and EMA are the aligned weights, with `preference` (config and final metrics) added."""
    pos, neg = preference_pairs(w, metrics, config.margin, config.max_pairs_per_w, config.seed, maximise)
    if len(pos) == 0:
        raise ValueError("no preference pairs: every w has a single adapter (sweep more seeds or kept epochs)")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    trained = generator_from_checkpoint(checkpoint, device)  # EMA weights, frozen: the DPO reference
    reference, schedule, prediction = trained.model, trained.schedule, trained.prediction
    model = copy.deepcopy(reference).train().requires_grad_(True)
    x0, w_rows = prepare_rows(params, w, trained.normalizer, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    pos, neg = torch.as_tensor(pos, device=device), torch.as_tensor(neg, device=device)
    metrics_out: dict = {}
    log.info("preference alignment: %d pairs over %d epochs", len(pos), config.epochs)
    for epoch in range(config.epochs):
        started = time.perf_counter()
        order = torch.randperm(len(pos), generator=torch.Generator().manual_seed(config.seed + epoch)).to(device)
        losses, accuracies = [], []
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            loss, accuracy = dpo_loss(model, reference, schedule, x0[pos[index]], x0[neg[index]], w_rows[pos[index]],
                                      prediction, config.beta, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            accuracies.append(accuracy.item())
        metrics_out = {"preference_loss": float(np.mean(losses)), "preference_accuracy": float(np.mean(accuracies)),
                       "preference_pairs": len(pos), "preference_epoch_seconds": time.perf_counter() - started}
        log.info("preference epoch %d: %s", epoch, metrics_out)
        if on_epoch is not None:
            on_epoch(epoch, metrics_out)
    model.eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return replace(checkpoint, model=state, ema={**checkpoint.ema, "module": state},  # the optimizer stays
                   preference={"config": asdict(config), "metrics": metrics_out})  # pretraining's


def align_file(checkpoint_path: str | os.PathLike, dataset_path: str | os.PathLike, config: PreferenceConfig,
               device: str = "cpu", on_epoch=None) -> Path:
    """`align_checkpoint` from and to files: reads the gathered sweep (the validation metrics of its objectives rank
    the adapters) and writes `dit-aligned.pt` beside the checkpoint, which stays as it was (training resumes
    from it). Returns the aligned checkpoint's path."""
    table, metadata = read_dataset(dataset_path)
    arrays, objectives = dataset_arrays(table), dataset_objectives(metadata)
    metrics = np.stack([arrays[key].astype(np.float64) for key in metric_keys(objectives)], axis=1)
    aligned = align_checkpoint(load_checkpoint(checkpoint_path), arrays["params"], arrays["w"], metrics, config,
                               device, on_epoch, [o.maximise for o in resolve_objectives(objectives)])
    return save_checkpoint(aligned, Path(checkpoint_path).with_name(ALIGNED_FILE))
