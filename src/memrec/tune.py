"""``memrec tune``: search a model's settings with Optuna, on validation only.

**The space**: the training keys of :data:`TRAIN_SPACE` plus the model config class's ``search_space``
(each model declares its own: a plain key is a ``model_config`` setting, a dotted one such as
``train.train_windows`` a run-config key), or a YAML file of the same form. A key is a dotted run-config key; its
spec is a list (one of these values) or a range ``{low, high}`` (integers when both bounds are, ``log:
true`` for a log scale)::

    model_config.hidden_size: [32, 64, 128]
    train.lr: {low: 0.0001, high: 0.01, log: true}

**A trial** trains the base config with the trial's values through memrec's trainer; its value is the
best validation NDCG@10. After every validation the trial reports to Optuna, whose median pruner stops
a trial below the median of the earlier trials at the same epoch (after ``startup`` complete trials).
The test split is never read.

**The study** lives in ``OUTPUT/study.db`` (SQLite): the same command again resumes it, the trials
already finished (complete or pruned) counting towards ``trials``; a trial left running by a process
that was stopped is marked failed and run again (one ``memrec tune`` per folder at a time). Each finished study writes ``trials.csv``, ``tune.png``
(validation NDCG@10 per trial, best so far) and ``best.yaml``, the best trial's full run config:
``memrec train --config OUTPUT/best.yaml`` trains it (then, and only then, tested).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable

from memrec.config import RunConfig, load_yaml
from memrec.errors import ConfigError

TRAIN_SPACE = {  # every model: the optimiser's two settings that matter most
    "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "train.weight_decay": [0.0, 0.01, 0.1],
}
METRIC = "ndcg@10"


def search_space(model: str, path: str | Path | None = None) -> dict:
    """The space searched for ``model``: the YAML file at ``path``, else :data:`TRAIN_SPACE` and the
    model config's ``search_space``; each spec checked.

    Example:
        >>> sorted(search_space("sasrec"))[:3]
        ['model_config.dropout', 'model_config.hidden_size', 'model_config.num_layers']
        >>> search_space("sasrec")["train.train_windows"]
        ['all', 'prefixes']
    """
    from memrec.models import model_class

    if path is not None:
        space = load_yaml(path)
    else:
        declared = getattr(model_class(model).config_class, "search_space", {})
        space = {**TRAIN_SPACE, **{key if "." in key else f"model_config.{key}": spec for key, spec in declared.items()}}
    if not space:
        raise ConfigError(f"the search space{f' in {path}' if path else ''} is empty: give at least one key")
    for key, spec in space.items():
        _check_spec(key, spec)
    return space


def _check_spec(key: str, spec) -> None:
    ok = (isinstance(spec, list) and spec) or (isinstance(spec, dict) and set(spec) <= {"low", "high", "log"} and {"low", "high"} <= set(spec)
                                                and all(isinstance(spec[b], (int, float)) for b in ("low", "high")) and spec["low"] < spec["high"])
    if not ok:
        raise ConfigError(f"search space key {key}: expected a non-empty list of values or {{low, high[, log]}} with low < high, got {spec!r}")


def suggest(trial, space: dict) -> dict:
    """One value per key of ``space`` from an Optuna ``trial``."""
    values = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            values[key] = trial.suggest_categorical(key, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log", False):
            values[key] = trial.suggest_int(key, spec["low"], spec["high"])
        else:
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))
    return values


def configured(base: RunConfig, values: dict) -> RunConfig:
    """``base`` with the trial's values (an unknown key or a bad value is one ConfigError)."""
    raw = base.to_dict()
    for key, value in values.items():
        node = raw
        *sections, name = key.split(".")
        for section in sections:
            if not isinstance(node.get(section), dict):
                raise ConfigError(f"search space key {key}: {section!r} is not a config section")
            node = node[section]
        node[name] = value
    return RunConfig.from_dict(raw)


class Validation:
    """Trains a config and returns its best validation NDCG@10; the data set is read once per data config."""

    def __init__(self):
        self._data: dict[str, tuple] = {}

    def __call__(self, config: RunConfig, report: Callable[[int, float], None]) -> float:
        import torch

        from memrec.data import load_dataset, split_dataset
        from memrec.models import build_model
        from memrec.train.trainer import Trainer, seed_everything

        key = repr(config.data)
        if key not in self._data:
            ds = load_dataset(config.data)
            self._data[key] = ds, split_dataset(ds, config.data.split, config.data.valid_fraction, config.data.test_fraction)
        ds, split = self._data[key]
        torch.set_num_threads(config.train.threads)
        seed_everything(config.train.seed)
        model = build_model(config.model, ds.num_items, config.data.max_len, config.model_config)
        model.prepare(ds, split)
        result = Trainer(model, split, config, progress=False).fit(log=lambda line: None, on_validation=report)
        return float(result.best_valid[METRIC]) if result.best_valid else 0.0


