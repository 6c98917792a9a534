"""The controllability report (paper §5, DESIGN §5): every method on the 11 tasks (or, for more than two objectives,
the simplex grid at `task_step` and the paper's Table 3 layout), in one MLflow run.

A headline (the best method on each metric), Table 1 (Avg.HV, Pearson r-a / r-d against Retrain), the
w-following metrics and paired tests over seeds (`controllability`), the per-task curves (Figure 3), response time
from receiving w to a servable adapter (Table 2), the noise check of RQ1 and the generator ablations
(Figure 5: conditioning strategy via several generators, guidance γ, sampler steps). Written as
Markdown + CSV + PNG and logged to one run tagged `padirec.stage=report`.
"""

from __future__ import annotations

import itertools
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
from mlflow.entities import Metric

from padirec import tracking
from padirec.contracts.names import CURVES_FILE, REPORT_DIR, STAGE_REPORT, STAGE_TAG
from padirec.data import SequenceData
from padirec.diffusion.generate import task_weights
from padirec.diffusion.generator import Generator
from padirec.diffusion.sampling import SELECT_STEPS, parse_sampler
from padirec.evaluation.baselines import DPP, METHODS, MMR, Method, PaDiRec, Retrain, Scorer, Soup
from padirec.evaluation.controllability import (
    controllability_table,
    curve_rows,
    follow_markdown,
    headline,
    paired_tests,
    seed_curves,
    seed_rows,
    significance_markdown,
    table_markdown,
    tables_markdown,
    tests_headline,
    write_csv,
)
from padirec.evaluation.hypernetworks import (
    END_TO_END,
    CMRConfig,
    Hypernetwork,
    HypernetworkConfig,
    PHNConfig,
    YOTOConfig,
    fit_end_to_end,
)
from padirec.evaluation.measurements import response_times, robustness
from padirec.evaluation.select import best_of_runs
from padirec.models import Backbone
from padirec.sweep.grid import simplex_grid
from padirec.sweep.report import TASKS, fixed_accuracy_markdown, fixed_accuracy_rows, plot_curves, plot_fixed_accuracy
from padirec.training import AdapterConfig

ROBUST_METHODS = ("Retrain", "Hypernetwork", "PaDiRec")  # the three adapter sources of paper RQ1


@dataclass
class EvaluateConfig:
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # Retrain is always evaluated
    # w_acc values (w_div = 1 - w_acc); those off the sweep's grid are also reported apart, as held-out weights
    tasks: list[float] = field(default_factory=lambda: TASKS.tolist())
    task_step: float = 0.0  # more than two objectives: the simplex grid at this step (0: the sweep's own grid)
    split: Literal["valid", "test"] = "test"
    samplers: list[str] = field(default_factory=lambda: ["ddim:1"])  # "ddim:STEPS" | "ddpm" (all T steps)
    guidance: list[float] = field(default_factory=lambda: [0.0])  # classifier-free guidance γ values
    samples: int = 3  # generated adapters per task; a task's metrics are their mean
    seed: int = 0
    seeds: int = 5  # runs per learned method (CMR, Hypernetwork refitted, PaDiRec resampled) for mean ± std and tests
    mmr_candidates: int = 100  # top-N of the backbone that MMR re-ranks
    dpp_candidates: int = 100  # top-N of the backbone that DPP re-ranks
    cmr: CMRConfig = field(default_factory=CMRConfig)
    phn: PHNConfig = field(default_factory=PHNConfig)
    yoto: YOTOConfig = field(default_factory=YOTOConfig)
    hypernetwork: HypernetworkConfig = field(default_factory=HypernetworkConfig)
    noise_std: float = 0.0  # > 0: the RQ1 robustness check with this Gaussian noise on every parameter
    noise_repeats: int = 5
    timing_repeats: int = 5
    select: int = 0  # > 0: also best-of-N, PaDiRec's N samples and Retrain's seeds by validation w-utility (14.1)
    select_sampler: str = f"dpm:{SELECT_STEPS}"  # what best-of-N samples with (`sampling.default_sampler`)
    select_users: int = 256  # validation users the candidates are scored on
    retrain_timing_epochs: int = 1  # epochs timed for Retrain's response time (0 = skip), scaled to the sweep's

    def __post_init__(self):
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; known: {', '.join(METHODS)}")
        if self.split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {self.split!r}")
        if not self.tasks or any(not 0.0 <= w <= 1.0 for w in self.tasks):
            raise ValueError(f"tasks must be w_acc values in [0, 1], got {self.tasks}")
        for spec in self.samplers:
            parse_sampler(spec)
        parse_sampler(self.select_sampler)
        if self.select < 0 or self.select_users < 1:
            raise ValueError(f"select must be >= 0 and select_users >= 1, got {self.select}, {self.select_users}")
        if min(self.samples, self.seeds, self.noise_repeats, self.timing_repeats) < 1 or self.noise_std < 0:
            raise ValueError("samples, seeds, noise_repeats and timing_repeats must be >= 1 and noise_std >= 0")


