"""Phases 1 and 2 as recorded stages: `pretrain` (a backbone) and `adapt` (one adapter), one MLflow run each."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np

from padirec import tracking
from padirec.config import DataSpec, data_spec, load_data
from padirec.contracts.artifacts import log_adapter, log_checked_file, resolve_backbone_file
from padirec.contracts.names import (
    BACKBONE_ARTIFACT,
    BACKBONE_CONVERGED_TAG,
    BACKBONE_FILE,
    BACKBONE_RUN_TAG,
    STAGE_ADAPTER,
    STAGE_BACKBONE,
    STAGE_TAG,
)
from padirec.evaluation.ranking import EvalSet, popularity_metrics, rank_metrics
from padirec.models import load_backbone, save_backbone
from padirec.objectives import simplex_weights
from padirec.training import (
    AdapterConfig,
    PretrainConfig,
    calibrate,
    pretrain_backbone,
    scale_params,
    train_adapters,
)


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
        mlflow.set_tag(BACKBONE_CONVERGED_TAG, str(bool(info["converged"])).lower())
        with tempfile.TemporaryDirectory() as tmp:
            save_backbone(backbone, Path(tmp) / BACKBONE_FILE, extra=extra)
            log_checked_file(Path(tmp) / BACKBONE_FILE, BACKBONE_ARTIFACT)
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


def adapt(backbone: str, w: float | Sequence[float], config: AdapterConfig = AdapterConfig(),
          data_overrides: dict | None = None, experiment: str = tracking.DEFAULT_EXPERIMENT,
          progress: bool = True) -> AdapterRun:
    """Phase 2 for one weight as an MLflow run: the adapter of `backbone` (run id or file) trained on `Σ_j w_j ·
    loss_j`, on the backbone's data unless `data_overrides` (DataSpec fields) say else. `w`: w_acc (two
    objectives, w_div = 1 − w_acc) or one number per `config.objectives`, summing to 1."""
    if np.ndim(w) == 0:
        if len(config.objectives) != 2:
            raise ValueError(f"w_acc alone is for two objectives: give one weight per objective "
                             f"({', '.join(config.objectives)})")
        w = [float(w), 1.0 - float(w)]
    weights = simplex_weights(w, config.objectives)  # non-negative, summing to 1
    if len(weights) != 1:
        raise ValueError(f"one w of {len(config.objectives)} numbers, got {len(weights)}")
    model, extra = load_backbone(resolve_backbone_file(backbone))
    data = load_data(data_spec(extra.get("data"), data_overrides))
    tags = {STAGE_TAG: STAGE_ADAPTER, BACKBONE_RUN_TAG: backbone}
    w = [float(v) for v in weights[0]]
    named = ({"w_div": w[1]} if len(w) == 2 else
             {f"w_{name}": v for name, v in zip(config.objectives, w, strict=True)})
    with tracking.start_run(f"adapter-w{w[0]:.2f}", experiment, tags=tags) as run:
        mlflow.log_params({"w_acc": w[0], **named, "backbone_run_id": backbone,
                           **{k: v for k, v in asdict(config).items() if k not in ("scales", "weight_map", "ideal")}})
        config = calibrate(model, data, config)  # train_adapters keeps what is filled in here
        result = train_adapters(model, data, weights, config, on_epoch=tracking.log_epoch_metrics, progress=progress)
        final = result.params[-1, 0]
        log_adapter(final)
        mlflow.log_params(scale_params(config))
        metrics = {name: float(values[-1, 0]) for name, values in result.metrics.items()}
        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
    return AdapterRun(run.info.run_id, weights[0].tolist(), result.seconds, metrics, final)
