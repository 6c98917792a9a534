"""Generator training: the plain loop, Ray Train DDP (2 CPU workers, gloo), the MLflow registry, generation."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY_DIT, cli, dataset_row, write_config, write_dataset

from padirec import tracking
from padirec.config import build
from padirec.contracts.artifacts import resolve_generator_file
from padirec.contracts.checkpoint import load_checkpoint
from padirec.contracts.dataset import dataset_manifest
from padirec.contracts.names import (
    ADAPTER_SHA256_TAG,
    BACKBONE_RUN_TAG,
    CHECKPOINT_SHA256_TAG,
    DATASET_DIR,
    DATASET_FILE,
    DATASET_SHA256_TAG,
    MANIFEST_FILE,
    STAGE_TAG,
    SWEEP_RUN_TAG,
)
from padirec.diffusion import DiTConfig, SamplerConfig
from padirec.diffusion.generate import generate_and_evaluate
from padirec.diffusion.generator import load_generator
from padirec.diffusion.registry import log_and_register
from padirec.diffusion.train import DiTTrainConfig, train_dit
from padirec.evaluation.ranking import EvalSet, rank_metrics
from padirec.models import N_PARAMS, Adapter
from padirec.training import AdapterConfig
from padirec.training import train_adapters as train_adapter_block

SAMPLER = SamplerConfig(method="ddim", steps=10)


def tiny_config(**overrides) -> DiTTrainConfig:
    # v-prediction: on these toy sets eps-prediction learns the w-dependence far more slowly (the mode is
    # decided at the noisiest steps, where the eps loss says little about x0)
    values = {"epochs": 4, "batch_size": 8, "lr": 3e-3, "ema_decay": 0.9, "prediction": "v", "device": "cpu",
              "dit": TINY_DIT, "schedule": {"steps": 100}}
    return build(DiTTrainConfig, values, overrides)


def two_mode_dataset(directory: Path) -> Path:
    """Adapters shifted by +0.5 (w_acc = 1) ... -0.5 (w_acc = 0): what w does is easy to see."""
    rng = np.random.default_rng(0)
    rows = [dataset_row(w_acc, (2 * w_acc - 1) * 0.5 + rng.normal(0, 0.05, N_PARAMS), seed=seed)
            for w_acc in (0.0, 0.25, 0.5, 0.75, 1.0) for seed in range(8)]
    return write_dataset(rows, directory)


@pytest.fixture(scope="module")
def real_setup(tiny_sweep):
    """The tiny pretrained backbone of conftest's `tiny_sweep`, and adapters for 3 weights x 2 kept epochs."""
    backbone, data = tiny_sweep["backbone"], tiny_sweep["data"]
    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], dtype=np.float32)
    result = train_adapter_block(backbone, data, weights, AdapterConfig(epochs=2, keep_last=2), progress=False,
                                 eval_splits=("valid",))
    return {"backbone": backbone, "backbone_path": tiny_sweep["backbone_path"], "data": data,
            "examples": result.examples()}


def real_rows(real_setup, backbone_run_id: str = "") -> list[dict]:
    return [dataset_row(float(e["w"][0]), e["params"], epoch=e["epoch"], backbone_run_id=backbone_run_id,
                        metrics=e) for e in real_setup["examples"]]


