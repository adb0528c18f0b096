"""``memrec assist ...``: build the memory, ask the assistant, evaluate it, train it with GRPO, serve an LLM.

    memrec assist build-memory --output runs/assist-memory --queries 1000
    memrec assist ask --memory runs/assist-memory --user 17 "a digital caliper for my workshop"
    memrec assist evaluate --memory runs/assist-memory --json runs/assist-eval.json
    memrec assist train-rl ...      (memrec.assist.grpo)
    memrec assist serve-llm ...     (memrec.assist.llm.server)

``--backend`` picks the reasoner: ``deterministic`` (default, no LLM), ``smollm2`` (the packaged
SmolLM2-135M-Instruct through transformers) or ``openai`` (an OpenAI-compatible server at
``--llm-url`` serving ``--llm-model``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections import Counter
from pathlib import Path

from memrec import progress
from memrec.assist.types import Query
from memrec.errors import ConfigError, MemrecError

BACKENDS = ("deterministic", "smollm2", "openai")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``assist`` subcommands on ``parser``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["ask", "--memory", "m", "--user", "7", "a caliper"]).request
        'a caliper'
    """
    sub = parser.add_subparsers(dest="assist_command", required=True)

    def common(p, memory_required: bool = True):
        p.add_argument("--backend", choices=BACKENDS, default="deterministic", help="reasoner (default: deterministic, no LLM)")
        p.add_argument("--llm-url", help="openai back-end: base URL of an OpenAI-compatible server")
        p.add_argument("--llm-model", help="openai back-end: model name; smollm2 back-end: a local model folder instead (e.g. a GRPO run's model/)")
        p.add_argument("--no-continue-flags", action="store_true",
                       help="openai back-end: leave vLLM's continue_final_message / add_generation_prompt out of requests "
                            "(for servers that reject unknown fields)")
        p.add_argument("--data-dir", help="folder holding the registered data sets (else $MEMREC_DATA_DIR)")
        p.add_argument("--max-new-tokens", type=int, default=256, help="LLM back-ends: new tokens per answer")
        p.add_argument("--profile-prompt", default="ideal_profile", choices=("ideal_profile", "ideal_profile_compact"),
                       help="LLM back-ends: the ideal-profile prompt (compact: numbered memories, id list first, at most 12 words)")
        p.add_argument("--no-repair", action="store_true", help="LLM back-ends: count cut-off answers as malformed instead of closing them")
        if memory_required:
            p.add_argument("--memory", required=True, help="memory folder written by build-memory")

    p = sub.add_parser("build-memory", help="build and save local + global memory for the synthetic Scientific requests")
    common(p, memory_required=False)
    p.add_argument("--output", required=True, help="memory folder to write")
    p.add_argument("--dataset", default="amazon-scientific", help="data set whose users and items the requests come from")
    p.add_argument("--queries", type=int, default=1000, help="users (requests) to sample")
    p.add_argument("--train-queries", type=int, default=2000, help="requests of other users for the global memory")
    p.add_argument("--seed", type=int, default=0, help="seed of the request sampling")
    p.add_argument("--request-detail", choices=("path", "leaf", "top"), default="path",
                   help="how much of the target a synthetic request names: category path (detailed), leaf words, or top-level category only (vague)")

    p = sub.add_parser("ask", help="answer one request for a user")
    common(p)
    p.add_argument("--user", required=True, help="a user id of the data set (their local memory is read)")
    p.add_argument("request", help="what the user asks for, in words")
    p.add_argument("--category", help="scenario of the request (default: the top category of the closest items)")
    p.add_argument("--setting", default="hierarchical", choices=("none", "naive", "static", "hierarchical"), help="which memory the answer may read")
    p.add_argument("-k", type=int, default=10, help="how many items to list")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")

    p = sub.add_parser("evaluate", help="memory-settings table on the stored requests, and TALLRec AUC")
    common(p)
    p.add_argument("--limit", type=int, help="evaluate only the first N stored requests")
    p.add_argument("--settings", default="none,naive,static,hierarchical", help="comma-separated memory settings to compare")
    p.add_argument("--request-detail", choices=("path", "leaf", "top"),
                   help="rewrite the stored requests (same users and targets) at this detail: path (detailed) or top (vague; default: as stored)")
    p.add_argument("-k", "--k-memory", type=int, default=2, help="summary chunks the hierarchical setting retrieves")
    p.add_argument("--tallrec", default="", help="TALLRec test.json (default: DATA_DIR/tallrec-movie/test.json); 'none' skips it")
    p.add_argument("--tallrec-limit", type=int, help="score only the first N TALLRec examples (default: all)")
    p.add_argument("--json", help="write the results here")

    for name, module, help_text in (("train-rl", "memrec.assist.grpo", "GRPO training of the LLM reasoner (TRL)"),
                                    ("serve-llm", "memrec.assist.llm.server", "an OpenAI-compatible server for a local LLM")):
        p = sub.add_parser(name, help=f"{help_text}; its options: memrec assist {name} --help", add_help=False)
        p.set_defaults(delegate=module, delegate_name=name)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=f"its own options: memrec assist {name} --help")  # parsed by the module itself, imported only when used


