"""The controllability report: the paper's table maths and the w-following metrics by hand, the paired tests and
the headline, and `padirec evaluate` end to end into MLflow."""

import csv
import math
from dataclasses import asdict

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats

from padirec import tracking
from padirec.cli import main
from padirec.contracts.names import DATASET_DIR, STAGE_TAG, SWEEP_CONFIG_FILE, SWEEP_RUN_TAG
from padirec.diffusion import DiTConfig, ScheduleConfig
from padirec.diffusion.sampling import parse_sampler
from padirec.diffusion.train import DiTTrainConfig, train_dit
from padirec.evaluation import controllability_table
from padirec.evaluation.controllability import headline, paired_tests, seed_agreement, seed_utilities, verdict
from padirec.evaluation.report import EvaluateConfig, padirec_variants, slug
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


def test_w_following_metrics_on_the_hand_made_table():
    w_acc = np.array([0.0, 0.5, 1.0])
    curves = {"Retrain": {"w_acc": w_acc, "ndcg10": np.array([0.0, 0.1, 0.2]),
                          "alpha_ndcg10": np.array([0.6, 0.5, 0.4])},
              "Flat": {"w_acc": w_acc, "ndcg10": np.full(3, 0.125), "alpha_ndcg10": np.array([0.4, 0.5, 0.6])}}
    table = controllability_table(curves)
    # HV at (0, 0): Retrain 0.1·0.5 + 0.1·0.4 (its first point has no width); Flat's best point (0.125, 0.6)
    assert table["Retrain"]["hv"] == pytest.approx(0.09) and table["Flat"]["hv"] == pytest.approx(0.075)
    # IGD+: Flat reaches Retrain's (0, .6) and (.1, .5) and falls 0.075 short of (.2, .4) in NDCG
    assert table["Retrain"]["igd_plus"] == pytest.approx(0.0) and table["Flat"]["igd_plus"] == pytest.approx(0.025)
    # normalised: Retrain (0, 1), (.5, .5), (1, 0); Flat (.625, 0), (.625, .5), (.625, 1). Utilities at w_acc 0, .5,
    # 1: Retrain 1, .5, 1; Flat 0, .5625, .625; best 1, .5625, 1
    assert table["Retrain"]["regret"] == pytest.approx(0.0625 / 3)
    assert table["Flat"]["regret"] == pytest.approx((1 + 0.375) / 3)
    assert (table["Retrain"]["rho_a"], table["Retrain"]["rho_d"]) == pytest.approx((1.0, -1.0))
    assert math.isnan(table["Flat"]["rho_a"]) and table["Flat"]["rho_d"] == pytest.approx(1.0)
    assert table["Flat"]["seeds"] == 1 and math.isnan(table["Flat"]["regret_std"])  # no spread from one seed

    shifted = {k: np.stack([curves["Retrain"][k], curves["Retrain"][k] + [0.02 * (k == "ndcg10")]]) for k in
               ("ndcg10", "alpha_ndcg10")}  # a second Retrain seed, 0.02 better in NDCG at every task
    mean = {"w_acc": w_acc, **{k: v.mean(0) for k, v in shifted.items()}}
    seeded = controllability_table({"Retrain": mean, "Flat": curves["Flat"]},
                                   per_seed={"Retrain": shifted, "Flat": {k: curves["Flat"][k][None] for k in shifted}})
    row = seeded["Retrain"]
    hvs = [0.09, 0.02 * 0.6 + 0.1 * 0.5 + 0.1 * 0.4]  # the second seed's first point now has width 0.02
    assert row["seeds"] == 2 and row["hv"] == pytest.approx(np.mean(hvs)) and row["hv_std"] == pytest.approx(
        np.std(hvs, ddof=1))
    assert row["r_a"] == pytest.approx(1.0) and row["r_a_std"] == pytest.approx(0.0)


