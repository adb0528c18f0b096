"""Evaluation of the assistant: memory settings on the synthetic Scientific requests, like / dislike AUC on TALLRec.

Scientific (synthetic requests, see :mod:`memrec.assist.queries`): for each memory setting, full
ranking of the 4,385 items (the user's history masked, pessimistic ties) -> Recall and NDCG at
10 / 100 / 1000, heuristic MPC / MRC, mean memory tokens (MiniLM word pieces), efficiency
(R@100 per 100 memory tokens), malformed profiles (the request used instead), repaired profiles (an LLM
answer cut off and closed, see :func:`memrec.assist.llm_reasoner.repair_ideal_profile`) and the mean time
per request split into memory retrieval, reasoner (LLM) calls and item retrieval.

TALLRec (real like / dislike labels, 1,000 test examples): local memory = one record per liked
title ("Liked movie: TITLE"); the request is "a movie I will like"; ``none`` shows no memory,
``naive`` the last 10 liked titles, ``hierarchical`` the 3 liked titles retrieved for the request and
the asked-about title. Score = cosine(ideal profile, target title), and the same minus the highest
cosine between the target and a disliked title; AUC over the file.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from memrec.assist.catalog import CachedEncoder, ItemCatalog
from memrec.assist.memory import MemoryConfig, MemoryIndex, build_memory
from memrec.assist.metrics import answer_contribution, auc, efficiency, mean_defined, ndcg_at, overlap_share, recall_at
from memrec.assist.pipeline import DEFAULT_K_MEMORY, SETTINGS, Assistant
from memrec.assist.queries import QuerySet, load_tallrec, scientific_queries
from memrec.assist.types import MemoryChunk, Query, Reasoner
from memrec.errors import DatasetNotFoundError

CUTOFFS = (10, 100, 1000)
TALLREC_REQUEST = "a movie I will like"


@dataclass
class EvalConfig:
    """What one evaluation run covers.

    Example:
        >>> EvalConfig(num_queries=100).settings
        ('none', 'naive', 'static', 'hierarchical')
    """

    dataset: str = "amazon-scientific"
    data_dir: str | None = None
    num_queries: int = 1000
    num_train: int = 2000
    seed: int = 0
    settings: tuple[str, ...] = SETTINGS
    k_memory: int = DEFAULT_K_MEMORY
    tallrec: str | None = ""  # "" = DATA_DIR/tallrec-movie/test.json; None = skip
    tallrec_limit: int | None = None
    memory: MemoryConfig = field(default_factory=MemoryConfig)


def scientific_setup(config: EvalConfig, encoder=None):
    """(data set, split, query set, catalogue, cached encoder) for the Scientific evaluation."""
    from memrec.config import DataConfig
    from memrec.data import load_dataset, split_dataset
    from memrec.encoders.items import encode_item_texts
    from memrec.encoders.text import TextEncoder

    ds = load_dataset(DataConfig(dataset=config.dataset, data_dir=config.data_dir, download=False))
    split = split_dataset(ds)
    queries = scientific_queries(ds, split, config.num_queries, config.num_train, config.seed)
    encoder = encoder or TextEncoder()
    features = encode_item_texts(ds, encoder)  # cached on disk after the first run
    encode = CachedEncoder(encoder)
    texts = [t.strip() for t in ds.items.text[1:]]  # the texts memory records repeat
    encode.add(texts, features.features[1:])
    catalog = ItemCatalog(ds.item_ids[1:], texts, encode, vectors=features.features[1:])
    return ds, split, queries, catalog, encode


def scientific_memory(queries: QuerySet, reasoner: Reasoner, catalog: ItemCatalog, encode, config: MemoryConfig = MemoryConfig()) -> MemoryIndex:
    """Local memory of the evaluated users (training items only) and global memory from the training requests."""
    return build_memory(queries.histories, reasoner, encode, queries.train, catalog, config,
                        meta={"queries": queries.description})


def evaluate_setting(assistant: Assistant, queries: list[Query]) -> dict:
    """Ranking, memory-contribution, token and timing figures of one assistant over ``queries``."""
    answers = assistant.ask_many(queries, k=10)
    catalog = assistant.catalog
    ranks = catalog.ranks([a.profile.ideal_item_profile for a in answers], [q.target for q in queries],
                          exclude=[list(q.history) for q in queries] if assistant.exclude_history else None)
    out = {f"R@{k}": recall_at(ranks, k) for k in CUTOFFS}
    out |= {f"N@{k}": ndcg_at(ranks, k) for k in CUTOFFS}
    used = [[m.text for m in a.used_memories] for a in answers]
    targets = [catalog.text_of(q.target) for q in queries]
    contributions = [answer_contribution(a, [t]) for a, t in zip(answers, targets)]  # heuristic MPC / MRC per answer
    out["MPC"] = mean_defined([c["MPC"] for c in contributions])
    out["MRC"] = mean_defined([c["MRC"] for c in contributions])
    out["MRC_global"] = mean_defined([overlap_share(a.aspects, t) for a, t in zip(answers, targets)])
    out["memory_use"] = sum(1 for u in used if u) / max(len(answers), 1)
    out["memory_tokens"] = sum(a.memory_tokens for a in answers) / max(len(answers), 1)
    out["efficiency"] = efficiency(out["R@100"], out["memory_tokens"])
    out["malformed"] = assistant.malformed
    out["repaired"] = assistant.repaired
    for part in ("memory", "llm", "items"):
        out[f"time_{part}_ms"] = 1000 * sum(a.timings[part] for a in answers) / max(len(answers), 1)
    out["queries"] = len(answers)
    # per answer, in the order of the requests (columns: a file of 1,000 requests stays small)
    out["per_answer"] = {"rank": ranks.tolist(), "memories_used": [len(u) for u in used],
                         "MPC": [None if c["MPC"] is None else round(c["MPC"], 4) for c in contributions],
                         "MRC": [None if c["MRC"] is None else round(c["MRC"], 4) for c in contributions]}
    return out


def evaluate_scientific(reasoner: Reasoner, config: EvalConfig = EvalConfig(), count_tokens=None, setup=None, memory: MemoryIndex | None = None) -> dict:
    """Every memory setting on the synthetic Scientific requests; ``setup`` reuses :func:`scientific_setup`'s output."""
    ds, split, queries, catalog, encode = setup or scientific_setup(config)
    start = time.perf_counter()
    if memory is None:
        memory = scientific_memory(queries, reasoner, catalog, encode, config.memory)
    build_s = time.perf_counter() - start
    if count_tokens is None:
        from memrec.assist.metrics import minilm_token_counter

        count_tokens = minilm_token_counter()
    rows = {}
    for setting in config.settings:
        assistant = Assistant(reasoner, memory, catalog, setting, k_memory=config.k_memory, naive_window=config.memory.naive_window,
                              count_tokens=count_tokens)
        rows[setting] = evaluate_setting(assistant, queries.queries)
    return {
        "data": f"{ds.name}: {queries.description}" if ds is not None else queries.description, "synthetic": True, "items": len(catalog), "queries": len(queries.queries),
        "train_queries": len(queries.train), "scenarios": queries.stats.get("scenarios"), "seed": config.seed,
        "memory_build_s": build_s, "memory_chunks": len(memory.local), "aspects": sum(len(a) for a in memory.global_.values()),
        "tokens": "MiniLM word pieces of the memory text shown (chunks + selected aspects)",
        "protocol": "full ranking over the catalogue, the user's history masked, pessimistic ties",
        "settings": rows,
    }