def run_delegate(module_name: str, name: str, argv: list[str]) -> int:
    """Import ``module_name`` (lazily: it may need TRL or a web server) and run it with its own options."""
    try:
        module = __import__(module_name, fromlist=["add_arguments", "run"])
        add, main = module.add_arguments, module.run
    except (ImportError, AttributeError) as exc:
        raise MemrecError(f"`memrec assist {name}` needs {module_name}.add_arguments / run, which are not available ({exc})") from None
    from memrec.cli import DefaultsFormatter

    parser = argparse.ArgumentParser(prog=f"memrec assist {name}", formatter_class=DefaultsFormatter)
    add(parser)
    return int(main(parser.parse_args(argv)) or 0)


def run(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    """Run the chosen ``assist`` subcommand; returns the exit status. ``extra``: arguments the top-level
    parser did not know (a delegated subcommand parses them, the others refuse them)."""
    if getattr(args, "delegate", None):
        return run_delegate(args.delegate, args.delegate_name, list(extra or []) + list(args.rest))
    if extra:
        raise ConfigError(f"memrec assist {args.assist_command}: unrecognized arguments {' '.join(extra)}")
    return {"build-memory": cmd_build_memory, "ask": cmd_ask, "evaluate": cmd_evaluate}[args.assist_command](args)


def make_reasoner(args, documents: list[str]):
    """The reasoner ``--backend`` names; the deterministic one weighs terms by the catalogue texts."""
    if args.backend == "deterministic":
        from memrec.assist.deterministic import DeterministicReasoner
        from memrec.assist.queries import SCIENTIFIC_TOP

        return DeterministicReasoner(documents=documents, scenarios=SCIENTIFIC_TOP)
    from memrec.assist.llm_reasoner import LLMReasoner

    options = {"max_new_tokens": getattr(args, "max_new_tokens", 256), "repair": not getattr(args, "no_repair", False),
               "profile_prompt": getattr(args, "profile_prompt", "ideal_profile")}
    if args.backend == "smollm2":
        from memrec.assist.llm.hf import HFGenerator

        return LLMReasoner(HFGenerator(model=args.llm_model or "smollm2"), **options)
    if not args.llm_url or not args.llm_model:
        raise ConfigError("--backend openai needs --llm-url and --llm-model")
    from memrec.assist.llm.openai_http import OpenAIGenerator

    return LLMReasoner(OpenAIGenerator(args.llm_url, args.llm_model, continue_flags=not getattr(args, "no_continue_flags", False)), **options)


# ---------------------------------------------------------------------------- build-memory
def cmd_build_memory(args) -> int:
    from memrec.assist.evaluate import EvalConfig, scientific_memory, scientific_setup

    config = EvalConfig(dataset=args.dataset, data_dir=args.data_dir, num_queries=args.queries, num_train=args.train_queries, seed=args.seed)
    progress.note(f"loading {args.dataset} and its item text vectors (encoded once, then cached: the first run takes minutes on one core)")
    ds, split, queries, catalog, encode = scientific_setup(config)
    if args.request_detail != "path":
        from memrec.assist.queries import scientific_queries

        queries = scientific_queries(ds, split, config.num_queries, config.num_train, config.seed, detail=args.request_detail)
    reasoner = make_reasoner(args, catalog.texts)
    memory = scientific_memory(queries, reasoner, catalog, encode)
    memory.meta.update({"dataset": args.dataset, "seed": args.seed, "train_queries": len(queries.train), "num_train": args.train_queries,
                        "request_detail": args.request_detail})
    folder = memory.save(args.output)
    write_queries(folder / "queries.jsonl", queries.queries)
    print(f"memrec assist build-memory: {len(memory.users)} users, {len(memory.local)} local chunks, "
          f"{sum(len(a) for a in memory.global_.values())} aspects in {len(memory.global_)} scenarios "
          f"({getattr(reasoner, 'name', args.backend)} back-end) -> {folder}")
    print(f"requests: {queries.description} (SYNTHETIC)")
    return 0


def write_queries(path: Path, queries: list[Query]) -> None:
    with open(path, "w") as f:
        for q in queries:
            f.write(json.dumps(dataclasses.asdict(q)) + "\n")


def read_queries(path: Path) -> list[Query]:
    from memrec.errors import DataFormatError

    out = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                d = json.loads(line)
                out.append(Query(**{**d, "history": tuple(d.get("history", ()))}))
            except (json.JSONDecodeError, TypeError) as exc:
                raise DataFormatError(path, f"expected a request object ({exc})", line=number) from None
    return out


def _load(args):
    """(memory, catalogue, cached encoder, stored requests, reasoner) for ``ask`` and ``evaluate``."""
    from memrec.assist.catalog import CachedEncoder, ItemCatalog
    from memrec.assist.memory import MemoryIndex
    from memrec.config import DataConfig
    from memrec.data import load_dataset
    from memrec.encoders.items import encode_item_texts
    from memrec.encoders.text import TextEncoder

    folder = Path(args.memory)
    if not (folder / "queries.jsonl").exists():
        raise MemrecError(f"{folder} has no queries.jsonl: expected a folder written by `memrec assist build-memory`")
    probe = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    ds = load_dataset(DataConfig(dataset=probe.get("dataset", "amazon-scientific"), data_dir=args.data_dir, download=False))
    encoder = TextEncoder()
    features = encode_item_texts(ds, encoder)
    texts = [t.strip() for t in ds.items.text[1:]]
    encode = CachedEncoder(encoder)
    encode.add(texts, features.features[1:])
    catalog = ItemCatalog(ds.item_ids[1:], texts, encode, vectors=features.features[1:])
    memory = MemoryIndex.load(folder, encode)
    return memory, catalog, encode, read_queries(folder / "queries.jsonl"), make_reasoner(args, catalog.texts)


# ---------------------------------------------------------------------------- ask
def infer_category(catalog, request: str, k: int = 20) -> str:
    """The most common top category among the ``k`` items closest to the request."""
    from memrec.assist.queries import parse_scientific_text

    tops = [parse_scientific_text(catalog.text_of(h.item)).top for h in catalog.search([request], k)[0]]
    tops = [t for t in tops if t]
    return Counter(tops).most_common(1)[0][0] if tops else ""


def about_user(memory, user: str, category: str) -> str:
    """What the user's local memory says about them for this scenario: their preference pattern in it, or
    that they have bought nothing in it, with the categories they buy most (from the integrated profile)."""
    chunks = memory.chunks(user)
    pattern = next((c.text for c in chunks if c.kind == "pattern" and c.category == category), "")
    records = sum(1 for c in chunks if c.kind == "record")
    mostly = [c.category for c in chunks if c.kind == "pattern" and c.category]  # records without a category path have none
    if pattern:
        count = re.search(r"\((\d+) records?\)", pattern)
        items = f"{count.group(1)} item{'s' if count.group(1) != '1' else ''}" if count else "items"
        return f"in {category} you bought {items}, with the words {pattern.split(':', 1)[-1].strip().rstrip('.')}."
    return f"none of your {records} purchases is in {category or 'this scenario'}; you buy {', '.join(mostly[:3]) or 'nothing yet'}."


def answer_record(answer, catalog, request: str, category: str, user: str, setting: str, memory) -> dict:
    """One answer as JSON: aspects, memories shown and used, the profile, its memory contribution (heuristic
    MPC / MRC against the listed items' texts), the items as a person reads them, tokens and timings."""
    from memrec.assist.metrics import answer_contribution
    from memrec.assist.queries import readable_item

    items = [{"item": h.item, "score": round(h.score, 4), "text": readable_item(catalog.text_of(h.item))} for h in answer.items]
    used = set(answer.profile.useful_memory_ids)
    return {"user": user, "request": request, "category": category, "setting": setting, "aspects": answer.aspects,
            "memories": [{**dataclasses.asdict(m), "used": m.id in used} for m in answer.memories],
            "about_user": about_user(memory, user, category),
            "ideal_item_profile": answer.profile.ideal_item_profile, "useful_memory_ids": answer.profile.useful_memory_ids,
            "well_formed": answer.profile.well_formed,
            **answer_contribution(answer, [catalog.text_of(h.item) for h in answer.items]),
            "memory_tokens": answer.memory_tokens, "items": items, "timings_ms": {k: round(1000 * v, 2) for k, v in answer.timings.items()}}


def cmd_ask(args) -> int:
    from memrec.assist.metrics import minilm_token_counter
    from memrec.assist.pipeline import Assistant

    memory, catalog, _, _, reasoner = _load(args)
    memory.chunks(args.user)  # a clear error for a user without memory
    category = args.category or infer_category(catalog, args.request)
    query = Query("cli", args.user, args.request, category, "", tuple(memory.history(args.user)))
    answer = Assistant(reasoner, memory, catalog, args.setting, count_tokens=minilm_token_counter()).ask(query, k=args.k)
    record = answer_record(answer, catalog, args.request, category, args.user, args.setting, memory)
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    print(f"scenario: {category or '(none)'}; aspects: {', '.join(answer.aspects) or '(none fits this request)'}")
    print(f"memory ({args.setting}, {len(answer.memories)} shown, {answer.memory_tokens} tokens; * = used):")
    for m in record["memories"]:
        text = m["text"].split("): ", 1)[-1] if m["kind"] == "pattern" else m["text"]
        print(f"  {'*' if m['used'] else ' '} {m['kind']}{' ' + m['category'] if m['category'] else ''}: {text[:150]}")
    print(f"what memory says about you: {record['about_user']}")
    print(f"ideal item profile: {answer.profile.ideal_item_profile}" + ("" if answer.profile.well_formed else "  [malformed answer: request used]"))
    print(f"memory contribution: MPC {fmt(record['MPC'])} (used memories that shaped the profile), "
          f"MRC {fmt(record['MRC'])} (used memories sharing a word with the items)")
    for rank, h in enumerate(record["items"], start=1):
        print(f"{rank:3d}. {h['item']} {h['score']:.3f} {h['text'][:110]}")
    t = answer.timings
    print(f"time: memory {1000 * t['memory']:.1f} ms, reasoner {1000 * t['llm']:.1f} ms, items {1000 * t['items']:.1f} ms")
    return 0


# ---------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from memrec.assist.evaluate import EvalConfig, markdown, run as run_eval
    from memrec.assist.pipeline import SETTINGS
    from memrec.assist.queries import QuerySet

    memory, catalog, encode, queries, reasoner = _load(args)
    stored = memory.meta.get("request_detail", "path")
    detail = args.request_detail or stored
    if detail != stored:
        queries = rewritten_requests(args, memory, queries, detail)
    queries = queries[: args.limit] if args.limit else queries
    settings = tuple(s.strip() for s in args.settings.split(",") if s.strip())
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise ConfigError(f"unknown memory settings {bad}: expected some of {SETTINGS}")
    config = EvalConfig(data_dir=args.data_dir, num_queries=len(queries), seed=memory.meta.get("seed", 0), settings=settings,
                        tallrec=None if args.tallrec == "none" else args.tallrec, tallrec_limit=args.tallrec_limit, k_memory=args.k_memory)
    qset = QuerySet(queries, [], {}, {}, memory.meta.get("queries", "stored requests"),
                    {"scenarios": len({q.category for q in queries})})
    result = run_eval(reasoner, config, setup=(None, None, qset, catalog, encode), memory=memory)
    result |= {"request_detail": detail, "k_memory": args.k_memory, "memory_backend": memory.meta.get("reasoner"),
               "max_new_tokens": getattr(reasoner, "max_new_tokens", None), "repair": getattr(reasoner, "repair", None),
               "prompt_versions": getattr(reasoner, "versions", None), "memory_folder": str(args.memory),
               "command": "memrec assist " + " ".join(sys.argv[sys.argv.index("evaluate"):] if "evaluate" in sys.argv else ["evaluate"])}
    print(f"Request detail: {detail}; hierarchical memory: top-{args.k_memory} summary chunks.")
    print(markdown(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(compact_json(result))
    return 0


def compact_json(value) -> str:
    """JSON with one key per line, but each list of plain values on one line (per-answer columns stay short).

    Example:
        >>> print(compact_json({"rank": [3, 0, None], "name": "x"}))
        {
         "rank": [3, 0, null],
         "name": "x"
        }
    """
    return re.sub(r"\[\n\s+([^\[\]{}]*?)\n\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", json.dumps(value, indent=1))


def rewritten_requests(args, memory, queries: list[Query], detail: str) -> list[Query]:
    """The stored requests written again at another detail: the same users, targets and histories (the
    sampling does not depend on the detail, so the stored seed and counts give the same requests)."""
    from memrec.assist.queries import scientific_queries
    from memrec.config import DataConfig
    from memrec.data import load_dataset, split_dataset

    ds = load_dataset(DataConfig(dataset=memory.meta.get("dataset", "amazon-scientific"), data_dir=args.data_dir, download=False))
    again = scientific_queries(ds, split_dataset(ds), len(queries), memory.meta.get("num_train", memory.meta.get("train_queries", 0)),
                               memory.meta.get("seed", 0), detail=detail).queries
    if [(q.user, q.target) for q in again] != [(q.user, q.target) for q in queries]:
        raise MemrecError(f"{args.memory}: its requests cannot be written again at detail {detail!r} (the stored users or targets differ); "
                          f"build the memory with --request-detail {detail}")
    return again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memrec assist")
    add_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    try:
        return run(args, extra)
    except MemrecError as exc:
        print(f"memrec assist: error: {exc}", file=sys.stderr)
        return 2