def test_retrain_seed_agreement_bounds_the_pearson_a_noise_free_curve_reaches():
    rng = np.random.default_rng(0)
    truth = np.linspace(0.0, 1.0, 4000)  # var 1/12; noise var 1/12 per seed: seeds agree at r = 0.5
    noisy = truth + rng.normal(0.0, np.sqrt(1 / 12), (3, truth.size))
    r, ceiling = seed_agreement(noisy)
    assert r == pytest.approx(0.5, abs=0.03)
    assert ceiling == pytest.approx(np.sqrt(3 * 0.5 / (1 + 2 * 0.5)), abs=0.02)  # Spearman–Brown over 3 seeds
    assert ceiling == pytest.approx(np.corrcoef(truth, noisy.mean(0))[0, 1], abs=0.02)  # what the truth reaches
    assert seed_agreement(np.stack([truth, truth])) == pytest.approx((1.0, 1.0))
    assert all(np.isnan(seed_agreement(truth[None])))  # one seed: nothing to agree with

    per_seed = {"Retrain": {"ndcg10": noisy[:2], "alpha_ndcg10": -noisy[:2]},
                "PaDiRec": {"ndcg10": truth[None], "alpha_ndcg10": -truth[None]}}
    curves = {m: {k: v.mean(0) for k, v in s.items()} for m, s in per_seed.items()}
    table = controllability_table(curves, per_seed=per_seed)
    assert table["PaDiRec"]["r_a"] == pytest.approx(table["Retrain"]["r_a_ceiling"], abs=0.03)
    assert "r_a_ceiling" not in table["PaDiRec"]
    assert "Retrain's own seeds agree at r-a 0.5" in verdict(table)


def test_paired_tests_and_the_headline():
    w_acc = np.linspace(0, 1, 11)
    good = {"ndcg10": 0.1 + 0.1 * w_acc, "alpha_ndcg10": 0.6 - 0.2 * w_acc}
    wobble = np.where(np.arange(11) % 2, 1e-3, -1e-3)  # a method as good, up and down around it
    per_seed = {"Retrain": {k: np.stack([v * 1.05, v * 1.05]) for k, v in good.items()},  # better everywhere
                "PaDiRec": {k: np.stack([v, v]) for k, v in good.items()},
                "Same": {k: np.stack([v + wobble, v - wobble]) for k, v in good.items()},
                "Flat": {k: np.full((3, 11), v.mean()) for k, v in good.items()}}
    tests = {t["versus"]: t for t in paired_tests(per_seed, w_acc)}
    assert {v: t["outcome"] for v, t in tests.items()} == {"Retrain": "worse", "Same": "tie", "Flat": "better"}
    assert tests["Flat"]["pairs"] == 2 * 11 and tests["Flat"]["seeds"] == 2  # the first min(seeds) seeds
    assert tests["Retrain"]["regret_difference"] < 0 < tests["Flat"]["regret_difference"]
    utilities = seed_utilities(per_seed, w_acc)  # paired by (seed index, task): Flat has 3 seeds, PaDiRec 2
    expected = stats.wilcoxon(utilities["PaDiRec"].ravel(), utilities["Flat"][:2].ravel()).pvalue
    assert tests["Flat"]["p_value"] == pytest.approx(expected) and tests["Same"]["p_value"] > 0.05
    curves = {m: {"w_acc": w_acc, **{k: v.mean(0) for k, v in s.items()}} for m, s in per_seed.items()}
    table = controllability_table(curves, per_seed=per_seed)
    lines = headline({m: table[m] for m in ("Retrain", "PaDiRec", "Flat")}, list(tests.values()))
    gap = table["Flat"]["regret"] - table["PaDiRec"]["regret"]
    assert lines[2] == (f"- w-utility regret: **PaDiRec** {table['PaDiRec']['regret']:.4g}, ahead of Flat "
                        f"({table['Flat']['regret']:.4g}) by {gap:.4g} ({100 * gap / table['Flat']['regret']:.1f}%); "
                        f"Retrain: {table['Retrain']['regret']:.4g}")  # Retrain, the reference, is not ranked
    p = {m: f"{t['p_value']:.3g}" for m, t in tests.items()}
    assert lines[-1].endswith(f"worse than Retrain (p = {p['Retrain']}), tie with Same (p = {p['Same']}), "
                              f"better than Flat (p = {p['Flat']})")


