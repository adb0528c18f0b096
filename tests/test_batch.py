"""memrec recommend --all: every user's top-k in chunks, equal to one user at a time, resumable after a crash."""
import subprocess
import sys

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import memrec
from memrec.batch import recommend_all
from memrec.errors import MemrecError


@pytest.fixture(scope="module")
def rec(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("batch") / "run"
    return memrec.train(model="gru4rec", dataset="ml-100k", output=str(out), data_dir=str(shared_data), epochs=1,
                        hidden_size=16, embedding_size=16, log=None)


def test_every_users_top_k_equals_one_user_at_a_time(rec, tmp_path):
    report = recommend_all(rec, tmp_path / "recs.parquet", k=5, chunk=200, log=lambda *_: None)
    table = pq.read_table(tmp_path / "recs.parquet").to_pylist()
    assert report["users"] == rec.dataset.num_users == 943 and report["rows"] == len(table) == 943 * 5
    assert not (tmp_path / "recs.parquet.parts").exists()
    by_user = {}
    for row in table:
        by_user.setdefault(row["user"], []).append(row)
    assert list(by_user) == rec.dataset.user_ids  # users in data-set order, every one once
    for user in ("196", "1", "943", rec.dataset.user_ids[500]):
        alone = rec.recommend(user=user, k=5)
        assert [r["item"] for r in by_user[user]] == [r.item for r in alone] and [r["rank"] for r in by_user[user]] == [1, 2, 3, 4, 5]
        assert [r["score"] for r in by_user[user]] == pytest.approx([r.score for r in alone], rel=1e-6)
        assert not set(r["item"] for r in by_user[user]) & set(rec.dataset.sequence(user))  # history excluded


def test_an_interrupted_run_resumes_where_it_stopped(rec, tmp_path, monkeypatch):
    clean = recommend_all(rec, tmp_path / "clean.csv", k=3, chunk=100, log=lambda *_: None)
    calls, crash = [], [True]
    real = rec.model.recommend

    def crash_on_the_fourth_chunk(batch, k):
        calls.append(len(batch.users))
        if len(calls) == 4 and crash[0]:
            raise RuntimeError("the machine went down")
        return real(batch, k=k)

    monkeypatch.setattr(rec.model, "recommend", crash_on_the_fourth_chunk)
    with pytest.raises(RuntimeError, match="went down"):
        recommend_all(rec, tmp_path / "recs.csv", k=3, chunk=100, log=lambda *_: None)
    assert not (tmp_path / "recs.csv").exists() and len(list((tmp_path / "recs.csv.parts").glob("part-*.parquet"))) == 3
    with pytest.raises(MemrecError, match="unfinished run of another checkpoint, k, chunk size"):
        recommend_all(rec, tmp_path / "recs.csv", k=4, chunk=100, log=lambda *_: None)
    calls.clear()
    crash[0] = False
    report = recommend_all(rec, tmp_path / "recs.csv", k=3, chunk=100, log=lambda *_: None)
    assert calls == [100] * 6 + [43] and report["users_ranked_now"] == 643  # only the chunks not written before
    assert pacsv.read_csv(tmp_path / "recs.csv").equals(pacsv.read_csv(tmp_path / "clean.csv")) and clean["rows"] == 943 * 3


def test_the_command_line_refuses_what_it_cannot_do(rec, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "memrec", "recommend", str(rec.path), *args], capture_output=True, text=True, timeout=120)

    assert "give a file path such as" not in run("--all", "--output", str(tmp_path / "x.parquet"), "-k", "2").stderr
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 943 * 2
    bad = run("--all", "--output", str(tmp_path / "x.txt"))
    assert bad.returncode == 2 and "expected a .parquet or .csv output" in bad.stderr
    assert "drop --user" in run("--all", "--user", "196", "--output", str(tmp_path / "y.csv")).stderr
    assert "give --all with it" in run("--user", "196", "--output", str(tmp_path / "y.csv")).stderr