def tallrec_path(config: EvalConfig) -> Path:
    if config.tallrec:
        return Path(config.tallrec)
    base = config.data_dir or os.environ.get("MEMREC_DATA_DIR")
    if not base:
        raise DatasetNotFoundError("TALLRec: pass the path of tallrec-movie/test.json or set MEMREC_DATA_DIR")
    return Path(base) / "tallrec-movie" / "test.json"


def evaluate_tallrec(reasoner: Reasoner, encode, path: str | Path, limit: int | None = None, settings=("none", "naive", "hierarchical"), k_memory: int = 3) -> dict:
    """Like / dislike AUC of the ideal profile on TALLRec movies (see the module docstring)."""
    examples = load_tallrec(path)[:limit]
    users = [f"tallrec-{n}" for n in range(len(examples))]
    chunks = [MemoryChunk(f"{u}/record/{i}", u, "record", "movies", f"Liked movie: {t}") for u, ex in zip(users, examples) for i, t in enumerate(ex.liked)]
    memory = MemoryIndex(chunks, encode)
    labels = [ex.label for ex in examples]
    target = F.normalize(encode([ex.target for ex in examples]).float(), dim=-1)  # (E, D)
    disliked = []
    for ex, t in zip(examples, target):
        d = F.normalize(encode(list(ex.disliked)).float(), dim=-1) @ t if ex.disliked else torch.zeros(1)
        disliked.append(float(d.max()))
    out = {"examples": len(examples), "positives": sum(labels), "request": TALLREC_REQUEST, "settings": {}}
    for setting in settings:
        start = time.perf_counter()
        contexts = []
        for u, ex in zip(users, examples):
            if setting == "none" or not ex.liked:
                contexts.append([])
            elif setting == "naive":
                contexts.append(memory.records(u, last=10))
            else:
                contexts.append(memory.retrieve(u, [TALLREC_REQUEST, ex.target], k=k_memory))
        batched = getattr(reasoner, "ideal_item_profiles", None)
        if batched is not None:
            answers = [a for b in range(0, len(contexts), 16)
                       for a in batched([TALLREC_REQUEST] * len(contexts[b:b + 16]), [[]] * len(contexts[b:b + 16]), contexts[b:b + 16])]
        else:
            answers = [reasoner.ideal_item_profile(TALLREC_REQUEST, [], mems) for mems in contexts]
        profiles = [a.ideal_item_profile if a.well_formed and a.ideal_item_profile.strip() else TALLREC_REQUEST for a in answers]
        shown = [len(c) for c in contexts]
        malformed = sum(1 for a in answers if not a.well_formed)
        repaired = sum(1 for a in answers if a.well_formed and a.repaired)
        sims = (F.normalize(encode(profiles).float(), dim=-1) * target).sum(-1).tolist()
        out["settings"][setting] = {
            "AUC": auc(sims, labels),
            "AUC_minus_disliked": auc([s - d for s, d in zip(sims, disliked)], labels) if setting != "none" else None,
            "memories_shown": sum(shown) / len(shown),
            "malformed": malformed,
            "repaired": repaired,
            "ms_per_example": 1000 * (time.perf_counter() - start) / len(examples),
        }
    liked = [F.normalize(encode(list(ex.liked)).float(), dim=-1).mean(0) if ex.liked else torch.zeros(target.shape[1]) for ex in examples]
    centroid = [float(v @ t) for v, t in zip(liked, target)]
    out["baseline_liked_centroid_AUC"] = auc(centroid, labels)
    out["baseline_liked_minus_disliked_AUC"] = auc([c - d for c, d in zip(centroid, disliked)], labels)
    return out