def padirec_variants(generators: dict[str, Generator], config: EvaluateConfig) -> list[PaDiRec]:
    """One PaDiRec per generator x sampler x γ, named by what varies (the first is the main one)."""
    variants = []
    for (label, generator), spec, gamma in itertools.product(generators.items(), config.samplers, config.guidance):
        sampler_label, sampler = parse_sampler(spec)
        sampler.guidance = float(gamma)
        parts = ([label] * (len(generators) > 1) + [sampler_label] * (len(config.samplers) > 1)
                 + [f"γ={gamma:g}"] * (len(config.guidance) > 1))
        name = f"PaDiRec ({', '.join(parts)})" if parts else "PaDiRec"
        variants.append(PaDiRec(generator, sampler, config.samples, config.seed, name))
    return variants


def slug(name: str) -> str:
    """An MLflow-safe metric prefix: `PaDiRec (pre, γ=1)` -> `padirec_pre_g_1`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().replace("γ", "g")).strip("_")


def log_step(message: str, started: float) -> None:
    print(f"[evaluate {time.perf_counter() - started:7.1f} s] {message}", flush=True)


def seed_runs(methods: dict[str, Method], main: PaDiRec | None, backbone: Backbone, data: SequenceData,
              arrays: dict[str, np.ndarray], weights: np.ndarray, adapter: AdapterConfig, config: EvaluateConfig,
              progress: bool, started: float) -> dict[str, list[Method]]:
    """`config.seeds` runs of each learned method: CMR, PHN, YOTO, Hypernetwork refitted, PaDiRec resampled, with
    seed + i (Retrain, Soup: the sweep's seeds; re-rankers: none); a line per seed, minutes on a large catalogue."""
    runs = {name: [method] for name, method in methods.items()}
    refitted = sorted((END_TO_END.keys() | {"Hypernetwork"}) & runs.keys())
    for i in range(1, config.seeds if refitted else 1):
        log_step(f"seed {i + 1}/{config.seeds}: refitting {', '.join(refitted)}", started)
        for name in END_TO_END.keys() & runs.keys():
            settings = getattr(config, name.lower())
            runs[name].append(fit_end_to_end(name, backbone, data, adapter, replace(settings, seed=settings.seed + i),
                                             arrays, weights, progress))
        if "Hypernetwork" in runs:
            hyper = replace(config.hypernetwork, seed=config.hypernetwork.seed + i)
            runs["Hypernetwork"].append(Hypernetwork.fit(arrays["w"], arrays["params"], hyper, progress))
    if main is not None:
        runs[main.name] = [PaDiRec(main.generator, main.sampler, main.samples, main.seed + i, main.name)
                           for i in range(config.seeds)]
    return runs


# --------------------------------------------------------------------------------------------- output


def plot_ablation(table: dict[str, dict], path: Path, reference: str = "Retrain") -> Path:
    """Avg.HV, r-a and r-d per generator variant with the reference as a dashed line (paper Figure 5 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in table if m != reference]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(names), 3.4))
    for ax, (key, label) in zip(axes, (("avg_hv", "Avg.HV"), ("r_a", "Pearson r-a"), ("r_d", "Pearson r-d"))):
        values = [table[m][key] for m in names]
        ax.bar(range(len(names)), values, color="tab:blue")
        ax.axhline(table[reference][key], color="k", ls="--", lw=1, label=reference)
        lo, hi = np.nanmin([*values, table[reference][key]]), np.nanmax([*values, table[reference][key]])
        ax.set_ylim(lo - 0.3 * max(hi - lo, 1e-3), hi + 0.1 * max(hi - lo, 1e-3))  # zoomed: the bars differ little
        ax.set_xticks(range(len(names)), [n.removeprefix("PaDiRec ").strip("()") for n in names], rotation=45,
                      ha="right", fontsize=7)
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def held_out_tables(curves: dict[str, dict], per_seed: dict[str, dict], held: np.ndarray, objectives: list[str],
                    variants: list, name: str = "PaDiRec") -> dict:
    """The table and the paired tests of `name` on the tasks off the sweep's grid alone (issue 14.4): there
    Retrain's adapters are trained on demand and every method that learned from the sweep interpolates."""
    curves = {m: {k: np.asarray(v)[held] for k, v in c.items()} for m, c in curves.items()}
    per_seed = {m: {k: np.atleast_2d(v)[:, held] for k, v in c.items()} for m, c in per_seed.items()}
    w = curves["Retrain"].get("w", curves["Retrain"]["w_acc"])
    return {"tasks": int(held.sum()), "table": controllability_table(curves, per_seed=per_seed, objectives=objectives),
            "significance": paired_tests(per_seed, w, name, objectives) if variants else []}


def selection_tables(curves: dict[str, dict], per_seed: dict[str, dict], name: str, tasks, held: np.ndarray,
                     objectives: list[str]) -> dict:
    """Every method of the main table beside the best-of-N rows (regret normalised over all of them) and the paired
    tests of `name`, PaDiRec with selection, against each: issue 14's bar is PaDiRec first *with* selection. On all
    tasks and, when some are held out of the sweep, on those alone."""
    result = {"method": name, "table": controllability_table(curves, per_seed=per_seed, objectives=objectives),
              "significance": paired_tests(per_seed, tasks, name, objectives)}
    if held.any() and not held.all():
        result["held_out"] = held_out_tables(curves, per_seed, held, objectives, [name], name)
    return result


def report_markdown(result: dict, header: list[str]) -> str:
    curves, table = result["main_curves"], result["table"]
    methods = list(table)
    lines = ["# Controllability report", "", *headline(table, result["significance"]),
             *tests_headline(result["selection"].get("significance", [])), "",
             *[f"- {h}" for h in header], "", *tables_markdown(table, result["significance"])]
    if held := result.get("held_out"):
        lines += [f"## Held-out weights: the {held['tasks']} tasks off the sweep's grid (Retrain trained there on "
                  "demand; the generator and the Hypernetwork interpolate; regret normalised over these tasks)", "",
                  follow_markdown(held["table"]), ""]
        lines += [significance_markdown(held["significance"]), ""] if held["significance"] else []
    if chosen := result.get("selection"):
        lines += [f"## With selection: {chosen['method']} against every method (regret normalised over these rows)",
                  "", *tests_headline(chosen["significance"]), "", follow_markdown(chosen["table"]), "",
                  significance_markdown(chosen["significance"]), ""]
        if held := chosen.get("held_out"):
            lines += [f"### With selection, the {held['tasks']} held-out tasks alone", "",
                      follow_markdown(held["table"]), "", significance_markdown(held["significance"]), ""]
    if result.get("fixed_accuracy") is not None:  # more than two objectives: the paper's Table 3 layout
        objectives = result["objectives"]
        lines += [f"## Table 3 layout: each further objective's weight at fixed accuracy weights "
                  f"({len(curves['Retrain']['w'])} tasks on the simplex of {', '.join(objectives)}; all of them in "
                  f"{CURVES_FILE})", "",
                  fixed_accuracy_markdown(result["fixed_accuracy"], objectives), "![table 3](controllability.png)", ""]
    else:
        lines += ["## Figure 3: test NDCG@10 / α-NDCG@10 per task", "",
                  "| w_acc | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
        for i, w in enumerate(curves["Retrain"]["w_acc"]):
            lines.append(f"| {w:.2f} | " + " | ".join(f"{curves[m]['ndcg10'][i]:.4f} / "
                                                    f"{curves[m]['alpha_ndcg10'][i]:.4f}" for m in methods) + " |")
        lines += ["", "![curves](controllability.png)", ""]
    if result["response_times"]:
        lines += ["## Table 2: response time, from receiving w to a servable adapter", "",
                  "| approach | what | seconds (mean ± std) | repeats |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['approach']} | {r['what']}{'' if r['measured'] else ' (estimate)'} | "
                  f"{r['seconds_mean']:.4g} ± {r['seconds_std']:.2g} | {r['repeats']} |"
                  for r in result["response_times"]]
        lines.append("")
    if result["robustness"]:
        std = result["robustness"][0]["noise_std"]
        lines += [f"## Robustness (RQ1): Gaussian noise σ = {std:g} on every adapter parameter", "",
                  "| method | Δ NDCG@10 (mean ± std) | mean abs Δ NDCG@10 | Δ α-NDCG@10 (mean ± std) | "
                  "mean abs Δ α-NDCG@10 | L2 to mean Retrain adapter | adapters x repeats |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['method']} | {r['delta_ndcg10_mean']:+.4f} ± {r['delta_ndcg10_std']:.4f} | "
                  f"{r['abs_delta_ndcg10']:.4f} | {r['delta_alpha_ndcg10_mean']:+.4f} ± "
                  f"{r['delta_alpha_ndcg10_std']:.4f} | {r['abs_delta_alpha_ndcg10']:.4f} | "
                  f"{r['l2_to_retrain']:.3f} | {r['adapters']} x {r['repeats']} |" for r in result["robustness"]]
        lines.append("")
    if result["ablation"]:
        lines += ["## Figure 5: generator ablations (Avg.HV normalised over these rows)", "",
                  table_markdown(result["ablation"]), "", "![ablation](ablation.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- entry


def controllability_report(backbone: Backbone, data: SequenceData, arrays: dict[str, np.ndarray],
                           generators: dict[str, Generator], adapter: AdapterConfig, config: EvaluateConfig,
                           out_dir: str | Path, header: list[str] = (), progress: bool = True) -> dict:
    """Evaluate every method on the tasks and write the report files to `out_dir` (no MLflow here).

    `arrays` is the gathered sweep (`dataset_arrays`), `adapter` the sweep's adapter settings (for CMR
    and on-demand Retrain), `generators` the DiTs to compare (name -> Generator; empty: no PaDiRec).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objectives = list(adapter.objectives)
    if len(objectives) == 2:
        tasks = np.round(np.asarray(config.tasks, dtype=float), 4)
        weights = task_weights(tasks)
    else:  # the simplex of the sweep's objectives
        weights = (simplex_grid(config.task_step, len(objectives)) if config.task_step
                   else np.unique(np.round(arrays["w"], 4), axis=0).astype(np.float32))
        tasks = weights
        header = [*header, f"objectives: {', '.join(objectives)} ({len(weights)} tasks: "
                           f"{f'grid step {config.task_step:g}' if config.task_step else 'the sweep grid'}); MMR and "
                           "DPP re-rank for accuracy and diversity only: left out"]
    if "PaDiRec" in config.methods and not generators:
        raise ValueError("PaDiRec needs a generator (or leave it out of the methods)")
    log_step(f"encoding the {config.split} split ({data.n_users} users, {data.n_items} items)", started)
    scorer = Scorer.build(backbone, data, config.split, objectives)
    retrain = Retrain(arrays, backbone, data, adapter)
    methods: dict[str, Method] = {"Retrain": retrain}
    if "Soup" in config.methods:
        methods["Soup"] = Soup(retrain)
    if "MMR" in config.methods and len(objectives) == 2:
        methods["MMR"] = MMR(config.mmr_candidates)
    if "DPP" in config.methods and len(objectives) == 2:
        methods["DPP"] = DPP(config.dpp_candidates)
    for name in (m for m in END_TO_END if m in config.methods):
        settings = getattr(config, name.lower())
        log_step(f"{name}: end to end (sweep's loss), {settings.epochs} epochs, {settings.min_steps}+ steps", started)
        methods[name] = fit_end_to_end(name, backbone, data, adapter, settings, arrays, weights, progress)
    if "Hypernetwork" in config.methods:
        hyper = config.hypernetwork
        log_step(f"Hypernetwork: regressing the {len(arrays['params'])} swept adapters ({hyper.steps} steps)", started)
        methods["Hypernetwork"] = Hypernetwork.fit(arrays["w"], arrays["params"], hyper, progress)
    variants = padirec_variants(generators, config) if "PaDiRec" in config.methods else []

    runs = seed_runs(methods, (variants or [None])[0], backbone, data, arrays, weights, adapter, config, progress,
                     started)
    selected = {} if not (config.select and variants) else best_of_runs(
        retrain, variants[0], Scorer.build(backbone, data, "valid", objectives), arrays, config.select,
        config.select_sampler, config.select_users, config.seeds, objectives)
    runs.update(selected)
    curves, seeds = {}, {}
    for name, method in {**methods, **{v.name: v for v in variants}, **{n: r[0] for n, r in selected.items()}}.items():
        log_step(f"{name}: {len(tasks)} tasks x {len(runs.get(name, [method]))} run(s)", started)
        seeds[name] = seed_curves(runs.get(name, [method]), weights, scorer, isinstance(method, Retrain | Soup))
        curves[name] = {"w_acc": weights[:, 0].astype(float), **({"w": weights} if len(objectives) > 2 else {}),
                        **{k: v.mean(0) for k, v in seeds[name].items()}}
    names = {**{m: m for m in methods}, **({"PaDiRec": variants[0].name} if variants else {})}
    main, main_seeds = {m: curves[n] for m, n in names.items()}, {m: seeds[n] for m, n in names.items()}
    table = controllability_table(main, per_seed=main_seeds, objectives=objectives)
    tests = paired_tests(main_seeds, tasks, objectives=objectives) if variants else []
    held = np.array([not len(r) for r in retrain.rows(weights)])  # off the sweep's grid: interpolated
    held_out = {} if held.all() or not held.any() else held_out_tables(main, main_seeds, held, objectives, variants)
    chosen = next((n for n, r in selected.items() if isinstance(r[0].inner, PaDiRec)), None)
    selection = {} if chosen is None else selection_tables(
        {**main, **{n: curves[n] for n in selected}}, {**main_seeds, **{n: seeds[n] for n in selected}}, chosen,
        tasks, held, objectives)
    ablated = ["Retrain", *(v.name for v in variants), *selected]
    ablation = controllability_table({n: curves[n] for n in ablated}, per_seed={n: seeds[n] for n in ablated},
                                     objectives=objectives) if len(variants) > 1 or selected else {}
    fixed = fixed_accuracy_rows(main, objectives) if len(objectives) > 2 else None

    log_step("response time (Table 2)", started)
    best_of = selected[chosen][0] if chosen else None
    times = response_times(retrain, variants[0] if variants else None, weights, adapter.epochs, config.timing_repeats,
                           config.seed, config.retrain_timing_epochs, best_of)
    robust = []
    if config.noise_std > 0:
        log_step(f"robustness: noise σ = {config.noise_std:g}, {config.noise_repeats} repeats", started)
        sources = {"Retrain": retrain, **({"Hypernetwork": methods["Hypernetwork"]} if "Hypernetwork" in methods
                                          else {}), **({"PaDiRec": variants[0]} if variants else {})}
        robust = robustness(sources, weights, scorer, config.noise_std, config.noise_repeats, config.seed)

    result = {"curves": curves, "main_curves": main, "table": table, "significance": tests, "ablation": ablation,
              "held_out": held_out, "selection": selection,
              "response_times": times, "robustness": robust, "objectives": objectives, "fixed_accuracy": fixed}
    png = out / "controllability.png"
    plot = (plot_curves(main, png, "Controllability: methods against w_acc") if fixed is None
            else plot_fixed_accuracy(fixed, objectives, png, "Controllability (Table 3 layout)"))
    files = [write_csv(out / CURVES_FILE, curve_rows(curves, objectives)),
             write_csv(out / "seeds.csv", seed_rows(seeds, tasks, objectives)),
             write_csv(out / "table1.csv", [{"method": m, **r} for m, r in table.items()]), plot]
    if tests:
        files.append(write_csv(out / "significance.csv", tests + selection.get("significance", [])))
    if held_out:
        files.append(write_csv(out / "held_out.csv", [{"method": m, **r} for m, r in held_out["table"].items()]))
    if times:
        files.append(write_csv(out / "response_time.csv", times))
    if robust:
        files.append(write_csv(out / "robustness.csv", robust))
    if ablation:
        files.append(write_csv(out / "ablation.csv", [{"variant": m, **r} for m, r in ablation.items()]))
        files.append(plot_ablation(ablation, out / "ablation.png"))
    markdown = report_markdown(result, list(header))
    (out / "controllability.md").write_text(markdown + "\n")
    files.append(out / "controllability.md")
    print(markdown, flush=True)
    log_step(f"report written to {out}", started)
    return {**result, "markdown": markdown, "files": [str(f) for f in files], "seconds": time.perf_counter() - started}


def run_report(backbone: Backbone, data: SequenceData, arrays: dict[str, np.ndarray], generators: dict[str, Generator],
               adapter: AdapterConfig, config: EvaluateConfig, out_dir: str | Path | None = None,
               experiment: str = "padirec", tags: dict | None = None, params: dict | None = None,
               progress: bool = True) -> dict:
    """`controllability_report` inside one MLflow run tagged `padirec.stage=report`: params, metrics, files.
    Returns the report's tables and files with `run_id` and `output_dir`."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="padirec-report-"))
    header = [f"{k}: {v}" for k, v in (params or {}).items()]
    with tracking.start_run("report", experiment, tags={STAGE_TAG: STAGE_REPORT, **(tags or {})}) as run:
        mlflow.log_params({**{f"evaluate.{k}": str(v) for k, v in asdict(config).items()}, **(params or {})})
        result = controllability_report(backbone, data, arrays, generators, adapter, config, out, header, progress)
        metrics = {f"{slug(m)}_{k}": v for m, row in result["table"].items() for k, v in row.items()}
        metrics.update({f"ablation_{slug(m)}_{k}": v for m, row in result["ablation"].items() for k, v in row.items()})
        metrics.update({f"response_{slug(r['approach'])}_{'measured' if r['measured'] else 'estimated'}_seconds":
                        r["seconds_mean"] for r in result["response_times"]})
        metrics.update({f"noise_{slug(r['method'])}_abs_delta_{k}": r[f"abs_delta_{k}"]
                        for r in result["robustness"] for k in ("ndcg10", "alpha_ndcg10")})
        metrics.update({f"wilcoxon_{slug(t['method'])}_vs_{slug(t['versus'])}_{k}": t[k]
                        for t in result["significance"] + result["selection"].get("significance", [])
                        for k in ("p_value", "regret_difference")})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        stamp = int(time.time() * 1000)  # the curves as metric histories, step = 100 · w_acc (the task's index for
        two = len(result["objectives"]) == 2  # more objectives, whose tasks share w_acc values)
        metric_keys = [k for k in result["curves"]["Retrain"] if k not in ("w", "w_acc")]
        mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
            Metric(f"curve_{slug(name)}_{k}", float(v), stamp, int(round(100 * w)) if two else t)
            for name, curve in result["curves"].items() for k in metric_keys
            for t, (w, v) in enumerate(zip(curve["w_acc"], curve[k])) if np.isfinite(v)])
        mlflow.log_artifacts(str(out), REPORT_DIR)
    return {**result, "run_id": run.info.run_id, "output_dir": str(out)}
