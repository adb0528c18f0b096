"""Results tables, the training plot of one run (``curve.png``) and the comparison of several runs.

:func:`plot_training` draws a run's training loss and validation NDCG@10 per epoch, its best epoch
and its test figure. :func:`compare_runs` reads run folders of ``memrec train``: one section (table
and chart panel) per data set; runs whose configs differ only in ``train.seed`` are one group
(mean ± sample std over the seeds, a band in the chart); each group is tested against the best one,
paired per test user where the runs stored ``test_ranks.npz``, else over the seeds they share.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from memrec.errors import MemrecError

TABLE_METRICS = ("hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20")
COMPARE_METRICS = ("hit@10", "ndcg@10", "mrr@10")
X_AXES = ("epoch", "time")


def format_table(rows: list[dict], metrics=TABLE_METRICS) -> str:
    """A fixed-width text table: one row per run (``model``, ``dataset``, ``split``, metrics).

    Example:
        >>> print(format_table([{"model": "m", "dataset": "d", "split": "test", "hit@10": 0.5}], ["hit@10"]))
        model  dataset  split  hit@10
        m      d        test   0.5000
    """
    header = ["model", "dataset", "split", *metrics]
    cells = [[str(r.get(h, "")) if h in ("model", "dataset", "split") else _fmt(r.get(h)) for h in header] for r in rows]
    return _columns(header, cells)


def _columns(header: list[str], cells: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def metrics_rows(metrics: dict, name: str | None = None) -> list[dict]:
    """The valid and test rows of one run's ``metrics.json``."""
    model = name or metrics["model"]
    return [{"model": model, "dataset": metrics["dataset"], "split": s, **metrics[s]} for s in ("valid", "test") if s in metrics]


# ---------------------------------------------------------------------------- one run: curve.png
def plot_training(metrics: dict, path: str | Path | None = None):
    """Training loss (top) and validation NDCG@10 (bottom) per epoch of one run's ``metrics.json``,
    the best epoch marked on both, titled with model, data set and test NDCG@10; saved to ``path``
    as a PNG when given. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    curve = metrics.get("curve", [])
    best = metrics.get("best_epoch", 0)
    fig = Figure(figsize=(8, 6.4), layout="constrained")
    loss_ax, valid_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 3))
    loss_ax.plot([e["epoch"] for e in curve], [e["loss"] for e in curve], color="tab:gray", label="training loss")
    loss_ax.set_ylabel("training loss (mean per batch)")
    points = [(e["epoch"], e["valid"]["ndcg@10"]) for e in curve if e.get("valid")]
    if points:
        epochs, values = zip(*points)
        valid_ax.plot(epochs, values, color="tab:blue", marker="." if len(points) <= 60 else None, label="validation NDCG@10")
    best_value = dict(points).get(best)
    for ax in (loss_ax, valid_ax):
        ax.grid(alpha=0.3)
        if best_value is not None:
            ax.axvline(best, color="tab:green", linestyle="--", linewidth=1)
    if best_value is not None:
        valid_ax.plot([best], [best_value], marker="*", markersize=14, color="tab:green", linestyle="none",
                      label=f"best epoch {best}: {best_value:.4f} (checkpoint kept)")
        final = metrics.get("valid", {}).get("ndcg@10")
        if final is not None and abs(final - best_value) > 1e-12:  # a step after training (the neighbour memory) changed it
            valid_ax.plot([best], [final], marker="D", color="tab:red", linestyle="none", label=f"final validation {final:.4f} ({_after_training(metrics)})")
    valid_ax.set_xlabel("epoch")
    valid_ax.set_ylabel("validation NDCG@10")
    valid_ax.legend(loc="lower right", fontsize=9)
    fig.suptitle(_training_title(metrics))
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _training_title(metrics: dict) -> str:
    test = metrics.get("test", {})
    first = f"{metrics['model']} on {metrics['dataset']}" + (f" (seed {metrics['seed']})" if "seed" in metrics else "")
    if "ndcg@10" in test:
        first += f": test NDCG@10 {test['ndcg@10']:.4f}, HR@10 {test.get('hit@10', float('nan')):.4f}"
        first += " with the neighbour memory" if _uses_memory(metrics) else ""
    second = f"best epoch {metrics.get('best_epoch', '?')} of {metrics.get('epochs', len(metrics.get('curve', [])))}"
    if metrics.get("stopped_because"):
        second += f"; stopped: {metrics['stopped_because']}"
    if metrics.get("train_seconds_per_epoch"):
        second += f"; {metrics['train_seconds_per_epoch']:.1f} s per epoch"
    return f"{first}\n{second}"


def _after_training(metrics: dict) -> str:
    return "with the neighbour memory" if _uses_memory(metrics) else "after training"


def _uses_memory(metrics: dict) -> bool:
    """Whether the run's test figures come with its neighbour memory (chosen on validation with a weight above 0)."""
    return metrics.get("neighbour_memory", {}).get("chosen", {}).get("weight", 0) > 0


