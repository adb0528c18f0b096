"""`memrec assist build-memory -> ask -> evaluate` end to end on a small real slice."""
from __future__ import annotations

import json

from memrec.cli import main


def test_build_ask_evaluate(small_scientific, shared_data, tmp_path, capsys, monkeypatch):
    from memrec import progress

    monkeypatch.setenv("MEMREC_PROGRESS", "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    memory = tmp_path / "memory"
    assert main(["assist", "build-memory", "--dataset", str(small_scientific), "--output", str(memory),
                 "--queries", "12", "--train-queries", "30"]) == 0
    built = capsys.readouterr()
    assert "12 users" in built.out
    assert all(bar in built.err for bar in ("local memory", "global memory", "embedding memory"))  # the progress bars
    user = json.loads((memory / "queries.jsonl").read_text().splitlines()[0])["user"]

    assert main(["assist", "ask", "--memory", str(memory), "--user", user, "strong glue for wood", "-k", "5", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["user"] == user and len(answer["items"]) == 5
    assert all(m["user"] == user for m in answer["memories"]) and len(answer["memories"]) <= 3
    assert set(answer["timings_ms"]) == {"memory", "llm", "items"}
    assert {"MPC", "MRC", "about_user", "aspects"} <= set(answer) and answer["about_user"].endswith(".")
    assert all("/>" not in i["text"] and not i["text"].startswith("Industrial & Scientific") for i in answer["items"])

    out = tmp_path / "eval.json"
    assert main(["assist", "evaluate", "--memory", str(memory), "--tallrec", str(shared_data / "tallrec-movie" / "test.json"),
                 "--tallrec-limit", "40", "--json", str(out)]) == 0
    evaluated = capsys.readouterr()
    table = evaluated.out
    assert "hierarchical memory" in evaluated.err and "naive memory" in evaluated.err  # a bar per memory setting
    assert "SYNTHETIC" in table and "| hierarchical |" in table and "TALLRec" in table
    result = json.loads(out.read_text())
    assert set(result["scientific"]["settings"]) == {"none", "naive", "static", "hierarchical"}
    assert result["scientific"]["queries"] == 12 and result["tallrec"]["examples"] == 40
    per_answer = result["scientific"]["settings"]["hierarchical"]["per_answer"]  # columns, in the order of the requests
    assert set(per_answer) == {"rank", "MPC", "MRC", "memories_used"} and all(len(v) == 12 for v in per_answer.values())
    assert all((m is None) == (n == 0) for m, n in zip(per_answer["MPC"], per_answer["memories_used"]))

    # vague requests (the top-level category only) for the same users and targets, from the same memory
    assert main(["assist", "evaluate", "--memory", str(memory), "--tallrec", "none", "--request-detail", "top", "--settings", "none,hierarchical",
                 "-k", "1", "--json", str(out)]) == 0
    assert "Request detail: top" in capsys.readouterr().out
    vague = json.loads(out.read_text())
    assert vague["request_detail"] == "top" and vague["k_memory"] == 1 and set(vague["scientific"]["settings"]) == {"none", "hierarchical"}
    assert vague["scientific"]["settings"]["none"]["per_answer"]["memories_used"] == [0] * 12


def test_unknown_user_and_bad_arguments_are_clear_errors(small_scientific, tmp_path, capsys):
    memory = tmp_path / "memory"
    assert main(["assist", "build-memory", "--dataset", str(small_scientific), "--output", str(memory), "--queries", "3", "--train-queries", "5"]) == 0
    capsys.readouterr()
    assert main(["assist", "ask", "--memory", str(memory), "--user", "nobody", "glue"]) == 2
    assert "no local memory for user 'nobody'" in capsys.readouterr().err
    assert main(["assist", "ask", "--memory", str(tmp_path), "--user", "u", "glue"]) == 2
    assert "queries.jsonl" in capsys.readouterr().err
