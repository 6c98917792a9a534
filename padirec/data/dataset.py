"""Preprocessed leave-one-out sequences, the (history -> target) instances built from them, and
negative sampling.

Layout: items are 1..n_items (0 pads histories), users 0..n_users-1, and every user's
chronological items sit contiguously in `seq_items` (CSR style, `seq_offsets`). The last item of a
sequence is the test target, the second-to-last the validation target, the rest is training data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import DataError
from .raw import RawData

log = logging.getLogger(__name__)
SPLITS = ("valid", "test")


@dataclass
class PreprocessConfig:
    min_interactions: int = 5  # users with fewer are dropped (repeats count; no dedup)
    max_len: int = 20  # history window (negatives per positive are a training setting)

    def __post_init__(self):
        if self.min_interactions < 3:
            raise ValueError("min_interactions must be >= 3: leave-one-out needs train, valid and test items")
        if self.max_len < 1:
            raise ValueError("max_len must be >= 1")


@dataclass(eq=False)
class Instances:
    """A batch-able set of (history -> target) examples."""

    users: np.ndarray  # int64 [N] dense user ids
    histories: np.ndarray  # int64 [N, L], left-padded with 0, most recent item last
    times: np.ndarray  # float64 [N, L] timestamps of the history items (0 where padded)
    targets: np.ndarray  # int64 [N] target item ids (1..n_items)

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, index) -> Instances:
        """The instances at `index` (an index array, boolean mask or slice), e.g. one mini-batch."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        return Instances(self.users[index], self.histories[index], self.times[index], self.targets[index])


