"""The Retrain curve, read off a gathered sweep: test NDCG@10 and α-NDCG@10 against w_acc; for more than two
objectives, the paper's Table 3 layout (each further objective's weight varied at fixed accuracy weights)."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.contracts.dataset import dataset_arrays, dataset_objectives, download_dataset, read_dataset
from padirec.metrics import curve_gaps, spearman
from padirec.objectives import REGISTRY, metric_keys, resolve_objectives

TASKS = np.round(np.linspace(0.0, 1.0, 11), 4)


def chosen_adapters(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of a gathered sweep that Retrain answers with, per (w, seed): the sweep's own choice (`rank=0` when
    it kept its best epochs, `keep="best"`), else its last kept epoch. A bool mask `[N]`."""
    slots = arrays.get("slot", np.full(len(arrays["w"]), "", dtype=object))
    order = np.lexsort((arrays["epoch"], slots == "rank=0"))  # the chosen one last in each group
    chosen = {}
    for i in order:
        chosen[(tuple(np.round(arrays["w"][i], 4)), int(arrays["seed"][i]))] = i
    mask = np.zeros(len(arrays["w"]), dtype=bool)
    mask[list(chosen.values())] = True
    return mask


def curve_evenness(ndcg: np.ndarray, alpha_ndcg: np.ndarray) -> float:
    """Largest gap between consecutive points of a curve over the mean gap, in min–max normalised metric space:
    1 is perfectly even; a large value means w jumps (DESIGN §6 asks ≤ 2)."""
    gaps = curve_gaps(ndcg, alpha_ndcg)
    return float(gaps.max() / max(gaps.mean(), 1e-12)) if len(gaps) else float("nan")


def retrain_curve(arrays: dict[str, np.ndarray], tasks: np.ndarray = TASKS) -> dict[str, np.ndarray]:
    """Per task w_acc: mean over seeds of the chosen adapters' test metrics (the Retrain baseline)."""
    w_acc = np.round(arrays["w"][:, 0], 4)
    last = chosen_adapters(arrays)
    curve = {"w_acc": [], "ndcg10": [], "alpha_ndcg10": [], "n": []}
    for task in tasks:
        rows = (np.abs(w_acc - task) < 1e-6) & last
        if not rows.any():
            continue
        curve["w_acc"].append(float(task))
        curve["ndcg10"].append(float(arrays["test_ndcg10"][rows].mean()))
        curve["alpha_ndcg10"].append(float(arrays["test_alpha_ndcg10"][rows].mean()))
        curve["n"].append(int(rows.sum()))
    return {k: np.array(v) for k, v in curve.items()}


def task_curve(arrays: dict[str, np.ndarray], objectives) -> dict[str, np.ndarray]:
    """Per distinct w of the sweep (its order): mean over seeds of the chosen adapters' test metrics, for every
    objective (the Retrain baseline over the whole simplex). Keys: w `[T, p]`, w_acc, the metrics, n."""
    names = metric_keys(objectives)
    last = chosen_adapters(arrays)
    w = np.round(arrays["w"], 4)
    tasks = np.unique(w[last], axis=0)
    curve = {"w": tasks, "w_acc": tasks[:, 0], "n": []}
    for name in names:
        curve[name] = []
    for task in tasks:
        rows = (np.abs(w - task).max(1) < 1e-6) & last
        curve["n"].append(int(rows.sum()))
        for name in names:
            curve[name].append(float(np.nanmean(arrays[f"test_{name}"][rows])))
    return {k: np.asarray(v) for k, v in curve.items()}


def fixed_accuracy_rows(curves: dict[str, dict], objectives, levels=None) -> list[dict]:
    """The paper's Table 3 layout: for each further objective j (beyond accuracy and diversity) and accuracy weight
    in `levels`, the tasks with only w_acc, w_div and w_j non-zero, ordered by w_j, each method's metrics there,
    and the Spearman ρ of objective j's metric with w_j (does the knob move its metric?). Default levels: every
    w_acc in (0, 1) of the first curve's tasks with at least three such tasks."""
    found = resolve_objectives(objectives)
    rows = []
    for j in range(2, len(found)):
        first = np.asarray(next(iter(curves.values()))["w"], dtype=float)
        plane = np.abs(np.delete(first, [0, 1, j], axis=1)).sum(1) < 1e-6
        values, counts = np.unique(np.round(first[plane, 0], 4), return_counts=True)
        chosen = levels if levels is not None else [float(v) for v, c in zip(values, counts) if 0 < v < 1 and c >= 3]
        for level in chosen:
            for method, curve in curves.items():
                w = np.asarray(curve["w"], dtype=float)
                others = np.delete(w, [0, 1, j], axis=1)
                at = np.flatnonzero((np.abs(w[:, 0] - level) < 1e-6) & (np.abs(others).sum(1) < 1e-6))
                at = at[np.argsort(w[at, j])]
                if len(at) < 2:
                    continue
                metric = found[j].metric
                rows.append({"objective": found[j].name, "w_acc": level, "method": method,
                             "weights": w[at, j].tolist(), **{o.metric: np.asarray(curve[o.metric])[at].tolist()
                                                              for o in found},
                             "rho": spearman(w[at, j], np.asarray(curve[metric])[at])})
    return rows