def test_sampler_specs_and_variant_names():
    assert parse_sampler("ddim:20")[0] == "DDIM-20" and parse_sampler("ddim:20")[1].steps == 20
    assert parse_sampler("ddpm")[1].method == "ddpm" and parse_sampler("ddpm")[1].steps is None
    label, dpm = parse_sampler("dpm:5")
    assert label == "DPM-5" and (dpm.method, dpm.steps, dpm.spacing) == ("dpm", 5, "logsnr")
    label, half = parse_sampler("dpm:5:bf16")
    assert label == "DPM-5 bf16" and half.dtype == "bfloat16" and dpm.dtype == "float32"
    for bad in ("ddim", "ddpm:10", "euler:5", "ddim:x", "dpm:5:fp16", "dpm:bf16"):
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


def test_evaluate_command_writes_the_report_into_one_mlflow_run(tiny_sweep, mlflow_store, tmp_path, capsys):
    sweep_run = log_sweep(tiny_sweep)
    dit = DiTTrainConfig(epochs=3, batch_size=6, lr=3e-3, prediction="v", device="cpu",
                         schedule=ScheduleConfig(steps=100),
                         dit=DiTConfig(hidden=32, depth=1, heads=2, ffn=64, freq_dim=32, cond_freq_dim=16))
    checkpoint = train_dit(tiny_sweep["dataset_path"], dit, output_dir=tmp_path / "dit")["checkpoint_path"]
    config = tmp_path / "evaluate.yaml"
    config.write_text(yaml.safe_dump({"evaluate": {"hypernetwork": {"steps": 100}, "mmr_candidates": 20}}))
    out = tmp_path / "report"
    main(["evaluate", "--sweep", sweep_run, "--model", checkpoint, "--config", str(config), "--samplers", "ddim:5",
          "--guidance", "0,1", "--samples", "2", "--cmr-epochs", "1",
          "--phn-epochs", "1", "--yoto-epochs", "1", "--noise-std", "0.05", "--noise-repeats", "1",
          "--timing-repeats", "2", "--output", str(out), "--quiet"])

    said = capsys.readouterr().out  # a line per refitted seed: on a large catalogue each takes minutes
    refits = [i for i in range(1, 7) if f"seed {i}/5: refitting CMR, Hypernetwork, PHN, YOTO" in said]
    assert refits == [2, 3, 4, 5]
    files = {"controllability.md", "controllability.png", "curves.csv", "seeds.csv", "table1.csv", "significance.csv",
             "response_time.csv", "robustness.csv", "ablation.csv", "ablation.png", "held_out.csv"}
    assert files <= {p.name for p in out.iterdir()}
    # the tiny sweep's grid is (0, 0.5, 1): the other 8 of the 11 tasks are held-out weights, reported apart
    assert [r["method"] for r in read_csv(out / "held_out.csv")][:2] == ["Retrain", "Soup"]
    table = {r["method"]: r for r in read_csv(out / "table1.csv")}
    assert list(table) == ["Retrain", "Soup", "MMR", "DPP", "CMR", "PHN", "YOTO", "Hypernetwork", "PaDiRec"]
    assert float(table["Retrain"]["r_a"]) == pytest.approx(1.0)
    # 5 seeds (the default) for the learned methods, the sweep's 2 for Retrain and Soup, MMR deterministic
    assert {m: int(r["seeds"]) for m, r in table.items()} == {"Retrain": 2, "Soup": 2, "MMR": 1, "DPP": 1, "CMR": 5,
                                                               "PHN": 5, "YOTO": 5, "Hypernetwork": 5, "PaDiRec": 5}
    assert all(float(r["regret"]) >= 0 and float(r["hv"]) > 0 for r in table.values())
    seeds = read_csv(out / "seeds.csv")
    assert len(seeds) == 11 * (2 + 2 + 1 + 1 + 5 + 5 + 5 + 5 + 5 + 1)  # ... and one run of the second γ variant
    tests = {r["versus"]: r for r in read_csv(out / "significance.csv")}
    assert list(tests) == ["Retrain", "Soup", "MMR", "DPP", "CMR", "PHN", "YOTO", "Hypernetwork"]
    assert all(r["outcome"] in ("better", "worse", "tie") and 0 <= float(r["p_value"]) <= 1 for r in tests.values())
    assert (float(tests["MMR"]["p_value"]) < 0.05) == (tests["MMR"]["outcome"] != "tie")
    curves = read_csv(out / "curves.csv")
    methods = ["Retrain", "Soup", "MMR", "DPP", "CMR", "PHN", "YOTO", "Hypernetwork", "PaDiRec (γ=0)",
               "PaDiRec (γ=1)"]
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
    top = markdown.splitlines()[2:7]  # the headline, right under the title
    assert [line.split(":")[0] for line in top] == ["- hypervolume at (0, 0)", "- IGD+ to Retrain's front",
                                                    "- w-utility regret", "- Avg.HV (paper)",
                                                    "- PaDiRec on w-utility regret (Wilcoxon signed-rank, paired "
                                                    "(task, seed), p < 0.05)"]
    assert "fixed reference point (NDCG@10, α-NDCG@10) = (0, 0)" in markdown and "## Paired tests" in markdown
    assert "## Held-out weights: the 8 tasks off the sweep's grid" in markdown

    client = MlflowClient()
    reports = mlflow.search_runs(experiment_names=["padirec"], filter_string="tags.`padirec.stage` = 'report'")
    assert len(reports) == 1
    run = client.get_run(reports.iloc[0]["run_id"])
    assert run.data.tags[SWEEP_RUN_TAG] == sweep_run and run.data.params["sweep_run_id"] == sweep_run
    assert run.data.metrics["padirec_avg_hv"] == pytest.approx(float(table["PaDiRec"]["avg_hv"]))
    assert {"retrain_r_a", "cmr_avg_hv", "ablation_padirec_g_1_r_d", "response_padirec_measured_seconds",
            "noise_hypernetwork_abs_delta_ndcg10", "padirec_hv", "padirec_igd_plus", "padirec_regret", "cmr_regret_std",
            "padirec_rho_a", "padirec_seeds", "wilcoxon_padirec_vs_cmr_p_value"} <= set(run.data.metrics)
    assert run.data.metrics["padirec_regret"] == pytest.approx(float(table["PaDiRec"]["regret"]))
    history = client.get_metric_history(run.info.run_id, "curve_mmr_alpha_ndcg10")
    assert sorted(m.step for m in history) == list(range(0, 101, 10))
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} == {f"report/{f}" for f in files}


