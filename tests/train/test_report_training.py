"""A run's training plot (curve.png: loss, validation NDCG@10, best epoch, title) and its per-user test ranks."""
import json

import numpy as np
import pytest

from memrec.config import RunConfig
from memrec.train import train_and_evaluate
from memrec.train.evaluate import metrics_from_ranks
from memrec.train.report import plot_training


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "sasrec"
    config = RunConfig.from_dict({"model": "sasrec", "data": {"dataset": "ml-100k", "data_dir": str(shared_data), "max_len": 20},
                                  "train": {"epochs": 3, "batch_size": 256, "seed": 3}, "model_config": {"hidden_size": 16}})
    train_and_evaluate(config, out, log=lambda *_: None, progress=False)
    return out


def test_the_plot_shows_loss_and_validation_with_the_best_epoch_and_the_test_figure(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "curve.png").stat().st_size > 10_000
    fig = plot_training(metrics)
    loss_ax, valid_ax = fig.axes
    assert loss_ax.get_ylabel().startswith("training loss") and valid_ax.get_ylabel() == "validation NDCG@10"
    assert valid_ax.get_xlabel() == "epoch"
    loss_line = loss_ax.get_lines()[0]
    assert loss_line.get_xdata().tolist() == [1, 2, 3] and loss_line.get_ydata().tolist() == [e["loss"] for e in metrics["curve"]]
    lines = {line.get_label(): line for line in valid_ax.get_lines()}
    assert lines["validation NDCG@10"].get_ydata().tolist() == [e["valid"]["ndcg@10"] for e in metrics["curve"]]
    best = metrics["best_epoch"]
    [star] = [line for label, line in lines.items() if label.startswith(f"best epoch {best}:")]
    assert list(star.get_xdata()) == [best] and star.get_marker() == "*"
    for ax in (loss_ax, valid_ax):  # the best epoch's line runs through both panels
        assert [best, best] in [list(line.get_xdata()) for line in ax.get_lines()]
    title = fig._suptitle.get_text()
    assert f"sasrec on ml-100k (seed 3): test NDCG@10 {metrics['test']['ndcg@10']:.4f}" in title
    assert f"best epoch {best} of 3" in title


def test_a_step_after_training_that_changes_validation_is_marked(run):
    metrics = json.loads((run / "metrics.json").read_text())
    best = {e["epoch"]: e["valid"]["ndcg@10"] for e in metrics["curve"]}[metrics["best_epoch"]]
    assert len(plot_training(metrics).axes[1].get_lines()) == 3  # curve, star, best-epoch line: the final validation is the best one
    metrics["valid"]["ndcg@10"] = best + 0.01
    metrics["neighbour_memory"] = {"chosen": {"weight": 0.5}}
    fig = plot_training(metrics)
    final = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("final validation")]
    assert final and final[0].get_ydata().tolist() == [best + 0.01] and "with the neighbour memory" in final[0].get_label()
    assert "with the neighbour memory\n" in fig._suptitle.get_text()  # the test figure is the memory's too


def test_the_run_stores_each_test_users_rank_and_they_give_its_test_metrics(run):
    metrics = json.loads((run / "metrics.json").read_text())
    with np.load(run / "test_ranks.npz") as stored:
        ranks, users, targets = stored["ranks"], stored["users"], stored["targets"]
    assert len(ranks) == len(users) == len(targets) == 943
    assert metrics_from_ranks(ranks, (5, 10, 20)) == metrics["test"]