def run(reasoner: Reasoner, config: EvalConfig = EvalConfig(), setup=None, memory: MemoryIndex | None = None) -> dict:
    """Scientific settings table plus TALLRec AUC (unless ``config.tallrec`` is None) as one JSON-ready dict."""
    setup = setup or scientific_setup(config)
    result = {"backend": getattr(reasoner, "name", type(reasoner).__name__), "config": _jsonable(asdict(config)),
              "scientific": evaluate_scientific(reasoner, config, setup=setup, memory=memory)}
    if config.tallrec is not None:
        result["tallrec"] = evaluate_tallrec(reasoner, setup[4], tallrec_path(config), config.tallrec_limit, k_memory=config.k_memory)
    for name in ("calls", "malformed", "repaired"):  # an LLM reasoner's counters per task
        if isinstance(getattr(reasoner, name, None), dict):
            result[f"reasoner_{name}"] = dict(getattr(reasoner, name))
    return result


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _fmt(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown(result: dict) -> str:
    """The settings table (and the TALLRec table) of a :func:`run` result as Markdown."""
    sci = result["scientific"]
    memory_by = f" (memory written by: {result['memory_backend']})" if result.get("memory_backend", result["backend"]) != result["backend"] else ""
    lines = [f"Back-end: {result['backend']}{memory_by}. Scientific, SYNTHETIC requests ({sci['queries']} queries, {sci['items']} items, "
             f"seed {sci['seed']}; {sci['protocol']}).", "",
             "| memory | R@10 | R@100 | R@1000 | N@10 | N@100 | N@1000 | MPC | MRC | memory tokens | R@100 / 100 tokens | malformed | repaired | ms memory / LLM / items |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sci["settings"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r[k]) for k in ("R@10", "R@100", "R@1000", "N@10", "N@100", "N@1000", "MPC", "MRC"))
                     + f" | {r['memory_tokens']:.1f} | {_fmt(r['efficiency'], 3)} | {r['malformed']} | {r.get('repaired', 0)} | "
                     + f"{r['time_memory_ms']:.1f} / {r['time_llm_ms']:.1f} / {r['time_items_ms']:.1f} |")
    if "tallrec" in result:
        t = result["tallrec"]
        lines += ["", f"TALLRec movies (real labels, {t['examples']} test examples, {t['positives']} positive).", "",
                  "| memory | AUC (profile vs target) | AUC (minus closest disliked) | memories shown | malformed | repaired | ms / example |", "|---|---|---|---|---|---|---|"]
        for name, r in t["settings"].items():
            lines.append(f"| {name} | {_fmt(r['AUC'])} | {_fmt(r['AUC_minus_disliked'])} | {r['memories_shown']:.1f} | {r['malformed']} | "
                         f"{r.get('repaired', 0)} | {r['ms_per_example']:.1f} |")
        lines.append(f"| baseline: liked-title centroid (no reasoner) | {_fmt(t['baseline_liked_centroid_AUC'])} | "
                     f"{_fmt(t['baseline_liked_minus_disliked_AUC'])} | all | - | - | - |")
    return "\n".join(lines)