def fixed_accuracy_summary(rows: list[dict]) -> str:
    """One line: each further objective's ρ with its weight at the accuracy levels (Retrain's rows)."""
    return "; ".join(f"ρ({REGISTRY[r['objective']].label}, w_{r['objective']}) at w_acc {r['w_acc']:g} = {r['rho']:.3f}"
                     for r in rows if r["method"] == "Retrain")


def fixed_accuracy_markdown(rows: list[dict], objectives, detailed=("Retrain", "PaDiRec")) -> str:
    """`fixed_accuracy_rows` as a table of each method's ρ per (objective, w_acc), then the paper's Table 3: one
    block per (objective, w_acc) for the `detailed` methods."""
    found = {o.name: o for o in resolve_objectives(objectives)}
    panels = sorted({(r["objective"], r["w_acc"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    rho = {(r["method"], r["objective"], r["w_acc"]): r["rho"] for r in rows}
    lines = ["| method | " + " | ".join(f"ρ({found[o].label}, w_{o}) at w_acc {a:g}" for o, a in panels) + " |",
             "| --- |" + " --- |" * len(panels)]
    lines += [f"| {m} | " + " | ".join(f"{rho.get((m, o, a), float('nan')):.3f}" for o, a in panels) + " |"
              for m in methods]
    lines.append("")
    for row in (r for r in rows if r["method"] in detailed):
        o = found[row["objective"]]
        lines += [f"**{row['method']}**, w_acc = {row['w_acc']:g}, varying w_{o.name} (w_div = the rest): "
                  f"ρ({o.label}, w_{o.name}) = {row['rho']:.3f}", "",
                  "| metric | " + " | ".join(f"w_{o.name} = {x:g}" for x in row["weights"]) + " |",
                  "| --- |" + " --- |" * len(row["weights"])]
        lines += [f"| {f.label} | " + " | ".join(f"{v:.4f}" for v in row[f.metric]) + " |"
                  for f in resolve_objectives(objectives)]
        lines.append("")
    return "\n".join(lines)


def plot_fixed_accuracy(rows: list[dict], objectives, path: str | Path, title: str = "") -> Path:
    """Small multiples of the Table 3 layout: a column per objective's metric, a row per accuracy level, a line
    per method against the further objective's weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = resolve_objectives(objectives)
    panels = sorted({(r["objective"], r["w_acc"]) for r in rows})
    fig, axes = plt.subplots(max(len(panels), 1), len(found), figsize=(3.2 * len(found), 2.6 * max(len(panels), 1)),
                             squeeze=False)
    for i, (objective, level) in enumerate(panels):
        for row in (r for r in rows if (r["objective"], r["w_acc"]) == (objective, level)):
            for j, o in enumerate(found):
                axes[i, j].plot(row["weights"], row[o.metric], marker="o", ms=3, label=row["method"])
        for j, o in enumerate(found):
            axes[i, j].set_xlabel(f"w_{objective} (w_acc = {level:g})")
            axes[i, j].set_ylabel(o.label)
            axes[i, j].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(curves: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """NDCG@10 and α-NDCG@10 against w_acc, one line per method (paper Figure 3 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method, curve in curves.items():
        axes[0].plot(curve["w_acc"], curve["ndcg10"], marker="o", ms=3, label=method)
        axes[1].plot(curve["w_acc"], curve["alpha_ndcg10"], marker="o", ms=3, label=method)
    for ax, name in zip(axes, ("NDCG@10", "α-NDCG@10")):
        ax.set_xlabel("w_acc (w_div = 1 − w_acc)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def curve_markdown(curve: dict[str, np.ndarray]) -> str:
    lines = ["| w_acc | test NDCG@10 | test α-NDCG@10 | adapters |", "| --- | --- | --- | --- |"]
    for a, n, d, k in zip(curve["w_acc"], curve["ndcg10"], curve["alpha_ndcg10"], curve["n"]):
        lines.append(f"| {a:.1f} | {n:.4f} | {d:.4f} | {k} |")
    lines += ["", curve_summary(curve)]
    return "\n".join(lines)


def curve_summary(curve: dict[str, np.ndarray]) -> str:
    """One line: how monotone (Spearman with w_acc) and how even the curve is."""
    return (f"Spearman(w_acc, NDCG@10) = {spearman(curve['w_acc'], curve['ndcg10']):.3f}; "
            f"Spearman(w_acc, α-NDCG@10) = {spearman(curve['w_acc'], curve['alpha_ndcg10']):.3f}; "
            f"evenness (largest gap / mean gap) = {curve_evenness(curve['ndcg10'], curve['alpha_ndcg10']):.2f}")


def sweep_report(parent_run_id: str, output_dir: str | None = None, log: bool = True) -> dict:
    """Print the Retrain curve of a gathered sweep, plot it, and log both to the sweep's run."""
    table, metadata = read_dataset(download_dataset(parent_run_id))
    objectives = dataset_objectives(metadata)
    out = Path(output_dir or tempfile.mkdtemp(prefix="padirec-report-"))
    out.mkdir(parents=True, exist_ok=True)
    if len(objectives) > 2:
        return simplex_report(parent_run_id, dataset_arrays(table), objectives, out, log)
    curve = retrain_curve(dataset_arrays(table))
    markdown = curve_markdown(curve)
    (out / "retrain_curve.md").write_text(markdown + "\n")
    png = plot_curves({"Retrain": curve}, out / "retrain_curve.png", f"Retrain curve, sweep {parent_run_id[:8]}")
    print(markdown)
    if log:
        client = MlflowClient(tracking.setup())
        client.log_artifact(parent_run_id, str(png), "report")
        client.log_artifact(parent_run_id, str(out / "retrain_curve.md"), "report")
        client.log_metric(parent_run_id, "retrain_spearman_ndcg", spearman(curve["w_acc"], curve["ndcg10"]))
        client.log_metric(parent_run_id, "retrain_spearman_alpha_ndcg",
                          spearman(curve["w_acc"], curve["alpha_ndcg10"]))
        client.log_metric(parent_run_id, "retrain_evenness", curve_evenness(curve["ndcg10"], curve["alpha_ndcg10"]))
    print(f"wrote {png}")
    return {"curve": curve, "png": str(png), "markdown": markdown}


def simplex_report(parent_run_id: str, arrays: dict[str, np.ndarray], objectives, out: Path, log: bool) -> dict:
    """`sweep_report` for more than two objectives: the Retrain metrics over the whole grid (CSV) and the Table 3
    layout (Markdown, PNG), with each further objective's ρ at the accuracy levels logged to the sweep's run."""
    curve = task_curve(arrays, objectives)
    rows = fixed_accuracy_rows({"Retrain": curve}, objectives)
    markdown = (f"Retrain over {len(curve['w'])} weights of the ({', '.join(objectives)}) simplex\n\n"
                + fixed_accuracy_markdown(rows, objectives))
    (out / "retrain_curve.md").write_text(markdown + "\n")
    names = metric_keys(objectives)
    with open(out / "retrain_simplex.csv", "w", newline="") as f:  # the evaluation's CSV helpers sit above this
        writer = csv.writer(f)
        writer.writerow([*(f"w_{n}" for n in objectives), *names, "adapters"])
        writer.writerows([*curve["w"][t].tolist(), *(float(curve[n][t]) for n in names), int(curve["n"][t])]
                         for t in range(len(curve["w"])))
    png = plot_fixed_accuracy(rows, objectives, out / "retrain_curve.png", f"Retrain, sweep {parent_run_id[:8]}")
    print(markdown)
    if log:
        client = MlflowClient(tracking.setup())
        for name in ("retrain_curve.png", "retrain_curve.md", "retrain_simplex.csv"):
            client.log_artifact(parent_run_id, str(out / name), "report")
        for row in rows:
            client.log_metric(parent_run_id, f"retrain_spearman_{row['objective']}_at_w_acc_{row['w_acc']:g}",
                              row["rho"])
    print(f"wrote {png}")
    return {"curve": curve, "png": str(png), "markdown": markdown, "fixed_accuracy": rows}
