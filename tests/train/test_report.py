"""compare_runs: one row per run, or mean ± std over runs that differ only in their seed."""
import json

import numpy as np
import pytest
import yaml

from memrec.errors import MemrecError
from memrec.train.report import compare_runs


def write_run(folder, seed, use_memory, ndcg):
    folder.mkdir(parents=True)
    config = {"model": "ur4rec-moe", "data": {"dataset": "ml-100k", "data_dir": str(folder)},
              "train": {"seed": seed, "lr": 0.001}, "model_config": {"use_memory": use_memory}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"model": "ur4rec-moe", "dataset": "ml-100k", "seed": seed,
               "test": {"hit@10": 2 * ndcg, "ndcg@10": ndcg, "mrr@10": ndcg / 2},
               "curve": [{"epoch": 1, "valid": {"ndcg@10": ndcg}}]}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_runs_that_differ_only_in_seed_are_averaged_and_labelled_by_what_differs(tmp_path):
    mem = [write_run(tmp_path / f"mem-s{s}", s, True, x) for s, x in [(1, 0.10), (2, 0.11), (3, 0.12)]]
    nomem = [write_run(tmp_path / f"nomem-s{s}", s, False, x) for s, x in [(1, 0.20), (2, 0.22)]]
    table = compare_runs(mem + nomem, chart=tmp_path / "c.png").splitlines()
    assert len(table) == 3  # header + one row per group
    assert table[1].split()[:5] == ["ur4rec-moe", "(use_memory=True)", "ml-100k", "3", f"{0.22:.4f}"]
    assert f"0.1100 ± {np.std([0.10, 0.11, 0.12], ddof=1):.4f}" in table[1]
    assert f"0.2100 ± {np.std([0.20, 0.22], ddof=1):.4f}" in table[2] and "(use_memory=False)" in table[2]
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_settings_another_model_lacks_do_not_label_its_runs(tmp_path):
    runs = [write_run(tmp_path / f"m{s}", s, True, 0.1) for s in (1, 2)]
    for seed in (1, 2):
        folder = write_run(tmp_path / f"sas{seed}", seed, True, 0.2)
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["model"], config["model_config"] = "sasrec", {"hidden_size": 64}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        runs.append(folder)
    rows = compare_runs(runs).splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["ur4rec-moe", "sasrec"]
    assert "=" not in "".join(rows)  # use_memory and hidden_size each have one value where they exist


def test_runs_of_one_seed_each_get_one_row_per_run(tmp_path):
    runs = [write_run(tmp_path / "a", 1, True, 0.1), write_run(tmp_path / "b", 1, False, 0.2)]
    table = compare_runs(runs)
    assert "ur4rec-moe (a)" in table and "ur4rec-moe (b)" in table and "±" not in table


def test_a_folder_without_metrics_is_refused(tmp_path):
    with pytest.raises(MemrecError, match="not a memrec run folder"):
        compare_runs([tmp_path])
