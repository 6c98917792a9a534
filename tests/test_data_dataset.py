"""Preprocessing, leave-one-out instances, seen-item masks, negative sampling, synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from padirec.data import (
    DataError,
    PreprocessConfig,
    RawData,
    SyntheticConfig,
    make_synthetic,
    preprocess,
    sample_negatives,
)

# raw user 7: items 10..50 in time order, listed shuffled. Raw user 3: 20, 60, 20, 10, 70, 60, where
# 20 and 10 share a timestamp (file order wins). Raw user 5 has 4 interactions and is dropped, with
# item 99 (and its category "z") that only it touched. Dense items: 10->1 20->2 30->3 40->4 50->5
# 60->6 70->7; dense users: raw 3 -> 0, raw 7 -> 1.
ROWS = [(7, 30, 3), (3, 20, 1), (7, 10, 1), (3, 60, 2), (7, 20, 2), (3, 20, 3), (3, 10, 3), (5, 99, 1),
        (5, 10, 2), (5, 20, 3), (5, 30, 4), (7, 40, 4), (3, 70, 4), (7, 50, 5), (3, 60, 5)]


def hand_raw() -> RawData:
    users, items, times = map(np.array, zip(*ROWS))
    return RawData(users, items, times.astype(np.float64), {10: ["x"], 20: ["y", "x"], 99: ["z"]}, "hand")


@pytest.fixture
def hand():
    return preprocess(hand_raw(), PreprocessConfig(min_interactions=5, max_len=3))


def test_preprocess(hand):
    assert (hand.n_users, hand.n_items) == (2, 7)
    assert hand.user_ids.tolist() == [3, 7] and hand.item_ids.tolist() == [-1, 10, 20, 30, 40, 50, 60, 70]
    assert hand.seq_offsets.tolist() == [0, 6, 11]
    assert hand.user_sequence(0).tolist() == [2, 6, 2, 1, 7, 6]
    assert hand.user_sequence(1).tolist() == [1, 2, 3, 4, 5]
    assert hand.seq_times.tolist() == [1, 2, 3, 3, 4, 5, 1, 2, 3, 4, 5]
    assert hand.category_names == ["x", "y"]
    assert hand.item_categories.dtype == np.float32
    assert hand.item_categories.tolist() == [[0, 0], [1, 0], [1, 1]] + [[0, 0]] * 5
    stats = hand.stats()
    assert stats["interactions"] == 11 and stats["categories"] == 2
    assert stats["avg_sequence_length"] == 5.5 and stats["density"] == pytest.approx(11 / 14)
    assert stats["avg_categories_per_item"] == pytest.approx(3 / 7)


def test_train_instances(hand):
    inst = hand.train_instances()
    assert inst.users.tolist() == [0, 0, 0, 1, 1]
    assert inst.histories.tolist() == [[0, 0, 2], [0, 2, 6], [2, 6, 2], [0, 0, 1], [0, 1, 2]]
    assert inst.targets.tolist() == [6, 2, 1, 2, 3]
    assert inst.times.tolist()[2] == [1, 2, 3] and inst.times.tolist()[3] == [0, 0, 1]
    assert inst.histories.dtype == np.int64 and inst.times.dtype == np.float64
    sub = inst.subset(np.array([4, 0]))
    assert len(sub) == 2 and sub.targets.tolist() == [3, 6] and sub.histories.shape == (2, 3)
    assert len(inst.subset(1)) == 1


def test_eval_instances(hand):
    valid, test = hand.eval_instances("valid"), hand.eval_instances("test")
    assert valid.users.tolist() == [0, 1] and test.users.tolist() == [0, 1]
    assert valid.histories.tolist() == [[6, 2, 1], [1, 2, 3]] and valid.targets.tolist() == [7, 4]
    assert test.histories.tolist() == [[2, 1, 7], [2, 3, 4]] and test.targets.tolist() == [6, 5]
    assert test.times.tolist() == [[3, 3, 4], [2, 3, 4]]
    with pytest.raises(ValueError, match="split"):
        hand.eval_instances("train")


def test_seen_items(hand):
    rows, items = hand.seen_items("valid")
    assert list(zip(rows.tolist(), items.tolist())) == [(0, 1), (0, 2), (0, 6), (1, 1), (1, 2), (1, 3)]
    rows, items = hand.seen_items("test")  # user 0's test target 6 was seen before: not masked
    pairs = list(zip(rows.tolist(), items.tolist()))
    assert pairs == [(0, 1), (0, 2), (0, 7), (1, 1), (1, 2), (1, 3), (1, 4)]


def test_min_interactions_and_errors():
    raw = hand_raw()
    assert preprocess(raw, PreprocessConfig(min_interactions=4)).n_users == 3
    assert preprocess(raw, PreprocessConfig(min_interactions=6)).n_users == 1
    with pytest.raises(DataError, match="no users left: all 3 users have fewer than min_interactions=7"):
        preprocess(raw, PreprocessConfig(min_interactions=7))
    raw.timestamps[4] = np.nan
    with pytest.raises(DataError, match="interaction 5 has timestamp nan"):
        preprocess(raw)
    with pytest.raises(DataError, match="differ in length"):
        preprocess(RawData(np.array([1, 2]), np.array([1]), np.array([1.0]), {}, "bad"))
    with pytest.raises(DataError, match="no interactions"):
        preprocess(RawData(np.array([]), np.array([]), np.array([]), {}, "empty"))
    mixed = np.array([1, "a", 2, 3, 4], dtype=object)
    with pytest.raises(DataError, match="mixed types"):
        preprocess(RawData(mixed, np.arange(5), np.arange(5.0), {}, "mixed"), PreprocessConfig(3))
    with pytest.raises(ValueError, match="min_interactions"):
        PreprocessConfig(min_interactions=2)


def test_string_ids():
    users = np.array(["b", "a", "b", "a", "b", "a"], dtype=object)
    items = np.array(["i2", "i1", "i1", "i3", "i3", "i2"], dtype=object)
    data = preprocess(RawData(users, items, np.arange(6.0), {"i1": ["k"]}, "str"), PreprocessConfig(3))
    assert data.user_ids.tolist() == ["a", "b"] and data.item_ids.tolist() == ["", "i1", "i2", "i3"]
    assert data.user_sequence(0).tolist() == [1, 3, 2]


def test_sample_negatives():
    data = preprocess(make_synthetic(SyntheticConfig(n_users=50, n_items=60, seed=3)))
    inst = data.train_instances()
    rng = np.random.default_rng(0)
    first, second = sample_negatives(data, inst, 9, rng), sample_negatives(data, inst, 9, rng)
    assert first.shape == (len(inst), 9) and first.dtype == np.int64
    assert first.min() >= 1 and first.max() <= data.n_items
    assert not np.array_equal(first, second)  # resampled on every call
    for u in range(data.n_users):
        seen = set(data.user_sequence(u).tolist())
        assert not seen & set(first[inst.users == u].ravel().tolist())
    again = sample_negatives(data, inst, 9, np.random.default_rng(0))
    assert np.array_equal(first, again)


def test_sample_negatives_impossible():
    raw = hand_raw()
    full = RawData(np.concatenate([raw.users, [7, 7]]), np.concatenate([raw.items, [60, 70]]),
                   np.concatenate([raw.timestamps, [6.0, 7.0]]), raw.item_categories, "full")
    data = preprocess(full)
    with pytest.raises(DataError, match="interacted with all 7 items"):
        sample_negatives(data, data.train_instances(), 2, np.random.default_rng(0))


def test_synthetic_deterministic():
    a, b, c = make_synthetic(), make_synthetic(), make_synthetic(SyntheticConfig(seed=1))
    for field in ("users", "items", "timestamps"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.item_categories == b.item_categories
    assert not (len(a) == len(c) and np.array_equal(a.items, c.items))
    assert len(a.item_categories) == 200 and {len(v) for v in a.item_categories.values()} == {1, 2}
    data = preprocess(a)
    assert data.n_users == 300 and len(data.category_names) == 8
    lengths = np.diff(data.seq_offsets)
    assert lengths.min() >= 12 and lengths.max() <= 40
    bounds = zip(data.seq_offsets[:-1], data.seq_offsets[1:])
    assert all(np.all(np.diff(data.seq_times[s:e]) > 0) for s, e in bounds)
    with pytest.raises(ValueError):
        SyntheticConfig(favourite_categories=9)


def test_synthetic_has_structure():
    """Users concentrate on few categories (accuracy vs diversity) and follow successors (order matters)."""
    data = preprocess(make_synthetic())
    share, pairs = [], {}
    for u in range(data.n_users):
        seq = data.user_sequence(u)
        mass = data.item_categories[seq].sum(0)
        share.append(np.sort(mass)[-2:].sum() / mass.sum())
        for a, b in zip(seq[:-1].tolist(), seq[1:].tolist()):
            pairs.setdefault(a, {}).setdefault(b, 0)
            pairs[a][b] += 1
    repeats = sum(max(v.values()) for v in pairs.values()) / sum(sum(v.values()) for v in pairs.values())
    assert np.mean(share) > 0.6  # 2 of 8 categories would get 0.25 without favourites
    assert repeats > 0.4  # the most common successor of an item follows it in ~half the transitions
