#!/usr/bin/env python
"""The result tables of README.md and docs/*.md, built from committed JSON: benchmarks/results/*.json,
and benchmarks/results/runs.json for training runs (runs/ is not committed).

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in exactly one file, so every
figure has one home (its JSON) and one place in the docs.

    python scripts/tables.py          # rewrite the tables in place
    python scripts/tables.py --check  # exit 1, naming them, if tables differ from what the JSON gives
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKED = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)
DATA = {"ml-100k": "ML-100K", "beauty": "Beauty", "sports": "Sports", "amazon-scientific": "Scientific", "lastfm": "LastFM"}
MODEL = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "ramrec": "RAMRec", "ur4rec-moe": "UR4Rec-MoE-Memory",
         "memory-moe": "Memory-Enhanced MoE"}
TABLES = {}


@cache
def J(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def run(run_id: str) -> dict:
    return J("runs")["runs"][run_id]


def f(x, d: int = 4) -> str:
    """A figure: a float to d decimals, rounded half up as written (4.05 -> 4.1), {mean, std} as
    'mean ± std', anything else (an int, a range such as '5-15') as it is."""
    if isinstance(x, dict):
        return f"{f(x['mean'], d)} ± {f(x['std'], d)}" if x.get("std") is not None else f(x["mean"], d)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return str(Decimal(repr(x)).quantize(Decimal(1).scaleb(-d), ROUND_HALF_UP))
    return str(x)


def signed(x: float, d: int) -> str:
    return ("-" if x < 0 else "+") + f(abs(x), d)


def pct(new: float, old: float) -> str:
    return signed(100 * (new / old - 1), 1) + "%"


def ci(pair, d: int = 4) -> str:
    return f"[{signed(pair[0], d)}, {signed(pair[1], d)}]"


def nh(test: dict) -> str:
    """NDCG@10 / HR@10 of a run's test metrics (HR left out when the run reported none)."""
    return f(test["ndcg@10"]) + (f" / {f(test['hit@10'])}" if "hit@10" in test else "")


def md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def table(fn):
    TABLES[fn.__name__] = fn
    return fn


def neighbours_summary(dataset: str, model: str, source: str = "neighbours-every-model") -> dict:
    return next(s for s in J(source)["summary"] if s["dataset"] == dataset and s["model"] == model)


# the README's headline: SASRec's frozen config (prefix samples since issue 19) with the neighbour memory
HEADLINE_SOURCES = {"beauty": "neighbours-prefixes-converged-beauty", "sports": "neighbours-prefixes-sports"}


def mean_std(metrics: dict, key: str) -> str:
    """'mean ± std' of one metric over the benchmark's seeds, the value alone for one seed."""
    m = metrics[key]
    return f(m["mean"]) + (f" ± {f(m['std'])}" if m.get("std") is not None else "")


@table
def headline():
    rows = []
    for ds in ("beauty", "sports", "ml-100k"):
        ramrec = run(f"ramrec-{ds}")
        if ds == "ml-100k":
            test = run(f"sasrec-{ds}")["test"]
            cells = [(test["ndcg@10"], f(test["ndcg@10"]), f(test["hit@10"])), None]
            gain, seeds = "not run", "1"
        else:
            s = neighbours_summary(ds, "sasrec", HEADLINE_SOURCES[ds])  # the same weights, memory on and off, over the seeds run
            cells = [(s[side]["ndcg@10"]["mean"], mean_std(s[side], "ndcg@10"), mean_std(s[side], "hit@10")) for side in ("test_without", "test_with")]
            gain = f"{pct(s['test_with']['ndcg@10']['mean'], s['test_without']['ndcg@10']['mean'])} {ci(s['test_ndcg@10_gain_ci95'])}"
            seeds = str(len(s["seeds"]))
        cells.append((ramrec["test"]["ndcg@10"], f(ramrec["test"]["ndcg@10"]), f(ramrec["test"]["hit@10"])))
        best = max(c[0] for c in cells if c)
        shown = [("not run" if c is None else (f"**{c[1]}**" if c[0] == best else c[1]) + f" / {c[2]}") for c in cells]
        shown[2] += "" if ramrec["neighbour_memory"]["used"] else " (memory not used: gain within noise)"
        rows.append([DATA[ds], seeds, *shown, gain])
    return md(["data set", "SASRec seeds", "SASRec", "SASRec + neighbour memory", "RAMRec, seed 42 (own banks + neighbour memory)",
               "neighbour memory's gain on SASRec, paired 95% interval"], rows)


@table
def neighbours_every_model():
    rows = []
    for s in J("neighbours-every-model")["summary"]:
        used = sum(1 for c in s["chosen"].values() if c and c["weight"] > 0)  # None: the memory was not used
        rows.append([DATA[s["dataset"]], MODEL[s["model"]], len(s["seeds"]), mean_std(s["test_without"], "ndcg@10"),
                     mean_std(s["test_with"], "ndcg@10"), f"{pct(s['test_with']['ndcg@10']['mean'], s['test_without']['ndcg@10']['mean'])} "
                     f"{ci(s['test_ndcg@10_gain_ci95'])}", f"{used} of {len(s['seeds'])}"])
    return md(["data set", "model", "seeds", "test NDCG@10 without", "with the neighbour memory", "gain, paired 95% interval",
               "seeds where validation chose to use it"], rows)


@table
def frozen():
    order = list(DATA), list(MODEL)
    ids = sorted((k for k, r in J("runs")["runs"].items() if "frozen_config" in r),
                 key=lambda k: (order[0].index(run(k)["dataset"]), order[1].index(run(k)["model"])))
    rows = [[DATA[r["dataset"]], MODEL[r["model"]], f(r["test"]["ndcg@10"]), f(r["test"]["hit@10"]), f(r["valid"]["ndcg@10"]),
             f"{r['epochs']} ({r['best_epoch']})", f(r["seconds_per_epoch"], 1), f"`{r['command']}`"] for r in map(run, ids)]
    return md(["data set", "model", "test NDCG@10", "test HR@10", "valid NDCG@10", "epochs (best)", "s / epoch", "command"], rows)