def test_headline_reports_a_tie_instead_of_a_zero_margin():
    from padirec.evaluation.controllability import headline

    row = {"hv": 0.2, "igd_plus": 0.0, "regret": 0.1, "avg_hv": 0.3}
    table = {"Retrain": dict(row), "MMR": dict(row), "DPP": {**row, "hv": 0.1}}
    lines = headline(table, [])
    assert any("IGD+" in line and "tie at 0 between MMR, DPP" in line for line in lines), lines
    assert any("**MMR** 0.2, ahead of DPP" in line for line in lines), lines


def test_best_of_n_variants_of_padirec_and_retrain_join_the_ablation(tiny_sweep, tmp_path):
    from padirec.diffusion.generator import load_generator
    from padirec.evaluation.report import controllability_report

    dit = DiTTrainConfig(epochs=2, batch_size=6, lr=3e-3, device="cpu", schedule=ScheduleConfig(steps=50),
                         dit=DiTConfig(hidden=32, depth=1, heads=2, ffn=64, freq_dim=32, cond_freq_dim=16))
    checkpoint = train_dit(tiny_sweep["dataset_path"], dit, output_dir=tmp_path / "dit")["checkpoint_path"]
    config = EvaluateConfig(methods=["PaDiRec"], tasks=[0.0, 0.5, 1.0], samplers=["ddim:1"], seeds=2, samples=1,
                            timing_repeats=1, retrain_timing_epochs=0, select=3, select_sampler="dpm:5",
                            select_users=30)
    result = controllability_report(tiny_sweep["backbone"], tiny_sweep["data"], tiny_sweep["arrays"],
                                    {"": load_generator(checkpoint)}, tiny_sweep["adapter"], config, tmp_path / "out",
                                    progress=False)
    assert list(result["ablation"]) == ["Retrain", "PaDiRec", "PaDiRec (best of 3, DPM-5)", "Retrain (best seed)"]
    assert result["ablation"]["PaDiRec (best of 3, DPM-5)"]["seeds"] == 2  # a run per seed, like PaDiRec's
    assert result["ablation"]["Retrain (best seed)"]["seeds"] == 1
    assert list(result["table"]) == ["Retrain", "PaDiRec"]  # the main table is unchanged
    # ... and PaDiRec with selection is tested against every method beside it (issue 14's bar)
    chosen = result["selection"]
    assert chosen["method"] == "PaDiRec (best of 3, DPM-5)"
    assert list(chosen["table"]) == ["Retrain", "PaDiRec", "PaDiRec (best of 3, DPM-5)", "Retrain (best seed)"]
    assert [t["versus"] for t in chosen["significance"]] == ["Retrain", "PaDiRec", "Retrain (best seed)"]
    assert "## With selection: PaDiRec (best of 3, DPM-5) against every method" in result["markdown"]
    top = result["markdown"].split("## Table 1")[0]  # the headline names its tests too
    assert "- PaDiRec (best of 3, DPM-5) on w-utility regret (Wilcoxon" in top
    # Table 2 times the selection too: 3 samples generated and scored on the 30 validation users
    best = [r for r in result["response_times"] if r["what"].startswith("best of 3 (DPM-5)")]
    assert len(best) == 1 and "30 validation users" in best[0]["what"] and best[0]["seconds_mean"] > 0
    with pytest.raises(ValueError, match="select must be >= 0"):
        EvaluateConfig(select=-1)


