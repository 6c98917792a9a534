"""Preference-weight grids on the simplex and their packing into trial blocks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def simplex_grid(step: float = 0.05, n_objectives: int = 2) -> np.ndarray:
    """All weight vectors with coordinates in multiples of `step` summing to 1, `[G, p]`.

    For p = 2 ordered by w_acc ascending: (0, 1), (0.05, 0.95), ..., (1, 0).
    """
    n = round(1.0 / step)
    if n <= 0 or abs(n * step - 1.0) > 1e-9:
        raise ValueError(f"grid step must divide 1 evenly, got {step}")
    if n_objectives < 2:
        raise ValueError("a preference grid needs at least 2 objectives")
    points = [c for c in itertools.product(range(n + 1), repeat=n_objectives - 1) if sum(c) <= n]
    grid = np.array([[*c, n - sum(c)] for c in points], dtype=np.float64) / n
    return np.round(grid, 10).astype(np.float32)


@dataclass(frozen=True)
class Block:
    """What one Tune trial trains: K grid points sharing one seed (one backbone pass)."""

    block_id: int
    seed: int
    weights: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict:
        return {"block_id": self.block_id, "seed": self.seed, "weights": [list(w) for w in self.weights]}

    @classmethod
    def from_dict(cls, d: dict) -> Block:
        return cls(int(d["block_id"]), int(d["seed"]), tuple(tuple(float(x) for x in w) for w in d["weights"]))


def pack_blocks(grid: np.ndarray, seeds: list[int], pack_size: int) -> list[Block]:
    """Split grid × seeds into blocks of at most `pack_size` weights with one seed each."""
    if pack_size < 1:
        raise ValueError(f"pack_size must be at least 1, got {pack_size}")
    blocks = []
    for seed in seeds:
        for start in range(0, len(grid), pack_size):
            chunk = tuple(tuple(float(x) for x in w) for w in grid[start : start + pack_size])
            blocks.append(Block(len(blocks), int(seed), chunk))
    return blocks


def example_key(weights, seed: int, slot: str) -> str:
    """The identity of one adapter example: no two child runs of a sweep share it. `slot` is one of
    `AdapterConfig.slots()` (`epoch=N` for the last epochs, the keys sweeps have always used; `rank=R`)."""
    return "w=" + ",".join(f"{x:.4f}" for x in weights) + f"|seed={seed}|{slot}"
