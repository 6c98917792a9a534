"""More than two objectives (issue 15): the registry, the fairness and novelty losses and metrics, user groups from
the readers, p-dimensional controllability metrics, and a three-objective pipeline end to end."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import mlflow
import numpy as np
import pytest
import torch
from support import GENRES, write_ml100k

from padirec.data import SyntheticConfig, make_synthetic, preprocess, read_interactions_table, read_movielens_100k
from padirec.data.errors import DataError
from padirec.evaluation.controllability import controllability_table
from padirec.evaluation.ranking import EvalSet, group_gap
from padirec.objectives import GroupMeans, fairness_loss, novelty_loss, resolve_objectives, soft_ranks
from padirec.training import (
    AdapterConfig,
    PretrainConfig,
    calibrate,
    loss_weights,
    pretrain_backbone,
    train_adapters,
)


def test_objectives_must_be_known_distinct_and_start_with_accuracy():
    assert [o.metric for o in resolve_objectives("accuracy,diversity,fairness")] == ["ndcg10", "alpha_ndcg10",
                                                                                     "ndcg_gap10"]
    for bad in (["accuracy", "speed"], ["diversity", "accuracy"], ["accuracy"], ["accuracy", "accuracy"]):
        with pytest.raises(ValueError):
            resolve_objectives(bad)


def test_fairness_loss_is_the_squared_gap_between_the_groups_soft_ndcg_and_its_gradient_closes_it():
    scores = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], requires_grad=True)  # group 0 served, group 1 not
    groups = torch.tensor([0, 1])
    gain = 1 / torch.log2(1 + soft_ranks(scores.detach(), 1.0)[:, 0])
    loss = fairness_loss(scores, groups, temperature=1.0)
    assert float(loss.detach()) == pytest.approx(float(gain[0] - gain[1]) ** 2, rel=1e-5)
    assert float(gain[0] - gain[1]) > 0.1
    loss.backward()
    assert scores.grad[0, 0] > 0 > scores.grad[1, 0]  # descent lowers the served group's positive, raises the other's
    assert float(fairness_loss(scores.detach(), torch.tensor([0, -1]))) == 0.0  # one known group: no gap


def test_fairness_loss_takes_who_is_ahead_from_the_running_means_not_from_one_noisy_batch():
    running = GroupMeans(decay=0.99)
    served = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # group 0 ahead
    for _ in range(20):
        fairness_loss(served, torch.tensor([0, 1]), 1.0, running, n_groups=2)
    flipped = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)  # one batch where 1 is ahead
    loss = fairness_loss(flipped, torch.tensor([0, 1]), 1.0, running, n_groups=2)
    assert float(loss.detach()) < 0  # measured in the running direction: group 0 − group 1, here negative
    loss.backward()
    assert flipped.grad[0, 0] > 0 > flipped.grad[1, 0]  # still lowers group 0 and raises group 1
    assert float(running.means[0] - running.means[1]) > 0  # one batch does not flip the running order


def test_novelty_loss_rewards_putting_tail_items_first():
    tail = torch.tensor([0.0, 0.0, 1.0, 1.0])  # items 2 and 3 are the long tail
    items = torch.tensor([[1, 2, 3]])
    head_first, tail_first = torch.tensor([[3.0, 0.0, -1.0]]), torch.tensor([[-1.0, 3.0, 2.0]])
    assert novelty_loss(tail_first, items, tail) < novelty_loss(head_first, items, tail)


def test_group_gap_and_tail_share_in_rank_metrics():
    values = torch.tensor([[1.0, 0.0, 0.5, 0.5]])
    assert torch.allclose(group_gap(values, torch.tensor([0, 1, 1, -1])), torch.tensor([0.75]))
    data = preprocess(make_synthetic(SyntheticConfig(groups=2)))
    tail = data.tail_items()
    assert tail[0] == 0 and tail.sum() == round(0.8 * data.n_items)
    assert data.train_counts()[tail == 1].max() <= data.train_counts()[1:][tail[1:] == 0].min()
    eval_set = EvalSet.build(data, "test", objectives=["accuracy", "diversity", "fairness", "novelty"])
    assert eval_set.groups.shape == (data.n_users,) and set(eval_set.groups.tolist()) == {0, 1}
    with pytest.raises(DataError, match="no user groups"):
        EvalSet.build(preprocess(make_synthetic()), "test", objectives=["accuracy", "diversity", "fairness"])


def test_synthetic_groups_leave_the_interactions_of_the_default_unchanged():
    plain, grouped = make_synthetic(), make_synthetic(SyntheticConfig(groups=0))
    assert (plain.items == grouped.items).all() and not grouped.user_groups
    assert set(make_synthetic(SyntheticConfig(groups=3)).user_groups.values()) == {"g0", "g1", "g2"}


def test_readers_take_user_groups_and_name_the_bad_line(tmp_path):
    write_ml100k(tmp_path / "ml", [(1, 1, 5, 1), (1, 2, 4, 2), (2, 1, 3, 3)], {1: [GENRES[0]], 2: [GENRES[1]]})
    users = [1, 2]
    (tmp_path / "ml" / "u.user").write_text("".join(f"{u}|24|{'MF'[u % 2]}|other|0000\n" for u in users))
    raw = read_movielens_100k(tmp_path / "ml")
    assert raw.user_groups[users[0]] == "MF"[users[0] % 2]
    (tmp_path / "ml" / "u.user").write_text("1|24|X|other|0000\n")
    with pytest.raises(DataError, match=r"u.user.*line 1.*gender must be M or F"):
        read_movielens_100k(tmp_path / "ml")
    (tmp_path / "i.csv").write_text("user,item,timestamp\n1,1,1\n1,2,2\n2,1,3\n")
    (tmp_path / "u.csv").write_text("user,group\n1,young\n2,old\n")
    assert read_interactions_table(tmp_path / "i.csv", users_path=tmp_path / "u.csv").user_groups == {
        1: "young", 2: "old"}
    (tmp_path / "u.csv").write_text("user,group\n1,young\n1,old\n")
    with pytest.raises(DataError, match=r"u.csv.*line 3.*group 'young' and 'old'"):
        read_interactions_table(tmp_path / "i.csv", users_path=tmp_path / "u.csv")


def test_controllability_table_in_three_objectives_rewards_following_w():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 20)
    retrain = {"w": w, "w_acc": w[:, 0], "ndcg10": 0.1 + 0.1 * w[:, 0], "alpha_ndcg10": 0.5 + 0.3 * w[:, 1],
               "ndcg_gap10": 0.08 - 0.05 * w[:, 2]}
    constant = {k: (np.full(20, v.mean()) if k not in ("w", "w_acc") else v) for k, v in retrain.items()}
    table = controllability_table({"Retrain": retrain, "Constant": constant},
                                  objectives=["accuracy", "diversity", "fairness"])
    row = table["Retrain"]
    assert row["r_a"] == row["r_d"] == row["r_f"] == pytest.approx(1.0)
    assert row["rho_a"] == pytest.approx(1.0) and row["rho_d"] == pytest.approx(1.0)
    assert row["rho_f"] == pytest.approx(-1.0)  # the gap falls as its weight grows
    assert table["Constant"]["regret"] > row["regret"] and row["igd_plus"] == 0
    assert row["hv"] > table["Constant"]["hv"]


@pytest.mark.parametrize("third, metric, label, config", [
    # the DiT in-process here (Ray Train's DDP runs in test_pipeline's two-objective chain and in the slow case)
    ("fairness", "ndcg_gap10", "NDCG_GAP@10", "data: {synthetic_groups: 2}\ndit_workers: 0\n"),
    pytest.param("novelty", "tail10", "Tail@10", "{}\n", marks=pytest.mark.slow),  # no user attributes; Ray Train
])
def test_pipeline_runs_three_objectives_end_to_end(tmp_path, third, metric, label, config):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONUNBUFFERED="1")
    (tmp_path / "c.yaml").write_text(config)
    done = subprocess.run([sys.executable, "-m", "padirec.cli", "pipeline", "--small", "--quiet", "--config", "c.yaml",
                           "--objectives", f"accuracy,diversity,{third}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"ρ({label}, w_{third}) at w_acc" in done.stdout + done.stderr  # the Retrain curve's stage line
    out = tmp_path / "padirec-output"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["rows"] == 15 * 2  # the 0.25 grid on the 3-simplex x 2 kept epochs
    assert list(summary["controllability"]) == ["Retrain", "Soup", "CMR", "PHN", "YOTO", "Hypernetwork", "PaDiRec"]
    short = third[0]
    assert {"r_a", "r_d", f"r_{short}", f"rho_{short}"} <= set(summary["controllability"]["PaDiRec"])
    report = (out / "report" / "controllability.md").read_text()
    assert "Table 3 layout" in report and label in report
    header = (out / "report" / "curves.csv").read_text().splitlines()[0]
    assert header == f"method,w_acc,w_accuracy,w_diversity,w_{third},ndcg10,alpha_ndcg10,{metric}"
    import pyarrow.parquet as pq

    table = pq.read_table(summary["dataset"]["path"])
    assert {"w_accuracy", "w_diversity", f"w_{third}", metric, f"test_{metric}"} <= set(table.column_names)
    assert np.isfinite(table.column(f"test_{metric}").to_numpy()).all()


def test_adapt_takes_one_weight_per_objective(tiny_sweep, mlflow_store):
    from support import cli

    backbone = str(tiny_sweep["backbone_path"])
    report = cli(["adapt", "--backbone-run", backbone, "--objectives", "accuracy,diversity,novelty",
                  "--weights", "0.5,0.3,0.2", "--epochs", "1", "--keep-last", "1", "--quiet"])
    assert report["w"] == pytest.approx([0.5, 0.3, 0.2])
    assert 0 <= report["test_tail10"] <= 1
    params = mlflow.get_run(report["run_id"]).data.params
    assert float(params["w_novelty"]) == pytest.approx(0.2) and "novelty" in params["objectives"]
    with pytest.raises(ValueError, match="sum to 1"):
        cli(["adapt", "--backbone-run", backbone, "--objectives", "accuracy,diversity,novelty",
             "--weights", "0.5,0.3,0.3", "--epochs", "1", "--keep-last", "1", "--quiet"])
    with pytest.raises(ValueError, match="one weight per objective"):
        cli(["adapt", "--backbone-run", backbone, "--objectives", "accuracy,diversity,novelty", "--w-acc", "0.5",
             "--epochs", "1", "--keep-last", "1", "--quiet"])
    tchebycheff = cli(["adapt", "--backbone-run", backbone, "--w-acc", "0.3", "--scalarization", "tchebycheff",
                       "--objective-scale", "range", "--epochs", "1", "--keep-last", "1", "--quiet"])
    params = mlflow.get_run(tchebycheff["run_id"]).data.params  # the scale it measured distances on, recorded
    assert params["scalarization"] == "tchebycheff" and float(params["scale.accuracy"]) > 0
    assert {"ideal.accuracy", "ideal.diversity"} <= set(params)
    mapped = cli(["adapt", "--backbone-run", backbone, "--w-acc", "0.3", "--scalarization", "tchebycheff",
                  "--objective-scale", "even", "--map-seeds", "2", "--map-refinements", "1", "--map-ends", "efficient",
                  "--epochs", "1", "--keep-last", "1", "--quiet"])
    params = mlflow.get_run(mapped["run_id"]).data.params  # the map's settings and the map they drew, recorded
    assert (params["map_seeds"], params["map_refinements"], params["map_ends"]) == ("2", "1", "efficient")
    assert len(params["weight_map"].split(",")) == 11


def test_best_of_n_selects_by_the_w_utility_of_all_three_objectives(tiny_sweep, tmp_path):
    """`generate --select` (and `evaluate` / `serve --select`, which share `BestOf`) in three objectives: each w
    keeps the sample of best w-utility over NDCG@10, α-NDCG@10 and Tail@10 on the training adapters' range."""
    from dataclasses import replace

    from padirec.contracts.dataset import write_dataset
    from padirec.diffusion.generate import generate_and_evaluate
    from padirec.diffusion.generator import load_generator
    from padirec.diffusion.model import DiTConfig
    from padirec.diffusion.sampling import SamplerConfig
    from padirec.diffusion.schedule import ScheduleConfig
    from padirec.diffusion.train import DiTTrainConfig, train_dit
    from padirec.evaluation.baselines import Scorer
    from padirec.metrics import w_utility_points
    from padirec.training import train_adapters

    objectives = ["accuracy", "diversity", "novelty"]
    backbone, data = tiny_sweep["backbone"], tiny_sweep["data"]
    weights = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.4, 0.3, 0.3]], dtype=np.float32)
    rows = []
    for seed in (0, 1):
        adapter = replace(tiny_sweep["adapter"], seed=seed, objectives=objectives)
        for e in train_adapters(backbone, data, weights, adapter, progress=False).examples():
            rows.append({**{k: e[f"val_{k}"] for k in ("ndcg10", "alpha_ndcg10", "tail10")},
                         **{f"test_{k}": e[f"test_{k}"] for k in ("ndcg10", "alpha_ndcg10", "tail10")},
                         "w": e["w"], "seed": seed, "epoch": e["epoch"], "params": e["params"],
                         "backbone_run_id": "", "run_id": f"{e['w']}-{seed}-{e['epoch']}"})
    path = write_dataset(rows, tmp_path / "data", objectives=objectives)["path"]
    dit = DiTTrainConfig(epochs=2, batch_size=8, lr=3e-3, device="cpu", schedule=ScheduleConfig(steps=50),
                         dit=DiTConfig(hidden=32, depth=1, heads=2, ffn=64, freq_dim=32, cond_freq_dim=16))
    generator = load_generator(train_dit(path, dit, output_dir=tmp_path / "dit")["checkpoint_path"])
    bounds = generator.metadata["utility_bounds"]  # (lo, hi) of each objective's validation metric
    assert bounds == pytest.approx([f(r[k] for r in rows) for k in ("ndcg10", "alpha_ndcg10", "tail10")
                                    for f in (min, max)])
    sampler = SamplerConfig("ddpm")  # a 2-epoch DiT: its one-step samples barely differ
    chosen = generate_and_evaluate(generator, backbone, data, weights, sampler, select=4, select_users=40)
    candidates = generator.generate(np.repeat(weights, 4, axis=0), sampler, seed=0).reshape(4, 4, -1)
    selector = Scorer.build(backbone, data, "valid", objectives).sample(40, 0)
    picks = []
    for w, row, options in zip(weights, chosen, candidates):
        scores = selector.per_adapter(options)
        points = np.column_stack([scores["ndcg10"], scores["alpha_ndcg10"], scores["tail10"]])
        picks.append(int(np.argmax(w_utility_points(w, points, bounds))))
        assert np.array_equal(row["params"], options[picks[-1]]) and 0 <= row["tail10"] <= 1
    # at the novelty vertex the pick is the sample with the most validation Tail@10
    assert picks[2] == int(np.argmax(selector.per_adapter(candidates[2])["tail10"]))
    assert picks != [0, 0, 0, 0]  # not merely the first sample


