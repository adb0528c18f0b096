"""Every reader on small files the tests write, and on the real data sets."""
import json

import numpy as np
import pytest

from memrec.config import DataConfig
from memrec.data import load_dataset
from memrec.errors import DataFormatError, DatasetNotFoundError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path, **kw):
    return load_dataset(DataConfig(dataset=str(path), download=False, **kw))


def test_atomic_files_with_side_information(tmp_path):
    write(tmp_path / "toy" / "toy.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "u1\ti1\t5\t10\nu1\ti2\t3\t5\nu2\ti1\t4\t7\nu1\ti3\t1\t10\n")
    write(tmp_path / "toy" / "toy.item", "item_id:token\ttitle:token_seq\tclass:token_seq\timage:token\n"
          + "i1\tThe Matrix\tAction SciFi\tm.jpg\ni2\tHeat\tCrime\t\n")
    ds = load(tmp_path / "toy")
    assert ds.name == "toy" and ds.num_users == 2 and ds.num_items == 3
    # u1 sorted by time: i2 (t=5), then i1 and i3 (both t=10) in file order
    assert [ds.item_ids[i] for i in ds.sequence("u1")] == ["i2", "i1", "i3"]
    i1 = ds.item_index("i1")
    assert ds.items.text[i1] == "The Matrix. Action SciFi"
    assert ds.items.category[i1] == "Action SciFi" and ds.items.image[i1] == "m.jpg"
    assert ds.items.text[ds.item_index("i3")] == ""  # no side information for i3
    assert load(tmp_path / "toy", min_rating=4).num_interactions == 2


def test_atomic_split_files_rebuild_truncated_sequences(tmp_path):
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    # u has the sequence 1..6, histories truncated to the last 3 items as UniSRec writes them
    write(tmp_path / "S.train.inter", head + "u\t1 2 3\t4\nu\t1 2\t3\nu\t1\t2\nv\t7\t8\n")
    write(tmp_path / "S.valid.inter", head + "u\t2 3 4\t5\nv\t7 8\t9\n")
    write(tmp_path / "S.test.inter", head + "u\t3 4 5\t6\nv\t7 8 9\t10\n")
    write(tmp_path / "S.item2index", "".join(f"A{i}\t{i}\n" for i in range(1, 11)))
    write(tmp_path / "S.text", "item_id:token\ttext:token_seq\nA6\tsix things\n")
    ds = load(tmp_path)
    assert [ds.item_ids[i] for i in ds.sequence("u")] == [f"A{i}" for i in range(1, 7)]
    assert len(ds.sequence("v")) == 4
    assert ds.items.text[ds.item_index("A6")] == "six things"


def test_atomic_split_files_that_disagree_are_refused(tmp_path):
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(tmp_path / "S.valid.inter", head + "u\t1 2\t3\n")
    write(tmp_path / "S.test.inter", head + "u\t1 9 3\t4\n")
    with pytest.raises(DataFormatError, match="user 'u': expected each row's history to end the items before it"):
        load(tmp_path)


def test_s3rec_lines(tmp_path):
    ds = load(write(tmp_path / "Toy.txt", "1 5 6 7\n2 6 5\n\n"))
    assert ds.num_users == 2 and ds.num_interactions == 5 and ds.timestamps is None
    assert [ds.item_ids[i] for i in ds.sequence("2")] == ["6", "5"]


def test_json_single_file_and_seed_split_layout(tmp_path):
    ds = load(write(tmp_path / "seq.json", json.dumps({"1": [101, 203, 405], "2": ["a", "b"]})))
    assert ds.num_users == 2 and [ds.item_ids[i] for i in ds.sequence("1")] == ["101", "203", "405"]
    folder = tmp_path / "seed"
    write(folder / "train_sequences.json", json.dumps({"1": [1, 2, 3], "2": [4, 5]}))
    write(folder / "val_sequences.json", json.dumps({"1": [4], "2": [4, 5, 6]}))  # alone, or the extended sequence
    write(folder / "test_sequences.json", json.dumps({"1": [5], "2": [7]}))
    ds = load(folder)
    assert [ds.item_ids[i] for i in ds.sequence("1")] == ["1", "2", "3", "4", "5"]
    assert [ds.item_ids[i] for i in ds.sequence("2")] == ["4", "5", "6", "7"]


def test_grouplens_files(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t100\n1\t20\t4\t50\n2\t10\t3\t70\n")
    write(tmp_path / "u.genre", "Action|0\nComedy|1\n\n")
    write(tmp_path / "u.item", "10|Heat (1995)|01-Jan-1995||url|1|0\n20|Babe (1995)|01-Jan-1995||url|0|1\n")
    ds = load(tmp_path)
    assert [ds.item_ids[i] for i in ds.sequence("1")] == ["20", "10"]
    assert ds.items.text[ds.item_index("10")] == "Heat (1995). Action"


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.inter", "user_id:token\titem_id:token\nu1\ti1\nu2\n", r"bad.inter, line 3: expected 2 tab-separated fields \(user_id, item_id\), got 1"),
        ("cols.inter", "user_id:token\trating:float\nu1\t3\n", r"cols.inter, line 1: missing column\(s\) \['item_id'\]"),
        ("num.inter", "user_id:token\titem_id:token\trating:float\nu\ti\tgood\n", r"num.inter, line 2: column 'rating': expected a number, got 'good'"),
        ("type.inter", "user_id\titem_id:token\n", r"type.inter, line 1: header field 'user_id': expected NAME:TYPE"),
        ("empty.inter", "", r"empty.inter: file is empty"),
        ("lines.txt", "1 2 3\n4\n", r"lines.txt, line 2: expected a user id followed by at least one item id"),
        ("dup.txt", "1 2 3\n1 4\n", r"dup.txt, line 2: user '1' appears twice"),
        ("broken.json", '{"1": [1, 2\n', r"broken.json, line \d+: not valid JSON"),
        ("shape.json", '{"1": 5}', r"shape.json: user '1': expected a list of item ids"),
    ],
)
def test_malformed_files_give_one_clear_error(tmp_path, name, text, expected):
    with pytest.raises(DataFormatError, match=expected):
        load(write(tmp_path / name, text))


