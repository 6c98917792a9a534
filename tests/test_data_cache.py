"""Fingerprints, the Parquet round trip, load_dataset's cache, and the checksum-verified download."""

from __future__ import annotations

import hashlib
import logging
import shutil
import zipfile

import numpy as np
import pytest

from padirec.data import (
    MOVIELENS,
    DataError,
    PreprocessConfig,
    SyntheticConfig,
    download_movielens,
    fingerprint,
    load_dataset,
    load_sequence_data,
    make_synthetic,
    preprocess,
    save_sequence_data,
)
from padirec.data import download as download_module

FIELDS = ("n_users", "n_items", "category_names", "max_len")
ARRAYS = ("item_categories", "seq_offsets", "seq_items", "seq_times", "user_ids", "item_ids")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, dest):
        raise AssertionError(f"tests must not download {url}")

    monkeypatch.setattr(download_module, "fetch", refuse)


def assert_same(a, b):
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def test_fingerprint(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one")
    (tmp_path / "d" / "b.txt").write_text("two")
    base = fingerprint([tmp_path / "d"], {"k": 1})
    assert base == fingerprint([tmp_path / "d"], {"k": 1}) and len(base) == 64
    assert base != fingerprint([tmp_path / "d"], {"k": 2})
    (tmp_path / "d" / "b.txt").write_text("twp")
    assert base != fingerprint([tmp_path / "d"], {"k": 1})
    assert fingerprint([tmp_path / "d" / "a.txt"], {}) != fingerprint([tmp_path / "d" / "b.txt"], {})
    with pytest.raises(DataError, match="missing.csv: file not found"):
        fingerprint([tmp_path / "missing.csv"], {})


@pytest.mark.parametrize("string_ids", [False, True])
def test_round_trip(tmp_path, string_ids):
    raw = make_synthetic(SyntheticConfig(n_users=40, n_items=50, seed=2))
    if string_ids:
        raw.users = np.array([f"u{u}" for u in raw.users], dtype=object)
    data = preprocess(raw, PreprocessConfig(max_len=7))
    back = load_sequence_data(save_sequence_data(data, tmp_path / "entry"))
    assert_same(data, back)
    assert data.item_titles is None and back.item_titles is None  # synthetic items have no titles
    raw.item_titles = {i: f"title {i}" for i in raw.items.tolist()[:5]}
    titled = preprocess(raw, PreprocessConfig(max_len=7))
    assert load_sequence_data(save_sequence_data(titled, tmp_path / "titled")).item_titles == titled.item_titles
    assert sum(bool(t) for t in titled.item_titles) == len(set(raw.item_titles))
    assert np.array_equal(data.train_instances().histories, back.train_instances().histories)
    save_sequence_data(data, tmp_path / "entry")  # overwriting works and leaves no temporary folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry", "titled"]


def test_load_sequence_data_errors(tmp_path):
    import pyarrow.parquet as pq

    data = preprocess(make_synthetic(SyntheticConfig(n_users=20, n_items=30)))
    path = save_sequence_data(data, tmp_path / "entry")
    table = pq.read_table(path / "interactions.parquet")
    items = table.column("item").to_numpy().copy()
    items[3] = data.n_items + 1
    pq.write_table(table.set_column(1, "item", [items]).replace_schema_metadata(table.schema.metadata),
                   path / "interactions.parquet")
    with pytest.raises(DataError, match=f"column 'item': item ids must be in 1..{data.n_items}"):
        load_sequence_data(path)
    (path / "items.parquet").unlink()
    with pytest.raises(DataError, match="items.parquet: file not found"):
        load_sequence_data(path)


def test_load_dataset_caches(tmp_path, caplog):
    cfg = SyntheticConfig(n_users=30, n_items=40, seed=5)
    with caplog.at_level(logging.INFO, logger="padirec.data"):
        first = load_dataset("synthetic", synthetic=cfg, cache_dir=tmp_path)
        assert "cached it at" in caplog.text
        caplog.clear()
        second = load_dataset("synthetic", synthetic=cfg, cache_dir=tmp_path)
        assert "from cache" in caplog.text
    assert_same(first, second)
    assert len(list(tmp_path.iterdir())) == 1
    cfg6 = SyntheticConfig(n_users=30, n_items=40, seed=6)
    other = load_dataset("synthetic", synthetic=cfg6, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2 and not np.array_equal(other.seq_items, first.seq_items)
    load_dataset("synthetic", synthetic=cfg, config=PreprocessConfig(max_len=5), cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3


def test_load_dataset_rebuilds_broken_entry(tmp_path, tiny_ml100k):
    first = load_dataset("ml-100k", tiny_ml100k, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "users.parquet").write_bytes(b"garbage")
    assert_same(first, load_dataset("ml-100k", tiny_ml100k, cache_dir=tmp_path / "cache"))


def test_load_dataset_file_change(tmp_path, tiny_ml100k):
    data = load_dataset("ml-100k", tiny_ml100k, cache_dir=tmp_path / "cache")
    assert data.n_users == 2
    with open(tiny_ml100k / "u.data", "a") as f:
        f.write("".join(f"3\t{i}\t1\t{200 + i}\n" for i in (1, 2, 3)))
    assert load_dataset("ml-100k", tiny_ml100k, cache_dir=tmp_path / "cache").n_users == 3
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_load_dataset_env_dirs(tmp_path, tiny_ml100k, monkeypatch):
    monkeypatch.setenv("PADIREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PADIREC_DATA_DIR", str(tiny_ml100k.parent))  # holds ml-100k/
    assert load_dataset("ml-100k").n_users == 2
    monkeypatch.setenv("PADIREC_DATA_DIR", str(tiny_ml100k))  # holds the files themselves
    assert load_dataset("ml-100k").n_items == 4
    assert (tmp_path / "cache").is_dir()


def test_load_dataset_table(tmp_path):
    inter = tmp_path / "i.csv"
    inter.write_text("user,item,timestamp\n" + "".join(f"u{u},{i},{u * 10 + i}\n" for u in range(3)
                                                       for i in range(1, 6)))
    cats = tmp_path / "c.csv"
    cats.write_text("item,categories\n1,a|b\n2,c\n")
    data = load_dataset("table", inter, cats, cache_dir=tmp_path / "cache")
    assert (data.n_users, data.n_items, data.category_names) == (3, 5, ["a", "b", "c"])
    cats.write_text("item,categories\n1,a|b\n2,d\n")
    assert load_dataset("table", inter, cats, cache_dir=tmp_path / "cache").category_names == ["a", "b", "d"]


# -------------------------------------------------------------------------------------------------
# download, with `fetch` replaced by a copy of a local zip


def make_zip(tmp_path, source_dir):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in source_dir.iterdir():
            zf.write(file, f"ml-100k/{file.name}")
    return archive


def serve(monkeypatch, archive, calls):
    def fetch(url, dest):
        calls.append(url)
        shutil.copy(archive, dest)

    monkeypatch.setattr(download_module, "fetch", fetch)


def test_download_verifies_checksums(tmp_path, tiny_ml100k, monkeypatch):
    archive, calls = make_zip(tmp_path, tiny_ml100k), []
    serve(monkeypatch, archive, calls)
    sha = hashlib.sha256((tiny_ml100k / "u.data").read_bytes()).hexdigest()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = dict(MOVIELENS["ml-100k"], md5=md5, files={"u.data": sha})

    monkeypatch.setitem(MOVIELENS, "ml-100k", dict(spec, md5="0" * 32))
    with pytest.raises(DataError, match="checksum mismatch.*md5"):
        download_movielens("ml-100k", tmp_path / "a")
    assert not (tmp_path / "a" / "ml-100k").exists() and not list((tmp_path / "a").iterdir())

    monkeypatch.setitem(MOVIELENS, "ml-100k", dict(spec, files={"u.data": "0" * 64}))
    with pytest.raises(DataError, match="u.data: checksum mismatch: sha256"):
        download_movielens("ml-100k", tmp_path / "b")

    monkeypatch.setitem(MOVIELENS, "ml-100k", spec)
    target = download_movielens("ml-100k", tmp_path / "c")
    assert target == tmp_path / "c" / "ml-100k" and (target / "u.item").is_file()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["ml-100k"]
    assert len(calls) == 3
    assert download_movielens("ml-100k", tmp_path / "c") == target and len(calls) == 3  # reused


def test_download_used_when_no_local_copy(tmp_path, tiny_ml100k, monkeypatch):
    archive, calls = make_zip(tmp_path, tiny_ml100k), []
    serve(monkeypatch, archive, calls)
    monkeypatch.setitem(MOVIELENS, "ml-100k", dict(MOVIELENS["ml-100k"], files={},
                                                    md5=hashlib.md5(archive.read_bytes()).hexdigest()))
    monkeypatch.setenv("PADIREC_DATA_DIR", str(tmp_path / "data"))
    data = load_dataset("ml-100k", cache_dir=tmp_path / "cache")
    assert data.n_users == 2 and len(calls) == 1 and (tmp_path / "data" / "ml-100k" / "u.data").is_file()


def test_known_checksums(ml100k_dir):
    digest = hashlib.sha256((ml100k_dir / "u.data").read_bytes()).hexdigest()
    assert digest == MOVIELENS["ml-100k"]["files"]["u.data"]
