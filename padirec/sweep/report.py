"""The Retrain curve, read off a gathered sweep: test NDCG@10 and α-NDCG@10 against w_acc."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.contracts.dataset import dataset_arrays, download_dataset, read_dataset
from padirec.metrics import curve_gaps, spearman

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
    curve = retrain_curve(dataset_arrays(table))
    out = Path(output_dir or tempfile.mkdtemp(prefix="padirec-report-"))
    out.mkdir(parents=True, exist_ok=True)
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