def test_range_scales_and_tchebycheff_take_three_objectives():
    """`objective_scale: range` measures each of p objectives' ideal–nadir span from p single-objective adapters
    (the payoff table), so Tchebycheff works on the 3-simplex and each vertex's knob moves its metric."""
    data = preprocess(make_synthetic(SyntheticConfig(n_users=200, n_items=120, seed=3, groups=2)))
    backbone, _ = pretrain_backbone(data, PretrainConfig(epochs=4, patience=2, batch_size=128), progress=False)
    objectives = ["accuracy", "diversity", "fairness"]
    config = calibrate(backbone, data, AdapterConfig(objectives=objectives, objective_scale="range",
                                                     scalarization="tchebycheff", scale_epochs=2))
    assert len(config.scales) == len(config.ideal) == 3 and min(config.scales) > 0
    assert len(config.utility_bounds) == 6  # validation (lo, hi) of NDCG@10, α-NDCG@10, NDCG_GAP@10
    assert all(lo <= hi for lo, hi in zip(config.utility_bounds[0::2], config.utility_bounds[1::2], strict=True))
    vertices = np.eye(3, dtype=np.float32)
    result = train_adapters(backbone, data, vertices, replace(config, epochs=2, keep_last=1), progress=False,
                            eval_splits=("valid",))
    ndcg, alpha, gap = (result.metrics[f"val_{m}"][-1] for m in ("ndcg10", "alpha_ndcg10", "ndcg_gap10"))
    assert alpha[1] == alpha.max() and gap[2] == gap.min()  # the diversity and fairness knobs move their metrics
    assert ndcg[1] == ndcg.min()  # at accuracy's cost (closing the gap can raise the served group's NDCG)
    mapped = calibrate(backbone, data, AdapterConfig(objectives=objectives, objective_scale="even",
                                                     scalarization="tchebycheff", scale_epochs=1))
    assert len(mapped.weight_map) == 11 and len(mapped.utility_bounds) == 6  # drawn on the (accuracy, diversity) edge
    assert mapped.scales == pytest.approx(calibrate(backbone, data, replace(
        mapped, objective_scale="range", scales=[], ideal=[], weight_map=[], utility_bounds=[], scale_epochs=1)).scales)


def test_the_even_map_gives_accuracy_its_loss_weight_and_shares_the_rest_by_w():
    """With more than two objectives the map sets the accuracy loss weight v at w_acc; the others share 1 − v in
    proportion to their w (two objectives: exactly the two-objective map)."""
    squared = [round((k / 10) ** 2, 6) for k in range(11)]
    config = AdapterConfig(objectives=["accuracy", "diversity", "fairness"], weight_map=squared)
    np.testing.assert_allclose(loss_weights([[0.5, 0.3, 0.2], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], config),
                               [[0.25, 0.45, 0.30], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], atol=1e-6)
    ends = replace(config, weight_map=[0.0, *squared[1:-1], 0.97])  # efficient ends: the rest shared equally at 1
    np.testing.assert_allclose(loss_weights([[1.0, 0.0, 0.0]], ends), [[0.97, 0.015, 0.015]], atol=1e-6)
    two = AdapterConfig(weight_map=squared)
    np.testing.assert_allclose(loss_weights([[0.5, 0.5]], two), [[0.25, 0.75]], atol=1e-6)