def seeds_table(rows: list[tuple[str, str]], time: bool = False) -> str:
    out = []
    for label, run_id in rows:
        r = run(run_id)
        out.append([label, len(r["seeds"]), f(r["test"]["ndcg@10"]), f(r["test"]["hit@10"])] + ([f(r.get("seconds_per_epoch", "-"), 1)] if time else []))
    return md(["model", "seeds", "test NDCG@10", "test HR@10"] + (["s / epoch"] if time else []), out)


@table
def ml100k_memory():
    u = "ur4rec-moe-ml-100k/"
    return seeds_table([
        ("SASRec", "sasrec-ml-100k/3-seeds"),
        ("SASRec reading the last 200 items (`--data.max_len=200`)", "sasrec-ml-100k/max_len-200"),
        ("RAMRec (the default: its neighbour memory is built but not used, its validation gain being within noise)", "ramrec-ml-100k/3-seeds"),
        ("RAMRec, neighbour memory used whatever its validation gain (`--memory.neighbours.confidence=0`)", "ramrec-ml-100k/confidence-0/3-seeds"),
        ("UR4Rec-MoE, ID + text, memory every 10 interactions", u + "3-seeds"),
        ("UR4Rec-MoE, ID + text, no memory (`use_memory=false`)", u + "no-memory/3-seeds"),
        ("UR4Rec-MoE, ID + text, memory every interaction (`interaction_threshold=1`)", u + "every-interaction/3-seeds"),
        ("UR4Rec-MoE, ID + text, memory on drift (`update_trigger=drift_threshold drift_threshold=1.0`)", u + "drift-1.0"),
        ("UR4Rec-MoE, ID + text, memory every day of data time (`update_trigger=time_based time_period=86400`)", u + "time-based/3-seeds"),
        ("UR4Rec-MoE, ID only, memory every 10 (`modalities=[id]`)", u + "id-only"),
        ("UR4Rec-MoE, ID only, no memory", u + "id-only-no-memory"),
        ("UR4Rec-MoE, text only (titles, years, genres), memory every 10 (`modalities=[text]`)", u + "text-only/3-seeds"),
        ("UR4Rec-MoE, ID + text, window of 10 (`--data.max_len=10`), memory every 10", u + "window-10/3-seeds"),
        ("UR4Rec-MoE, ID + text, window of 10, no memory", u + "window-10-no-memory/3-seeds"),
        ("RAMRec, fixed K = 10 (`fixed_k=10`, `--memory off`)", "ramrec-ml-100k/fixed-k-10/3-seeds"),
        ("RAMRec, the public code's behaviour (`public_code_mode=true`, `--memory off`: one pooled vector, fusion never trained)", "ramrec-ml-100k/public-code/3-seeds"),
        ("RAMRec without banks (`use_memory=false`, `--memory off`: the SASRec backbone)", "ramrec-ml-100k/no-banks"),
    ], time=True)


@table
def scientific_memory():
    u = "ur4rec-moe-amazon-scientific/"
    return seeds_table([
        ("SASRec", "sasrec-amazon-scientific/3-seeds"),
        ("UR4Rec-MoE, ID + text, memory every 10", u + "3-seeds"),
        ("UR4Rec-MoE, ID + text, no memory", u + "no-memory/3-seeds"),
        ("UR4Rec-MoE, ID + text, memory on drift (`update_trigger=drift_threshold drift_threshold=1.0`)", u + "drift-1.0/3-seeds"),
        ("UR4Rec-MoE, ID only, memory every 10 (`modalities=[id]`)", u + "id-only/3-seeds"),
        ("UR4Rec-MoE, text only, memory every 10 (`modalities=[text]`)", u + "text-only/3-seeds"),
        ("RAMRec (with the neighbour memory)", "ramrec-amazon-scientific/3-seeds"),
        ("RAMRec without the neighbour memory (`--memory off`)", "ramrec-amazon-scientific/no-neighbours"),
        ("RAMRec, fixed K = 10, without the neighbour memory", "ramrec-amazon-scientific/fixed-k-10-no-neighbours"),
        ("RAMRec, the public code's behaviour (`public_code_mode=true`, `--memory off`)", "ramrec-amazon-scientific/public-code"),
        ("RAMRec without banks (`use_memory=false`, `--memory off`: the SASRec backbone)", "ramrec-amazon-scientific/no-banks"),
    ])


@table
def knn_memory():
    def row(label, names):
        d = [J(n)["test"] for n in names]
        if len(d) == 1:
            plain, train, full = (d[0][k]["ndcg@10"] for k in ("plain", "memory_train_only_bank", "memory"))
            return [label, J(names[0])["seed"], f(plain), f"{f(train)} ({pct(train, plain)})", f"{f(full)} ({pct(full, plain)})"]
        cols = [" / ".join(f(x[k]["ndcg@10"]) for x in d) for k in ("plain", "memory_train_only_bank", "memory")]
        return [label, " / ".join(str(J(n)["seed"]) for n in names), *cols]
    return md(["data", "seed", "SASRec", "+ memory of training positions", "+ memory also holding other users' validation positions"], [
        row("Beauty", ["knn-memory-beauty"]), row("Beauty", ["knn-memory-beauty-s1"]),
        row("Scientific", ["knn-memory-amazon-scientific"]),
        row("ML-100K", ["knn-memory-ml-100k", "knn-memory-ml-100k-s1", "knn-memory-ml-100k-s2"])])


