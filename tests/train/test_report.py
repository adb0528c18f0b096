"""compare_runs: one section per data set, mean ± std over runs that differ only in their seed, paired tests, the chart."""
import json

import numpy as np
import pytest
import yaml
from matplotlib.collections import PolyCollection

from memrec.errors import MemrecError
from memrec.train.evaluate import user_ndcg
from memrec.train.report import compare_pair, compare_runs, group_rows, plot_compare, read_run, t_two_sided_p


def write_run(folder, seed, use_memory, ndcg, model="ur4rec-moe", dataset="ml-100k", valid=(0.1, 0.2, 0.15), seconds=(10.0, 20.0, 30.0)):
    folder.mkdir(parents=True)
    config = {"model": model, "data": {"dataset": dataset, "data_dir": str(folder)},
              "train": {"seed": seed, "lr": 0.001}, "model_config": {"use_memory": use_memory}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    curve = [{"epoch": e, "loss": 5.0 - e, "train_seconds": s, "valid": {"ndcg@10": v}} for e, (v, s) in enumerate(zip(valid, seconds), 1)]
    metrics = {"model": model, "dataset": dataset, "seed": seed, "epochs": len(curve), "best_epoch": 1 + int(np.argmax(valid)),
               "test": {"hit@10": 2 * ndcg, "ndcg@10": ndcg, "mrr@10": ndcg / 2}, "curve": curve}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def rows_of(table: str, start: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith(start)]


def test_runs_that_differ_only_in_seed_are_averaged_and_labelled_by_what_differs(tmp_path):
    mem = [write_run(tmp_path / f"mem-s{s}", s, True, x) for s, x in [(1, 0.10), (2, 0.11), (3, 0.12)]]
    nomem = [write_run(tmp_path / f"nomem-s{s}", s, False, x) for s, x in [(1, 0.20), (2, 0.22)]]
    table = compare_runs(mem + nomem, chart=tmp_path / "c.png")
    with_memory = rows_of(table, "ur4rec-moe (use_memory=True)")[0]  # the table's row (the paired test's comes after)
    without = rows_of(table, "ur4rec-moe (use_memory=False)")[0]
    assert with_memory.split()[2] == "1,2,3" and without.split()[2] == "1,2"
    assert f"{np.mean([0.20, 0.22, 0.24]):.4f} ± {np.std([0.20, 0.22, 0.24], ddof=1):.4f}" in with_memory  # hit@10
    assert f"0.1100 ± {np.std([0.10, 0.11, 0.12], ddof=1):.4f}" in with_memory
    assert f"0.2100 ± {np.std([0.20, 0.22], ddof=1):.4f}" in without
    assert with_memory.split()[3:6] == ["3", "2", "30"]  # epochs, best epoch, seconds to it (10 + 20): the same for every seed
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_settings_another_model_lacks_do_not_label_its_runs(tmp_path):
    runs = [write_run(tmp_path / f"m{s}", s, True, 0.1) for s in (1, 2)]
    runs += [write_run(tmp_path / f"sas{s}", s, True, 0.2, model="sasrec") for s in (1, 2)]
    for folder in runs[2:]:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["model_config"] = {"hidden_size": 64}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    labels = [row.label for row in group_rows([read_run(r) for r in runs])]
    assert labels == ["ur4rec-moe", "sasrec"]  # use_memory and hidden_size each have one value where they exist


def test_a_setting_added_to_the_config_after_older_runs_does_not_split_their_seeds(tmp_path):
    runs = [write_run(tmp_path / f"s{s}", s, True, 0.1) for s in (1, 2, 3)]
    config = yaml.safe_load((runs[2] / "config.yaml").read_text())
    config["memory"] = {"neighbours": {"index": "auto"}}  # a key the older runs' configs do not have
    (runs[2] / "config.yaml").write_text(yaml.safe_dump(config))
    [row] = group_rows([read_run(r) for r in runs])
    assert row.seeds == [1, 2, 3] and row.label == "ur4rec-moe"
    config["train"]["lr"] = 0.01  # a setting all of them have, changed: its own row
    (runs[2] / "config.yaml").write_text(yaml.safe_dump(config))
    assert [row.seeds for row in group_rows([read_run(r) for r in runs])] == [[1, 2], [3]]


def test_runs_of_one_seed_each_get_one_row_per_run(tmp_path):
    runs = [write_run(tmp_path / "a", 1, True, 0.1), write_run(tmp_path / "b", 1, False, 0.2)]
    table = compare_runs(runs)
    rows = rows_of(table, "ur4rec-moe (a)")[:1] + rows_of(table, "ur4rec-moe (b)")
    assert len(rows) == 2 and "±" not in "".join(rows)
    assert "fewer than 2 shared seeds and no per-user ranks" in table  # no test can be made, and it says so


def test_each_data_set_gets_its_own_section_and_panel(tmp_path):
    runs = [write_run(tmp_path / "ml", 1, True, 0.1), write_run(tmp_path / "beauty", 1, True, 0.05, dataset="beauty")]
    table = compare_runs(runs)
    assert "2 runs on 2 data sets" in table
    ml, beauty = table.index("data set ml-100k"), table.index("data set beauty")
    assert ml < table.index("ur4rec-moe (ml)") < beauty < table.index("ur4rec-moe (beauty)")
    sections = {"ml-100k": group_rows([read_run(runs[0])]), "beauty": group_rows([read_run(runs[1])])}
    fig = plot_compare(sections, tmp_path / "c.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["data set: ml-100k", "data set: beauty"]
    assert "2 data sets (one panel each)" in fig._suptitle.get_text()
    assert [len(ax.get_lines()) for ax in panels] == [2, 2]  # the curve and its best-point star


def test_the_chart_draws_the_seed_mean_with_a_band_and_stars_the_best_point(tmp_path):
    runs = [write_run(tmp_path / f"s{s}", s, True, 0.1, valid=v) for s, v in [(1, (0.1, 0.2, 0.15)), (2, (0.2, 0.3, 0.1))]]
    rows = group_rows([read_run(r) for r in runs])
    fig = plot_compare({"ml-100k": rows}, None)
    ax = fig.axes[0]
    curve, star = ax.get_lines()
    assert curve.get_ydata().tolist() == pytest.approx([0.15, 0.25, 0.125])
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (2, pytest.approx(0.25))
    [band] = [c for c in ax.collections if isinstance(c, PolyCollection)]
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(0.25 + np.std([0.2, 0.3], ddof=1))
    assert "2 seeds, test NDCG@10 0.1000 ± 0.0000, best epoch 2 of 3" in curve.get_label()


def test_where_some_seeds_stopped_early_the_mean_goes_on_dashed_and_the_best_point_is_among_all_seeds(tmp_path):
    runs = [write_run(tmp_path / "s1", 1, True, 0.1, valid=(0.1, 0.2)), write_run(tmp_path / "s2", 2, True, 0.1, valid=(0.2, 0.3, 0.5, 0.1), seconds=(1, 1, 1, 1))]
    ax = plot_compare({"ml-100k": group_rows([read_run(r) for r in runs])}, None).axes[0]
    every, star, after = (ax.get_lines()[i] for i in (0, 2, 1))
    assert every.get_xdata().tolist() == [1, 2] and every.get_ydata().tolist() == pytest.approx([0.15, 0.25])
    assert after.get_linestyle() == "--" and after.get_xdata().tolist() == [2, 3, 4] and after.get_ydata().tolist() == pytest.approx([0.25, 0.5, 0.1])
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (2, pytest.approx(0.25))  # 0.5 is one seed's, not the mean's


def test_time_axis_is_cumulative_training_seconds_and_old_runs_stay_readable(tmp_path):
    new = write_run(tmp_path / "new", 1, True, 0.1, seconds=(10.0, 20.0, 30.0))
    old = write_run(tmp_path / "old", 1, False, 0.1)
    metrics = json.loads((old / "metrics.json").read_text())
    for epoch in metrics["curve"]:
        del epoch["train_seconds"]  # a run from before per-epoch times: only the mean per epoch
    metrics["train_seconds_per_epoch"] = 7.0
    (old / "metrics.json").write_text(json.dumps(metrics))
    fig = plot_compare({"ml-100k": group_rows([read_run(new), read_run(old)])}, None, x="time")
    new_curve, _, old_curve, _ = fig.axes[0].get_lines()
    assert new_curve.get_xdata().tolist() == [10.0, 30.0, 60.0] and old_curve.get_xdata().tolist() == [7.0, 14.0, 21.0]
    assert fig.axes[0].get_xlabel() == "cumulative training time, validation excluded (s)"
    assert rows_of(compare_runs([new], x="time"), "ur4rec-moe (new)")[0].split()[5] == "30"  # seconds to the best epoch
    del metrics["train_seconds_per_epoch"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(MemrecError, match="logs no training time; use --x epoch"):
        compare_runs([new, old], chart=tmp_path / "t.png", x="time")
    assert compare_runs([new, old], chart=tmp_path / "e.png", x="epoch")  # by epoch it still reads


def test_by_time_seeds_of_different_speeds_are_averaged_at_common_times(tmp_path):
    fast = write_run(tmp_path / "s1", 1, True, 0.1, valid=(0.1, 0.2, 0.3), seconds=(10, 10, 10))  # points at 10, 20, 30 s
    slow = write_run(tmp_path / "s2", 2, True, 0.1, valid=(0.2, 0.4, 0.6), seconds=(20, 20, 20))  # at 20, 40, 60 s
    ax = plot_compare({"ml-100k": group_rows([read_run(fast), read_run(slow)])}, None, x="time").axes[0]
    every, after = ax.get_lines()[:2]
    assert every.get_xdata().tolist() == [20, 30] and every.get_ydata().tolist() == pytest.approx([0.2, 0.3])  # the slow seed read at 30 s: 0.3
    assert after.get_linestyle() == "--" and after.get_xdata().tolist() == [30, 40, 60] and after.get_ydata().tolist() == pytest.approx([0.3, 0.4, 0.6])


def test_models_sharing_seeds_are_tested_over_the_seeds(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    a = {1: 0.100, 2: 0.120, 3: 0.115}
    b = {1: 0.090, 2: 0.100, 3: 0.112, 4: 0.2}  # seed 4 has no partner: left out of the pairs
    runs = [write_run(tmp_path / f"a{s}", s, True, x, model="sasrec") for s, x in a.items()]
    runs += [write_run(tmp_path / f"b{s}", s, True, x, model="gru4rec") for s, x in b.items()]
    sasrec, gru4rec = group_rows([read_run(r) for r in runs])
    result, over = compare_pair(gru4rec, sasrec)
    expected = scipy_stats.ttest_rel([b[s] for s in (1, 2, 3)], [a[s] for s in (1, 2, 3)])
    assert over.startswith("3 shared seeds (1,2,3)")
    assert result["p"] == pytest.approx(expected.pvalue) and result["mean"] == pytest.approx(np.mean([b[s] - a[s] for s in (1, 2, 3)]))
    low, high = expected.confidence_interval(0.95)
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))
    table = compare_runs(runs)
    assert "each row minus gru4rec, the highest mean" in table  # gru4rec's mean includes seed 4
    assert rows_of(table, "sasrec ")[-1].split()[1] == f"{-result['mean']:+.4f}"


def test_runs_that_stored_per_user_ranks_are_tested_per_user(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    users, targets = np.arange(500), rng.integers(1, 100, 500)
    ranks = {name: rng.integers(0, 30, 500) for name in ("a1", "a2", "b1")}
    folders = {"a1": write_run(tmp_path / "a1", 1, True, 0.1, model="sasrec"), "a2": write_run(tmp_path / "a2", 2, True, 0.1, model="sasrec"),
               "b1": write_run(tmp_path / "b1", 1, True, 0.2, model="gru4rec")}
    for name, folder in folders.items():
        np.savez_compressed(folder / "test_ranks.npz", users=users, targets=targets, ranks=ranks[name])
    sasrec, gru4rec = group_rows([read_run(f) for f in folders.values()])
    result, over = compare_pair(sasrec, gru4rec)
    per_user = (user_ndcg(ranks["a1"]) + user_ndcg(ranks["a2"])) / 2 - user_ndcg(ranks["b1"])
    assert over == "500 test users (per-user NDCG@10, each user's mean over a row's seeds)"
    assert result["mean"] == pytest.approx(per_user.mean()) and result["p"] == pytest.approx(scipy_stats.ttest_1samp(per_user, 0).pvalue)
    np.savez_compressed(folders["b1"] / "test_ranks.npz", users=users, targets=targets[::-1], ranks=ranks["b1"])  # other test examples
    assert compare_pair(sasrec, gru4rec)[1].startswith("none")  # not paired per user, and one shared seed only


def test_t_distribution_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for t, df in [(0.3, 1), (2.0, 2), (2.5, 5), (1.1, 12), (4.0, 99), (2.2, 2000)]:
        assert t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-12)


def test_rows_whose_test_figures_use_the_neighbour_memory_say_so(tmp_path):
    runs = [write_run(tmp_path / f"s{s}", s, True, 0.1) for s in (1, 2)]
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    (runs[0] / "metrics.json").write_text(json.dumps({**metrics, "neighbour_memory": {"chosen": {"weight": 0.5}}}))
    [row] = group_rows([read_run(r) for r in runs])
    assert row.label == "ur4rec-moe + neighbour memory (1 of 2 seeds)"


def test_a_run_given_twice_is_not_tested_against_itself(tmp_path):
    run = write_run(tmp_path / "a", 1, True, 0.1)
    table = compare_runs([run, run])
    assert len(rows_of(table, "ur4rec-moe (a)")) == 2 and "paired" not in table


def test_a_folder_without_metrics_is_refused(tmp_path):
    with pytest.raises(MemrecError, match="not a memrec run folder"):
        compare_runs([tmp_path])
    with pytest.raises(MemrecError, match="--x must be one of epoch, time"):
        compare_runs([write_run(tmp_path / "r", 1, True, 0.1)], x="minutes")
