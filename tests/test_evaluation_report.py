"""The controllability report: the paper's table maths by hand, and `padirec evaluate` end to end into MLflow."""

import csv
from dataclasses import asdict

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from padirec import tracking
from padirec.cli import main
from padirec.contracts.names import DATASET_DIR, STAGE_TAG, SWEEP_CONFIG_FILE, SWEEP_RUN_TAG
from padirec.diffusion import DiTConfig, ScheduleConfig
from padirec.diffusion.sampling import parse_sampler
from padirec.diffusion.train import DiTTrainConfig, train_dit
from padirec.evaluation import controllability_table
from padirec.evaluation.report import EvaluateConfig, padirec_variants, slug, verdict
from padirec.sweep import SweepConfig, retrain_curve


def test_controllability_table_on_a_hand_made_table():
    curves = {"Retrain": {"ndcg10": np.array([0.0, 0.1, 0.2]), "alpha_ndcg10": np.array([0.6, 0.5, 0.4])},
              "Flat": {"ndcg10": np.array([0.125, 0.125, 0.125]), "alpha_ndcg10": np.array([0.4, 0.5, 0.6])}}
    table = controllability_table(curves)
    # min-max over both methods: NDCG 0..0.2, α-NDCG 0.4..0.6. Retrain's points (0,1), (.5,.5), (1,0);
    # Flat's (.625,0), (.625,.5), (.625,1) -> HV 0, .25, 0 and 0, .3125, .625
    assert table["Retrain"]["avg_hv"] == pytest.approx(0.25 / 3)
    assert table["Flat"]["avg_hv"] == pytest.approx(0.9375 / 3)
    assert table["Retrain"]["r_a"] == pytest.approx(1.0) and table["Retrain"]["r_d"] == pytest.approx(1.0)
    assert np.isnan(table["Flat"]["r_a"]) and table["Flat"]["r_d"] == pytest.approx(-1.0)
    assert "No baseline beats PaDiRec on Avg.HV." in verdict({**table, "PaDiRec": table["Flat"]})
    behind = verdict({"Retrain": table["Retrain"], "PaDiRec": table["Retrain"], "Soup": table["Flat"]})
    assert "= 100.0% of Retrain's" in behind and "Ahead of PaDiRec on Avg.HV: Soup." in behind


def test_sampler_specs_and_variant_names():
    assert parse_sampler("ddim:20")[0] == "DDIM-20" and parse_sampler("ddim:20")[1].steps == 20
    assert parse_sampler("ddpm")[1].method == "ddpm" and parse_sampler("ddpm")[1].steps is None
    for bad in ("ddim", "ddpm:10", "euler:5", "ddim:x"):
        with pytest.raises(ValueError):
            parse_sampler(bad)
    with pytest.raises(ValueError, match="unknown methods"):
        EvaluateConfig(methods=["Retrain", "Oracle"])
    one = padirec_variants({"": None}, EvaluateConfig())
    assert [v.name for v in one] == ["PaDiRec"]
    many = padirec_variants({"pre": None, "adanorm": None}, EvaluateConfig(samplers=["ddim:5"], guidance=[0, 1.5]))
    assert [v.name for v in many] == ["PaDiRec (pre, γ=0)", "PaDiRec (pre, γ=1.5)", "PaDiRec (adanorm, γ=0)",
                                      "PaDiRec (adanorm, γ=1.5)"]
    assert [v.sampler.guidance for v in many] == [0.0, 1.5, 0.0, 1.5]
    assert slug(many[1].name) == "padirec_pre_g_1_5"


