"""Results tables, validation curves and the comparison of several runs."""
from __future__ import annotations

import json
from pathlib import Path

TABLE_METRICS = ("hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20")


def format_table(rows: list[dict], metrics=TABLE_METRICS) -> str:
    """A fixed-width text table: one row per run (``model``, ``dataset``, ``split``, metrics).

    Example:
        >>> print(format_table([{"model": "m", "dataset": "d", "split": "test", "hit@10": 0.5}], ["hit@10"]))
        model  dataset  split  hit@10
        m      d        test   0.5000
    """
    header = ["model", "dataset", "split", *metrics]
    cells = [[str(r.get(h, "")) if h in ("model", "dataset", "split") else _fmt(r.get(h)) for h in header] for r in rows]
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


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str | Path, ylabel: str = "validation NDCG@10") -> None:
    """One line per run: (epoch, value) points, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves.items():
        if points:
            x, y = zip(*points)
            ax.plot(x, y, label=label, marker="." if len(points) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_runs(run_dirs: list[str | Path], chart: str | Path | None = None) -> str:
    """One table over several run folders (each with ``metrics.json``) and one chart of their curves."""
    from memrec.errors import MemrecError

    rows, curves = [], {}
    for run in map(Path, run_dirs):
        path = run / "metrics.json"
        if not path.is_file():
            raise MemrecError(f"{run} is not a memrec run folder: expected {path}")
        metrics = json.loads(path.read_text())
        label = f"{metrics['model']} ({run.name})"
        rows.extend(r for r in metrics_rows(metrics, label) if r["split"] == "test")
        curves[label] = [(e["epoch"], e["valid"]["ndcg@10"]) for e in metrics.get("curve", []) if e.get("valid")]
    if chart is not None:
        plot_curves(curves, chart)
    return format_table(rows)
