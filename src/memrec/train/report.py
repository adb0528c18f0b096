"""Results tables, validation curves and the comparison of several runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

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
    """One table over several run folders (each with ``metrics.json``) and one chart of their curves.

    Runs whose saved configs differ only in ``train.seed`` are one group: when some group holds more
    than one seed, the table has one row per group with the test metrics' mean ± sample standard
    deviation over its seeds, each group labelled by the config values that tell the groups apart.
    """
    runs = [_read_run(Path(r)) for r in run_dirs]
    if chart is not None:
        plot_curves({label: curve for label, _, _, curve in runs}, chart)
    groups: dict[str, list[tuple]] = {}
    for run in runs:
        groups.setdefault(_group_key(run[2]), []).append(run)
    if all(len({r[1]["seed"] for r in members}) < 2 for members in groups.values()):
        return format_table([{**r, "model": label} for label, m, _, _ in runs for r in metrics_rows(m) if r["split"] == "test"])
    return format_seed_table(groups)


def _read_run(run: Path) -> tuple[str, dict, dict, list]:
    """(label, metrics, flat config, validation curve) of one run folder."""
    from memrec.errors import MemrecError

    path = run / "metrics.json"
    if not path.is_file():
        raise MemrecError(f"{run} is not a memrec run folder: expected {path}")
    metrics = json.loads(path.read_text())
    config = _flatten(yaml.safe_load((run / "config.yaml").read_text())) if (run / "config.yaml").is_file() else {}
    config.setdefault("model", metrics["model"])
    config.setdefault("data.dataset", metrics["dataset"])
    curve = [(e["epoch"], e["valid"]["ndcg@10"]) for e in metrics.get("curve", []) if e.get("valid")]
    return f"{metrics['model']} ({run.name})", metrics, config, curve


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_NOT_SETTINGS = ("train.seed", "data.data_dir")  # where a run came from, not what it ran


def _group_key(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in _NOT_SETTINGS}, sort_keys=True, default=str)


def format_seed_table(groups: dict[str, list[tuple]], metrics=("hit@10", "ndcg@10", "mrr@10")) -> str:
    """One row per group of seeds: test metrics as mean ± sample std.

    Example:
        >>> run = lambda seed, x, mem: ("", {"seed": seed, "test": {"ndcg@10": x}}, {"model": "m", "data.dataset": "d", "mem": mem}, [])
        >>> print(format_seed_table({"a": [run(1, 0.1, 1), run(2, 0.3, 1)], "b": [run(1, 0.2, 0)]}, ["ndcg@10"]))
        model      dataset  seeds  test ndcg@10
        m (mem=1)  d        2      0.2000 ± 0.1414
        m (mem=0)  d        1      0.2000
    """
    configs = [members[0][2] for members in groups.values()]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if k not in ("model", "data.dataset", *_NOT_SETTINGS)  # among the runs that have the setting
                 and len({json.dumps(c[k], default=str) for c in configs if k in c}) > 1]
    header = ["model", "dataset", "seeds", *(f"test {m}" for m in metrics)]
    cells = []
    for members, config in zip(groups.values(), configs):
        tags = ", ".join(f"{k.rsplit('.', 1)[-1]}={config[k]}" for k in differing if k in config)
        row = [f"{config['model']} ({tags})" if tags else str(config["model"]), str(config["data.dataset"]), str(len(members))]
        for m in metrics:
            values = np.array([r[1]["test"][m] for r in members], dtype=np.float64)
            row.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values.mean():.4f}")
        cells.append(row)
    return _columns(header, cells)