def test_unknown_name_and_missing_registered_data(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMREC_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError, match=r"unknown data set 'beuty': expected one of \['amazon-scientific', 'beauty'"):
        load_dataset(DataConfig(dataset="beuty"))
    with pytest.raises(DatasetNotFoundError, match="data set 'beauty' not found; looked for .*s3rec/Beauty.txt.*MEMREC_DATA_DIR"):
        load_dataset(DataConfig(dataset="beauty", data_dir=str(tmp_path)))


def test_filter_leaves_nothing(tmp_path):
    path = write(tmp_path / "t.inter", "user_id:token\titem_id:token\trating:float\nu\ti\t1\n")
    with pytest.raises(DataFormatError, match="no interactions left after filtering"):
        load(path, min_rating=3)
    with pytest.raises(DataFormatError, match="needs a rating column"):
        load(write(tmp_path / "n.txt", "1 2 3\n"), min_rating=3)


def test_k_core_is_iterated_until_stable(tmp_path):
    # item c has 1 user; dropping it leaves user w with 1 item, which must go too, and then item b.
    rows = ["u a", "u b", "v a", "v b", "w c", "w b", "x a", "x d"]
    path = write(tmp_path / "k.inter", "user_id:token\titem_id:token\n" + "".join(r.replace(" ", "\t") + "\n" for r in rows))
    ds = load(path, user_core=2, item_core=2)
    assert sorted(ds.user_ids) == ["u", "v"]
    assert sorted(ds.item_ids[1:]) == ["a", "b"]
    for seq in ds.sequences:
        assert len(seq) >= 2
    assert ds.filters == {"user_core": 2, "item_core": 2}


@pytest.mark.parametrize(
    "name, users, items, interactions, text",
    [
        ("ml-100k", 943, 1682, 100_000, True),
        ("amazon-scientific", 8442, 4385, 59_427, True),
        ("beauty", 22_363, 12_101, 198_502, False),
        ("sports", 35_598, 18_357, 296_337, False),
        ("lastfm", 1090, 3646, 52_551, False),
    ],
)
def test_real_data_sets_load_with_their_published_sizes(shared_data, name, users, items, interactions, text):
    ds = load_dataset(DataConfig(dataset=name, data_dir=str(shared_data), download=False))
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (users, items, interactions)
    assert ds.items.has_text is text
    assert all(s.min() >= 1 and s.max() <= ds.num_items for s in ds.sequences)


def test_ml100k_equal_timestamps_keep_file_order(ml100k, shared_data):
    lines = (shared_data / "ml-100k" / "ml-100k.inter").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    user = ml100k.user_ids[0]
    mine = [(float(r[3]), n, r[1]) for n, r in enumerate(rows) if r[0] == user]
    expected = [item for _, _, item in sorted(mine)]  # by time, then file position
    assert [ml100k.item_ids[i] for i in ml100k.sequence(user)] == expected
    stamps = ml100k.timestamps[0]
    assert (np.diff(stamps) >= 0).all() and (np.diff(stamps) == 0).any()
