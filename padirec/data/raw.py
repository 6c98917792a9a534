"""`RawData`: what every reader (and the synthetic generator) returns, before preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class RawData:
    """Interactions and item categories as read from files, before preprocessing."""

    users: np.ndarray  # raw user ids (int64 or str object array), one per interaction
    items: np.ndarray  # raw item ids, same length
    timestamps: np.ndarray  # float64, same length
    item_categories: dict = field(default_factory=dict)  # raw item id -> list[str] (may be empty)
    source: str = ""  # human description, e.g. "MovieLens 100K at /path"

    def __len__(self) -> int:
        return len(self.users)
