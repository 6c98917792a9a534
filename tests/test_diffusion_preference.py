"""TA-Rec's preference alignment (APA): pairs from the sweep's own ranking, the Diffusion-DPO loss, and
`train-dit --preference-epochs` writing an aligned checkpoint that the generator loads."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY_DIT, cli, dataset_row, write_config, write_dataset

from padirec.cli.generator import add_commands, train_config
from padirec.contracts.artifacts import resolve_generator_file
from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint, save_checkpoint
from padirec.contracts.dataset import dataset_info
from padirec.contracts.dataset import write_dataset as write_gathered_dataset
from padirec.contracts.names import ALIGNED_FILE
from padirec.diffusion import DiffusionSchedule, DiT, DiTConfig, ScheduleConfig
from padirec.diffusion.generator import load_generator
from padirec.diffusion.preference import PreferenceConfig, align_checkpoint, align_file, dpo_loss, preference_pairs
from padirec.models import N_PARAMS


def test_preference_pairs_rank_within_each_w_by_w_utility():
    # w_acc = 1: NDCG alone decides; w_acc = 0: α-NDCG alone; the two rankings are opposite
    w = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    metrics = np.array([[0.3, 0.1], [0.1, 0.9], [0.2, 0.5], [0.3, 0.1], [0.1, 0.9]])
    preferred, other = preference_pairs(w, metrics)
    pairs = set(zip(preferred.tolist(), other.tolist(), strict=True))
    assert pairs == {(0, 1), (0, 2), (2, 1), (4, 3)}  # never across w; higher w-utility first
    preferred, other = preference_pairs(w, metrics, margin=0.6)  # normalised: the gaps are 1, 0.5, 0.5 and 1
    assert set(zip(preferred.tolist(), other.tolist(), strict=True)) == {(0, 1), (4, 3)}
    preferred, _ = preference_pairs(w, metrics, max_pairs_per_w=1)
    assert len(preferred) == 2  # one per w
    assert len(preference_pairs(w[:1], metrics[:1])[0]) == 0
    with pytest.raises(ValueError, match=r"\[N, p\]"):
        preference_pairs(w, metrics[:, :1])


def test_preference_pairs_weigh_the_objectives_on_the_sweeps_common_scale_and_respect_direction():
    # NDCG spans 0.02-0.12 over the sweep, α-NDCG 0.4-0.8: at w = (0.5, 0.5) adapter 3 gains a fifth of NDCG's
    # range for 7.5% of α-NDCG's, so it is the better answer, though raw 0.5·NDCG + 0.5·α-NDCG prefers adapter 2
    w = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    metrics = np.array([[0.12, 0.4], [0.02, 0.8], [0.10, 0.50], [0.12, 0.47]])
    preferred, other = preference_pairs(w, metrics)
    assert (2, 3) not in set(zip(preferred.tolist(), other.tolist(), strict=True))
    assert (3, 2) in set(zip(preferred.tolist(), other.tolist(), strict=True))
    # a minimised metric (a fairness gap): the smaller gap is preferred at w that weighs it alone
    w3 = np.array([[0, 0, 1]] * 2 + [[1, 0, 0]], dtype=np.float32)
    gaps = np.array([[0.1, 0.5, 0.02], [0.1, 0.5, 0.01], [0.2, 0.4, 0.03]])
    preferred, other = preference_pairs(w3, gaps, maximise=[True, True, False])
    assert list(zip(preferred.tolist(), other.tolist(), strict=True)) == [(1, 0)]


def tiny_dit(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    return DiT(DiTConfig(cond_dim=2, **TINY_DIT))


def test_dpo_loss_is_log2_against_itself_and_its_gradient_prefers_the_preferred_adapter():
    schedule = DiffusionSchedule(ScheduleConfig(steps=50))
    model = tiny_dit()
    reference = tiny_dit()
    x_pos, x_neg = torch.randn(8, 137, 8) * 0.5 + 1.0, torch.randn(8, 137, 8) * 0.5 - 1.0
    w = torch.tensor([[0.7, 0.3]]).repeat(8, 1)
    first = torch.Generator().manual_seed(0)
    loss, accuracy = dpo_loss(model, reference, schedule, x_pos, x_neg, w, "v", 1000.0, first)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6) and accuracy.item() == 0.0  # no preference yet
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(30):
        loss, accuracy = dpo_loss(model, reference, schedule, x_pos, x_neg, w, "v", 1000.0,
                                  torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < math.log(2) - 0.1 and accuracy.item() > 0.5

    def error_gap(dit: DiT) -> float:
        """Mean v-error on x⁺ minus on x⁻ at shared t and noise: lower = x⁺ fits better."""
        t, noise = torch.full((8,), 10), torch.randn(x_pos.shape, generator=torch.Generator().manual_seed(99))
        errors = [(dit(schedule.q_sample(x, t, noise), t, w) - schedule.v_target(x, t, noise)).pow(2).mean().item()
                  for x in (x_pos, x_neg)]
        return errors[0] - errors[1]

    with torch.no_grad():
        assert error_gap(model) < error_gap(reference) - 1e-3  # the preferred adapter moved closer, not the other
    assert all(p.grad is None for p in reference.parameters())  # the reference stays frozen


def toy_preference_rows(seed: int = 0) -> list[dict]:
    """Per w, 4 adapters: the ones near +1 have the higher utility, the ones near -1 the lower."""
    rng = np.random.default_rng(seed)
    rows = []
    for w_acc in (0.0, 0.5, 1.0):
        for k, centre in enumerate((1.0, 1.0, -1.0, -1.0)):
            params = centre + rng.normal(0, 0.3, N_PARAMS)
            good = centre > 0
            rows.append(dataset_row(w_acc, params, seed=k, metrics={"val_ndcg10": 0.2 if good else 0.1,
                                                                    "val_alpha_ndcg10": 0.6 if good else 0.4}))
    return rows


def test_train_dit_preference_epochs_writes_an_aligned_checkpoint(mlflow_store, tmp_path):
    path = write_dataset(toy_preference_rows(), tmp_path / "data")
    config = write_config(tmp_path, epochs=2, batch_size=6, schedule={"steps": 50})
    summary = cli(["train-dit", "--dataset-path", str(path), "--workers", "0", "--config", str(config),
                       "--storage-path", str(tmp_path / "runs"), "--name", "apa", "--no-register",
                       "--preference-epochs", "2", "--preference-lr", "1e-3"])
    aligned_path = tmp_path / "runs" / "apa" / ALIGNED_FILE
    assert summary["checkpoint_path"] == str(aligned_path)
    plain, aligned = load_checkpoint(tmp_path / "runs" / "apa" / "dit.pt"), load_checkpoint(aligned_path)
    assert plain.preference is None  # the pretraining checkpoint is kept as it was: resuming continues from it
    assert aligned.preference["config"]["epochs"] == 2 and aligned.preference["metrics"]["preference_pairs"] == 12
    changed = [not torch.equal(aligned.ema["module"][k], plain.ema["module"][k]) for k in plain.ema["module"]]
    assert any(changed)
    generator = load_generator(aligned_path)
    assert generator.generate([[0.5, 0.5]], seed=0).shape == (1, N_PARAMS)
    history = MlflowClient().get_metric_history(summary["run_id"], "preference_loss")
    assert [m.step for m in history] == [0, 1]
    # what the run logged, and what its directory resolves to, is the aligned generator
    assert load_checkpoint(resolve_generator_file(summary["run_id"])).preference is not None
    assert resolve_generator_file(tmp_path / "runs" / "apa") == aligned_path


def test_align_checkpoint_needs_pairs_and_config_rejects_bad_values(tmp_path):
    rows = toy_preference_rows()[:1]
    checkpoint = {"dit_config": {"cond_dim": 2, **TINY_DIT}, "ema": {"module": tiny_dit().state_dict()},
                  "schedule_config": {"steps": 50}, "normalizer": None, "train_config": {"prediction": "v"}}
    with pytest.raises(ValueError, match="no preference pairs"):
        align_checkpoint(checkpoint, np.stack([r["params"] for r in rows]), np.array([r["w"] for r in rows]),
                         np.zeros((1, 2)), PreferenceConfig(epochs=1))
    with pytest.raises(ValueError, match="beta"):
        PreferenceConfig(beta=0)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-dit", "--dataset-path", "a.parquet", "--preference-epochs", "3",
                              "--preference-beta", "500"])
    assert train_config(args).preference == PreferenceConfig(epochs=3, beta=500.0)


def test_align_file_ranks_a_three_objective_sweep_by_its_own_objectives(tmp_path):
    # (accuracy, diversity, fairness): at w = (0, 0, 1) the adapter with the smaller NDCG gap is the better one
    rng = np.random.default_rng(0)
    rows = [{"w": list(w), "seed": s, "epoch": 0, "run_id": f"r-{w}-{s}", "backbone_run_id": "",
             "params": rng.normal(0, 0.3, N_PARAMS).astype(np.float32), "ndcg10": 0.1 + 0.1 * s,
             "alpha_ndcg10": 0.5, "test_ndcg10": 0.0, "test_alpha_ndcg10": 0.0, "ndcg_gap10": 0.01 + 0.01 * s}
            for w in ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)) for s in range(2)]
    dataset = write_gathered_dataset(rows, tmp_path / "data", objectives=["accuracy", "diversity", "fairness"])["path"]
    dit = DiT(DiTConfig(cond_dim=3, **TINY_DIT))
    checkpoint = tmp_path / "dit.pt"
    save_checkpoint(GeneratorCheckpoint(dit_config={"cond_dim": 3, **TINY_DIT}, schedule_config={"steps": 50},
                                        train_config={"prediction": "v"},
                                        normalizer=dataset_info(dataset)["normalizer"], model=dit.state_dict(),
                                        ema={"module": dit.state_dict()}, optimizer={}, epoch=1, dataset_sha256="",
                                        dataset_rows=len(rows)), checkpoint)
    aligned = load_checkpoint(align_file(checkpoint, dataset, PreferenceConfig(epochs=1)))
    assert aligned.preference["metrics"]["preference_pairs"] == 2  # one pair per w, ranked the way each w asks
    pos, neg = preference_pairs(np.array([r["w"] for r in rows]),
                                np.array([[r["ndcg10"], r["alpha_ndcg10"], r["ndcg_gap10"]] for r in rows]),
                                maximise=[True, True, False])
    assert sorted(zip(pos.tolist(), neg.tolist(), strict=True)) == [(1, 0), (2, 3)]
