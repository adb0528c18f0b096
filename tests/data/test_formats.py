"""Tables with named columns (CSV / TSV with a header, Parquet, MovieLens .dat) on files the tests
write from real ML-100K rows: read as the same sequences as the RecBole files, trained on through the
real command line and Python API, and malformed files refused with one line before anything is written."""
from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import memrec
from memrec.cli import main
from memrec.config import DataConfig
from memrec.data import load_dataset
from memrec.errors import ConfigError, DataFormatError

USERS = 150  # the first users of ML-100K's file: enough for a real run, small enough for a second
TINY = ["--no-frozen", "--train.epochs=1", "--model_config.hidden_size=8", "--model_config.embedding_size=8", "--data.max_len=20"]


@pytest.fixture(scope="module")
def rows(shared_data) -> list[list[str]]:
    """ML-100K's rows (user, item, rating, timestamp) of its first USERS users, in file order."""
    lines = (shared_data / "ml-100k" / "ml-100k.inter").read_text().splitlines()[1:]
    users = list(dict.fromkeys(line.split("\t")[0] for line in lines))[:USERS]
    keep = set(users)
    return [line.split("\t") for line in lines if line.split("\t")[0] in keep]


@pytest.fixture(scope="module")
def titles(shared_data) -> dict[str, tuple[str, str]]:
    """item -> (title with year, genres joined by '|'), as MovieLens's movies.csv writes them."""
    lines = (shared_data / "ml-100k" / "ml-100k.item").read_text(encoding="latin-1").splitlines()[1:]
    return {f[0]: (f"{f[1]} ({f[2]})", "|".join(f[3].split())) for f in (line.split("\t") for line in lines)}


