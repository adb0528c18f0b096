"""benchmarks/assist_eval.py end to end on the small real slice: request detail, k_memory, settings, output name."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import assist_eval  # noqa: E402


def test_default_result_names():
    assert assist_eval.default_name("deterministic") == "assist_deterministic.json"
    assert assist_eval.default_name("deterministic", "top") == "assist_deterministic-top.json"
    assert assist_eval.default_name("smollm2", "leaf", 1) == "assist_smollm2-leaf-k1.json"


def test_vague_requests_and_k_memory_reach_the_run(small_scientific, shared_data, tmp_path, capsys):
    out = tmp_path / "vague.json"
    argv = ["--backend", "deterministic", "--dataset", str(small_scientific), "--data-dir", str(shared_data), "--queries", "10",
            "--train-queries", "20", "--tallrec-limit", "20", "--request-detail", "top", "--k-memory", "1",
            "--settings", "none", "hierarchical", "--output", str(out)]
    assert assist_eval.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Request detail: top; hierarchical memory: top-1 chunks." in printed and "SYNTHETIC" in printed
    result = json.loads(out.read_text())
    assert result["request_detail"] == "top" and result["k_memory"] == 1 and result["config"]["k_memory"] == 1
    sci = result["scientific"]
    assert sci["synthetic"] and "top-level category only" in sci["data"] and sci["queries"] == 10
    assert set(sci["settings"]) == {"none", "hierarchical"}
    assert sci["settings"]["hierarchical"]["memory_tokens"] > 0 and result["tallrec"]["examples"] == 20
    assert result["tallrec"]["settings"]["hierarchical"]["memories_shown"] <= 1


def test_bad_k_memory_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        assist_eval.main(["--k-memory", "0"])
    assert "--k-memory must be at least 1" in capsys.readouterr().err