def test_plain_training_learns_the_condition_and_resumes_exactly(tmp_path):
    path = two_mode_dataset(tmp_path / "data")
    losses = []
    result = train_dit(path, tiny_config(epochs=60, batch_size=40, checkpoint_every=30),
                       on_epoch=lambda epoch, m: losses.append(m["loss"]), output_dir=tmp_path / "run")
    assert len(losses) == 60 and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])

    checkpoint = torch.load(result["checkpoint_path"], weights_only=True)
    assert {"dit_config", "schedule_config", "train_config", "normalizer", "model", "ema", "optimizer", "epoch",
            "dataset_sha256", "sweep_run_id", "backbone_run_id"} <= checkpoint.keys()
    assert checkpoint["epoch"] == 60 and checkpoint["dataset_sha256"] == tracking.sha256_file(path)
    generator = load_generator(result["checkpoint_path"])
    assert not generator.model.training and generator.model.config == DiTConfig(cond_dim=2, **TINY_DIT)
    adapters = generator.generate(np.array([[1, 0], [0, 1], [1, 0], [0, 1]]), SAMPLER, seed=0)
    assert adapters.shape == (4, N_PARAMS) and adapters.dtype == np.float32
    means = adapters.mean(1)  # denormalised: the data's shift is +0.5 at w_acc = 1 and -0.5 at w_acc = 0
    assert (means[[0, 2]] > 0.25).all() and (means[[1, 3]] < -0.25).all(), means
    assert np.array_equal(generator.generate(np.array([[1, 0]]), SAMPLER, seed=3),
                          generator.generate(np.array([1, 0]), SAMPLER, seed=3))

    # 3 epochs straight == 2 epochs, then continued from the saved checkpoint to 3
    straight = train_dit(path, tiny_config(epochs=3))["checkpoint"]
    train_dit(path, tiny_config(epochs=2), output_dir=tmp_path / "resumed")
    epochs_seen = []
    resumed = train_dit(path, tiny_config(epochs=3), on_epoch=lambda e, m: epochs_seen.append(e),
                        output_dir=tmp_path / "resumed")
    assert epochs_seen == [2] and resumed["checkpoint"].epoch == 3
    for key in ("model",):
        for name, value in getattr(straight, key).items():
            assert torch.equal(value, getattr(resumed["checkpoint"], key)[name]), name
    for name, value in straight.ema["module"].items():
        assert torch.equal(value, resumed["checkpoint"].ema["module"][name]), name
    with pytest.raises(ValueError, match="cannot resume"):
        train_dit(path, tiny_config(epochs=4, dit={**TINY_DIT, "hidden": 64, "heads": 4}),
                  output_dir=tmp_path / "resumed")


def test_generated_adapters_load_into_a_real_backbone(real_setup, tmp_path):
    path = write_dataset(real_rows(real_setup), tmp_path / "data")
    result = train_dit(path, tiny_config(epochs=3, batch_size=6), output_dir=tmp_path / "run")
    generator = load_generator(result["checkpoint_path"])
    rows = generate_and_evaluate(generator, real_setup["backbone"], real_setup["data"], [0.0, 0.3, 1.0], SAMPLER)
    assert [r["w_acc"] for r in rows] == [0.0, 0.3, 1.0] and [r["w_div"] for r in rows] == [1.0, 0.7, 0.0]
    for row in rows:
        assert np.isfinite([row["ndcg10"], row["alpha_ndcg10"]]).all()
        assert 0 <= row["ndcg10"] <= 1 and 0 <= row["alpha_ndcg10"] <= 1
        Adapter().load_flat(row["params"])
    # the rows' metrics are rank_metrics of those very adapters
    again = rank_metrics(real_setup["backbone"], EvalSet.build(real_setup["data"], "test"),
                         torch.as_tensor(np.stack([r["params"] for r in rows])))
    assert np.allclose(again["ndcg10"], [r["ndcg10"] for r in rows])


def test_best_of_n_generation_keeps_the_candidate_with_the_best_validation_utility(real_setup, tmp_path):
    from padirec.evaluation.baselines import Scorer
    from padirec.metrics import w_utility

    rows = real_rows(real_setup)
    path = write_dataset(rows, tmp_path / "data")
    generator = load_generator(train_dit(path, tiny_config(epochs=3, batch_size=6),
                                         output_dir=tmp_path / "run")["checkpoint_path"])
    ndcg, alpha = [r["ndcg10"] for r in rows], [r["alpha_ndcg10"] for r in rows]
    bounds = generator.metadata["utility_bounds"]  # the training adapters' validation range, in the checkpoint
    assert bounds == pytest.approx([min(ndcg), max(ndcg), min(alpha), max(alpha)])
    weights = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    sampler = SamplerConfig("ddpm")  # a 3-epoch DiT: its one-step samples barely differ
    chosen = generate_and_evaluate(generator, real_setup["backbone"], real_setup["data"], weights, sampler,
                                   select=4, select_users=40)
    candidates = generator.generate(np.repeat(weights, 4, axis=0), sampler, seed=0).reshape(2, 4, -1)
    selector = Scorer.build(real_setup["backbone"], real_setup["data"], "valid").sample(40, 0)
    best = []
    for w, row, options in zip(weights, chosen, candidates):
        scores = selector.per_adapter(options)
        utility = w_utility(w, scores["ndcg10"], scores["alpha_ndcg10"], tuple(bounds))
        best.append(int(np.argmax(utility)))
        assert np.array_equal(row["params"], options[best[-1]])
    assert best != [0, 0]  # not merely the first sample
    with pytest.raises(ValueError, match="select must be >= 0"):
        generate_and_evaluate(generator, real_setup["backbone"], real_setup["data"], weights, SAMPLER, select=-1)