def movielens_folder(folder, rows, titles, header=("userId", "movieId", "rating", "timestamp")):
    """MovieLens's current layout: ratings.csv and movies.csv (titles quoted where they hold commas)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ratings.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    with open(folder / "movies.csv", "w", newline="") as f:
        csv.writer(f).writerows([("movieId", "title", "genres"), *((i, t, g) for i, (t, g) in titles.items())])
    return folder / "ratings.csv"


def as_ids(ds, user):
    return [ds.item_ids[i] for i in ds.sequence(user)]


def test_a_movielens_ratings_csv_reads_as_the_same_sequences_with_titles(ml100k, rows, titles, tmp_path):
    path = movielens_folder(tmp_path / "ml-small", rows, titles)
    ds = load_dataset(DataConfig(dataset=str(path), download=False))
    assert ds.name == "ml-small" and ds.num_users == USERS and ds.num_interactions == len(rows)
    assert ds.origin == {"path": str(path), "name": "ml-small", "format": "csv", "item_file": str(tmp_path / "ml-small" / "movies.csv")}
    for user in ds.user_ids:  # time order, ties in file order: exactly as from the RecBole files
        assert as_ids(ds, user) == as_ids(ml100k, user)
    star_wars = ds.item_index("50")
    assert ds.items.title[star_wars] == "Star Wars (1977)"
    assert ds.items.text[star_wars] == "Star Wars (1977). Action, Adventure, Romance, Sci-Fi, War"
    assert load_dataset(DataConfig(dataset=str(tmp_path / "ml-small"), download=False)).num_interactions == len(rows)  # the folder
    assert load_dataset(DataConfig(dataset=str(path), min_rating=4, download=False)).num_interactions == sum(float(r[2]) >= 4 for r in rows)


def test_train_from_ratings_csv_then_evaluate_and_recommend_by_its_ids(rows, titles, tmp_path, capsys):
    path = movielens_folder(tmp_path / "ml", rows, titles)
    out = tmp_path / "run"
    assert main(["train", "--model", "gru4rec", "--dataset", str(path), "--output", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "ml" and metrics["dataset_stats"]["interactions"] == len(rows)
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", rows[0][0], "-k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)["items"]
    assert [set(r) for r in answer] == [{"rank", "item", "score", "title"}] * 3
    assert all(r["title"] == titles[r["item"]][0] for r in answer)


def test_other_column_names_need_columns_and_are_remembered(rows, titles, tmp_path, capsys):
    path = movielens_folder(tmp_path / "renamed", rows, titles, header=("member", "film", "stars", "when"))
    out = tmp_path / "run"
    assert main(["train", "--model", "gru4rec", "--dataset", str(path), "--output", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err == (f"memrec train: error: {path}, line 1: read as a table with a header (',' separated): no user column: expected a "
                   "header name among user, user_id, userId, uid, reviewerID, customer_id, visitor_id, or one given as --columns "
                   "user=NAME (Python: columns={'user': NAME}); the header is ['member', 'film', 'stars', 'when']\n")
    assert not out.exists()
    columns = ["--columns", "user=member,item=film,rating=stars,time=when"]
    assert main(["train", "--model", "gru4rec", "--dataset", str(path), "--output", str(out), *columns, *TINY]) == 0
    assert "columns:\n    user: member\n    item: film\n    rating: stars\n    time: when" in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", rows[0][0], "-k", "1", "--json"]) == 0  # movies.csv names its item column movieId
    top = json.loads(capsys.readouterr().out)["items"][0]
    assert top["title"] == titles[top["item"]][0]
    assert main(["evaluate", str(out)]) == 0  # the checkpoint's config keeps the columns


def test_a_parquet_file_trains_through_the_python_api(ml100k, rows, tmp_path):
    table = pa.table({"user_id": [int(r[0]) for r in rows], "item_id": [int(r[1]) for r in rows],
                      "rating": [float(r[2]) for r in rows], "timestamp": pa.array([int(r[3]) for r in rows], pa.timestamp("s"))})
    pq.write_table(table, tmp_path / "interactions.parquet")
    rec = memrec.train("gru4rec", str(tmp_path / "interactions.parquet"), tmp_path / "run", frozen=False, epochs=1, hidden_size=8,
                       embedding_size=8, max_len=20, log=None)
    assert rec.metrics["dataset_stats"]["interactions"] == len(rows) and rec.dataset.origin["format"] == "parquet"
    assert all(as_ids(rec.dataset, u) == as_ids(ml100k, u) for u in rec.dataset.user_ids)
    top = rec.recommend(user=rows[0][0], k=2)
    assert len(top) == 2 and all(r.item in ml100k.item_ids[1:] and r.title is None for r in top)  # no item file: no titles


def test_movielens_dat_files_in_latin1(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::661::5::978299000\n")
    (tmp_path / "movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Misérables, Les (1995)::Drama|Musical\n"
                                          .encode("latin-1"))
    ds = load_dataset(DataConfig(dataset=str(tmp_path), download=False))
    assert [ds.item_ids[i] for i in ds.sequence("1")] == ["1193", "661"] and ds.items.title[ds.item_index("661")] == "Misérables, Les (1995)"
    assert ds.items.category[ds.item_index("661")] == "Drama, Musical"


def test_a_tsv_header_in_a_txt_file_iso_dates_and_an_item_file_for_any_format(tmp_path):
    (tmp_path / "log.txt").write_text("user_id\titem_id\ttime\nu\ta\t2021-03-02T10:00:00\nu\tb\t2021-03-01\nv\ta\t2021-01-01 08:00\n")
    ds = load_dataset(DataConfig(dataset=str(tmp_path / "log.txt"), download=False))
    assert ds.origin["format"] == "csv" and as_ids(ds, "u") == ["b", "a"]
    assert ds.timestamps[0].tolist() == [1614556800.0, 1614679200.0]  # 2021-03-01 and 2021-03-02 10:00, UTC
    (tmp_path / "shop.txt").write_text("u a b\nv b\n")  # user item item ... lines, ids only
    (tmp_path / "catalogue.tsv").write_text("asin\tproduct_title\tcategories\na\tA lamp\tHome\n")
    ds = load_dataset(DataConfig(dataset=str(tmp_path / "shop.txt"), item_file=str(tmp_path / "catalogue.tsv"), download=False))
    assert ds.origin["format"] == "s3rec" and ds.items.title[ds.item_index("a")] == "A lamp" and ds.items.title[ds.item_index("b")] == ""


@pytest.mark.parametrize("name, text, expected", [
    ("fields.csv", "user,item\nu,a\nu,b,3\n", r"fields.csv, line 3: read as a table with a header \(',' separated\): expected 2 fields \(user, item\), got 3"),
    ("empty_id.csv", "user,item\nu,a\n,b\n", r"empty_id.csv, line 3: empty user id: expected one in every row"),
    ("rating.csv", "user,item,rating\nu,a,good\n", r"rating.csv, line 2: rating: expected a number, got 'good'"),
    ("time.csv", "user,item,time\nu,a,yesterday\n", r"time.csv, line 2: time: expected a number or an ISO date such as 2020-01-31T12:00:00, got 'yesterday'"),
    ("noitem.csv", "user,product,rating\nu,a,1\n", r"noitem.csv, line 1: .* no item column: expected a header name among item, item_id, .*the header is \['user', 'product', 'rating'\]"),
    ("twice.csv", "user,item_id,asin\nu,a,b\n", r"twice.csv, line 1: .* columns \['item_id', 'asin'\] could each be the item: name one with --columns item=NAME"),
    ("ratings.dat", "1::2::3\n", r"ratings.dat, line 1: read as a MovieLens .dat file: expected 4 '::'-separated fields \(user, item, rating, time\), got 3"),
    ("nohead.csv", "1 2 3\n", r"nohead.csv, line 1: read as a table with a header \(format csv\): expected a header line with columns separated by"),
    ("fake.parquet", "user,item\n", r"fake.parquet: read as Parquet: not a Parquet file"),
])
def test_malformed_tables_give_one_clear_error(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataFormatError, match=expected) as caught:
        load_dataset(DataConfig(dataset=str(tmp_path / name), download=False))
    assert "\n" not in str(caught.value)


def test_columns_are_checked_when_the_config_is_built_and_only_for_tables(tmp_path):
    with pytest.raises(ConfigError, match=r"data.columns: expected role=column name with roles among \['user', 'item', 'rating', 'time'"):
        DataConfig(columns={"usr": "member"})
    (tmp_path / "s.txt").write_text("u a b\n")
    with pytest.raises(ConfigError, match="format s3rec has fixed columns"):
        load_dataset(DataConfig(dataset=str(tmp_path / "s.txt"), columns={"user": "member"}, download=False))
    with pytest.raises(DataFormatError, match=r"cannot tell the format of this folder: expected NAME.inter, .* found \['a.json.bak', 'notes.md'\]"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.md").write_text("x")
        (tmp_path / "empty" / "a.json.bak").write_text("x")
        load_dataset(DataConfig(dataset=str(tmp_path / "empty"), download=False))


def test_a_malformed_file_through_the_cli_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating\n1,10,4\n1,11,five\n")
    out = tmp_path / "run"
    assert main(["train", "--model", "gru4rec", "--dataset", str(tmp_path / "ratings.csv"), "--output", str(out), *TINY]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"memrec train: error: {tmp_path / 'ratings.csv'}, line 3: rating: expected a number, got 'five'\n"
    assert not out.exists()
    assert main(["train", "--dataset", str(tmp_path / "ratings.csv"), "--columns", "user", "--output", str(out)]) == 2
    assert "--columns 'user': expected ROLE=COLUMN pairs separated by commas" in capsys.readouterr().err and not out.exists()