# ---------------------------------------------------------------------------- reading run folders
@dataclass
class Run:
    """One run folder: its ``metrics.json``, its flattened ``config.yaml`` and, if stored, its per-user test ranks."""

    folder: Path
    metrics: dict
    config: dict

    @property
    def model(self) -> str:
        return str(self.config["model"])

    @property
    def dataset(self) -> str:
        return str(self.config["data.dataset"])

    @property
    def seed(self):
        return self.metrics.get("seed", self.config.get("train.seed"))

    def test(self, metric: str) -> float:
        return float(self.metrics["test"][metric])

    def validation(self) -> dict[int, float]:
        """Validation NDCG@10 by epoch (the epochs that were evaluated)."""
        return {e["epoch"]: e["valid"]["ndcg@10"] for e in self.metrics.get("curve", []) if e.get("valid")}

    def seconds(self) -> dict[int, float] | None:
        """Cumulative training seconds at the end of each epoch; None if the run did not log them."""
        curve = self.metrics.get("curve", [])
        if curve and all("train_seconds" in e for e in curve):
            return dict(zip((e["epoch"] for e in curve), np.cumsum([e["train_seconds"] for e in curve]).tolist()))
        per_epoch = self.metrics.get("train_seconds_per_epoch")  # older runs: the mean only
        return {e["epoch"]: e["epoch"] * per_epoch for e in curve} if per_epoch and curve else None

    def user_ranks(self) -> dict | None:
        """``users``, ``targets``, ``ranks`` of each test example (``test_ranks.npz``), or None for older runs."""
        path = self.folder / "test_ranks.npz"
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return {name: stored[name] for name in ("users", "targets", "ranks")}


def read_run(folder: str | Path) -> Run:
    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        raise MemrecError(f"{folder} is not a memrec run folder: expected {path}")
    metrics = json.loads(path.read_text())
    config = _flatten(yaml.safe_load((folder / "config.yaml").read_text())) if (folder / "config.yaml").is_file() else {}
    config.setdefault("model", metrics["model"])
    config.setdefault("data.dataset", metrics["dataset"])
    return Run(folder, metrics, config)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------------- groups of seeds
_NOT_SETTINGS = ("train.seed", "data.data_dir")  # where a run came from, not what it ran


def _group_key(config: dict, keys: set[str]) -> str:
    return json.dumps({k: v for k, v in config.items() if k in keys and k not in _NOT_SETTINGS}, sort_keys=True, default=str)


@dataclass
class Row:
    """A line of the comparison: the runs of one group of seeds, or one run."""

    label: str
    runs: list[Run]

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]

    def values(self, metric: str) -> np.ndarray:
        return np.array([r.test(metric) for r in self.runs], dtype=np.float64)