def log_sweep(tiny_sweep) -> str:
    """What `padirec pretrain` + `padirec sweep --gather` leave in MLflow, for the tiny sweep."""
    with tracking.start_run("backbone", tags={STAGE_TAG: "backbone"}) as backbone:
        mlflow.log_artifact(str(tiny_sweep["backbone_path"]), "backbone")
    config = SweepConfig(backbone_run_id=backbone.info.run_id, adapter=tiny_sweep["adapter"])
    with tracking.start_run("sweep", tags={STAGE_TAG: "sweep"}) as sweep:
        mlflow.log_dict(asdict(config), SWEEP_CONFIG_FILE)
        mlflow.log_artifact(tiny_sweep["dataset_path"], DATASET_DIR)
    return sweep.info.run_id


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluate_command_writes_the_report_into_one_mlflow_run(tiny_sweep, mlflow_store, tmp_path):
    sweep_run = log_sweep(tiny_sweep)
    dit = DiTTrainConfig(epochs=3, batch_size=6, lr=3e-3, prediction="v", device="cpu",
                         schedule=ScheduleConfig(steps=100),
                         dit=DiTConfig(hidden=32, depth=1, heads=2, ffn=64, freq_dim=32, cond_freq_dim=16))
    checkpoint = train_dit(tiny_sweep["dataset_path"], dit, output_dir=tmp_path / "dit")["checkpoint_path"]
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump({"evaluate": {"hypernetwork": {"steps": 100}, "mmr_candidates": 20}}))
    out = tmp_path / "report"
    main(["evaluate", "--sweep", sweep_run, "--model", checkpoint, "--config", str(config), "--samplers", "ddim:5",
          "--guidance", "0,1", "--samples", "2", "--cmr-epochs", "1", "--noise-std", "0.05", "--noise-repeats", "1",
          "--timing-repeats", "2", "--output", str(out), "--quiet"])

    files = {"controllability.md", "controllability.png", "curves.csv", "table1.csv", "response_time.csv",
             "robustness.csv", "ablation.csv", "ablation.png"}
    assert files <= {p.name for p in out.iterdir()}
    table = {r["method"]: r for r in read_csv(out / "table1.csv")}
    assert list(table) == ["Retrain", "Soup", "MMR", "CMR", "Hypernetwork", "PaDiRec"]
    assert float(table["Retrain"]["r_a"]) == pytest.approx(1.0)
    curves = read_csv(out / "curves.csv")
    methods = ["Retrain", "Soup", "MMR", "CMR", "Hypernetwork", "PaDiRec (γ=0)", "PaDiRec (γ=1)"]
    assert [r["method"] for r in curves[::11]] == methods and len(curves) == 11 * len(methods)
    on_grid = {float(r["w_acc"]): r for r in curves if r["method"] == "Retrain" and float(r["w_acc"]) in (0, .5, 1)}
    expected = retrain_curve(tiny_sweep["arrays"], tasks=np.array([0.0, 0.5, 1.0]))
    assert np.allclose([float(on_grid[w]["ndcg10"]) for w in (0, .5, 1)], expected["ndcg10"], atol=1e-5)
    times = read_csv(out / "response_time.csv")
    assert [(r["approach"], r["measured"]) for r in times] == [("PaDiRec", "True"), ("Retrain", "True"),
                                                               ("Retrain", "False")]
    assert all(float(r["seconds_mean"]) > 0 for r in times)
    robust = read_csv(out / "robustness.csv")
    assert [r["method"] for r in robust] == ["Retrain", "Hypernetwork", "PaDiRec"]
    assert all(float(r["abs_delta_ndcg10"]) + float(r["abs_delta_alpha_ndcg10"]) > 0 for r in robust)
    assert {r["variant"] for r in read_csv(out / "ablation.csv")} == {"Retrain", "PaDiRec (γ=0)", "PaDiRec (γ=1)"}
    markdown = (out / "controllability.md").read_text()
    assert "## Table 1" in markdown and "## Table 2" in markdown and "Robustness (RQ1)" in markdown

    client = MlflowClient()
    reports = mlflow.search_runs(experiment_names=["padirec"], filter_string="tags.`padirec.stage` = 'report'")
    assert len(reports) == 1
    run = client.get_run(reports.iloc[0]["run_id"])
    assert run.data.tags[SWEEP_RUN_TAG] == sweep_run and run.data.params["sweep_run_id"] == sweep_run
    assert run.data.metrics["padirec_avg_hv"] == pytest.approx(float(table["PaDiRec"]["avg_hv"]))
    assert {"retrain_r_a", "cmr_avg_hv", "ablation_padirec_g_1_r_d", "response_padirec_measured_seconds",
            "noise_hypernetwork_abs_delta_ndcg10"} <= set(run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "curve_mmr_alpha_ndcg10")
    assert sorted(m.step for m in history) == list(range(0, 101, 10))
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {f"report/{f}" for f in files}