@table
def ramrec_neighbours():
    pub = J("runs")["published"]["ramrec"]
    off = {ds: J(f"ramrec-memory-{ds}")["test"]["no neighbour memory"] for ds in ("beauty", "sports")}

    def chosen(r):
        c = r["neighbour_memory"].get("chosen") or r["neighbour_memory"].get("chosen_ranges")
        return "not used: best validation gain within noise" if not c else " / ".join(str(c[k]) for k in ("k", "temperature", "weight", "decay"))
    def gains(r):
        g = r["neighbour_memory"]["valid_ndcg@10_gain_interval"]
        return ", ".join(ci(p) for p in (g.values() if isinstance(g, dict) else [g]))
    rows = [
        ["ML-100K (3 seeds)", nh(run("sasrec-ml-100k/3-seeds")["test"]), nh(run("ramrec-ml-100k/3-seeds")["test"]),
         "the same (not used)", nh(pub["ml-100k"]), chosen(run("ramrec-ml-100k")), gains(run("ramrec-ml-100k/3-seeds"))],
        ["Beauty", nh(run("sasrec-beauty/one-window")["test"]), nh(run("ramrec-beauty")["test"]),
         nh(off["beauty"]) + " (same weights, memory off)", nh(pub["beauty"]), chosen(run("ramrec-beauty")), gains(run("ramrec-beauty"))],
        ["Scientific (3 seeds)", nh(run("sasrec-amazon-scientific/3-seeds")["test"]), nh(run("ramrec-amazon-scientific/3-seeds")["test"]),
         nh(run("ramrec-amazon-scientific/no-neighbours")["test"]) + " (seed 42, `--memory off`)", "-",
         chosen(run("ramrec-amazon-scientific/3-seeds")), gains(run("ramrec-amazon-scientific/3-seeds"))],
        ["Sports", nh(run("sasrec-sports/one-window")["test"]), nh(run("ramrec-sports")["test"]),
         nh(off["sports"]) + " (same weights, memory off)", nh(pub["sports"]), chosen(run("ramrec-sports")), gains(run("ramrec-sports"))],
    ]
    return md(["data", "SASRec", "RAMRec", "RAMRec without the neighbour memory", "published RAMRec", "chosen k / T / weight / decay",
               "95% interval of the best setting's validation NDCG@10 gain (per seed)"], rows)


@table
def ramrec_fixes():
    def n(run_id):
        return f(run(run_id)["test"]["ndcg@10"])
    own = {ds: f(J(f"ramrec-memory-{ds}")["test"]["no neighbour memory"]["ndcg@10"]) for ds in ("beauty", "sports")}
    return md(["data", "own bank, adaptive K", "fixed K = 10 (`fixed_k=10`)", "the public code's behaviour (`public_code_mode=true`)",
               "no banks (`use_memory=false`)"], [
        ["ML-100K (3 seeds)", n("ramrec-ml-100k/3-seeds"), n("ramrec-ml-100k/fixed-k-10/3-seeds"), n("ramrec-ml-100k/public-code/3-seeds"),
         n("ramrec-ml-100k/no-banks") + " (seed 42)"],
        ["Beauty", own["beauty"] + " (same weights, neighbour memory off)", n("ramrec-beauty/fixed-k-10"), n("ramrec-beauty/public-code"), n("ramrec-beauty/no-banks")],
        ["Scientific", n("ramrec-amazon-scientific/no-neighbours"), n("ramrec-amazon-scientific/fixed-k-10-no-neighbours"),
         n("ramrec-amazon-scientific/public-code"), n("ramrec-amazon-scientific/no-banks")],
        ["Sports", own["sports"] + " (same weights, neighbour memory off)", n("ramrec-sports/fixed-k-10"), n("ramrec-sports/public-code"), n("ramrec-sports/no-banks")],
    ])


@table
def ramrec_horizon():
    return md(["data", "next 5 items (decay 0.5, chosen on validation)", "next item only (`--memory.neighbours.horizon=1`)"],
              [[DATA[ds], f(run(f"ramrec-{ds}")["test"]["ndcg@10"]), f(run(f"ramrec-{ds}/horizon-1")["test"]["ndcg@10"])] for ds in ("beauty", "sports")])


@table
def ramrec_memories():
    rows = []
    for ds in ("ml-100k", "beauty", "sports"):
        d = J(f"ramrec-memory-{ds}")
        t = d["test"]
        rows.append([DATA[ds], *(f(t[k]["ndcg@10"]) for k in ("full", "no own bank", "no neighbour memory", "neither")),
                     "not used" if t["full"] == t["no neighbour memory"] else
                     f"{pct(t['full']['ndcg@10'], t['no neighbour memory']['ndcg@10'])} {ci(d['neighbour_memory_ndcg@10_difference_ci95'])}"])
    return md(["data", "both memories", "without the own bank", "without the neighbour memory", "neither",
               "the neighbour memory's gain, paired 95% interval"], rows)


@table
def memory_moe():
    rows = []
    for ds, moe, sas in (("ml-100k", "memory-moe-ml-100k/3-seeds", "sasrec-ml-100k/3-seeds"), ("beauty", "memory-moe-beauty", "sasrec-beauty/one-window"),
                         ("amazon-scientific", "memory-moe-amazon-scientific/3-seeds", "sasrec-amazon-scientific/3-seeds")):
        rows.append([DATA[ds], len(run(moe)["seeds"]), nh(run(moe)["test"]), nh(run(sas)["test"])])
    return md(["data", "seeds", "memory-moe", "SASRec"], rows)


@table
def few_shot():
    rows = []
    for ds in ("ml-100k", "amazon-scientific"):
        res = J(f"few-shot-{ds}")["results"]
        cells = []
        for r in res:
            a, b = r["sasrec"]["ndcg@10"], r["memory-moe + few_shot_adapt"]["ndcg@10"]
            lo, hi = r["memory-moe + few_shot_adapt"]["ndcg@10_minus_sasrec_ci95"]
            cells.append(f"{f(a)} / {f(b)} ({pct(b, a)}{', 95% CI excludes 0' if lo > 0 or hi < 0 else ''})")
        users = sorted({r["users"] for r in res}, reverse=True)
        rows.append([f"{DATA[ds]} ({' / '.join(f'{u:,}' for u in users)} users)", *cells])
    return md(["data"] + [f"n = {r['n']}" for r in J("few-shot-ml-100k")["results"]], rows)


