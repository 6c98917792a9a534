"""The whole chain on the embedded default: data → backbone → sweep → gather → Retrain curve → DiT → report.

Each stage is the same function its own command calls; this only passes run ids along. On a laptop it
uses a local Ray cluster and the local MLflow store; with `RAY_ADDRESS` and `MLFLOW_TRACKING_URI` set it
runs unchanged on a cluster.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from padirec import tracking
from padirec.config import DataSpec, build, data_spec, load_data, load_yaml
from padirec.console import Console
from padirec.contracts.dataset import dataset_arrays, read_dataset
from padirec.contracts.names import SWEEP_RUN_TAG
from padirec.diffusion.generator import load_generator
from padirec.diffusion.model import DiTConfig
from padirec.diffusion.preference import PreferenceConfig
from padirec.diffusion.stage import GeneratorRunConfig, train_generator
from padirec.diffusion.train import DiTTrainConfig
from padirec.evaluation.controllability import headline, tests_headline
from padirec.evaluation.hypernetworks import CMRConfig, HypernetworkConfig, PHNConfig, YOTOConfig
from padirec.evaluation.report import EvaluateConfig, run_report
from padirec.evaluation.stage import lineage_tags
from padirec.models import load_backbone
from padirec.phases import pretrain
from padirec.sweep import SweepConfig, gather, run_sweep, sweep_report
from padirec.sweep.report import curve_summary, fixed_accuracy_summary
from padirec.training import AdapterConfig, PretrainConfig

# CMR, PHN and YOTO in the report: at least 4,000 steps (5 epochs were 115 steps on dense 250, where CMR ignored w),
# the best epoch by validation w-utility kept: test w-utility up by 0.05-0.32 on both dense sets for each, by 0.02-0.04
# on ML-100K for CMR and YOTO, PHN's there level (BENCHMARKS §7, ninth session)
END_TO_END_BUDGET = {"epochs": 5, "min_steps": 4000, "keep": "best"}


@dataclass
class PipelineConfig:
    """Every stage's settings, sized so the chain finishes in minutes on 2 CPU cores (a YAML file's sections)."""

    data: DataSpec = field(default_factory=DataSpec)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(epochs=200, patience=5))
    sweep: SweepConfig = field(default_factory=lambda: SweepConfig(grid_step=0.1, seeds=[0, 1], pack_size=11))
    # the α-DCG term on each adapter's top-10, Tchebycheff on the ideal–nadir scale and the even map (a two-seed
    # pilot, one refinement round, efficient ends), calibrated as long as the adapters train: monotone, even Retrain
    # curves on ML-100K and the dense-category sets (BENCHMARKS §7). The last 2 epochs kept: where an adapter is still
    # converging (GRU4Rec's diversity end) the generator learns the kept epochs' average, so more of them pull it below
    # Retrain's last epoch; with the DiT trained 300 epochs on them PaDiRec's r-a / r-d went from 0.956–0.996 to
    # 0.987–1.000 on four sets (BENCHMARKS §7, fourth session). Accuracy stays the paper's BCE: the KL from the
    # backbone's ranking moved the Retrain front out on four sets of five, but PaDiRec followed it less closely on
    # both sets measured end to end (ML-100K SASRec r-d 0.963, below issue 13's 0.98: §7, seventh session)
    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(
        epochs=10, keep_last=2, diversity_topk=10, objective_scale="even", scalarization="tchebycheff", scale_epochs=0,
        map_seeds=2, map_refinements=1, map_ends="efficient"))
    # cond_jitter: each training row's w moved by up to half the grid's step (0.05 on the default 0.1 grid; another
    # grid_step, unless cond_jitter is given, gets half of it: `pipeline_config`), so that the DiT learns the weights
    # between the swept ones too: off the grid it then follows w (BENCHMARKS §7, fifth session)
    dit_train: DiTTrainConfig = field(default_factory=lambda: DiTTrainConfig(
        epochs=300, batch_size=64, lr=1e-3, prediction="v", checkpoint_every=100, log_every=10, cond_jitter=0.05,
        dit=DiTConfig(hidden=128, depth=2, heads=4, ffn=512),  # a small DiT
        preference=PreferenceConfig(epochs=5)))  # APA: lower w-utility regret on each dataset measured (BENCHMARKS §14)
    dit_workers: int = 2  # Ray Train DDP workers (0 = in-process)
    evaluate: EvaluateConfig = field(default_factory=lambda: EvaluateConfig(  # every method, sized for a quick run
        samples=1, timing_repeats=3, cmr=CMRConfig(**END_TO_END_BUDGET), phn=PHNConfig(**END_TO_END_BUDGET),
        yoto=YOTOConfig(**END_TO_END_BUDGET), hypernetwork=HypernetworkConfig(steps=500)))
    output_dir: str = "padirec-output"
    experiment: str = tracking.DEFAULT_EXPERIMENT

    def small(self) -> PipelineConfig:
        """A smoke-test size of this config (the tests' `--small`)."""
        return replace(
            self, pretrain=replace(self.pretrain, epochs=3),
            sweep=replace(self.sweep, grid_step=0.25, seeds=[0]),
            adapter=replace(self.adapter, epochs=3, keep_last=2),
            dit_train=replace(self.dit_train, epochs=5, dit=replace(self.dit_train.dit, hidden=32, depth=1, heads=2,
                                                                     ffn=64)),
            evaluate=replace(self.evaluate, samplers=["ddim:10"], timing_repeats=2, seeds=2,
                             cmr=replace(self.evaluate.cmr, epochs=2, min_steps=0),
                             phn=replace(self.evaluate.phn, epochs=2, min_steps=0),
                             yoto=replace(self.evaluate.yoto, epochs=2, min_steps=0),
                             hypernetwork=replace(self.evaluate.hypernetwork, steps=200)))


# the adapter defaults with more than two objectives: each loss divided by its value at the initial adapter, on the
# weighted sum: the only variant measured whose third knob moves its metric on every set (BENCHMARKS §13, the paper's
# weighting leaves the fairness term too small to act); a YAML file or flag still sets any of these. The 5 kept epochs
# and the 120-epoch DiT without jitter are what the three-objective figures were measured with (the two-objective
# 2 / 300 / 0.05 was not)
MANY_OBJECTIVES_ADAPTER = {"objective_scale": "initial", "scalarization": "linear", "diversity_topk": 0,
                           "scale_epochs": 5, "keep_last": 5}
MANY_OBJECTIVES_DIT = {"epochs": 120, "checkpoint_every": 40, "cond_jitter": 0.0}


def pipeline_config(path: str | None = None, *overrides: dict | None) -> PipelineConfig:
    """The defaults, updated by a YAML file's sections, then by overrides."""
    sources = [load_yaml(path) if path else None, *overrides]
    given = [((source or {}).get("adapter") or {}).get("objectives") for source in sources]
    objectives = next((o for o in reversed(given) if o), [])
    if len(objectives.split(",") if isinstance(objectives, str) else objectives) > 2:
        sources.insert(0, {"adapter": MANY_OBJECTIVES_ADAPTER, "dit_train": MANY_OBJECTIVES_DIT})
    config = build(PipelineConfig, *sources)
    jitter_given = any(value is not None for source in sources
                       for key, value in ((source or {}).get("dit_train") or {}).items()
                       if key.replace("-", "_") == "cond_jitter")
    if config.dit_train.cond_jitter and not jitter_given:  # the jitter is half the step of the grid swept
        config = replace(config, dit_train=replace(config.dit_train, cond_jitter=config.sweep.grid_step / 2))
    return config


def run_pipeline(config: PipelineConfig, console_mode: str = "bar") -> dict:
    """Run every stage in order and return the run ids and headline numbers (also in `summary.json`).
    `console_mode`: what the console shows (`Console`)."""
    started = time.perf_counter()
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    console = Console(6, out / "logs", console_mode)
    progress = not console.quiet  # the stages' own bars and tables; else they would fill the logs
    spec = data_spec(asdict(config.data))
    summary: dict = {}

    with console.stage("data", "data") as said:
        summary["tracking_uri"] = tracking.setup(config.experiment)
        data = load_data(spec)
        summary["data"] = stats = data.stats()
        print(json.dumps(stats))
        said.text = (f"{stats['users']} users, {stats['items']} items, {stats['interactions']} interactions, "
                     f"{stats['categories']} categories")

    with console.stage("backbone", "backbone") as said:
        backbone = pretrain(spec, config.pretrain, config.experiment, out / "backbone.pt", progress)
        summary["backbone_run_id"], summary["backbone"] = backbone.run_id, backbone.metrics
        print(json.dumps(backbone.metrics))
        said.text = (f"{config.pretrain.backbone} run {backbone.run_id}, test NDCG@10 "
                     f"{backbone.metrics['test_ndcg10']:.4f} (most popular "
                     f"{backbone.metrics['most_popular_test_ndcg10']:.4f})")

    with console.stage("sweep", "adapter sweep (Ray Tune) and gather") as said:
        sweep = replace(config.sweep, backbone_run_id=backbone.run_id, adapter=config.adapter,
                        storage_path=str(out / "ray_results"))
        swept = run_sweep(sweep, experiment=config.experiment, progress=progress)
        summary["sweep_run_id"] = swept.parent_run_id
        summary["dataset"] = gather(swept.parent_run_id, str(out / "dataset"))
        said.text = (f"sweep run {swept.parent_run_id}, {swept.adapters}/{swept.expected} adapters gathered "
                     f"(sha256 {summary['dataset']['sha256'][:12]})")

    with console.stage("curve", "Retrain curve") as said:
        curve = sweep_report(swept.parent_run_id, str(out / "report"))
        summary["retrain_curve_png"] = curve["png"]
        said.text = (fixed_accuracy_summary(curve["fixed_accuracy"]) if "fixed_accuracy" in curve
                     else curve_summary(curve["curve"]))

    with console.stage("generator", "DiT generator (Ray Train DDP), registered in MLflow") as said:
        generator = train_generator(summary["dataset"]["path"], config.dit_train,
                                    GeneratorRunConfig(workers=config.dit_workers, experiment=config.experiment,
                                                       storage_path=str(out / "ray_results")))
        summary["generator"] = generator.to_dict()
        print(json.dumps(summary["generator"]))
        said.text = f"run {generator.run_id}, {generator.model_uri}, loss {generator.loss:.4f}"

    with console.stage("report", "controllability report: PaDiRec vs Retrain and the baselines") as said:
        model, _ = load_backbone(out / "backbone.pt")  # stage 1's data, which the backbone was trained on
        arrays = dataset_arrays(read_dataset(summary["dataset"]["path"])[0])
        params = {"generator": generator.checkpoint_path, "backbone": str(out / "backbone.pt"),
                  "backbone_name": model.config.name}
        report = run_report(model, data, arrays, {"": load_generator(generator.checkpoint_path)}, swept.adapter,
                            config.evaluate, out / "report", config.experiment,
                            {SWEEP_RUN_TAG: swept.parent_run_id,
                             **lineage_tags(backbone.run_id, {"": generator.run_id})}, params, progress)
        summary["controllability"] = report["table"]
        summary["report_run_id"] = report["run_id"]
        said.text = f"run {report['run_id']}, {out / 'report' / 'controllability.md'}"
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if console.quiet:  # the report's headline: the best method on each metric
        print("\n".join(headline(report["table"], report["significance"])
                        + tests_headline(report["selection"].get("significance", []))))
    print(f"pipeline done in {summary['seconds']} s; summary in {out / 'summary.json'}; "
          f"browse runs with `mlflow ui --backend-store-uri {summary['tracking_uri']}`")
    return summary
