"""The evaluation stages: `evaluate` (the controllability report of a sweep and its generators, one MLflow run)
and `evaluate_adapter` (full-ranking metrics of one adapter beside the backbone and most-popular)."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import torch

from padirec import tracking
from padirec.config import data_spec, load_data
from padirec.contracts.artifacts import (
    check_adapter_shape,
    generator_lineage,
    load_adapter,
    resolve_backbone_file,
    resolve_generator_file,
    source_run_id,
)
from padirec.contracts.dataset import dataset_arrays, download_dataset, read_dataset
from padirec.contracts.names import BACKBONE_RUN_TAG, SWEEP_RUN_TAG
from padirec.diffusion.generator import load_generator
from padirec.evaluation.ranking import EvalSet, popularity_metrics, rank_metrics
from padirec.evaluation.report import EvaluateConfig, run_report
from padirec.models import load_backbone
from padirec.sweep.run import load_sweep_setting


@dataclass
class ReportRun:
    """The report's MLflow run, where its files are, and Table 1 (method -> Avg.HV, r-a, r-d, ...)."""

    run_id: str
    output_dir: str
    table: dict[str, dict]


def evaluate(sweep_run_id: str, config: EvaluateConfig = EvaluateConfig(), generators: dict[str, str] | None = None,
             backbone: str = "", output: str | None = None, data_overrides: dict | None = None,
             experiment: str = tracking.DEFAULT_EXPERIMENT, progress: bool = True) -> ReportRun:
    """Every method of `config` on the sweep's tasks. `generators` maps a label to a generator reference
    (`{"": ref}` for one); `backbone` defaults to the sweep's."""
    tracking.setup(experiment)
    setting = load_sweep_setting(sweep_run_id, backbone, data_overrides)
    sweep, model, data, spec = setting.config, setting.backbone, setting.data, setting.spec
    backbone_ref = backbone or sweep.backbone_run_id
    arrays = dataset_arrays(read_dataset(download_dataset(sweep_run_id))[0])
    references = (generators or {}) if "PaDiRec" in config.methods else {}
    loaded = {}
    for name, reference in references.items():
        loaded[name] = load_generator(resolve_generator_file(reference))
        trained_on = loaded[name].metadata.get("sweep_run_id")
        if trained_on and trained_on != sweep_run_id:
            print(f"warning: generator {reference} was trained on sweep {trained_on}, not {sweep_run_id}")
    params = {"sweep_run_id": sweep_run_id, "backbone": backbone_ref, "backbone_name": model.config.name,
              "data": f"{spec.kind} {spec.path or ''}".strip(), "users": data.n_users, "items": data.n_items,
              **{f"generator{'.' + n if n else ''}": ref for n, ref in references.items()}}
    tags = {SWEEP_RUN_TAG: sweep_run_id, **lineage_tags(backbone_ref, references)}
    result = run_report(model, data, arrays, loaded, sweep.adapter, config, output, experiment,
                        tags=tags, params=params, progress=progress)
    return ReportRun(result["run_id"], result["output_dir"], result["table"])


def lineage_tags(backbone: str, generators: dict[str, str]) -> dict[str, str]:
    """A report's lineage: the backbone run (when it is one) and each generator's run and model version (tag names
    suffixed `.label` when several generators are compared)."""
    run_id = source_run_id(backbone)
    tags = {BACKBONE_RUN_TAG: run_id} if run_id else {}
    for label, reference in generators.items():
        tags.update({f"{k}.{label}" if label else k: v for k, v in generator_lineage(reference).items()})
    return tags


def evaluate_adapter(backbone: str, adapter: str = "", adapter_run: str = "", split: str = "test",
                     data_overrides: dict | None = None) -> dict:
    """Full-ranking NDCG@10 / α-NDCG@10 of the backbone, most-popular and (given) an adapter file or run."""
    model, extra = load_backbone(resolve_backbone_file(backbone))
    data = load_data(data_spec(extra.get("data"), data_overrides))
    eval_set = EvalSet.build(data, split)
    report = {"backbone": {k: float(v[0]) for k, v in rank_metrics(model, eval_set).items()},
              "most_popular": popularity_metrics(data, eval_set)}
    flat = None
    if adapter_run:
        tracking.setup()
        flat = load_adapter(mlflow.get_run(adapter_run))
    elif adapter:
        flat = check_adapter_shape(np.load(adapter), adapter)
    if flat is not None:
        flat = torch.as_tensor(flat.reshape(-1, flat.shape[-1]), dtype=torch.float32)[:1]
        report["adapter"] = {k: float(v[0]) for k, v in rank_metrics(model, eval_set, flat).items()}
    return {"split": split, **report}