def test_registry_logs_registers_and_resolves(mlflow_store, tmp_path, caplog):
    path = two_mode_dataset(tmp_path / "data")
    # `train-dit --workers 0`: the in-process loop, then log + register through log_and_register
    summary = cli(["train-dit", "--dataset-path", str(path), "--workers", "0", "--epochs", "2",
                   "--config", str(write_config(tmp_path, batch_size=40)), "--storage-path", str(tmp_path / "runs"),
                   "--name", "plain"])
    assert summary["version"] == "1" and summary["epoch"] == 2
    run = MlflowClient().get_run(summary["run_id"])
    assert run.data.tags[DATASET_SHA256_TAG] == tracking.sha256_file(path)
    assert run.data.params["train.prediction"] == "v" and run.data.params["dit.hidden"] == "32"
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "loss")] == [0, 1]
    assert run.inputs.dataset_inputs[0].dataset.digest == tracking.sha256_file(path)[:16]

    checkpoint_path = Path(summary["checkpoint_path"])
    run_id, version = log_and_register(checkpoint_path, dataset_manifest(path), alias="staging")
    assert version == "2" and run_id != summary["run_id"]
    client = MlflowClient()
    assert client.get_model_version_by_alias("padirec-dit", "champion").version == 1
    assert client.get_model_version_by_alias("padirec-dit", "staging").version == 2

    expected = load_checkpoint(checkpoint_path)
    for reference in [checkpoint_path, checkpoint_path.parent, summary["run_id"], "models:/padirec-dit@champion",
                      "models:/padirec-dit/2", f"runs:/{run_id}/checkpoint/dit.pt"]:
        resolved = resolve_generator_file(reference)
        checkpoint = load_checkpoint(resolved)
        assert resolved.name == "dit.pt" and checkpoint.epoch == 2, reference
        assert all(torch.equal(v, checkpoint.ema["module"][k]) for k, v in expected.ema["module"].items())
    assert client.get_run(run_id).data.tags[CHECKPOINT_SHA256_TAG] == tracking.sha256_file(checkpoint_path)
    assert "no recorded sha256" not in caplog.text  # every download above was verified
    with pytest.raises(FileNotFoundError):
        resolve_generator_file(tmp_path / "missing" / "dit.pt")

    model = mlflow.pyfunc.load_model("models:/padirec-dit@champion")
    adapters = model.predict(np.array([[0.3, 0.7], [1.0, 0.0]], dtype=np.float32), params={"steps": 5})
    assert adapters.shape == (2, N_PARAMS) and np.isfinite(adapters).all()


def log_backbone(backbone_path: Path) -> str:
    """What `padirec pretrain` leaves in MLflow, for an already trained backbone."""
    with tracking.start_run("backbone", tags={STAGE_TAG: "backbone"}) as run:
        mlflow.log_artifact(str(backbone_path), "backbone")
    return run.info.run_id


def log_sweep(rows: list[dict], dataset_dir: Path) -> str:
    """A sweep run holding a gathered dataset, as `padirec gather` leaves it."""
    with tracking.start_run("sweep", tags={STAGE_TAG: "sweep"}) as run:
        write_dataset(rows, dataset_dir, sweep_run_id=run.info.run_id)
        mlflow.log_artifact(str(dataset_dir / DATASET_FILE), DATASET_DIR)
        mlflow.log_artifact(str(dataset_dir / MANIFEST_FILE), DATASET_DIR)
    return run.info.run_id


