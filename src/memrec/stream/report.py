"""The stream report: NDCG@10 and HR@10 over the whole stream, per time bucket and per group (users
and items first seen after T apart), each policy's cost, a JSON file and a plot."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from memrec.train.evaluate import metrics_from_ranks

K = 10


def _metrics(ranks: np.ndarray) -> dict:
    m = metrics_from_ranks(ranks, (K,))
    return {"events": int(len(ranks)), f"ndcg@{K}": round(m[f"ndcg@{K}"], 4), f"hit@{K}": round(m[f"hit@{K}"], 4)}


def _date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def policy_report(ranks: np.ndarray, new_item: np.ndarray, new_user: np.ndarray, stamps: np.ndarray, buckets: int = 10) -> dict:
    """Metrics of one policy's ranks: overall (events of new items count as misses), per group, per bucket
    (equal numbers of events, in time order).

    Example:
        >>> r = policy_report(np.array([0, 20, 0, 5]), np.array([0, 1, 0, 0], bool), np.array([0, 0, 1, 1], bool), np.arange(4.0), 2)
        >>> r["all"]["hit@10"], r["new_item"]["events"], r["new_user"]["ndcg@10"], [b["events"] for b in r["buckets"]]
        (0.75, 1, 0.6781, [2, 2])
    """
    known = ~new_user & ~new_item
    out = {
        "all": _metrics(ranks),
        "ranked": _metrics(ranks[~new_item]),
        "known_user_known_item": _metrics(ranks[known]),
        "new_user": _metrics(ranks[new_user]),
        "new_item": {"events": int(new_item.sum()), "note": "unknown to the model: not rankable, counted as misses in 'all'"},
        "buckets": [],
    }
    for rows in np.array_split(np.arange(len(ranks)), buckets):
        if len(rows):
            out["buckets"].append({"from": _date(stamps[rows[0]]), "to": _date(stamps[rows[-1]]), **_metrics(ranks[rows])})
    return out


def write_report(report: dict, folder: Path, json_path: Path | None = None) -> Path:
    """``report.json`` and ``stream.png`` (NDCG@10 per bucket, one line per policy) in ``folder``;
    also the JSON at ``json_path`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (folder / "report.json").write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
    return plot(report, folder / "stream.png")


def _mean_std(x) -> tuple[float, float]:
    """A figure of one run (a float) or of several seeds ({mean, std}) as (mean, std)."""
    return (x["mean"], x["std"] or 0.0) if isinstance(x, dict) else (x, 0.0)


def plot(report: dict, path: Path) -> Path:
    """NDCG@10 per bucket, one line per policy; a report over seeds (figures as {mean, std}, its seeds
    under ``seeds``) draws the mean and a band of ± one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for name, result in report["policies"].items():
        means, stds = np.array([_mean_std(b[f"ndcg@{K}"]) for b in result["buckets"]]).T
        x = np.arange(1, len(means) + 1)
        ax.plot(x, means, marker="o", label=f"{name} ({_mean_std(result['all'][f'ndcg@{K}'])[0]:.4f} overall)")
        if stds.any():
            ax.fill_between(x, means - stds, means + stds, alpha=0.15)
    first = next(iter(report["policies"].values()))["buckets"]
    ax.set_xticks(range(1, len(first) + 1), [b["from"][:10] for b in first], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("time bucket (equal numbers of events; first event's date)")
    seeds = f", mean ± std over seeds {', '.join(map(str, report['seeds']))}" if "seeds" in report else ""
    ax.set_ylabel(f"NDCG@{K}")
    ax.set_title(f"{report['model']} on {report['dataset']}: stream after T = {report['cut']['date']} "
                 f"({report['stream']['events']:,} events{seeds})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