def tune(base: RunConfig, output: str | Path, trials: int = 20, minutes: float | None = None, space: dict | None = None,
         startup: int = 5, prune_from: int = 3, seed: int = 0, log=print) -> dict:
    """Run (or resume) the study in ``output`` until it holds ``trials`` trials or ``minutes`` pass.
    Returns the summary (also printed): best value, its settings, counts of complete and pruned trials.
    A trial may be pruned from epoch ``prune_from`` on (at the first epochs every trial scores alike).

    Example:
        >>> import tempfile
        >>> base = RunConfig.from_dict({"data": {"dataset": "ml-100k", "max_len": 10}, "train": {"epochs": 1}})
        >>> summary = tune(base, tempfile.mkdtemp(), trials=2, space={"model_config.hidden_size": [8, 16]}, log=lambda *_: None)
        >>> summary["trials"], sorted(summary["best"])
        (2, ['model_config.hidden_size'])
    """
    import optuna

    if prune_from < 1:
        raise ConfigError(f"prune_from: expected the first epoch a trial may be pruned at (1 or more), got {prune_from}")
    space = space or search_space(base.model)
    for key, spec in space.items():  # every key must reach the config before a minute is spent
        _check_spec(key, spec)
        configured(base, {key: spec[0] if isinstance(spec, list) else spec["low"]})
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="memrec", storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=prune_from))
    if study.user_attrs.get("space", space) != space or study.user_attrs.get("base", base.to_dict()) != base.to_dict():
        raise ConfigError(f"{out / 'study.db'} holds a study of another space or base config: give another --output to start a new one")
    study.set_user_attr("space", space)
    study.set_user_attr("base", base.to_dict())
    validation = Validation()

    def objective(trial) -> float:
        config = configured(base, suggest(trial, space))
        tic = time.perf_counter()

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                trial.set_user_attr("seconds", time.perf_counter() - tic)
                raise optuna.TrialPruned(f"validation {METRIC} {score:.4f} at epoch {epoch}: below the median")

        value = validation(config, report)
        trial.set_user_attr("seconds", time.perf_counter() - tic)
        return value

    def progress(study, trial) -> None:
        log(f"trial {trial.number:3d}  {trial.state.name.lower():8s}  valid {METRIC} "
            f"{(trial.value if trial.value is not None else (trial.intermediate_values or {0: 0.0})[max(trial.intermediate_values or [0])]):.4f}  {trial.params}")

    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # a study has one writer: a trial left running was killed
        log(f"trial {stale.number:3d}  failed    (left running by a process that stopped; run again)")
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=None if minutes is None else 60 * minutes, callbacks=[progress], catch=())
    return write_results(study, base, space, out, log)


def write_results(study, base: RunConfig, space: dict, out: Path, log=print) -> dict:
    """trials.csv, tune.png and best.yaml of a study; the summary."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", f"valid_{METRIC}", "epochs_reported", "seconds", *space])
        for t in study.trials:
            writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.6f}", len(t.intermediate_values),
                             f"{t.user_attrs.get('seconds', 0.0):.1f}", *(t.params.get(k, "") for k in space)])
    plot_study(study, out / "tune.png", base)
    summary = {"trials": len(study.trials), "complete": len(done), "pruned": len(pruned)}
    if done:
        best = study.best_trial
        configured(base, best.params).save(out / "best.yaml")
        summary.update({f"best_valid_{METRIC}": best.value, "best": best.params, "best_trial": best.number})
        log(f"best: trial {best.number}, valid {METRIC} {best.value:.4f}, {best.params}; {len(done)} complete, {len(pruned)} pruned; "
            f"train it: memrec train --config {out / 'best.yaml'} --output DIR")
    return summary


def plot_study(study, path: Path, base: RunConfig) -> None:
    """Validation NDCG@10 of every trial (pruned ones at their last report), and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    fig, ax = plt.subplots(figsize=(7, 4))
    best, line, labelled = float("-inf"), [], set()

    def label(name: str) -> str | None:  # each kind named once in the legend
        first = name not in labelled
        labelled.add(name)
        return name if first else None

    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            ax.scatter(t.number, t.value, color="tab:blue", s=18, label=label("complete"))
            best = max(best, t.value)
        elif t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            ax.scatter(t.number, t.intermediate_values[max(t.intermediate_values)], color="tab:gray", marker="x", s=18,
                       label=label("pruned (last report)"))
        line.append(best if best > float("-inf") else None)
    xs = [i for i, v in enumerate(line) if v is not None]
    ax.step(xs, [line[i] for i in xs], where="post", color="tab:orange", label="best so far")
    ax.set(xlabel="trial", ylabel=f"validation {METRIC.upper()}", title=f"memrec tune: {base.model} on {base.data.dataset}")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
