"""A collapse check: PaDiRec must follow w on a tiny sweep, and the same bounds must reject generators that do not.

Bounds on r-a, r-d (Pearson against Retrain, the paper's) and w-utility regret, checked on one table with
PaDiRec and two collapsed stand-ins fed through the same `PaDiRec` method and `seed_curves`: a random generator
(a random swept adapter for every request, whatever w) and a constant one (the trained DiT's adapter at
w = (0.5, 0.5) for every w). Both must fail, so the bounds cannot pass vacuously.

The `tiny_sweep` fixture's own adapters take two optimiser steps: its Retrain NDCG@10 moves by 3e-4 across w,
the size of its seed noise, so no r-a bound can tell a follower from noise there. This module trains its own
sweep on the fixture's data and backbone: all 11 task weights (Retrain needs no on-demand training), 2 seeds,
enough steps that both metrics move with w.
"""

from dataclasses import replace

import numpy as np
import pytest
from support import TINY_DIT

from padirec.contracts.dataset import dataset_arrays, read_dataset, write_dataset
from padirec.diffusion import DiTConfig, ScheduleConfig
from padirec.diffusion.generate import task_weights
from padirec.diffusion.generator import Generator, load_generator
from padirec.diffusion.sampling import SamplerConfig, parse_sampler
from padirec.diffusion.train import DiTTrainConfig, train_dit
from padirec.evaluation.baselines import PaDiRec, Retrain, Scorer
from padirec.evaluation.controllability import controllability_table, seed_curves
from padirec.sweep.report import TASKS
from padirec.training import AdapterConfig, train_adapters

pytestmark = pytest.mark.usefixtures("_seed")

R_MIN = 0.9  # Pearson r-a and r-d against Retrain, of the seed-mean curves
REGRET_MAX = 0.1  # mean w-utility regret (utilities min–max normalised over every point of the table)
SEEDS = 2


def follows_w(row: dict) -> dict[str, bool]:
    """Which bounds a table row meets (a NaN r, from a constant curve, meets none)."""
    return {"r_a": row["r_a"] >= R_MIN, "r_d": row["r_d"] >= R_MIN, "regret": row["regret"] <= REGRET_MAX}


class RandomGenerator:
    """A collapsed generator: a random swept adapter for each requested w."""

    def __init__(self, params: np.ndarray):
        self.params = params

    def generate(self, w, sampler: SamplerConfig = SamplerConfig(), seed: int = 0) -> np.ndarray:
        return self.params[np.random.default_rng(seed).integers(len(self.params), size=len(w))]


class ConstantGenerator:
    """A collapsed generator: one adapter (the trained DiT's at w = (0.5, 0.5)) whatever w."""

    def __init__(self, generator: Generator):
        self.generator = generator

    def generate(self, w, sampler: SamplerConfig = SamplerConfig(), seed: int = 0) -> np.ndarray:
        return np.repeat(self.generator.generate(np.array([[0.5, 0.5]]), sampler, seed=seed), len(w), axis=0)


@pytest.fixture(scope="module")
def sweep_with_trade_off(tiny_sweep, tmp_path_factory) -> dict:
    """The fixture's backbone and data, adapters for all 11 tasks x 2 seeds (10 epochs at lr 1e-2, 2 kept),
    and a tiny DiT trained on them."""
    root = tmp_path_factory.mktemp("trade_off")
    backbone, data = tiny_sweep["backbone"], tiny_sweep["data"]
    adapter = AdapterConfig(epochs=10, keep_last=2, lr=1e-2)
    rows = []
    for seed in range(SEEDS):
        result = train_adapters(backbone, data, task_weights(TASKS), replace(adapter, seed=seed), progress=False)
        rows += [{"w": e["w"], "seed": seed, "epoch": e["epoch"], "params": e["params"],
                  "ndcg10": e["val_ndcg10"], "alpha_ndcg10": e["val_alpha_ndcg10"], "test_ndcg10": e["test_ndcg10"],
                  "test_alpha_ndcg10": e["test_alpha_ndcg10"], "backbone_run_id": "",
                  "run_id": f"w{e['w'][0]}-s{seed}-e{e['epoch']}"} for e in result.examples()]
    path = write_dataset(rows, root / "dataset")["path"]
    dit = DiTTrainConfig(epochs=150, batch_size=64, lr=1e-2, ema_decay=0.9, prediction="v", device="cpu",
                         checkpoint_every=1000, schedule=ScheduleConfig(steps=100), dit=DiTConfig(**TINY_DIT))
    generator = load_generator(train_dit(path, dit, output_dir=root / "dit")["checkpoint_path"])
    return {"backbone": backbone, "data": data, "arrays": dataset_arrays(read_dataset(path)[0]),
            "generator": generator}


def test_padirec_follows_w_and_collapsed_generators_fail_the_same_bounds(sweep_with_trade_off):
    sweep = sweep_with_trade_off
    scorer = Scorer.build(sweep["backbone"], sweep["data"], "test")
    weights, sampler = task_weights(TASKS), parse_sampler("ddim:10")[1]
    sources = {"PaDiRec": sweep["generator"], "Random": RandomGenerator(sweep["arrays"]["params"]),
               "Constant": ConstantGenerator(sweep["generator"])}
    runs = {"Retrain": [Retrain(sweep["arrays"])],
            **{name: [PaDiRec(source, sampler, 2, seed, name) for seed in range(SEEDS)]
               for name, source in sources.items()}}
    per_seed = {name: seed_curves(methods, weights, scorer, name == "Retrain") for name, methods in runs.items()}
    curves = {name: {"w_acc": TASKS, **{k: v.mean(0) for k, v in s.items()}} for name, s in per_seed.items()}
    table = controllability_table(curves, per_seed=per_seed)
    values = {m: {k: round(table[m][k], 3) for k in ("r_a", "r_d", "regret")} for m in table}

    assert per_seed["Retrain"]["ndcg10"].shape == (SEEDS, len(TASKS))  # one row per sweep seed
    assert all(follows_w(table["Retrain"]).values()), values
    assert all(follows_w(table["PaDiRec"]).values()), values
    for collapsed in ("Random", "Constant"):
        assert not any(follows_w(table[collapsed]).values()), values  # each bound alone rejects it
    assert np.isnan(table["Constant"]["r_a"]) and np.isnan(table["Constant"]["rho_d"])  # a flat curve has no r or ρ
