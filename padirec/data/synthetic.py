"""A seeded synthetic dataset where accuracy and diversity really conflict and order matters.

Items have one or two categories (plus, optionally, many overlapping tags: `extra_categories`, the shape of
catalogues whose items carry a dozen categories) and a Zipf-like popularity. Each user sticks to a couple of
favourite categories (so the accurate list is narrow and a diverse one costs accuracy), and
often follows a fixed successor of the previous item within its category (so a sequential
model beats a popularity count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raw import RawData


@dataclass
class SyntheticConfig:
    n_users: int = 300
    n_items: int = 200
    n_categories: int = 8
    min_len: int = 12
    max_len: int = 40
    favourite_categories: int = 2
    p_favourite: float = 0.85  # next item from a favourite category (popularity-weighted)
    p_sequential: float = 0.5  # next item is the fixed successor of the previous one
    p_second_category: float = 0.3  # share of items with a second category
    extra_categories: float = 0.0  # mean number of further categories per item (Poisson), drawn at random
    zipf_exponent: float = 1.0
    groups: int = 0  # > 0: users fall in that many groups; group g follows the successor map less often, so a
    # backbone serves the groups unequally (what the fairness objective closes)
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.favourite_categories <= self.n_categories <= self.n_items:
            raise ValueError("need 1 <= favourite_categories <= n_categories <= n_items")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError("need 1 <= min_len <= max_len")
        if not all(0 <= p <= 1 for p in (self.p_favourite, self.p_sequential, self.p_second_category)):
            raise ValueError("probabilities must lie in [0, 1]")
        if self.extra_categories < 0:
            raise ValueError(f"extra_categories must be >= 0, got {self.extra_categories}")
        if self.groups < 0 or self.groups == 1:
            raise ValueError(f"groups must be 0 (none) or at least 2, got {self.groups}")


def _draw(cdf: np.ndarray, u: float) -> int:
    return min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(cdf) - 1)


def make_synthetic(config: SyntheticConfig = SyntheticConfig()) -> RawData:
    """Generate users' chronological item sequences with category structure; deterministic per seed."""
    c = config
    rng = np.random.default_rng(c.seed)
    names = [f"c{k:02d}" for k in range(c.n_categories)]

    # items: a balanced primary category, sometimes a second one, Zipf-like popularity
    primary = rng.permutation(np.arange(c.n_items) % c.n_categories)
    shift = rng.integers(1, max(c.n_categories, 2), c.n_items)
    has_second = (rng.random(c.n_items) < c.p_second_category) & (c.n_categories > 1)
    second = np.where(has_second, (primary + shift) % c.n_categories, -1)
    popularity = (1.0 / np.arange(1, c.n_items + 1) ** c.zipf_exponent)[rng.permutation(c.n_items)]
    cdf_all = np.cumsum(popularity)

    # successor map: a random cycle through the items of each primary category
    successor = np.arange(c.n_items)
    for k in range(c.n_categories):
        cycle = rng.permutation(np.flatnonzero(primary == k))
        successor[cycle] = np.roll(cycle, -1)

    # user groups from their own stream: the same seed draws the same coins with or without them
    group = np.random.default_rng([c.seed, 3]).integers(0, max(c.groups, 1), c.n_users)
    p_sequential = c.p_sequential * (1 - 0.6 * group / max(c.groups - 1, 1))  # the last group: 40% of it
    users, items, times = [], [], []
    for u in range(c.n_users):
        favourites = rng.choice(c.n_categories, c.favourite_categories, replace=False)
        pool = np.flatnonzero(np.isin(primary, favourites))
        cdf_pool = np.cumsum(popularity[pool])
        n = int(rng.integers(c.min_len, c.max_len + 1))
        coins = rng.random((n, 3))
        seq = []
        for step in range(n):
            if seq and coins[step, 0] < p_sequential[u]:
                seq.append(successor[seq[-1]])
            elif coins[step, 1] < c.p_favourite:
                seq.append(pool[_draw(cdf_pool, coins[step, 2])])
            else:
                seq.append(_draw(cdf_all, coins[step, 2]))
        # increasing integer timestamps: minutes-to-hours gaps, some day-long breaks
        gaps = rng.integers(30, 3600, n) * np.where(rng.random(n) < 0.2, 24, 1)
        start = 880_000_000 + int(rng.integers(0, 10_000_000))
        users.extend([u + 1] * n)
        items.extend(int(i) + 1 for i in seq)
        times.extend((start + np.cumsum(gaps)).tolist())

    categories = {i + 1: [names[primary[i]]] + ([names[second[i]]] if second[i] >= 0 else [])
                  for i in range(c.n_items)}
    if c.extra_categories > 0:  # drawn after the sequences: the same seed gives the same interactions
        extra = np.random.default_rng([c.seed, 1]).poisson(c.extra_categories, c.n_items)
        for i, n in enumerate(extra):
            tags = np.random.default_rng([c.seed, 2, i]).choice(c.n_categories, min(n, c.n_categories), replace=False)
            categories[i + 1] += [names[k] for k in tags if names[k] not in categories[i + 1]]
    groups = {u + 1: f"g{group[u]}" for u in range(c.n_users)} if c.groups else {}
    return RawData(np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.float64),
                   categories, f"synthetic {c}", user_groups=groups)
