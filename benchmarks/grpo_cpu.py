#!/usr/bin/env python
"""GRPO on SmolLM2-135M on the CPU: held-out format-valid and memory-call rates before and after training.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/grpo_cpu.py --data-dir ../shared/data

One command for the before/after table and the plot. Users sampled with ``--seed`` are split into training
prompts (``--train-prompts``) and held-out prompts (``--heldout``); every prompt is a synthetic request for
the user's *validation* item (never the test item), written at ``--request-detail``, with the aspects and
hierarchical memory the deterministic back-end picks, in the compact answer format
(``ideal_profile_compact/1``: memories numbered and cited by number, the id list first, a sentence of at
most 12 words, which fits in ``--max-new-tokens``). The policy is rewarded with the paper's strict reward
(0.1 format + 5 (nDCG@100 + nDCG@1000) + 0.1 memory; a malformed answer earns 0). Before and after
training the held-out prompts are answered greedily (with ``--sampled``, also once at temperature 1, the training
distribution); :func:`memrec.assist.rl_eval.heldout_rates` gives the format-valid rate, the memory-call
rate and R@10 / R@100 of the profile the assistant would use (the request when the answer is malformed).

Writes ``benchmarks/results/grpo_cpu.json`` and ``grpo_cpu.png`` (reward per step, the training answers'
format-valid and memory-call rates per step, and the held-out rates before / after).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def plot(steps: list[dict], before: dict, after: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["step"] for s in steps]
    fig, (top, mid, bottom) = plt.subplots(3, 1, figsize=(7, 8), gridspec_kw={"height_ratios": [2, 2, 2]})
    top.plot(x, [s.get("reward", float("nan")) for s in steps], "o-", label="reward (mean over the step's group)")
    top.set_ylabel("reward")
    top.set_xlabel("GRPO step")
    top.legend(fontsize=8)
    top.set_title("GRPO on SmolLM2-135M (CPU): reward = 0.1 format + 5 (nDCG@100 + nDCG@1000) + 0.1 memory", fontsize=9)
    mid.plot(x, [s.get("mrrec/well_formed", float("nan")) for s in steps], "s-", label="format-valid (training answers)")
    mid.plot(x, [s.get("mrrec/memory", float("nan")) for s in steps], "^-", label="memory call (training answers)")
    mid.set_ylim(-0.05, 1.05)
    mid.set_ylabel("share of the group")
    mid.set_xlabel("GRPO step")
    mid.legend(fontsize=8)
    keys = [(mode, k) for mode in before for k in ("format_valid", "memory_call")]
    names = [f"{k.replace('_', ' ').replace('valid', '-valid')}\n{mode}" for mode, k in keys]
    pos = range(len(names))
    bottom.bar([p - 0.2 for p in pos], [before[m][k] for m, k in keys], width=0.4, label="before")
    bottom.bar([p + 0.2 for p in pos], [after[m][k] for m, k in keys], width=0.4, label="after")
    bottom.set_xticks(list(pos), names, fontsize=8)
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel(f"held-out rate ({before['greedy']['prompts']} prompts)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data-dir", default=os.environ.get("MEMREC_DATA_DIR"))
    parser.add_argument("--train-prompts", type=int, default=40)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--train-queries", type=int, default=200, help="requests of other users that build the global memory")
    parser.add_argument("--request-detail", default="top", choices=("top", "leaf", "path"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--train-layers", type=int, default=2, help="train only the top N of the 30 decoder layers (0: all)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampled", action="store_true", help="also answer the held-out prompts once sampled at --temperature")
    parser.add_argument("--output", default=str(RESULTS / "grpo_cpu.json"))
    parser.add_argument("--work", default="runs/grpo-cpu", help="folder for the trained model and TRL's files")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: read the held-out answers stored in --output again with the current parser (into 'rescored')")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from memrec import progress
    from memrec.assist.deterministic import DeterministicReasoner
    from memrec.assist.evaluate import EvalConfig, scientific_memory, scientific_setup
    from memrec.assist.grpo import RLConfig, rl_examples, scientific_rl_queries, train_rl
    from memrec.assist.llm.hf import HFGenerator
    from memrec.assist.pipeline import Assistant
    from memrec.assist.queries import scientific_queries
    from memrec.assist.rl_eval import heldout_rates, score_answers

    start = time.perf_counter()
    config = EvalConfig(data_dir=args.data_dir, num_queries=args.train_prompts + args.heldout + 16, num_train=args.train_queries, seed=args.seed)
    ds, split, _, catalog, encode = scientific_setup(config)
    queryset = scientific_queries(ds, split, config.num_queries, config.num_train, config.seed, detail=args.request_detail)
    reasoner = DeterministicReasoner(documents=catalog.texts)
    memory = scientific_memory(queryset, reasoner, catalog, encode)
    assistant = Assistant(reasoner, memory, catalog, "hierarchical")
    requests = scientific_rl_queries(ds, split, queryset, detail=args.request_detail)
    if len(requests) < args.train_prompts + args.heldout:
        raise SystemExit(f"only {len(requests)} validation requests for {args.train_prompts} + {args.heldout} prompts")
    examples = rl_examples(assistant, requests[: args.train_prompts + args.heldout], prompt="ideal_profile_compact")
    train, heldout = examples[: args.train_prompts], examples[args.train_prompts:]
    if args.rescore:
        stored = json.loads(Path(args.output).read_text())
        stored["rescored"] = {when: {mode: score_answers(heldout, r["answers"], catalog) for mode, r in stored[when].items()} for when in ("before", "after")}
        stored["rescore_command"] = "python benchmarks/grpo_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.output).write_text(json.dumps(stored, indent=1, default=str))
        for when, r in stored["rescored"].items():
            for mode, x in r.items():
                print(f"rescored {when}, {mode}: format-valid {x['format_valid']:.3f}, memory call {x['memory_call']:.3f}, R@100 {x['R@100']:.3f}")
        return 0
    progress.note(f"{len(train)} training and {len(heldout)} held-out prompts ({args.request_detail} requests, validation items)")

    def rates(generator) -> dict:
        out = {"greedy": heldout_rates(generator, heldout, catalog, args.max_new_tokens, 0.0)}
        if args.sampled:
            out["sampled"] = heldout_rates(generator, heldout, catalog, args.max_new_tokens, args.temperature, seed=args.seed)
        return out

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    before = rates(HFGenerator(repetition_penalty=1.0))
    print(f"before: {json.dumps({m: {k: v for k, v in r.items() if k != 'answers'} for m, r in before.items()})}", flush=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    (Path(args.work) / "before.json").write_text(json.dumps(before, indent=1))  # kept if training is stopped
    rl = RLConfig(num_generations=args.num_generations, learning_rate=args.lr, max_steps=args.steps, max_completion_length=args.max_new_tokens,
                  temperature=args.temperature, partial_credit=False, device="cpu", seed=42,
                  train_layers=args.train_layers)
    summary = train_rl(rl, train, catalog, args.work)
    after = rates(HFGenerator(model=Path(args.work) / "model", repetition_penalty=1.0))
    steps = json.loads((Path(args.work) / "rl_log.json").read_text())["steps"]

    png = out.with_suffix(".png")
    plot(steps, before, after, png)
    result = {
        "data": f"amazon-scientific, SYNTHETIC {args.request_detail} requests for validation items, seed {args.seed}",
        "prompt": "ideal_profile_compact/1", "reward": "strict: 0.1 format + 5 (nDCG@100 + nDCG@1000) + 0.1 memory; malformed = 0",
        "train_prompts": len(train), "heldout_prompts": len(heldout), "config": {k: v for k, v in vars(args).items()},
        "rl_config": {k: (v if not hasattr(v, "__dict__") else vars(v)) for k, v in vars(rl).items()},
        "before": before, "after": after, "training": summary, "steps": steps, "plot": str(png.name),
        "wall_s": time.perf_counter() - start,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "command": "python benchmarks/grpo_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    out.write_text(json.dumps(result, indent=1, default=str))
    print("| held-out | format-valid | memory call | R@10 | R@100 | N@100 |\n|---|---|---|---|---|---|")
    for name, r in (("before", before), ("after", after)):
        for mode in r:
            x = r[mode]
            print(f"| {name}, {mode} | {x['format_valid']:.3f} | {x['memory_call']:.3f} | {x['R@10']:.3f} | {x['R@100']:.3f} | {x['N@100']:.3f} |")
    print(f"written {out} and {png} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