@table
def continual_time():
    rows = [[name.replace("sasrec", "SASRec"), f(r["A_before"]["ndcg@10"]), f(r["A_after"]["ndcg@10"]),
             f"{f(r['forgetting']['ndcg@10'])} {ci(r['forgetting_ndcg@10_ci95'], 3)}", f(r["B_after"]["ndcg@10"])]
            for name, r in J("continual-ml-100k")["results"].items()]
    return md(["model", "A before", "A after", "forgetting (before − after), paired 95% interval", "B after"], rows)


@table
def continual_genre():
    d = J("continual-genre-ml-100k-b20")
    rows = []
    for name, r in d["results"].items():
        e = r["episodic_memory"]
        pol = [f"{f(e[p]['forgetting']['ndcg@10'])} / {f(e[p]['B_after']['ndcg@10'])}" for p in ("reindexed", "gated", "retuned")]
        rows.append([name.replace("sasrec", "SASRec"), f(r["A_before"]["ndcg@10"]), f(r["A_after"]["ndcg@10"]),
                     f"{f(r['forgetting']['ndcg@10'])} {ci(r['forgetting_ndcg@10_ci95'], 3).replace('+', '')}", f(r["B_after"]["ndcg@10"]), *pol])
    return md(["model", "A before", "A after", "forgetting", "B after", "+ episodic memory of A: (b) re-indexed, forgetting / B",
               "(c) gated", "(d) re-tuned and gated"], rows)


@table
def continual_seeds():
    rows = []
    for seed, name in (("42", "continual-genre-ml-100k-b20"), ("1", "continual-genre-ml-100k-b20-s1"), ("2", "continual-genre-ml-100k-b20-s2")):
        d, cells = J(name), [seed]
        for model in ("sasrec", "memory-moe, no memory"):
            h = d["episodic_memory_halves_forgetting"][model]["retuned"]
            cells += [f"{f(h['without_memory'])} → {f(h['forgetting'])}", f(h["ratio"], 2)]
        cells.append(ci(d["episodic_memory_halves_forgetting"]["memory-moe, no memory"]["retuned"]["excess_over_half_ci95"], 3))
        changes = {d["results"][m]["episodic_memory"]["retuned"]["B_relative_ndcg@10"] for m in ("sasrec", "memory-moe, no memory")}
        cells.append(" / ".join(sorted(c.replace("+0.0%", "0.0%") for c in changes)) + (" both" if len(changes) == 1 else ""))
        rows.append(cells)
    return md(["seed", "SASRec", "ratio", "memory-moe (no memory in the network)", "ratio", "interval of the excess over half (memory-moe)",
               "B change"], rows)


@table
def peer_speed():
    def s(x):
        return f(x, 1 if x >= 10 else 2 if x >= 1 else 3)
    rows = []
    for ds, evaluation in (("ml-100k", "943 users"), ("beauty", "22,363 users x 12,101 items")):
        d = J(f"peer-sasrec-{ds}")
        for label, key, fmt in (("seconds per training epoch", "train_seconds_per_epoch", s), (f"seconds per full evaluation ({evaluation})", "eval_seconds", s),
                                ("the same, RecBole run with memrec's malloc settings", "eval_seconds (RecBole with memrec's malloc settings)", s),
                                ("peak memory (MiB)", "peak_rss_mib", lambda x: f(x, 0))):
            if key in d:
                rows.append([f"{DATA[ds]}: {label}", fmt(d[key]["recbole"]), fmt(d[key]["memrec"]), f(d[key]["ratio"], 1) + "x"])
    full = J("peer-sasrec-ml-100k-full")
    rows.append(["ML-100K, trained to the end (`--mode full`): training seconds", f"{full['train_seconds']['recbole']:,.0f} ({full['recbole_epochs']} epochs, capped)",
                 f"{full['train_seconds']['memrec']:,.0f} ({full['memrec_epochs']} epochs, best {full['runs']['memrec'][0]['best_epoch']})",
                 f(full["train_seconds"]["ratio"], 1) + "x"])
    rows.append(["ML-100K, trained to the end: test NDCG@10 / HR@10", nh(full["recbole_test"]), nh(full["memrec_test"]), ""])
    return md(["SASRec", "RecBole 1.2.1", "memrec", "ratio"], rows)


@table
def serve_load():
    rows = []
    for name in ("serve-load-sqlite", "serve-load-sqlite-session5"):
        for r in J(name)["runs"]:
            e, q = r["events"], r["recommend"]
            rows.append([len(rows) + 1, " / ".join([f(e["p50_ms"], 1), f(e["p99_ms"], 1), f(e["max_ms"], 0)]),
                         " / ".join([f(q["p50_ms"], 1), f(q["p99_ms"], 1), f(q["max_ms"], 0)]), f(min(e["throughput"], q["throughput"]), 0),
                         e["non_200"] + q["non_200"]])
    return md(["run", "`POST /events` p50 / p99 / max ms", "`GET /recommend` p50 / p99 / max ms", "requests/s (each)", "errors"], rows)


def assist_rows(names: list[str], llm: bool = False) -> list[list[str]]:
    """Rows of the assistant's memory-settings tables from `memrec assist evaluate --json` files."""
    rows = []
    for name in names:
        d = J(name)
        for s, x in d["scientific"]["settings"].items():
            label = {"none": "none (request only)", "naive": "naive (last 10 records)", "static": "static (whole profile)"}.get(s, f"hierarchical, {d['k_memory']} summaries")
            eff = f(100 * x["R@100"] / x["memory_tokens"], 2) if x["memory_tokens"] else "-"
            row = [{"top": "vague", "path": "detailed"}[d["request_detail"]], label, f(x["R@10"], 3), f(x["R@100"], 3), f(x["N@100"], 3),
                   "-" if x["MPC"] is None else f(x["MPC"], 2), "-" if x["MRC"] is None else f(x["MRC"], 2), f(x["memory_tokens"], 0), eff]
            if llm:
                row.append(f"{x['malformed']} / {x['repaired']}")
            rows.append(row + [" / ".join(f"{x[k]:,.0f}" if x[k] >= 100 else f(x[k], 1) for k in ("time_memory_ms", "time_llm_ms", "time_items_ms"))])
    return rows


