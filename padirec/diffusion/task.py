"""DimeRec's task loss for the generator: the predicted x̂0, loaded as the adapter of the frozen backbone, scored
with the sweep's own w-weighted objective (`DiTTrainConfig.task_loss_weight`).

The backbone never trains: its user states for a fixed pool of training instances (with sampled negatives) are
computed once, and gradients flow only through x̂0 into the denoiser. The loss object holds plain tensors and a
frozen module, so it is built once on the driver and shipped to Ray Train workers as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from padirec.config import DataSpec, load_data
from padirec.contracts.artifacts import resolve_backbone_file
from padirec.data import sample_negatives
from padirec.evaluation.ranking import encode_instances
from padirec.models import Backbone, ParamNormalizer, apply_adapters, from_tokens, load_backbone, unflatten
from padirec.objectives import CategoryTable
from padirec.training import AdapterConfig, adapter_losses, calibrate, scalarized_loss


@dataclass
class TaskLossConfig:
    backbone: str = ""  # backbone.pt path or MLflow run id; "" = the dataset's backbone run
    instances: int = 2048  # training instances drawn once (with their negatives) for the loss
    batch_size: int = 64  # instances per step, shared by every adapter of the DiT batch
    seed: int = 0  # which instances and negatives
    adapter: AdapterConfig = field(default_factory=AdapterConfig)  # the objective: alpha, temperature, ...

    def __post_init__(self):
        if self.instances < 1 or self.batch_size < 1:
            raise ValueError("task instances and batch_size must be >= 1")


class AdapterTaskLoss:
    """Per-row loss `[B]` of x̂0 tokens `[B, 137, 8]` (normalised) for weights `w [B, p]`: clamped to the training
    range, denormalised, applied to a random batch of the pool's user states, the sweep's `scalarized_loss`."""

    def __init__(self, backbone: Backbone, states: Tensor, candidates: Tensor, categories: CategoryTable,
                 normalizer: ParamNormalizer, config: TaskLossConfig):
        self.backbone = backbone.eval().requires_grad_(False)
        self.states, self.candidates, self.categories = states, candidates, categories
        self.normalizer, self.config = normalizer, config
        self.adapter_config = config.adapter

    def to(self, device: torch.device | str) -> AdapterTaskLoss:
        """Move every tensor (in place, like `nn.Module.to`) and return self."""
        self.backbone.to(device)
        self.states, self.candidates, self.categories = (
            v.to(device) for v in (self.states, self.candidates, self.categories))
        self.normalizer.to(device)
        return self

    def __call__(self, x0_tokens: Tensor, w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        flat = self.normalizer.denormalize(from_tokens(self.normalizer.clamp_tokens(x0_tokens))).float()
        index = torch.randint(len(self.states), (self.config.batch_size,), device=self.states.device,
                              generator=generator)
        h = apply_adapters(self.states[index], unflatten(flat))  # [B, batch, ..., d]: one adapter per DiT row
        per_objective = adapter_losses(h, self.candidates[index], self.backbone, self.categories, self.adapter_config,
                                       base=self.states[index])
        return scalarized_loss(per_objective, w, self.adapter_config)


def adapter_task_loss(backbone: Backbone, data, normalizer: ParamNormalizer,
                      config: TaskLossConfig = TaskLossConfig()) -> AdapterTaskLoss:
    """The loss on `config.instances` training instances of `data` (a `SequenceData`), with fixed negatives."""
    rng = np.random.default_rng(config.seed)
    train = data.train_instances()
    pool = train.subset(np.sort(rng.choice(len(train), size=min(config.instances, len(train)), replace=False)))
    negatives = sample_negatives(data, pool, config.adapter.n_negatives, rng)
    candidates = torch.as_tensor(np.concatenate([pool.targets[:, None], negatives], axis=1))
    categories = CategoryTable.from_multi_hot(data.item_categories)
    backbone = backbone.cpu().eval().requires_grad_(False)
    config = replace(config, adapter=calibrate(backbone, data, config.adapter))
    return AdapterTaskLoss(backbone, encode_instances(backbone, pool), candidates, categories, normalizer, config)


def load_task_loss(config: TaskLossConfig, normalizer: ParamNormalizer,
                   default_backbone: str | os.PathLike = "") -> AdapterTaskLoss:
    """The loss for the backbone `config.backbone` (else `default_backbone`, the dataset's), on the data its
    checkpoint names."""
    reference = config.backbone or str(default_backbone)
    if not reference:
        raise ValueError("the task loss needs the backbone: the dataset names none, set dit_train.task.backbone")
    backbone, extra = load_backbone(resolve_backbone_file(reference))
    if "data" not in extra:
        raise ValueError(f"backbone {reference} does not record its data; the task loss cannot find the instances")
    return adapter_task_loss(backbone, load_data(DataSpec(**extra["data"])), normalizer, config)
