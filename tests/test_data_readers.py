"""Readers: each format on small files written here, the real ML-100K copy, and every DataError."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from padirec.data import (
    DataError,
    PreprocessConfig,
    preprocess,
    read_interactions_table,
    read_movielens_1m,
    read_movielens_100k,
    read_raw,
    read_rechorus,
)


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# -------------------------------------------------------------------------------------------------
# formats


def test_movielens_100k_small(tiny_ml100k):
    raw = read_movielens_100k(tiny_ml100k)
    assert len(raw) == 12 and raw.users.dtype == np.int64 and raw.timestamps.dtype == np.float64
    assert raw.users[:3].tolist() == [1, 1, 1] and raw.items[:3].tolist() == [1, 2, 3]
    assert raw.item_categories == {1: ["Action"], 2: ["Action", "Comedy"], 3: [], 4: ["unknown"]}
    assert str(tiny_ml100k) in raw.source
    data = preprocess(raw)  # user 3 (2 ratings) dropped; user 1 re-ordered by time
    assert data.n_users == 2 and data.user_ids.tolist() == [1, 2]
    assert data.user_sequence(0).tolist() == [2, 1, 3, 4, 1]
    assert np.all(np.diff(data.seq_times[:5]) > 0)
    assert raw.item_titles[2] == "Movie 2 (1995)"  # the control page shows titles by dense id
    assert data.item_titles[data.item_ids.tolist().index(2)] == "Movie 2 (1995)" and data.item_titles[0] == ""


def test_movielens_1m_small(tmp_path):
    write(tmp_path / "ratings.dat", "1::10::5::300\n1::20::3::100\n2::10::4::50\n")
    movies = "10::Heat: The Movie (1995)::Action|Crime\n20::Été (1990)::(no genres listed)\n"
    write(tmp_path / "movies.dat", movies, encoding="latin-1")
    raw = read_movielens_1m(tmp_path)
    assert raw.users.tolist() == [1, 1, 2] and raw.items.tolist() == [10, 20, 10]
    assert raw.timestamps.tolist() == [300.0, 100.0, 50.0]
    assert raw.item_categories == {10: ["Action", "Crime"], 20: []}
    assert raw.item_titles == {10: "Heat: The Movie (1995)", 20: "Été (1990)"}  # a title may contain '::'


def test_rechorus_small(tmp_path):
    header = "user_id\titem_id\ttime\tneg_items\n"
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t5\t10\n1\t6\t11\n2\t5\t12\n")
    write(tmp_path / "dev.csv", header + "1\t7\t13\t[1, 2, 3]\n2\t6\t14\t[7]\n")
    write(tmp_path / "test.csv", header + "1\t5\t15\t[2]\n2\t7\t16\t[1]\n")
    write(tmp_path / "item_meta.csv", "item_id\ti_category\tc_brand\tr_complement\n"
          "5\t3\tacme\t[6]\n6\t0\t\t[]\n7\t3\t0\t[5, 6]\n")
    raw = read_rechorus(tmp_path)
    assert len(raw) == 7
    assert raw.items.tolist() == [5, 6, 5, 7, 6, 5, 7] and raw.timestamps.tolist() == list(range(10, 17))
    assert raw.item_categories == {5: ["i_category=3", "c_brand=acme"], 6: [], 7: ["i_category=3"]}
    data = preprocess(raw, PreprocessConfig(min_interactions=3))
    assert data.category_names == ["c_brand=acme", "i_category=3"]
    assert data.user_sequence(0).tolist() == [1, 2, 3, 1]  # items 5, 6, 7, 5 in time order


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_generic_table(tmp_path, fmt):
    rows = [("u1", 10, 3.0), ("u1", 11, 1.0), ("u2", 10, 2.0)]
    cats = [(10, ["a", "b"]), (11, [])]
    if fmt == "parquet":
        inter, cat = tmp_path / "i.parquet", tmp_path / "c.parquet"
        pq.write_table(pa.table({"user": [r[0] for r in rows], "item": [r[1] for r in rows],
                                 "timestamp": [r[2] for r in rows], "rating": [1, 2, 3]}), inter)
        pq.write_table(pa.table({"item": [c[0] for c in cats], "title": ["Ten", None],
                                 "categories": pa.array([c[1] for c in cats], pa.list_(pa.string()))}), cat)
    else:
        sep = "," if fmt == "csv" else "\t"
        inter = write(tmp_path / f"i.{fmt}", f"timestamp{sep}user{sep}item\n"
                      + "".join(f"{t}{sep}{u}{sep}{i}\n" for u, i, t in rows))
        cat = write(tmp_path / f"c.{fmt}", f"item{sep}categories{sep}title\n10{sep}a|b{sep}Ten\n11{sep}{sep}\n")
    raw = read_interactions_table(inter, cat)
    assert raw.users.tolist() == ["u1", "u1", "u2"] and raw.users.dtype == object
    assert raw.items.tolist() == [10, 11, 10] and raw.items.dtype == np.int64
    assert raw.timestamps.tolist() == [3.0, 1.0, 2.0]
    assert raw.item_categories == {10: ["a", "b"], 11: []}
    assert raw.item_titles == {10: "Ten"}  # the optional title column; an empty one names nothing
    assert read_raw("table", inter, cat).items.tolist() == [10, 11, 10]
    assert read_interactions_table(inter).item_titles == {}  # no categories table, no titles


def test_read_raw_dispatch(tiny_ml100k):
    assert len(read_raw("ml-100k", tiny_ml100k)) == 12
    assert len(read_raw("synthetic", "ignored")) > 0
    with pytest.raises(ValueError, match="unknown dataset kind"):
        read_raw("ml-20m", tiny_ml100k)


def test_real_movielens_100k(ml100k_dir):
    raw = read_movielens_100k(ml100k_dir)
    assert len(raw) == 100_000 and len(raw.item_categories) == 1682
    data = preprocess(raw)
    assert (data.n_users, data.n_items, len(data.seq_items)) == (943, 1682, 100_000)
    assert len(data.category_names) == 19 and "unknown" in data.category_names
    assert data.item_categories[1:].sum(1).min() >= 1  # every movie has a genre


# -------------------------------------------------------------------------------------------------
# errors: file name and 1-based line (or column) in every message


def test_data_error_message(tmp_path):
    err = DataError("timestamp 'abc' is not a number", tmp_path / "u.data", 17)
    assert str(err) == f"{tmp_path / 'u.data'} line 17: timestamp 'abc' is not a number"
    assert isinstance(err, ValueError) and err.line == 17
    assert str(DataError("bad", "t.parquet", column="user")) == "t.parquet column 'user': bad"


@pytest.mark.parametrize("u_data, message", [
    ("1,2,3,4\n", "u.data line 1: expected 4 tab-separated fields, got 1"),
    ("1\t2\t3\t4\nx\t2\t3\t4\n", "u.data line 2: user id 'x' is not an integer"),
    ("1\t2\t3\t4\n\n1\t2.5\t3\t4\n", "u.data line 3: item id '2.5' is not an integer"),
    ("1\t2\t3\t4\n1\t3\t3\tabc\n", "u.data line 2: timestamp 'abc' is not a number"),
    ("1\t2\t3\tnan\n", "u.data line 1: timestamp 'nan' is not a finite number"),
    ("0\t2\t3\t4\n", "u.data line 1: user id 0 is out of range"),
])
def test_movielens_100k_errors(tiny_ml100k, u_data, message):
    write(tiny_ml100k / "u.data", u_data)
    with pytest.raises(DataError, match=message) as info:
        read_movielens_100k(tiny_ml100k)
    assert str(tiny_ml100k / "u.data") in str(info.value)


def test_movielens_100k_bad_item_file(tiny_ml100k):
    text = (tiny_ml100k / "u.item").read_text(encoding="latin-1").splitlines()
    write(tiny_ml100k / "u.item", "\n".join(text[:2] + [text[2][:-1] + "7"]) + "\n")
    with pytest.raises(DataError, match="u.item line 3: genre flags must be 0 or 1"):
        read_movielens_100k(tiny_ml100k)
    (tiny_ml100k / "u.item").unlink()
    with pytest.raises(DataError, match="u.item: file not found"):
        read_movielens_100k(tiny_ml100k)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="u.data: file not found"):
        read_movielens_100k(tmp_path / "nowhere")
    with pytest.raises(DataError, match="ratings.dat: file not found"):
        read_movielens_1m(tmp_path)


def test_movielens_1m_wrong_separator(tmp_path):
    write(tmp_path / "ratings.dat", "1::10::5::300\n1\t20\t3\t100\n")
    with pytest.raises(DataError, match=r"ratings.dat line 2: expected 4 '::'-separated fields, got 1"):
        read_movielens_1m(tmp_path)


def test_rechorus_errors(tmp_path):
    write(tmp_path / "train.csv", "user_id,item_id,time\n1,5,10\n")
    with pytest.raises(DataError, match="train.csv line 1: missing column 'user_id'"):
        read_rechorus(tmp_path)
    write(tmp_path / "train.csv", "user_id\titem_id\n1\t5\n")
    with pytest.raises(DataError, match="train.csv line 1: missing column 'time'"):
        read_rechorus(tmp_path)
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t5\t10\n1\t5\n")
    with pytest.raises(DataError, match="train.csv line 3: expected 3 tab-separated fields"):
        read_rechorus(tmp_path)
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t5\t10\n1\tbook\t11\n")
    with pytest.raises(DataError, match="train.csv line 3: item id 'book' is not an integer"):
        read_rechorus(tmp_path)
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t5\t10\n")
    with pytest.raises(DataError, match="dev.csv: file not found"):
        read_rechorus(tmp_path)
    write(tmp_path / "dev.csv", "user_id\titem_id\ttime\n")
    write(tmp_path / "test.csv", "user_id\titem_id\ttime\n")
    write(tmp_path / "item_meta.csv", "item_id\tr_complement\n5\t[]\n")
    with pytest.raises(DataError, match="item_meta.csv line 1: no category column"):
        read_rechorus(tmp_path)


def test_table_errors(tmp_path):
    cats = write(tmp_path / "c.csv", "item,categories\n1,a\n")
    inter = write(tmp_path / "i.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match="i.csv line 1: missing column 'timestamp'"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user;item;timestamp\n1;2;3\n")
    with pytest.raises(DataError, match="missing column 'user'.*separated"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n1,2,NaN\n")
    with pytest.raises(DataError, match="i.csv line 3: timestamp 'NaN' is not a finite number"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n,2,4\n")
    with pytest.raises(DataError, match="i.csv line 3: empty user id"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n")
    cats = write(tmp_path / "c.csv", "item,categories\n1,a\nx,b\n")
    with pytest.raises(DataError, match="c.csv line 3: item id 'x' is not an integer"):
        read_interactions_table(inter, cats)
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_interactions_table(tmp_path / "nope.csv", cats)


def test_parquet_errors(tmp_path):
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, None]}), path)
    with pytest.raises(DataError, match="i.parquet column 'timestamp': row 2: timestamp is missing"):
        read_interactions_table(path)
    pq.write_table(pa.table({"user": [1, 2], "timestamp": [1.0, 2.0]}), path)
    with pytest.raises(DataError, match="i.parquet column 'item': missing column 'item'"):
        read_interactions_table(path)
    pq.write_table(pa.table({"user": [1.5, 2.0], "item": [1, 2], "timestamp": [1.0, 2.0]}), path)
    with pytest.raises(DataError, match="user ids must be integers or strings, got double"):
        read_interactions_table(path)
    pq.write_table(pa.table({"user": [1, 2], "item": [1, 2], "timestamp": [1.0, 2.0]}), path)
    cats = tmp_path / "c.parquet"
    pq.write_table(pa.table({"item": [1], "tags": [["a"]]}), cats)
    with pytest.raises(DataError, match="c.parquet column 'categories': missing column 'categories'"):
        read_interactions_table(path, cats)


def test_table_ids_reject_negative_and_non_integer_numbers_with_file_and_line(tmp_path):
    cats = write(tmp_path / "c.csv", "item,categories\n2,a\n")
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n-4,2,4\n")
    with pytest.raises(DataError, match="i.csv line 3: user id '-4' is negative"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user,item,timestamp\nu1,2,3\nu1,NaN,4\n")
    with pytest.raises(DataError, match="i.csv line 3: item id 'NaN' is not an integer"):
        read_interactions_table(inter, cats)
    inter = write(tmp_path / "i.csv", "user,item,timestamp\nu1,2,3\nu1,1.5,4\n")
    with pytest.raises(DataError, match="i.csv line 3: item id '1.5' is not an integer"):
        read_interactions_table(inter, cats)
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"user": [1, -2], "item": [2, 2], "timestamp": [1.0, 2.0]}), path)
    with pytest.raises(DataError, match="i.parquet column 'user': row 2: user id -2 is negative"):
        read_interactions_table(path)


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path):
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n1,3,4\n", encoding="utf-8-sig")
    cats = write(tmp_path / "c.csv", "item,categories\n2,a\n3,b\n", encoding="utf-8-sig")
    assert (tmp_path / "i.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    raw = read_interactions_table(inter, cats)
    assert raw.items.tolist() == [2, 3] and raw.item_categories == {2: ["a"], 3: ["b"]}


def test_a_categories_table_of_unknown_items_is_an_error_and_partly_unknown_a_warning(tmp_path, caplog):
    inter = write(tmp_path / "i.csv", "user,item,timestamp\n1,2,3\n1,3,4\n")
    cats = write(tmp_path / "c.csv", "item,categories\n7,a\n8,b\n")
    with pytest.raises(DataError, match="c.csv: none of its 2 items occurs in the interactions"):
        read_interactions_table(inter, cats)
    cats = write(tmp_path / "c.csv", "item,categories\n2,a\n8,b\n9,c\n")
    with caplog.at_level("WARNING", logger="padirec.data.tables"):
        raw = read_interactions_table(inter, cats)
    assert "2 of 3 items do not occur in the interactions" in caplog.text
    assert "1 interacted items have no categories" in caplog.text
    assert raw.item_categories[2] == ["a"]