ASSIST_HEAD = ["request", "memory", "R@10", "R@100", "N@100", "MPC", "MRC", "memory tokens", "R@100 per 100 tokens"]


@table
def assist_deterministic():
    return md(ASSIST_HEAD + ["ms memory / reasoner / items"], assist_rows(["assist_cli_deterministic-top", "assist_cli_deterministic-path"]))


@table
def grpo_cpu():
    rows = []
    runs = (("grpo_cpu", "", "run 1: a copied format example accepted"), ("grpo_cpu", "rescored", "run 1 read again: the copy refused"),
            ("grpo_cpu-strict", "", "run 2: the copy refused in training too"))
    for name, part, label in runs:
        d = J(name)
        for when in ("before", "after"):
            for mode, x in (d[part] if part else d)[when].items():
                rows.append([label, f"after {d['training']['steps']} steps" if when == "after" else "before", mode,
                             f(100 * x["format_valid"], 1) + "%", f(100 * x["memory_call"], 1) + "%", f(x["R@10"], 3), f(x["R@100"], 3), f(x["N@100"], 3)])
    return md(["run", "policy", "decoding", "format-valid", "memory call", "R@10", "R@100", "N@100"], rows)


@table
def assist_smollm2():
    names = ["assist_cli_smollm2-top", "assist_cli_smollm2-path"]
    n = J(names[0])["scientific"]["queries"]
    return md(ASSIST_HEAD + [f"malformed / repaired of {n}", "ms memory / LLM / items"], assist_rows(names, llm=True))



@table
def backbone_ablation():
    d = J("backbone-beauty")
    cost = d.get("epoch_costs") or {}
    rows = [[f"`{r['row']}`", r["change"], f(r["valid"]["ndcg@10"]), f(r["valid"]["hit@10"]), f"{r['best_epoch']} / {r['epochs']}",
             f(cost[r["row"]]["relative_to_baseline"], 1) if r["row"] in cost else "-",
             f(r["valid_ndcg@10_within_baseline_work"]) if r.get("valid_ndcg@10_within_baseline_work") else "-",
             nh(r["test"]) if "test" in r else "-"] for r in d["rows"]]
    return md(["row", "what differs from the one-window SASRec", "valid NDCG@10", "valid HR@10", "best epoch / epochs run",
               "epoch cost (x baseline)", "valid NDCG@10 within the baseline's work", "test NDCG@10 / HR@10"], rows)


@table
def backbone_curves():
    rows = J("backbone-beauty")["rows"]
    epochs = [2, 4, 6, 8, 10, 12, 14, 16, 18]
    curves = {r["row"]: dict(r["valid_curve"]) for r in rows}
    return md(["row"] + [f"epoch {e}" for e in epochs],
              [[f"`{row}`"] + [f(c[e]) if e in c else "-" for e in epochs] for row, c in curves.items()])


@table
def backbone_checks():
    d = J("backbone-beauty")
    rows = []
    if d.get("ties"):
        t = d["ties"]
        rows.append([f"ties: `{t['row']}`'s validation scores ranked pessimistically / optimistically",
                     f"{f(t['valid_ndcg@10_pessimistic'])} / {f(t['valid_ndcg@10_optimistic'])}",
                     f"{f(100 * t['users_with_a_tied_target'], 3)}% of users have a tied target"])
    for n in (d[key] for key in ("neighbours", "neighbours_on_prefixes_from_end") if d.get(key)):
        rows.append([f"neighbour memory on `{n['row']}`'s weights: test NDCG@10 / HR@10 without -> with",
                     f"{nh(n['test_without'])} -> {nh(n['test_with'])}",
                     f"{n['test_ndcg@10_relative_gain']}, paired 95% {ci(n['test_ndcg@10_gain_ci95'])}; chosen on validation {n['chosen']}"])
    for row, c in (d.get("epoch_costs") or {}).items():
        rows.append([f"epoch cost of `{row}`, timed side by side", f"{f(c['seconds_per_epoch'], 0)} s", f"{f(c['relative_to_baseline'], 1)} x baseline, {c['batches_per_epoch']} batches"])
    return md(["check", "figure", "note"], rows)


# issue 19's table: per data set, memrec's rows as (label, results JSON, model) of a neighbour benchmark's
# summary (the same weights without and with the neighbour memory), or a runs.json id for a backbone alone
SOTA_ROWS = {
    "beauty": [("SASRec, one window per user", "neighbours-every-model", "sasrec"),
               ("SASRec, prefixes, 16 epochs", "neighbours-prefixes-beauty", "sasrec"),
               ("SASRec, prefixes, to convergence (frozen config)", "neighbours-prefixes-converged-beauty", "sasrec")],
    "sports": [("SASRec, one window per user", "neighbours-every-model", "sasrec"),
               ("SASRec, prefixes, to convergence (frozen config)", "neighbours-prefixes-sports", "sasrec")],
    "lastfm": [("SASRec, one window per user (the data rules before issue 19)", "neighbours-lastfm", "sasrec"),
               ("SASRec, prefixes (the data rules now)", "neighbours-prefixes-lastfm", "sasrec")],
    "amazon-scientific": [("SASRec, one window per user", "runs:sasrec-amazon-scientific/3-seeds", None),
                          ("SASRec, prefixes", "neighbours-prefixes-scientific", "sasrec"),
                          ("UR4Rec-MoE-Memory", "neighbours-every-model", "ur4rec-moe")],
    "ml-100k": [("SASRec, one window per user", "runs:sasrec-ml-100k/3-seeds", None)],
}