def _memory_note(runs: list[Run]) -> str:
    """`` + neighbour memory`` for rows whose test figures use it (and in how many seeds, if not all).

    Example:
        >>> run = lambda w: Run(Path("r"), {"neighbour_memory": {"chosen": {"weight": w}}}, {})
        >>> _memory_note([run(0.5)]), _memory_note([run(0.5), run(0.0)]), _memory_note([run(0.0)])
        (' + neighbour memory', ' + neighbour memory (1 of 2 seeds)', '')
    """
    used = sum(_uses_memory(r.metrics) for r in runs)
    return "" if not used else " + neighbour memory" + ("" if used == len(runs) else f" ({used} of {len(runs)} seeds)")


def group_rows(runs: list[Run]) -> list[Row]:
    """Rows of runs of one data set: runs whose configs differ only in the seed are one row when their
    seeds are distinct and at least two (labelled by the settings that tell the groups apart), else
    one row per run (labelled by its folder). A setting that some runs of a model lack (added to the
    config after they ran) does not set them apart.

    Example:
        >>> run = lambda seed, lr: Run(Path(f"r{seed}{lr}"), {"seed": seed}, {"model": "m", "data.dataset": "d", "train.lr": lr})
        >>> [(r.label, r.seeds) for r in group_rows([run(1, 0.1), run(2, 0.1), run(1, 0.5)])]
        [('m (lr=0.1)', [1, 2]), ('m (r10.5)', [1])]
    """
    rows = []
    for model in dict.fromkeys(run.model for run in runs):  # rows of one model, told apart by the settings where they differ
        mine = [run for run in runs if run.model == model]
        shared = set.intersection(*(set(run.config) for run in mine))  # settings every run of the model has
        groups: dict[str, list[Run]] = {}
        for run in mine:
            groups.setdefault(_group_key(run.config, shared), []).append(run)
        configs = [members[0].config for members in groups.values()]
        differing = [k for k in sorted(shared) if k not in ("model", "data.dataset", *_NOT_SETTINGS)
                     and len({json.dumps(c[k], default=str) for c in configs}) > 1]
        for members in groups.values():
            seeds = [r.seed for r in members]
            if len(members) > 1 and len(set(map(str, seeds))) == len(seeds):
                tags = ", ".join(f"{k.rsplit('.', 1)[-1]}={members[0].config[k]}" for k in differing)
                rows.append(Row((f"{model} ({tags})" if tags else model) + _memory_note(members), members))
            else:
                rows += [Row(f"{r.model} ({r.folder.name})" + _memory_note([r]), [r]) for r in members]
    return rows