def test_ray_train_ddp_registers_generates_and_resumes(mlflow_store, ray_cluster, real_setup, tmp_path):
    backbone_run = log_backbone(real_setup["backbone_path"])
    rows = real_rows(real_setup, backbone_run_id=backbone_run)
    rows += [{**r, "seed": 1, "run_id": r["run_id"] + "-s1"} for r in rows]  # 12 rows: 6 per worker
    sweep_run = log_sweep(rows, tmp_path / "dataset")
    common = ["--sweep", sweep_run, "--workers", "2", "--config", str(write_config(tmp_path, batch_size=4)),
              "--storage-path", str(tmp_path / "ray_results"), "--name", "dit-ddp", "--checkpoint-every", "2"]

    summary = cli(["train-dit", *common, "--epochs", "4"])
    assert summary["version"] == "1" and summary["epoch"] == 4
    client = MlflowClient()
    history = client.get_metric_history(summary["run_id"], "loss")
    assert [m.step for m in history] == list(range(4))
    assert history[-1].value < history[0].value, [m.value for m in history]
    samples = client.get_metric_history(summary["run_id"], "samples")
    assert {m.value for m in samples} == {12.0}  # both workers' rows counted: DDP over 2 shards
    run = client.get_run(summary["run_id"])
    assert run.data.tags[BACKBONE_RUN_TAG] == backbone_run and run.data.tags[SWEEP_RUN_TAG] == sweep_run
    assert json.loads(run.inputs.dataset_inputs[0].dataset.source)["uri"].endswith("/dataset/adapters.parquet")

    checkpoint = load_checkpoint(resolve_generator_file("models:/padirec-dit@champion"))
    assert checkpoint.epoch == 4 and checkpoint.backbone_run_id == backbone_run
    generator = load_generator(resolve_generator_file("models:/padirec-dit@champion"))
    adapters = generator.generate(np.array([[0.2, 0.8], [0.9, 0.1]]), SAMPLER)
    assert adapters.shape == (2, N_PARAMS)
    for flat in adapters:
        Adapter().load_flat(flat)
    metrics = rank_metrics(real_setup["backbone"], EvalSet.build(real_setup["data"], "test"),
                           torch.as_tensor(adapters))
    assert np.isfinite(metrics["ndcg10"]).all() and np.isfinite(metrics["alpha_ndcg10"]).all()

    # `padirec generate`: backbone (and its data) found through the generator's lineage
    output = tmp_path / "adapter.npy"
    report = cli(["generate", "--w-acc", "0.3", "--steps", "10", "--output", str(output)])
    assert report["w_acc"] == 0.3 and report["backbone_run_id"] == backbone_run
    assert np.isfinite([report["ndcg10"], report["alpha_ndcg10"]]).all()
    assert np.load(output).shape == (N_PARAMS,)
    logged = client.get_run(report["run_id"])
    assert tracking.sha256_file(output) == logged.data.tags[ADAPTER_SHA256_TAG]

    # same storage path + name: Ray Train continues from the epoch-4 checkpoint
    resumed = cli(["train-dit", *common, "--epochs", "5"])
    assert resumed["epoch"] == 5 and resumed["version"] == "2"
    assert [m.step for m in client.get_metric_history(resumed["run_id"], "loss")] == [4]
    assert client.get_model_version_by_alias("padirec-dit", "champion").version == 2
    assert load_checkpoint(resolve_generator_file("models:/padirec-dit@champion")).epoch == 5


def test_cpu_shortfall_names_a_cluster_too_small_for_the_workers_and_the_data_read():
    from padirec.diffusion.ray_train import cpu_shortfall

    assert cpu_shortfall(4, 2, 1) is None
    message = cpu_shortfall(2, 2, 1)  # `ray start --num-cpus 2`: both CPUs held by the workers, the read waits
    assert "needs 3 CPUs" in message and "has 2" in message