@table
def sota():
    pub = J("published-sota")
    rows = []
    for ds, entries in SOTA_ROWS.items():
        best = pub["best"].get(ds)
        for label, source, model in entries:
            if source.startswith("runs:"):
                r = run(source[5:])
                without, with_, gain, seeds = f(r["test"]["ndcg@10"]), "not measured", "-", len(r["seeds"])
                top = r["test"]["ndcg@10"]["mean"]
            elif (RESULTS / f"{source}.json").exists():
                s = next(x for x in J(source)["summary"] if x["dataset"] == ds and x["model"] == model)
                without, with_ = mean_std(s["test_without"], "ndcg@10"), mean_std(s["test_with"], "ndcg@10")
                gain = pct(s["test_with"]["ndcg@10"]["mean"], s["test_without"]["ndcg@10"]["mean"]) + (
                    f" {ci(s['test_ndcg@10_gain_ci95'])}" if s.get("test_ndcg@10_gain_ci95") else "")
                seeds, top = len(s["seeds"]), max(s["test_with"]["ndcg@10"]["mean"], s["test_without"]["ndcg@10"]["mean"])
            else:
                continue  # not run yet
            variant = pub["sasrec_variants"].get(ds)
            rows.append([DATA[ds], label, seeds, without, with_, gain,
                         f"{f(best['ndcg@10'])} ({best['model']})" if best else "-",
                         f"{f(variant['ndcg@10'])} ({variant['model']})" if variant else "-",
                         ("**yes**" if top > best["ndcg@10"] else f"no ({pct(top, best['ndcg@10'])})") if best else "-"])
    return md(["data set", "memrec", "seeds", "test NDCG@10 without memory", "with the neighbour memory", "memory's gain, paired 95%",
               "best published", "published SASRec variant", "best published beaten"], rows)


PREFIX_PAIRS = [  # (data set, one window per user, prefix samples): runs.json ids, seed 42
    ("beauty", "sasrec-beauty/one-window", "sasrec-beauty"), ("sports", "sasrec-sports/one-window", "sasrec-sports"),
    ("lastfm", "sasrec-lastfm/one-window/seed-42", "sasrec-lastfm/prefixes/seed-42"),
    ("amazon-scientific", "sasrec-amazon-scientific", "sasrec-amazon-scientific/prefixes/seed-42"),
    ("ml-100k", "sasrec-ml-100k", "sasrec-ml-100k/prefixes"),
]


@table
def prefixes_everywhere():
    rows = []
    for ds, window, prefix in PREFIX_PAIRS:
        if prefix not in J("runs")["runs"]:
            continue
        a, b = run(window), run(prefix)
        rows.append([DATA[ds], f(a["valid"]["ndcg@10"]), f(b["valid"]["ndcg@10"]), pct(b["valid"]["ndcg@10"], a["valid"]["ndcg@10"]),
                     f"{a['best_epoch']} / {a['epochs']}", f"{b['best_epoch']} / {b['epochs']}" + (" (time cap)" if b.get("capped") else ""),
                     f(float(a["seconds_per_epoch"]), 1), f(float(b["seconds_per_epoch"]), 1)])
    return md(["data set", "valid NDCG@10, one window per user", "prefixes", "change", "best epoch / epochs, one window",
               "prefixes", "s / epoch, one window", "prefixes"], rows)


# issue 19's converged ablation on Beauty: (what differs from the frozen config, runs.json id), seed 42 or 3 seeds,
# each run to its own patience with the neighbour memory built on its weights
BACKBONE_CONVERGED = [
    ("the frozen config (prefixes)", "sasrec-beauty"),
    ("the frozen config (prefixes)", "sasrec-beauty/prefixes/converged-3-seeds"),
    ("no dropout on the feed-forward's hidden layer (`--model_config.inner_dropout=0`)", "sasrec-beauty/inner-dropout-0"),
    ("BSARec's Beauty settings: lr 5e-4, 1 head, no feed-forward dropout", "sasrec-beauty/bsarec-settings"),
    ("BSARec's Beauty settings: lr 5e-4, 1 head, no feed-forward dropout", "sasrec-beauty/bsarec-settings/3-seeds"),
    ("hidden size 128 (`--model_config.hidden_size=128 --model_config.inner_size=512`)", "sasrec-beauty/hidden-128"),
]


@table
def backbone_converged():
    rows = [[label, ", ".join(map(str, r["seeds"])), f(r["valid"]["ndcg@10"]), f"{r['best_epoch']} / {r['epochs']}" if "epochs" in r else "per seed in runs.json",
             nh(r["test"]), nh(r["test_with_neighbours"])]
            for label, run_id in BACKBONE_CONVERGED if (r := J("runs")["runs"].get(run_id))]
    return md(["Beauty, to convergence", "seeds", "valid NDCG@10 (backbone)", "best epoch / epochs",
               "test NDCG@10 / HR@10 without memory", "with the neighbour memory"], rows)


@table
def tune_scientific():
    d = J("tune-sasrec-scientific")
    states = [t["state"] for t in d["trials"]]
    best = d["best"]
    values = ", ".join(f"{k.split('.')[-1]} {f(float(v), 4) if k == 'train.lr' else (f(float(v), 2) if k == 'model_config.dropout' else v)}"
                       for k, v in best.items() if "." in k and v != "")
    test = [r["test"]["ndcg@10"] for r in d["confirm"]]
    mean = sum(test) / len(test)
    std = (sum((x - mean) ** 2 for x in test) / (len(test) - 1)) ** 0.5 if len(test) > 1 else None
    prefixes = next(x for x in J("neighbours-prefixes-scientific")["summary"] if x["model"] == "sasrec")["test_without"]
    rows = [["trials: complete / pruned", f"{states.count('complete')} / {states.count('pruned')}", f"`{d['command']}`"],
            ["best trial's validation NDCG@10", f(float(best["valid_ndcg@10"])), values],
            [f"its config trained again, test NDCG@10 over seeds {', '.join(str(r['seed']) for r in d['confirm'])}", f({"mean": mean, "std": std}),
             "`memrec train --config DIR/best.yaml --train.seed=S --output RUN`"],
            ["the frozen config with prefix samples, test NDCG@10 (3 seeds)", mean_std(prefixes, "ndcg@10"), "docs/backbone.md"],
            ["the frozen config (one window per user), test NDCG@10 (3 seeds)", f(run("sasrec-amazon-scientific/3-seeds")["test"]["ndcg@10"]), "runs.json"]]
    return md(["", "figure", "how"], rows)