def _mean_std(values, digits: int = 4) -> str:
    """``mean ± sample std`` (the mean alone for one value).

    Example:
        >>> _mean_std([0.1, 0.3]), _mean_std([0.2]), _mean_std([280, 310], 0)
        ('0.2000 ± 0.1414', '0.2000', '295 ± 21')
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return f"{values.mean():.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _span(values) -> str:
    """Whole numbers as one value or their range.

    Example:
        >>> _span([18, 18]), _span([35, 41, 37])
        ('18', '35-41')
    """
    low, high = int(min(values)), int(max(values))
    return str(low) if low == high else f"{low}-{high}"


def _to_best(run: Run) -> float | None:
    seconds = run.seconds()
    return None if seconds is None else seconds.get(run.metrics.get("best_epoch"))


def _epochs(row: Row) -> list[int]:
    return [r.metrics.get("epochs", len(r.metrics.get("curve", []))) for r in row.runs]


def _best_epochs(row: Row) -> list[int]:
    return [r.metrics.get("best_epoch", 0) for r in row.runs]


def format_rows(rows: list[Row], metrics=COMPARE_METRICS) -> str:
    """One line per row: seeds, epochs trained and best epoch (their range over seeds), training seconds to
    the best epoch and test metrics (mean ± sample std over seeds).

    Example:
        >>> run = lambda seed, x: Run(Path("r"), {"seed": seed, "epochs": 10 + seed, "best_epoch": 5, "test": {"ndcg@10": x}}, {})
        >>> print(format_rows([Row("m", [run(1, 0.1), run(2, 0.3)]), Row("m (r)", [run(7, 0.2)])], ["ndcg@10"]))
        model  seeds  epochs  best epoch  to best (s)  test ndcg@10
        m      1,2    11-12   5                        0.2000 ± 0.1414
        m (r)  7      17      5                        0.2000
    """
    header = ["model", "seeds", "epochs", "best epoch", "to best (s)", *(f"test {m}" for m in metrics)]
    cells = []
    for row in rows:
        to_best = [t for t in map(_to_best, row.runs) if t is not None]
        cells.append([row.label, ",".join(map(str, row.seeds)), _span(_epochs(row)), _span(_best_epochs(row)),
                      _mean_std(to_best, 0) if len(to_best) == len(row.runs) else "",
                      *(_mean_std(row.values(m)) for m in metrics)])
    return _columns(header, cells)


# ---------------------------------------------------------------------------- paired tests
def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom (exact series, Abramowitz & Stegun 26.7.3-4).

    Example:
        >>> round(t_two_sided_p(12.706, 1), 4), round(t_two_sided_p(2.776, 4), 4), round(t_two_sided_p(1.96, 10**5), 4)
        (0.05, 0.05, 0.05)
    """
    if not math.isfinite(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2:  # odd: (2/pi) (theta + sin (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...))
        term = total = math.cos(theta) if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= (k - 1) / k * cos2
            total += term
        inside = 2 / math.pi * (theta + sin * total)
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term = total = 1.0
        for k in range(2, df - 1, 2):
            term *= (k - 1) / k * cos2
            total += term
        inside = sin * total
    return min(1.0, max(0.0, 1.0 - inside))


def paired_test(differences, confidence: float = 0.95) -> dict:
    """Paired t-test of mean(differences) = 0: the mean, its ``confidence`` interval, the two-sided p, n.

    Example:
        >>> r = paired_test([0.01, 0.02, 0.03])
        >>> round(r["mean"], 4), round(r["low"], 4), round(r["high"], 4), round(r["p"], 4), r["n"]
        (0.02, -0.0048, 0.0448, 0.0742, 3)
    """
    d = np.asarray(differences, dtype=np.float64)
    n, mean = len(d), float(d.mean())
    sem = float(d.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return {"mean": mean, "low": mean, "high": mean, "p": 1.0 if mean == 0.0 else 0.0, "n": n}
    low, high = 0.0, 1e6  # the t quantile: t_two_sided_p falls from 1 to 0 as t grows
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_two_sided_p(mid, n - 1) > 1 - confidence else (low, mid)
    half = high * sem
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": t_two_sided_p(mean / sem, n - 1), "n": n}


def _user_ndcg(row: Row) -> tuple[np.ndarray, np.ndarray] | None:
    """(users and targets, mean per-user NDCG@10 over the row's runs), if every run stored the same test examples."""
    from memrec.train.evaluate import user_ndcg

    stored = [r.user_ranks() for r in row.runs]
    if any(s is None for s in stored) or any(not _same_examples(s, stored[0]) for s in stored):
        return None
    return np.stack([stored[0]["users"], stored[0]["targets"]]), np.mean([user_ndcg(s["ranks"]) for s in stored], axis=0)


def _same_examples(a: dict, b: dict) -> bool:
    return np.array_equal(a["users"], b["users"]) and np.array_equal(a["targets"], b["targets"])


def compare_pair(row: Row, reference: Row, metric: str = "ndcg@10") -> tuple[dict | None, str]:
    """The paired test of ``row`` minus ``reference`` on test NDCG@10, and what it pairs: per test user
    when both rows' runs stored the same test examples (each user's NDCG@10 averaged over a row's
    seeds), else over the seeds both rows ran (at least two); (None, why) when neither is possible."""
    mine, theirs = _user_ndcg(row), _user_ndcg(reference)
    if mine is not None and theirs is not None and np.array_equal(mine[0], theirs[0]):
        seeds = ", each user's mean over a row's seeds" if len(row.runs) > 1 or len(reference.runs) > 1 else ""
        return paired_test(mine[1] - theirs[1]), f"{len(mine[1])} test users (per-user NDCG@10{seeds})"
    seeds = [s for s in row.seeds if s in reference.seeds]
    if len(seeds) >= 2:
        by_seed = lambda r: {run.seed: run.test(metric) for run in r.runs}  # noqa: E731
        mine_s, theirs_s = by_seed(row), by_seed(reference)
        return paired_test([mine_s[s] - theirs_s[s] for s in seeds]), f"{len(seeds)} shared seeds ({','.join(map(str, seeds))}); no per-user ranks"
    return None, "none: fewer than 2 shared seeds and no per-user ranks (test_ranks.npz) in both"


def format_tests(rows: list[Row], metric: str = "ndcg@10") -> str | None:
    """Each row against the row with the highest mean test ``metric``: difference, 95% interval, p, and what
    was paired; None when no other row holds other runs (a folder given twice is not tested against itself)."""
    reference = max(rows, key=lambda r: r.values(metric).mean())
    folders = lambda row: {run.folder.resolve() for run in row.runs}  # noqa: E731
    others = [row for row in rows if folders(row) != folders(reference)]
    if not others:
        return None
    cells = []
    for row in others:
        result, over = compare_pair(row, reference, metric)
        if result is None:
            cells.append([row.label, "", "", "", over])
        else:
            p = "< 0.0001" if result["p"] < 1e-4 else f"{result['p']:.4f}"
            cells.append([row.label, f"{result['mean']:+.4f}", f"[{result['low']:+.4f}, {result['high']:+.4f}]", p, over])
    title = f"paired t-test of test {metric.upper()}: each row minus {reference.label}, the highest mean"
    return title + "\n" + _columns(["model", "difference", "95% interval", "p", "paired over"], cells)


# ---------------------------------------------------------------------------- compare
def compare_runs(run_dirs: list[str | Path], chart: str | Path | None = None, x: str = "epoch") -> str:
    """Tables, paired tests and (to ``chart``, a PNG) validation curves of several run folders, one
    section and one panel per data set; ``x`` is ``epoch`` or ``time`` (cumulative training seconds)."""
    if x not in X_AXES:
        raise MemrecError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    runs = [read_run(r) for r in run_dirs]
    sections = {name: group_rows([r for r in runs if r.dataset == name]) for name in dict.fromkeys(r.dataset for r in runs)}
    if chart is not None:
        plot_compare(sections, chart, x)
    out = [f"{len(runs)} runs on {len(sections)} data set{'s' if len(sections) > 1 else ''}: one section per data set; "
           "runs that differ only in train.seed are one row (mean ± sample std over the seeds)"]
    for name, rows in sections.items():
        users = rows[0].runs[0].metrics.get("dataset_stats", {}).get("users")
        out.append(f"\ndata set {name}" + (f" ({users:,} users)" if users else ""))
        out.append(format_rows(rows))
        tests = format_tests(rows) if len(rows) > 1 else None
        if tests:
            out.append(tests)
    return "\n".join(out)


def _row_curve(row: Row, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """x, mean and sample std over the seeds (0 where one seed has a point) of a row's validation NDCG@10,
    and how many of the first points every seed has (after them, some seeds had stopped early).

    By epoch, the seeds' points are those of the same epoch. By time, each seed's curve is read (linearly
    between its points) at every time any seed was evaluated, from the first time every seed has a point:
    seeds run at different speeds, so their epochs fall at different times.
    """
    curves = [r.validation() for r in row.runs]
    if x == "time":
        times = [r.seconds() for r in row.runs]
        if any(t is None for t in times):
            raise MemrecError(f"{row.label}: a run logs no training time; use --x epoch")
        timed = [{t[e]: v for e, v in c.items()} for c, t in zip(curves, times)]
        curves = _on_common_times(timed) if len(timed) > 1 and all(timed) else timed
    points = sorted(set().union(*curves))
    values = [[c[p] for c in curves if p in c] for p in points]
    std = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
    every = next((i for i, v in enumerate(values) if len(v) < len(curves)), len(values))
    return np.array(points, dtype=np.float64), np.array([np.mean(v) for v in values]), np.array(std), every


def _on_common_times(curves: list[dict[float, float]]) -> list[dict[float, float]]:
    """Each curve ({time: value}) read, linearly between its points, at every time any curve has a point,
    from the first time all of them have one up to the curve's own last point.

    Example:
        >>> _on_common_times([{10: 0.1, 30: 0.3}, {20: 0.2, 40: 0.4}])
        [{20.0: 0.2, 30.0: 0.3}, {20.0: 0.2, 30.0: 0.3, 40.0: 0.4}]
    """
    start = max(min(c) for c in curves)
    grid = np.array(sorted({p for c in curves for p in c if p >= start}), dtype=np.float64)
    out = []
    for c in curves:
        xs = np.array(sorted(c), dtype=np.float64)
        inside = grid[grid <= xs[-1]]
        out.append(dict(zip(inside.tolist(), np.interp(inside, xs, [c[p] for p in sorted(c)]).round(12).tolist())))
    return out


def plot_compare(sections: dict[str, list[Row]], path: str | Path | None, x: str = "epoch"):
    """One panel per data set: each row's validation NDCG@10 (mean over seeds, band ± 1 std) by epoch
    or by cumulative training time, its best point starred. Saved to ``path`` when given; returns the Figure."""
    from matplotlib.figure import Figure

    curves = {name: [(row, _row_curve(row, x)) for row in rows] for name, rows in sections.items()}
    longest = max((c[0].max() for rows in curves.values() for _, c in rows if len(c[0])), default=0.0)
    scale, unit = (60.0, "min") if x == "time" and longest > 600 else (1.0, "s")
    cols = min(len(sections), 3)
    lines = (len(sections) + cols - 1) // cols
    fig = Figure(figsize=(max(6.4 * cols, 8.5), 4.6 * lines + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(lines, cols, squeeze=False).ravel())
    for ax, (name, rows) in zip(axes, curves.items()):
        for row, (xs, mean, std, every) in rows:
            if not len(xs):
                continue
            xs, every = xs / scale, max(every, 1)
            (line,) = ax.plot(xs[:every], mean[:every], label=_legend(row), marker="." if len(xs) <= 40 else None)
            if every < len(xs):  # the seeds that ran on
                ax.plot(xs[every - 1:], mean[every - 1:], color=line.get_color(), linestyle="--", linewidth=1)
            if len(row.runs) > 1:
                ax.fill_between(xs[:every], (mean - std)[:every], (mean + std)[:every], color=line.get_color(), alpha=0.2, linewidth=0)
            top = int(np.argmax(mean[:every]))
            ax.plot(xs[top], mean[top], marker="*", markersize=13, color=line.get_color(), markeredgecolor="black", markeredgewidth=0.6)
        users = rows[0][0].runs[0].metrics.get("dataset_stats", {}).get("users")
        ax.set_title(f"data set: {name}" + (f" ({users:,} users)" if users else ""))
        ax.set_xlabel("epoch" if x == "epoch" else f"cumulative training time, validation excluded ({unit})")
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    runs = sum(len(row.runs) for rows in sections.values() for row in rows)
    fig.suptitle(f"Validation NDCG@10 by {'epoch' if x == 'epoch' else 'training time'}: {runs} runs, "
                 f"{len(sections)} data set{'s' if len(sections) > 1 else ''} (one panel each)\n"
                 "line: mean over seeds (dashed where some had stopped), band: ± 1 std, star: best point of the mean",
                 fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _legend(row: Row) -> str:
    seeds = f"{len(row.runs)} seeds, " if len(row.runs) > 1 else ""
    return f"{row.label}: {seeds}test NDCG@10 {_mean_std(row.values('ndcg@10'))}, best epoch {_span(_best_epochs(row))} of {_span(_epochs(row))}"