def test_held_out_tables_score_the_off_grid_tasks_alone():
    from padirec.evaluation.report import held_out_tables

    w_acc = np.linspace(0, 1, 5)
    held = np.array([False, True, False, True, False])
    good = {"w_acc": w_acc, "ndcg10": w_acc, "alpha_ndcg10": 1 - w_acc}
    worse_off_grid = {"w_acc": w_acc, "ndcg10": np.where(held, 0.0, w_acc), "alpha_ndcg10": np.where(held, 0.0,
                                                                                                      1 - w_acc)}
    curves = {"Retrain": good, "PaDiRec": worse_off_grid}
    per_seed = {m: {k: np.atleast_2d(v) for k, v in c.items() if k != "w_acc"} for m, c in curves.items()}
    result = held_out_tables(curves, per_seed, held, ["accuracy", "diversity"], variants=[])
    assert result["tasks"] == 2 and result["significance"] == []
    assert result["table"]["Retrain"]["regret"] == pytest.approx(0.0)
    assert result["table"]["PaDiRec"]["regret"] > 0.3  # all of its loss is on the held-out tasks


def test_selection_tables_test_padirec_with_selection_against_every_method_on_all_and_held_out_tasks():
    from padirec.evaluation.report import selection_tables

    rng = np.random.default_rng(0)
    w_acc = np.linspace(0, 1, 6)
    held = np.array([False, True, False, True, False, True])
    noisy = lambda scale: np.clip(w_acc * scale + rng.normal(0, 0.01, (4, 6)), 0, 1)  # noqa: E731
    per_seed = {"Retrain": {"ndcg10": noisy(0.8), "alpha_ndcg10": 1 - noisy(0.8)},
                "PaDiRec": {"ndcg10": noisy(0.6), "alpha_ndcg10": 0.6 - noisy(0.6) * 0.5},
                "PaDiRec (best of 4, DDIM-3)": {"ndcg10": noisy(1.0) + 0.1, "alpha_ndcg10": 1.1 - noisy(0.5)}}
    curves = {m: {"w_acc": w_acc, **{k: v.mean(0) for k, v in s.items()}} for m, s in per_seed.items()}
    result = selection_tables(curves, per_seed, "PaDiRec (best of 4, DDIM-3)", w_acc, held, ["accuracy", "diversity"])
    assert result["table"]["PaDiRec (best of 4, DDIM-3)"]["regret"] == pytest.approx(0.0, abs=0.02)
    assert {t["versus"]: t["outcome"] for t in result["significance"]} == {"Retrain": "better", "PaDiRec": "better"}
    assert all(t["pairs"] == 24 for t in result["significance"])  # 4 seeds x 6 tasks
    held_tests = result["held_out"]["significance"]
    assert result["held_out"]["tasks"] == 3 and [t["pairs"] for t in held_tests] == [12, 12]
    assert {t["outcome"] for t in held_tests} == {"better"}