@table
def distributed():
    rows = []
    for name in ("ml-100k", "beauty"):
        if not (RESULTS / f"distributed-{name}.json").exists():
            continue
        d = J(f"distributed-{name}")
        one = {r["seed"]: r["train_seconds_per_epoch"] for r in d["runs"] if r["processes"] == 1}
        for r in d["runs"]:
            rows.append([name + (f" (capped at {d['capped_epochs']} epochs)" if d["capped_epochs"] else ""), r["processes"], r["seed"],
                         f"{r['best_epoch']} / {r['epochs']}", f(r["train_seconds_per_epoch"], 1), f(one[r["seed"]] / r["train_seconds_per_epoch"], 2) + "x",
                         f(r["eval_seconds"], 1), nh(r["test"]), r["peak_rss_mib"], {True: "yes", False: "no"}.get(r.get("gathered_equals_one_process"), "-")])
    seeds = run("sasrec-ml-100k/3-seeds")
    rows.append(["ml-100k (runs.json, 3 seeds)", 1, ", ".join(map(str, seeds["seeds"])), "-", "-", "-", "-",
                 f"{f(seeds['test']['ndcg@10'])} / {f(seeds['test']['hit@10'])}", "-", "-"])
    return md(["data set", "processes", "seed", "best epoch / epochs", "s / epoch", "speed-up", "eval s", "test NDCG@10 / HR@10",
               "peak MiB (largest process)", "gathered metrics = one process's"], rows)


@table
def export_check():
    d = J("export-sasrec-nb-beauty-42")
    rows = [[fmt, c["users"], f"{c['max_abs_diff']:.1e}", f(100 * c["top10_identical_users"], 1) + "%", "yes" if c["top10_equal"] else "no", f"`{c['command']}`"]
            for fmt, c in d["checks"].items()]
    return md(["format", "test users", "max abs(score - eager)", "top 10 identical", "top 10 equal up to ties within 1e-4", "command"], rows)


@table
def scale_loss():
    d = J("scale-loss-ml-100k")
    names = {"ce": "full cross-entropy", "popularity-logq": "sampled, popularity negatives, logQ", "popularity-no-logq": "sampled, popularity negatives, no logQ",
             "in_batch-logq": "sampled, in-batch negatives, logQ", "in_batch-no-logq": "sampled, in-batch negatives, no logQ", "uniform": "sampled, uniform negatives"}
    rows = [[names[k], f(v["valid_ndcg@10"]), f(v["valid_hit@10"]), f"{v['best_epoch']} / {v['epochs']}", f(v["seconds_per_epoch"], 1),
             f"{f(v['test_ndcg@10'])} / {f(v['test_hit@10'])}"] for k, v in d["variants"].items()]
    return md(["loss (`train.loss`, `train.sampler`, `train.logq`)", "valid NDCG@10", "valid HR@10", "best epoch / epochs", "s / epoch",
               "test NDCG@10 / HR@10"], rows)


@table
def scale_training():
    d = J("scale-synthetic")
    t, e, g = d["train"], d["evaluate"], d["data"]
    rows = [["synthetic data (memrec.data.synthetic)", f"{g['users']:,} users, {g['items']:,} items, {g['events']:,} events", f(g["seconds"], 0), f(g["peak_gib"], 2)],
            [f"training: SASRec, sampled softmax ({t['num_negatives']} popularity negatives, logQ), batch {t['batch_size']}",
             f"{f(t['seconds_per_step'], 2)} s / step over {t['steps_timed']} steps; {t['steps_per_epoch']:,} steps / epoch", f"{t['seconds_per_epoch']:,} / epoch (estimated)",
             f(t["peak_gib"], 2)],
            [f"full-ranking evaluation, {e['users']:,} validation users sampled", f"{f(e['users_per_second'], 1)} users / s",
             f"{f(e['seconds'], 0)} ({e['seconds_for_all']:,} for all {e['all_valid_users']:,}, estimated)", f(e["peak_gib"], 2)]]
    return md(["step (one process, one thread)", "work", "seconds", "peak memory so far, GiB"], rows)


SCALE_RUNS = (("scale-beauty", "Beauty (SASRec seed 42, trained)"), ("scale-synthetic", "synthetic (SASRec after the capped training above)"))


@table
def scale_recommend():
    rows = []
    for name, label in SCALE_RUNS:
        d = J(name)
        r = d["recommend"]
        items = d["items"] if "items" in d else d["data"]["items"]
        for p in r["by_nprobe"]:
            rows.append([label, f"{items:,}", f"{f(r['exact']['p50_ms'], 1)} / {f(r['exact']['p99_ms'], 1)}", f"{r['index'].upper()}, nprobe {p['nprobe']}",
                         f"{f(p['p50_ms'], 1)} / {f(p['p99_ms'], 1)}", f(p["recall@10"], 3)])
    return md(["data", "items", "exact p50 / p99 ms", "item index", "through the index p50 / p99 ms", "recall@10 of its top-10 vs exact"], rows)


@table
def scale_batch():
    rows = []
    for name, label in SCALE_RUNS:
        d = J(name)
        b, index = d["batch_inference"], d["recommend"]["index"]
        rows.append([label, f"{b['users']:,}", f(b["exact_users_per_second"], 0), f(b[f"{index}_users_per_second"], 0)])
    return md(["data", "users ranked", "users / s, exact", "users / s, item index (IVF, nprobe 16)"], rows)


STREAM_ORDER = ("plain", "frozen", "neighbours", "user-memory", "both", "retrain")


def stream_rows(d: dict) -> list[tuple[str, dict]]:
    return [(name, d["policies"][name]) for name in STREAM_ORDER if name in d["policies"]]


