"""The baselines that map w to an adapter with one trained network (paper §5.1; issue 14.5):

- CMR (Chen et al., 2023): every adapter value linear in w, trained end to end on the w-weighted loss, w uniform
  on the simplex per batch;
- PHN (Navon et al., 2021, Pareto hypernetwork, linear scalarisation): an MLP w -> adapter, trained the same way
  with w drawn from Dirichlet(α) (α = 0.2, theirs), so the simplex's edges are trained as often as its middle;
- YOTO (Dosovitskiy & Djolonga, 2020; COSMOS-style): a w-conditioned adapter, one shared adapter whose two layers
  are FiLM-modulated by an MLP of w; folded into the adapter's own layout, so it is scored like every other;
- Hypernetwork: an MLP regressing the swept adapters from w (the paper's RQ1 control), no loss of its own.

The first three see the sweep's objective (`adapter_losses`, `scalarized_loss`, its scales) and never its adapters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from padirec.data import SequenceData
from padirec.evaluation.baselines import AdapterMethod, Scorer
from padirec.evaluation.ranking import encode_instances
from padirec.evaluation.select import ValidationUtility
from padirec.models import N_PARAMS, Backbone, ParamNormalizer, apply_adapters, init_adapter_flat, unflatten
from padirec.models.adapter import BOTTLENECK, adapter_layout, flatten_tensors
from padirec.objectives import ObjectiveData
from padirec.training import AdapterConfig, adapter_losses, calibrate, candidate_batches, scalarized_loss


class WeightToAdapter(nn.Module):
    """w `[B, p]` -> flat adapter `[B, 1096]`: linear in w (hidden = 0, CMR's generated layer) or an MLP.

    It starts at `init` for every w on the simplex (linear: each column is `init`, and Σ w = 1;
    MLP: a zero last layer whose bias is `init`).
    """

    def __init__(self, n_objectives: int = 2, hidden: int = 0, layers: int = 2, init: torch.Tensor | None = None):
        super().__init__()
        init = torch.zeros(N_PARAMS) if init is None else init.float()
        if hidden == 0:
            self.net = nn.Linear(n_objectives, len(init), bias=False)
            self.net.weight.data.copy_(init[:, None].expand(-1, n_objectives))
        else:
            blocks, width = [], n_objectives
            for _ in range(layers):
                blocks += [nn.Linear(width, hidden), nn.SiLU()]
                width = hidden
            out = nn.Linear(width, len(init))
            nn.init.zeros_(out.weight)
            out.bias.data.copy_(init)
            self.net = nn.Sequential(*blocks, out)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w)


class FiLMAdapter(nn.Module):
    """w `[B, p]` -> flat adapter `[B, 1096]`: one shared adapter, each layer's output scaled and shifted by an MLP
    of w, `z = (1 + γ1(w)) ⊙ (W1 h + b1) + β1(w)`, `Δh = (1 + γ2(w)) ⊙ (W2 relu(z) + b2) + β2(w)`.

    The modulation folds into the adapter's tensors (rows of W scaled, biases scaled and shifted), so what comes out
    is an adapter of the usual layout. A zero last layer makes it start at `init` for every w.
    """

    def __init__(self, n_objectives: int = 2, hidden: int = 64, init: torch.Tensor | None = None,
                 model_hidden: int = 64, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.layout = adapter_layout(model_hidden, bottleneck)
        size = sum(s.size for s in self.layout)
        self.base = nn.Parameter(torch.zeros(size) if init is None else init.float().clone())
        self.split = [bottleneck, bottleneck, model_hidden, model_hidden]
        self.film = nn.Sequential(nn.Linear(n_objectives, hidden), nn.SiLU(), nn.Linear(hidden, sum(self.split)))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        base = unflatten(self.base.expand(len(w), -1), self.layout)
        gamma1, beta1, gamma2, beta2 = self.film(w).split(self.split, dim=-1)
        scale1, scale2 = 1 + gamma1, 1 + gamma2
        return flatten_tensors({"down.weight": scale1[:, :, None] * base["down.weight"],
                                "down.bias": scale1 * base["down.bias"] + beta1,
                                "up.weight": scale2[:, :, None] * base["up.weight"],
                                "up.bias": scale2 * base["up.bias"] + beta2}, self.layout)


class HypernetworkMethod(AdapterMethod):
    """One adapter per w from a network w -> flat adapter (denormalised if fitted so)."""

    def __init__(self, model: nn.Module, normalizer: ParamNormalizer | None = None):
        self.model, self.normalizer = model.eval(), normalizer

    @torch.no_grad()
    def adapters(self, weights: np.ndarray) -> list[np.ndarray]:
        flat = self.model(torch.as_tensor(weights, dtype=torch.float32))
        flat = self.normalizer.denormalize(flat) if self.normalizer is not None else flat
        return list(flat.numpy()[:, None])


# ------------------------------------------------------------------------ trained end to end: CMR, PHN, YOTO


@dataclass
class CMRConfig:
    epochs: int = 10
    min_steps: int = 0  # at least this many optimizer steps (epochs added): a small dataset's epoch is a few steps
    keep: Literal["last", "best"] = "last"  # best: the epoch of best validation w-utility (`fit_end_to_end`)
    valid_users: int = 1024  # keep best: the validation users each epoch is judged on
    hidden: int = 0  # 0: every adapter value linear in w (CMR's code); > 0: an MLP of this width
    layers: int = 2  # the MLP's hidden layers (hidden > 0)
    weights_per_batch: int = 4  # w drawn per batch, K of them trained on its states at once
    alpha: float = 1.0  # w ~ Dirichlet(α): 1 is uniform on the simplex (CMR); < 1 favours its edges and vertices
    lr: float = 1e-3
    seed: int = 0


@dataclass
class PHNConfig(CMRConfig):
    hidden: int = 100  # PHN's hypernetwork width (their code: 100)
    alpha: float = 0.2  # their ray distribution


@dataclass
class YOTOConfig(CMRConfig):
    hidden: int = 64  # the FiLM MLP's width


def draw_weights(rng: np.random.Generator, k: int, p: int, alpha: float) -> torch.Tensor:
    """`k` weights on the simplex of `p` objectives from Dirichlet(α); two objectives at α = 1: w_acc ~ U(0, 1), as
    CMR draws it (the same distribution, and the random stream the report's CMR figures were measured with)."""
    if p == 2 and alpha == 1.0:
        w_acc = rng.random(k)
        return torch.as_tensor(np.stack([w_acc, 1 - w_acc], axis=1), dtype=torch.float32)
    return torch.as_tensor(rng.dirichlet(np.full(p, alpha), k), dtype=torch.float32)


class EndToEnd(HypernetworkMethod):
    """A network w -> adapter trained on Σ_j w_j · loss_j with a fresh batch of w per step; `network` says which."""

    name = "end to end"
    config_type: type[CMRConfig] = CMRConfig
    steps = kept_step = 0  # the optimizer steps `fit` took; the step of the weights it kept

    @classmethod
    def network(cls, n_objectives: int, config: CMRConfig, init: torch.Tensor, hidden: int) -> nn.Module:
        return WeightToAdapter(n_objectives, config.hidden, config.layers, init)

    @classmethod
    def fit(cls, backbone: Backbone, data: SequenceData, adapter: AdapterConfig = AdapterConfig(),
            config: CMRConfig | None = None, progress: bool = True,
            judge: Callable[[AdapterMethod], float] | None = None) -> EndToEnd:
        """Train on the sweep's objective (`adapter_losses` and `scalarized_loss` with its settings and scales);
        with `keep: best`, `judge` (e.g. `select.ValidationUtility`) scores the network after each epoch and the
        best epoch's weights are kept."""
        config = config or cls.config_type()
        if config.keep == "best" and judge is None:
            raise ValueError(f"{cls.name} keep='best' needs a judge of its checkpoints (a validation utility)")
        torch.manual_seed(config.seed)
        adapter = calibrate(backbone, data, adapter)  # the sweep's scales, when it has them
        rng = np.random.default_rng(config.seed)
        train = data.train_instances()
        if not len(train):
            raise ValueError(f"{cls.name}: the data has no training instances to train on")
        states = encode_instances(backbone, train)  # also puts the frozen backbone in eval mode
        context = ObjectiveData.build(data, adapter.objectives, instances=train)
        p = len(adapter.objectives)
        model = cls.network(p, config, init_adapter_flat(adapter.init_seed, backbone.config.hidden),
                            backbone.config.hidden)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps = max(config.epochs * math.ceil(len(train) / adapter.batch_size), config.min_steps)
        bar = tqdm(total=steps, desc=f"{cls.name} end to end", unit="step", disable=not progress)
        done, best = 0, (-math.inf, None, 0)  # (validation utility, weights, steps) of the kept epoch
        while done < steps:  # whole epochs, the last one cut where the step budget ends
            for index, candidates in candidate_batches(data, train, adapter.n_negatives, adapter.batch_size, rng):
                w = draw_weights(rng, config.weights_per_batch, p, config.alpha)
                index = torch.as_tensor(index)
                h = apply_adapters(states[index], unflatten(model(w)))
                per_objective = adapter_losses(h, candidates, backbone, context, adapter, index, states[index])
                loss = scalarized_loss(per_objective, w, adapter).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                if done == steps:
                    break
            if config.keep == "best":
                utility = judge(cls(model))
                if utility > best[0]:
                    best = (utility, copy.deepcopy(model.state_dict()), done)
                bar.set_postfix(utility=f"{utility:.4f}", best=f"{best[0]:.4f}")
                model.train()
        bar.close()
        if config.keep == "best":
            model.load_state_dict(best[1])
        fitted = cls(model)
        fitted.steps, fitted.kept_step = done, best[2] if config.keep == "best" else done
        return fitted


class CMR(EndToEnd):
    """CMR (Chen et al., 2023): a hypernetwork w -> adapter (linear in w by default) trained end to end."""

    name = "CMR"


class PHN(EndToEnd):
    """Pareto hypernetwork (Navon et al., 2021, linear scalarisation): an MLP w -> adapter, Dirichlet(0.2) rays."""

    name = "PHN"
    config_type = PHNConfig


class YOTO(EndToEnd):
    """A w-conditioned adapter (YOTO / COSMOS style): the adapter's layers FiLM-modulated by an MLP of w."""

    name = "YOTO"
    config_type = YOTOConfig

    @classmethod
    def network(cls, n_objectives: int, config: CMRConfig, init: torch.Tensor, hidden: int) -> nn.Module:
        return FiLMAdapter(n_objectives, config.hidden, init, model_hidden=hidden)


def fit_end_to_end(name: str, backbone: Backbone, data: SequenceData, adapter: AdapterConfig, config: CMRConfig,
                   arrays: dict[str, np.ndarray], weights: np.ndarray, progress: bool = True) -> EndToEnd:
    """`END_TO_END[name]` trained with `config`; with `keep: best`, each epoch judged by its mean w-utility over
    `weights` on `config.valid_users` validation users, on the range of the sweep's adapters (`arrays`)."""
    judge = None
    if config.keep == "best":
        valid = Scorer.build(backbone, data, "valid", adapter.objectives).sample(config.valid_users, config.seed)
        judge = ValidationUtility(valid, arrays, weights, adapter.objectives)
    return END_TO_END[name].fit(backbone, data, adapter, config, progress, judge)


END_TO_END: dict[str, type[EndToEnd]] = {m.name: m for m in (CMR, PHN, YOTO)}  # EvaluateConfig field: name.lower()


# ------------------------------------------------------------------------------------- regression: Hypernetwork


@dataclass
class HypernetworkConfig:
    hidden: int = 256
    layers: int = 2
    steps: int = 2000  # full-batch Adam steps on the normalised adapters
    lr: float = 1e-3
    seed: int = 0


class Hypernetwork(HypernetworkMethod):
    """An MLP w -> adapter regressing the swept adapters (MSE on per-tensor normalised parameters)."""

    name = "Hypernetwork"

    @classmethod
    def fit(cls, w: np.ndarray, params: np.ndarray, config: HypernetworkConfig = HypernetworkConfig(),
            progress: bool = True) -> Hypernetwork:
        torch.manual_seed(config.seed)
        params = torch.as_tensor(np.array(params, dtype=np.float32))
        normalizer = ParamNormalizer.fit(params)
        target, w = normalizer.normalize(params), torch.as_tensor(w, dtype=torch.float32)
        model = WeightToAdapter(w.shape[1], config.hidden, config.layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
        bar = tqdm(range(config.steps), desc="Hypernetwork regression", disable=not progress, mininterval=1.0)
        for _ in bar:
            loss = (model(w) - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(mse=f"{loss.item():.4f}", refresh=False)
        return cls(model, normalizer)