@dataclass(eq=False)
class SequenceData:
    """Preprocessed leave-one-out data. Items are 1..n_items (0 = padding); users 0..n_users-1."""

    n_users: int
    n_items: int
    category_names: list[str]
    item_categories: np.ndarray  # float32 [n_items + 1, n_categories] multi-hot; row 0 zeros
    seq_offsets: np.ndarray  # int64 [n_users + 1]
    seq_items: np.ndarray  # int64 [total]
    seq_times: np.ndarray  # float64 [total]
    max_len: int = 20
    user_ids: np.ndarray | None = None  # raw user id per dense id
    item_ids: np.ndarray | None = None  # raw item id per dense id; index 0 is a placeholder (-1 or "")
    item_titles: list[str] | None = None  # display title per dense id ("" where unknown; index 0 ""); None: no titles
    group_names: list[str] | None = None  # user groups (fairness objective); None: the data has none
    user_groups: np.ndarray | None = None  # int64 [n_users]: index into group_names, −1 unknown

    def user_sequence(self, u: int) -> np.ndarray:
        """User u's items in chronological order (train part, then valid and test targets)."""
        return self.seq_items[self.seq_offsets[u]:self.seq_offsets[u + 1]]

    @cached_property
    def _user_of(self) -> np.ndarray:  # dense user id of every position of seq_items
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.seq_offsets))

    @cached_property
    def _interaction_keys(self) -> np.ndarray:  # sorted unique user * (n_items + 1) + item
        return np.unique(self._user_of * (self.n_items + 1) + self.seq_items)

    def _instances(self, target_pos: np.ndarray) -> Instances:
        """Instances whose targets sit at `target_pos`; history = up to max_len earlier items of that user."""
        users = self._user_of[target_pos]
        pos = target_pos[:, None] - self.max_len + np.arange(self.max_len)
        valid = pos >= self.seq_offsets[users][:, None]
        pos = np.where(valid, pos, 0)
        return Instances(users, np.where(valid, self.seq_items[pos], 0),
                         np.where(valid, self.seq_times[pos], 0.0), self.seq_items[target_pos])

    def _target_pos(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.seq_offsets[1:] - (2 if split == "valid" else 1)

    def train_instances(self) -> Instances:
        """Every position t >= 1 of each training part seq[:-2] as a target, with the items before it."""
        local = np.arange(len(self.seq_items)) - self.seq_offsets[self._user_of]
        length = np.diff(self.seq_offsets)[self._user_of]
        return self._instances(np.flatnonzero((local >= 1) & (local < length - 2)))

    def eval_instances(self, split: str) -> Instances:
        """One instance per user: target seq[-2] for "valid", seq[-1] for "test", history = all before it."""
        return self._instances(self._target_pos(split))

    def seen_items(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs to mask in full ranking: items the user had before the split's target,
        the target item itself excluded; row indexes eval_instances(split)."""
        target_pos = self._target_pos(split)
        before = np.arange(len(self.seq_items)) < target_pos[self._user_of]
        rows, items = self._user_of[before], self.seq_items[before]
        keep = items != self.seq_items[target_pos][rows]
        key = np.unique(rows[keep] * (self.n_items + 1) + items[keep])
        return key // (self.n_items + 1), key % (self.n_items + 1)

    def train_counts(self) -> np.ndarray:
        """Training interactions per item `[n_items + 1]` (every position but each user's last two)."""
        position = np.arange(len(self.seq_items))
        training_part = position < np.repeat(self.seq_offsets[1:] - 2, np.diff(self.seq_offsets))
        return np.bincount(self.seq_items[training_part], minlength=self.n_items + 1)

    def tail_items(self, share: float = 0.8) -> np.ndarray:
        """float32 `[n_items + 1]`: 1 for the long tail, the `share` of items with the fewest training interactions
        (the rest is the head; ties broken by item id); 0 for the padding."""
        order = np.lexsort((np.arange(self.n_items), -self.train_counts()[1:]))  # most interactions first
        tail = np.zeros(self.n_items + 1, np.float32)
        tail[1 + order[self.n_items - round(share * self.n_items):]] = 1.0
        return tail

    def groups_of(self, users: np.ndarray) -> np.ndarray:
        """The group index of each dense user id (−1: unknown); an error when the data has no user groups."""
        if self.user_groups is None:
            raise DataError("this dataset has no user groups: the fairness objective needs user attributes "
                            "(MovieLens' gender, or a users table `user,group` given by --users)")
        return self.user_groups[np.asarray(users)]

    def stats(self) -> dict:
        """Headline numbers for logs and reports."""
        n = len(self.seq_items)
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "categories": len(self.category_names),
            "density": n / (self.n_users * self.n_items),
            "avg_sequence_length": n / self.n_users,
            "avg_categories_per_item": float(self.item_categories[1:].sum(1).mean()) if self.n_items else 0.0,
            **({"user_groups": len(self.group_names)} if self.group_names is not None else {}),
        }


def _unique(ids, source: str) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    ids = ids if ids.dtype.kind in "iu" else ids.astype(object)  # raw ids: int64 or Python objects (str)
    try:
        return np.unique(ids, return_inverse=True)
    except TypeError as e:
        raise DataError(f"{source}: ids of mixed types cannot be ordered ({e})") from None


def preprocess(raw: RawData, config: PreprocessConfig = PreprocessConfig()) -> SequenceData:
    """Sort each user's interactions by time, drop short users, re-index users, items, categories densely."""
    n = len(raw.users)
    if not len(raw.items) == n == len(raw.timestamps):
        raise DataError(f"{raw.source}: users, items and timestamps differ in length "
                        f"({n}, {len(raw.items)}, {len(raw.timestamps)})")
    if n == 0:
        raise DataError(f"{raw.source}: no interactions")
    times = np.asarray(raw.timestamps, np.float64)
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise DataError(f"{raw.source}: interaction {bad[0] + 1} has timestamp {times[bad[0]]} "
                        f"({bad.size} non-finite timestamps)")
    user_ids, user_index = _unique(raw.users, raw.source)
    counts = np.bincount(user_index, minlength=len(user_ids))
    keep = counts >= config.min_interactions
    dropped = int((~keep).sum())
    if not keep.any():
        raise DataError(f"{raw.source}: no users left: all {dropped} users have fewer than "
                        f"min_interactions={config.min_interactions} interactions")
    if dropped:
        log.info("%s: dropped %d of %d users with fewer than %d interactions", raw.source, dropped,
                 len(user_ids), config.min_interactions)
    rows = np.flatnonzero(keep[user_index])
    user = (np.cumsum(keep) - 1)[user_index[rows]]
    item_ids, item = _unique(np.asarray(raw.items)[rows], raw.source)
    order = np.lexsort((rows, times[rows], user))  # by user, then time; ties keep file order

    names = sorted({str(c) for i in item_ids.tolist() for c in raw.item_categories.get(i, ())})
    column = {name: k for k, name in enumerate(names)}
    multi_hot = np.zeros((len(item_ids) + 1, len(names)), np.float32)
    for k, i in enumerate(item_ids.tolist(), 1):
        multi_hot[k, [column[str(c)] for c in raw.item_categories.get(i, ())]] = 1.0

    n_users = int(keep.sum())
    group_names, user_groups = None, None
    if raw.user_groups:
        group_names = sorted({str(g) for g in raw.user_groups.values()})
        index = {g: k for k, g in enumerate(group_names)}
        user_groups = np.array([index.get(str(raw.user_groups.get(u, "")), -1) for u in user_ids[keep].tolist()],
                               np.int64)
    placeholder = np.array([-1 if item_ids.dtype.kind in "iu" else ""], dtype=item_ids.dtype)
    return SequenceData(
        n_users=n_users,
        n_items=len(item_ids),
        category_names=names,
        item_categories=multi_hot,
        seq_offsets=np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64),
        seq_items=(item[order] + 1).astype(np.int64),
        seq_times=times[rows][order],
        max_len=config.max_len,
        user_ids=user_ids[keep],
        item_ids=np.concatenate([placeholder, item_ids]),
        item_titles=["", *(str(raw.item_titles.get(i, "")) for i in item_ids.tolist())] if raw.item_titles else None,
        group_names=group_names,
        user_groups=user_groups,
    )


def sample_negatives(data: SequenceData, instances: Instances, n_negatives: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Uniform negatives [N, n_negatives] that the instance's user never interacted with.

    Call it every epoch so that negatives are resampled. Vectorised rejection sampling: only the
    offending entries are redrawn.
    """
    keys, width = data._interaction_keys, data.n_items + 1
    distinct = np.bincount(keys // width, minlength=data.n_users)
    full = np.flatnonzero(distinct[np.unique(instances.users)] >= data.n_items)
    if full.size:
        user = np.unique(instances.users)[full[0]]
        raise DataError(f"user {user} has interacted with all {data.n_items} items: no negatives to sample")
    base = np.repeat(instances.users.astype(np.int64) * width, n_negatives)
    negatives = rng.integers(1, data.n_items + 1, size=base.size)
    todo = np.arange(base.size)
    while todo.size:
        query = base[todo] + negatives[todo]
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        todo = todo[keys[at] == query]
        negatives[todo] = rng.integers(1, data.n_items + 1, size=todo.size)
    return negatives.reshape(len(instances), n_negatives).astype(np.int64)