@table
def stream_ml100k():
    d, rows = J("stream-ml-100k-sasrec-0.8"), []
    for name, r in stream_rows(d):
        cost = r["cost"]
        rows.append([name, f(r["all"]["ndcg@10"]), f(r["all"]["hit@10"]), f(r["known_user_known_item"]["ndcg@10"]), f(r["new_user"]["ndcg@10"]),
                     "–" if name == d["baseline"] else signed(100 * r["vs_baseline_ndcg@10"], 1) + "%",
                     f(cost["seconds_per_1000_events"]["mean"], 2), f(cost["retrain_seconds"]["mean"], 0) if cost["retrain_seconds"]["mean"] else "–"])
    ev = d["policies"][d["baseline"]]["events"]
    return md(["policy", f"NDCG@10 all ({ev['all']:,} events)", "HR@10 all", f"NDCG@10 returning users ({ev['known_user_known_item']:,})",
               f"NDCG@10 new users ({ev['new_user']:,})", f"vs {d['baseline']}", "s / 1,000 events", "s retraining"], rows)


@table
def stream_target():
    d = J("stream-ml-100k-sasrec-0.8")
    t, gains = d["target"], d["gain_over_baseline_ndcg@10_per_seed"]
    rows = [[name, signed(100 * t[name]["beats_baseline_by"], 1) + "%", f(gains[name]),
             f(t[name]["share_of_retraining_gain"], 2) if t[name]["share_of_retraining_gain"] is not None else "–",
             f"{f(t[name]['extra_seconds'], 0)} s ({f(100 * t[name]['extra_compute_vs_retrain'], 1)}%)"]
            for name, _ in stream_rows(d) if name in t]
    rows.append(["retrain", signed(100 * d["policies"]["retrain"]["vs_baseline_ndcg@10"], 1) + "%", f(gains["retrain"]), "1", f"{f(t['retrain_extra_seconds'], 0)} s (100%)"])
    return md(["policy", f"NDCG@10 vs {d['baseline']} (target ≥ +5%)", "paired gain per seed, mean ± std",
               "share of retraining's gain (target ≥ 0.5)", "compute beyond plain, vs retraining's (target ≤ 5%)"], rows)


@table
def stream_drift():
    x = J("stream-ml-100k-sasrec-0.8")["drift"]
    rows = [["events before T / after T", f"{x['events_before']:,} / {x['stream_events']:,}"],
            ["stream events of users first seen after T", f"{x['events_of_new_users']:,} ({f(100 * x['events_of_new_users'] / x['stream_events'], 1)}%), "
                                                          f"{x['users_first_seen_after_T']} users"],
            ["returning users in the stream (their mean number of events before T)",
             f"{x['returning_users']} ({f(x['returning_users_mean_events_before_T'], 1)})"],
            ["stream events of items first seen after T (no policy can rank them)", f"{x['events_of_new_items']:,}, {x['items_first_seen_after_T']} items"],
            ["top-100 items before T that are top-100 in the stream", f(x["top100_overlap_before_vs_stream"], 2)],
            ["stream events whose item is in the top 100 before T / in the stream's own top 100",
             f"{f(x['stream_share_in_top100_before'], 3)} / {f(x['stream_share_in_top100_stream'], 3)}"],
            ["top-100 overlap, first half of the stream vs second half", f(x["top100_overlap_first_half_vs_second_half"], 2)]]
    return md(["what changes after T", "ML-100K, cut 0.8"], rows)


@table
def stream_speed():
    x = J("stream-speed")
    s = x["seconds_per_1000_events_best"]
    rows = [[name, f(v, 2)] for name, v in s.items()]
    rows.append(["batched over one at a time, frozen / neighbours",
                 f"{f(x['speedup_batched_over_one_at_a_time']['frozen'], 1)}× / {f(x['speedup_batched_over_one_at_a_time']['neighbours'], 1)}× (same ranks: {'yes' if x['same_ranks_batched_and_one_at_a_time'] else 'no'})"])
    return md([f"replay of the first {x['events']:,} stream events (seed 42's SASRec, cut {x['cut']})", "s / 1,000 events, side by side"], rows)


@table
def stream_ur4rec():
    d = J("stream-ml-100k-ur4rec-moe-0.9-seed42")
    policies = {**d["policies"], **J("stream-ml-100k-ur4rec-moe-0.9-seed42-retrain")["policies"]}
    rows = [[name, f(r["all"]["ndcg@10"]), f(r["all"]["hit@10"]), f(r["known_user_known_item"]["ndcg@10"]), f(r["new_user"]["ndcg@10"]),
             f(r["cost"]["seconds_per_1000_events"], 2), f(r["cost"]["retrain_seconds"], 0) if r["cost"]["retrain_seconds"] else "–"]
            for name, r in policies.items()]
    ev = policies["frozen"]
    return md(["policy (one seed)", f"NDCG@10 all ({ev['all']['events']:,} events)", "HR@10 all", f"NDCG@10 returning users ({ev['known_user_known_item']['events']:,})",
               f"NDCG@10 new users ({ev['new_user']['events']:,})", "s / 1,000 events", "s retraining"], rows)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render() -> dict[Path, str]:
    """Each document with its tables as the JSON gives them; every table placed exactly once."""
    placed, out = {}, {}
    for path in documents():
        text = path.read_text()

        def fill(m: re.Match) -> str:
            name = m.group(2)
            if name not in TABLES:
                raise SystemExit(f"{rel(path)}: unknown table {name!r} (known: {', '.join(TABLES)})")
            if name in placed:
                raise SystemExit(f"table {name!r} is in {placed[name]} and {rel(path)}: one place per table")
            placed[name] = rel(path)
            return m.group(1) + TABLES[name]() + m.group(4)
        out[path] = MARKED.sub(fill, text)
    missing = set(TABLES) - set(placed)
    if missing:
        raise SystemExit(f"tables in no document: {', '.join(sorted(missing))}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        if text != path.read_text():
            stale.append(rel(path))
            if not args.check:
                path.write_text(text)
    if stale:
        print(("stale tables in " if args.check else "rewrote tables in ") + ", ".join(stale) +
              (": run python scripts/tables.py" if args.check else ""), file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
