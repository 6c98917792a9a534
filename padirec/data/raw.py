"""`RawData`: what every reader (and the synthetic generator) returns, before preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class RawData:
    """Interactions, item categories and (where the files have them) item titles and user groups, before
    preprocessing."""

    users: np.ndarray  # raw user ids (int64 or str object array), one per interaction
    items: np.ndarray  # raw item ids, same length
    timestamps: np.ndarray  # float64, same length
    item_categories: dict = field(default_factory=dict)  # raw item id -> list[str] (may be empty)
    source: str = ""  # human description, e.g. "MovieLens 100K at /path"
    item_titles: dict = field(default_factory=dict)  # raw item id -> display title (where the data has one)
    user_groups: dict = field(default_factory=dict)  # raw user id -> group name (e.g. gender), for fairness

    def __len__(self) -> int:
        return len(self.users)
