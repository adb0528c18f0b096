"""GRPO training of the ideal-profile step of MR.Rec with TRL's ``GRPOTrainer``.

For each training request the policy LLM sees the ideal-profile prompt (request, selected aspects,
retrieved memories with their ids; built by :func:`rl_examples` through the assistant's own context
step) and writes ``num_generations`` answers. Each answer is scored with MR.Rec's reward

    r = 0.1 * format + 5 * (nDCG@100 + nDCG@1000) + 0.1 * memory_used

where nDCG@K = 1 / log2(rank + 2) for the 0-based pessimistic rank of the request's target item when
the answer's profile retrieves from the whole item pool (0 beyond K), ``format`` is 1 for a strictly
well-formed answer and ``memory_used`` is 1 when a well-formed answer cites at least one offered memory
id (the memory-retrieval call itself is made by the assistant before the prompt; citing is how the
model shows that it used it). The advantage of an answer is (r - mean) / std within its group and
the update is the PPO-clipped policy gradient (TRL ``loss_type="grpo"``, ``scale_rewards="group"``).

**Prefill.** The ideal-profile prompt (``ideal_profile/3``) ends with the assistant prefill
(``{"ideal_item_profile": "`` and the profile's lead), as at inference. TRL renders a chat prompt that ends with an assistant
message as a closed turn followed by a new one, so the training prompts are given to TRL as text,
rendered by :func:`memrec.assist.llm.hf.chat_prompt_text` exactly as :class:`~memrec.assist.llm.hf.HFGenerator`
renders them (the text ends inside the prefilled assistant message). A completion is then only the
continuation, which is not JSON on its own: the reward scores prefill + completion (the ``prefill``
column of the data set, passed to :func:`reward_terms`).

**Partial credit** (``partial_credit=True``, the default; ``False`` is the paper's strict reward). A
135M model on a CPU, limited to a few dozen new tokens, almost never closes the JSON object, so the
strict reward is nearly constant and gives no learning signal. With partial credit a malformed answer
earns 0.2 format credit for each of: opening a JSON object, naming ``"ideal_item_profile"``, naming
``"useful_memory_ids"`` (at most 0.6 < 1; with the prefill the first two always hold, so the credit
that still differs within a group is naming the id list); its nDCG terms are computed on the salvaged profile (the
possibly unterminated ``ideal_item_profile`` string, else the whole answer); ``memory_used`` is 0.5 if
an offered memory id appears quoted in the answer. Strictly, a malformed answer scores 0 on every term.

**Compact format** (``--prompt ideal_profile_compact``). With the default prompt the memory ids are long
("A1CR9FH5YWUZMJ/pattern/Tapes, Adhesives & Sealants/0", ~20 tokens each) and a sampled answer rarely fits
in a CPU token budget; the compact prompt numbers the memories, asks for the id list first (prefill
``{"useful_memory_ids": [``) and a profile of at most 12 words, so a well-formed answer takes about 30 tokens.
``benchmarks/grpo_cpu.py`` trains on it with the strict reward and measures held-out format-valid and
memory-call rates before and after (:mod:`memrec.assist.rl_eval`). ``train_layers`` trains only the top
decoder layers (a cheaper backward pass on a CPU).

The loss TRL logs is the clipped surrogate; with ``num_iterations=1`` and ``beta=0`` it is zero in
expectation at every step (advantages have zero mean per group, the ratio is 1), so the learning is
seen in the rewards and in the weights, not in the loss value. The full GPU recipe is in
``docs/assist_grpo.md``.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from memrec.assist.llm_reasoner import MalformedAnswerError, ideal_profile_messages, memory_numbers, parse_ideal_profile
from memrec.assist.types import prefill_of
from memrec.encoders.common import require
from memrec.errors import ConfigError
from memrec.train.evaluate import user_ndcg

_PROFILE_VALUE = re.compile(r'"ideal_item_profile"\s*:\s*"((?:[^"\\]|\\.)*)')


# ----------------------------------------------------------------------------- reward
@dataclass(frozen=True)
class RewardWeights:
    """The weights of MR.Rec's reward (w1, w2, w3 of the paper)."""

    format: float = 0.1
    rec: float = 5.0
    memory: float = 0.1


@dataclass(frozen=True)
class RewardTerms:
    """The terms of one answer's reward.

    Example:
        >>> round(RewardTerms(format=1.0, ndcg100=0.5, ndcg1000=0.5, memory=1.0, well_formed=True).total(), 6)
        5.2
    """

    format: float
    ndcg100: float
    ndcg1000: float
    memory: float
    well_formed: bool

    def total(self, weights: RewardWeights = RewardWeights()) -> float:
        return weights.format * self.format + weights.rec * (self.ndcg100 + self.ndcg1000) + weights.memory * self.memory


def completion_text(completion) -> str:
    """TRL gives a completion as text or as chat messages; the assistant's text either way.

    Example:
        >>> completion_text([{"role": "assistant", "content": "hi"}]), completion_text("hi")
        ('hi', 'hi')
    """
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def salvage_profile(text: str) -> str:
    """The profile of a malformed answer: the (possibly unterminated) ``ideal_item_profile`` string, else the text.

    Example:
        >>> salvage_profile('{"ideal_item_profile": "a glass beaker with a sp')
        'a glass beaker with a sp'
        >>> salvage_profile("A glass beaker.")
        'A glass beaker.'
    """
    match = _PROFILE_VALUE.search(text)
    if match and match.group(1).strip():
        return match.group(1).replace('\\"', '"').strip()
    return text.strip()


def format_credit(text: str, memory_ids, partial_credit: bool = True):
    """(format term, memory term, strict answer or None) of one answer.

    Example:
        >>> format_credit('{"ideal_item_profile": "x", "useful_memory_ids": ["m1"]}', ["m1"])[:2]
        (1.0, 1.0)
        >>> format_credit('{"ideal_item_profile": "x", "useful_memory_ids": ["m1"', ["m1"])[:2]
        (0.6, 0.5)
        >>> format_credit('{"ideal_item_profile": "x", "useful_memory_ids": ["m1"', ["m1"], partial_credit=False)[:2]
        (0.0, 0.0)
    """
    try:  # a compact answer cites memories by number (its offered ids are "1", "2", ...): 2 and "2" both count
        answer = parse_ideal_profile(text, set(memory_ids), {str(m): str(m) for m in memory_ids})
        return 1.0, float(bool(answer.useful_memory_ids)), answer
    except MalformedAnswerError:
        if not partial_credit:
            return 0.0, 0.0, None
    cues = ("{" in text, '"ideal_item_profile"' in text, '"useful_memory_ids"' in text)
    cited = any(f'"{m}"' in text for m in memory_ids)
    return round(0.2 * sum(cues), 6), 0.5 * cited, None


def reward_terms(completions, targets, memory_ids, catalog, partial_credit: bool = True, exclude=None, prefills=None) -> list[RewardTerms]:
    """The reward terms of a batch of answers; ``catalog`` (an :class:`~memrec.assist.catalog.ItemCatalog`) ranks the
    targets over the whole pool, with the items of ``exclude`` (per answer: the user's history) masked.
    ``prefills`` (per answer, or None) is the start of the answer that was in the prompt: the answer scored
    is prefill + completion (a completion continues the prefill and is not the whole answer).

    Example:
        >>> import torch
        >>> from memrec.assist.catalog import ItemCatalog
        >>> vocab = {"beaker": [1.0, 0.0], "gloves": [0.0, 1.0]}
        >>> catalog = ItemCatalog(["i1", "i2"], ["beaker", "gloves"], lambda ts: torch.tensor([vocab[t] for t in ts]))
        >>> good = '{"ideal_item_profile": "beaker", "useful_memory_ids": ["m1"]}'
        >>> [round(t.total(), 3) for t in reward_terms([good, "gloves"], ["i1", "i1"], [["m1"], ["m1"]], catalog)]
        [10.2, 6.309]
    """
    texts = [completion_text(c) for c in completions]
    if prefills is not None:
        texts = [(p or "") + t for p, t in zip(prefills, texts)]
    credits = [format_credit(t, ids, partial_credit) for t, ids in zip(texts, memory_ids)]
    profiles = [answer.ideal_item_profile if answer else (salvage_profile(t) if partial_credit else "")
                for t, (_, _, answer) in zip(texts, credits)]
    scored = [i for i, p in enumerate(profiles) if p]
    ndcg = {}  # answer -> (nDCG@100, nDCG@1000), the evaluator's per-rank NDCG
    if scored:
        masked = [list(exclude[i]) for i in scored] if exclude is not None else None
        found = catalog.ranks([profiles[i] for i in scored], [targets[i] for i in scored], exclude=masked).numpy()
        ndcg = dict(zip(scored, zip(user_ndcg(found, 100).tolist(), user_ndcg(found, 1000).tolist())))
    return [RewardTerms(fmt, *ndcg.get(i, (0.0, 0.0)), mem, answer is not None) for i, (fmt, mem, answer) in enumerate(credits)]


def reward(completions, targets, memory_ids, catalog, weights: RewardWeights = RewardWeights(), partial_credit: bool = True,
           exclude=None, prefills=None) -> list[float]:
    """MR.Rec's reward of each answer: ``0.1*format + 5*(nDCG@100 + nDCG@1000) + 0.1*memory_used`` (see the module notes)."""
    return [t.total(weights) for t in reward_terms(completions, targets, memory_ids, catalog, partial_credit, exclude, prefills)]


# ----------------------------------------------------------------------------- examples
@dataclass
class RLExample:
    """One training prompt: the ideal-profile messages, the target item, the memory ids offered and the
    items masked when ranking (the user's history).

    Example:
        >>> RLExample([{"role": "user", "content": "..."}], "B000123", ["u1/record/0"]).target
        'B000123'
    """

    messages: list[dict[str, str]]
    target: str
    memory_ids: list[str] = field(default_factory=list)  # the ids the answer may cite, as the prompt shows them
    exclude: list[str] = field(default_factory=list)
    request: str = ""  # the request itself: the profile a malformed answer falls back to at inference

    @property
    def prefill(self) -> str:
        """The start of the answer in the prompt (its final assistant message), or ``""``."""
        return prefill_of(self.messages)


def rl_dataset_rows(examples: list[RLExample], tokenizer) -> list[dict]:
    """The rows TRL trains on: the prompt as text rendered like :class:`~memrec.assist.llm.hf.HFGenerator` renders
    it (ending inside the prefilled assistant message), the prefill the reward puts back in front of each
    completion, the target, and the id lists as JSON text (an all-empty list column has no Arrow type)."""
    from memrec.assist.llm.hf import chat_prompt_text

    rows = []
    for e in examples:
        text = chat_prompt_text(tokenizer, e.messages)
        bos = getattr(tokenizer, "bos_token", None)
        if bos and text.startswith(bos) and tokenizer("")["input_ids"]:  # TRL tokenizes with special tokens: no double BOS
            text = text[len(bos):]
        rows.append({"prompt": text, "prefill": e.prefill, "target": e.target, "memory_ids": json.dumps(e.memory_ids),
                     "exclude": json.dumps(e.exclude)})
    return rows


def rl_examples(assistant, queries, prompts_dir: str | None = None, prompt: str = "ideal_profile") -> list[RLExample]:
    """One :class:`RLExample` per query, with the aspects and memories the assistant's context step picks.
    ``prompt="ideal_profile_compact"``: memories numbered and cited by number (the ids offered are "1", "2", ...)."""
    examples = []
    for query in queries:
        aspects, memories = assistant.context(query)
        messages = ideal_profile_messages(query.text, list(aspects), list(memories), prompts_dir, prompt)
        history = list(query.history) if getattr(assistant, "exclude_history", True) else []
        ids = list(memory_numbers(memories)) if prompt != "ideal_profile" else [m.id for m in memories]
        examples.append(RLExample(messages, query.target, ids, history, query.text))
    return examples


# ----------------------------------------------------------------------------- training
@dataclass
class RLConfig:
    """GRPO settings. Defaults follow MR.Rec (group size 5, lr 1e-6, 5 epochs) on a GPU; see :meth:`cpu_smoke`.

    Example:
        >>> c = RLConfig.cpu_smoke()
        >>> c.num_generations, c.max_steps, c.device
        (4, 3, 'cpu')
    """

    model: str = "smollm2"  # 'smollm2' or a local Hugging Face folder (the paper: Qwen2.5-3B-Instruct)
    num_generations: int = 5  # group size G
    prompts_per_step: int = 1  # prompts per optimisation step (per device): batch = prompts_per_step * G answers
    learning_rate: float = 1e-6
    epochs: float = 5.0
    max_steps: int = -1  # > 0 stops after this many steps (overrides epochs)
    max_completion_length: int = 256
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 loads no reference model
    epsilon: float = 0.2  # PPO clip range
    loss_type: str = "grpo"
    scale_rewards: str = "group"  # advantage = (r - mean) / std within each group
    weights: RewardWeights = field(default_factory=RewardWeights)
    partial_credit: bool = True
    gradient_accumulation_steps: int = 1
    device: str = "auto"  # 'auto': cuda when available, else cpu
    use_vllm: bool = False  # GPU only: generate with vLLM (colocated)
    vllm_gpu_memory_utilization: float = 0.3  # share of the GPU vLLM may take beside the trained model
    gradient_checkpointing: bool = False  # recompute activations: less memory for 3B+ models, slower steps
    seed: int = 42
    save_model: bool = True
    train_layers: int = 0  # > 0: train only the top N decoder layers and the final norm (CPU: a cheaper backward pass); 0: all weights

    def __post_init__(self):
        if isinstance(self.weights, dict):
            self.weights = RewardWeights(**self.weights)
        if self.num_generations < 2:
            raise ConfigError(f"num_generations must be at least 2 (GRPO compares answers within a group), got {self.num_generations}")
        if self.prompts_per_step < 1 or self.max_completion_length < 1:
            raise ConfigError("prompts_per_step and max_completion_length must be positive")

    @classmethod
    def cpu_smoke(cls, **overrides) -> "RLConfig":
        """A few real steps on a CPU within minutes: group of 4, 48 new tokens, 3 steps, lr 1e-5."""
        return cls(**{"num_generations": 4, "max_completion_length": 48, "max_steps": 3, "learning_rate": 1e-5,
                      "device": "cpu", **overrides})

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def _trainer_config(config: RLConfig, output: Path, device: str):
    trl = require("trl", "llm")
    gpu = device != "cpu"
    if config.use_vllm and not gpu:
        raise ConfigError("use_vllm needs a GPU: set use_vllm=False on a CPU")
    return trl.GRPOConfig(
        output_dir=str(output / "trainer"), per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations, gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_completion_length=config.max_completion_length, learning_rate=config.learning_rate,
        num_train_epochs=config.epochs, max_steps=config.max_steps, temperature=config.temperature, beta=config.beta,
        epsilon=config.epsilon, loss_type=config.loss_type, scale_rewards=config.scale_rewards, logging_steps=1,
        save_strategy="no", report_to="none", seed=config.seed, use_cpu=not gpu, bf16=gpu, use_vllm=config.use_vllm,
        vllm_mode="colocate", vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        gradient_checkpointing=config.gradient_checkpointing, model_init_kwargs={"dtype": "bfloat16" if gpu else "float32"}, disable_tqdm=True,
    )


def top_layers_only(model, layers: int):
    """Freeze every weight of a Hugging Face decoder except its top ``layers`` blocks and the final norm; returns the model.

    Example:
        >>> import transformers
        >>> cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=3, num_attention_heads=2)
        >>> m = top_layers_only(transformers.LlamaForCausalLM(cfg), 1)
        >>> [n for n, p in m.named_parameters() if p.requires_grad][0]
        'model.layers.2.self_attn.q_proj.weight'
    """
    blocks = model.model.layers
    if not 0 < layers <= len(blocks):
        raise ConfigError(f"train_layers must be between 1 and {len(blocks)} (the model's decoder layers), got {layers}")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in [*blocks[-layers:], model.model.norm]:
        for p in module.parameters():
            p.requires_grad_(True)
    return model


def _weight_sample(model) -> list[torch.Tensor]:
    """The first 1,000 values of every trainable tensor: enough to see any update, cheap to keep."""
    return [p.detach().flatten()[:1000].float().cpu().clone() for p in model.parameters() if p.requires_grad]


def train_rl(config: RLConfig, examples: list[RLExample], catalog, output: str | Path) -> dict:
    """Run GRPO; write ``rl_log.json`` (per-step loss, rewards, reward terms), ``reward_curve.png`` and, if
    ``config.save_model``, the trained model to ``model/``. Returns the run summary."""
    trl = require("trl", "llm")
    datasets = require("datasets", "llm")
    transformers = require("transformers", "llm")
    from memrec.assist.llm.hf import resolve_model

    if not examples:
        raise ConfigError("train_rl needs at least one RLExample")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    device = config.resolved_device()
    folder = resolve_model(config.model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    dataset = datasets.Dataset.from_list(rl_dataset_rows(examples, tokenizer))

    def mrrec_reward(prompts, completions, target, memory_ids, exclude, prefill=None, log_metric=None, **_):
        ids = [json.loads(m) for m in memory_ids]
        terms = reward_terms(completions, target, ids, catalog, config.partial_credit, [json.loads(e) for e in exclude], prefill)
        if log_metric is not None:
            n = len(terms)
            for name in ("format", "ndcg100", "ndcg1000", "memory"):
                log_metric(f"mrrec/{name}", sum(getattr(t, name) for t in terms) / n)
            log_metric("mrrec/well_formed", sum(t.well_formed for t in terms) / n)
        return [t.total(config.weights) for t in terms]

    steps: list[dict] = []
    clock = {"start": time.perf_counter()}

    class StepLog(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" not in logs:
                steps.append({"step": state.global_step, "seconds": round(time.perf_counter() - clock["start"], 2),
                              **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}})

    policy = str(folder) if config.train_layers <= 0 else top_layers_only(
        transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), config.train_layers)
    trainer = trl.GRPOTrainer(model=policy, reward_funcs=[mrrec_reward], args=_trainer_config(config, output, device),
                              train_dataset=dataset, callbacks=[StepLog()])  # TRL loads the tokenizer itself, left-padded
    before = _weight_sample(trainer.model)
    clock["start"] = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - clock["start"]
    after = _weight_sample(trainer.model)
    weight_change = max(float((a - b).abs().max()) for a, b in zip(after, before))

    summary = {
        "model": str(folder), "device": device, "examples": len(examples), "catalog_items": len(catalog),
        "steps": len(steps), "seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(1, len(steps)), 2),
        "rewards": [s.get("reward") for s in steps], "losses": [s.get("loss") for s in steps],
        "well_formed": [s.get("mrrec/well_formed") for s in steps], "max_weight_change": weight_change,
        "log": str(output / "rl_log.json"), "plot": str(output / "reward_curve.png"),
    }
    if config.save_model:
        trainer.save_model(str(output / "model"))
        trainer.processing_class.save_pretrained(str(output / "model"))
        summary["model_out"] = str(output / "model")
    (output / "rl_log.json").write_text(json.dumps({"config": asdict(config), "summary": summary, "steps": steps}, indent=2))
    plot_rewards(steps, output / "reward_curve.png")
    return summary


def plot_rewards(steps: list[dict], path: str | Path) -> Path:
    """The reward curve (mean +- std over each step's answers) and its terms, with the loss below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["step"] for s in steps]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    reward_mean = [s.get("reward", float("nan")) for s in steps]
    reward_std = [s.get("reward_std", 0.0) for s in steps]
    top.plot(x, reward_mean, "o-", label="reward (mean of the step's answers)")
    top.fill_between(x, [m - s for m, s in zip(reward_mean, reward_std)], [m + s for m, s in zip(reward_mean, reward_std)], alpha=0.2)
    for name in ("ndcg100", "ndcg1000", "format", "well_formed"):
        if any(f"mrrec/{name}" in s for s in steps):
            top.plot(x, [s.get(f"mrrec/{name}", float("nan")) for s in steps], ".--", label=name)
    top.set_ylabel("reward / term")
    top.legend(fontsize=8)
    top.set_title("MR.Rec GRPO reward = 0.1 format + 5 (nDCG@100 + nDCG@1000) + 0.1 memory", fontsize=10)
    bottom.plot(x, [s.get("loss", float("nan")) for s in steps], "s-", color="tab:red")
    bottom.set_ylabel("loss")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- Scientific training requests and the CLI
def scientific_rl_queries(ds, split, queryset, detail: str = "path") -> list:
    """Training requests for the users of a Scientific query set, aimed at their *validation* item.

    The evaluated requests aim at each user's test item; GRPO trains on requests written the same way
    (:func:`memrec.assist.queries.request_for`) for the validation item, with the same training-only
    history, so that a trained model can then be evaluated on the test requests without leakage.
    """
    from memrec.assist.queries import request_for
    from memrec.assist.types import Query

    user_row = {u: i for i, u in enumerate(ds.user_ids)}
    valid = {int(u): int(t) for u, t in zip(split.valid.users, split.valid.targets)}
    out = []
    for query in queryset.queries:
        target_row = valid.get(user_row[query.user])
        if target_row is None:
            continue
        target = ds.item_ids[target_row]
        doc = queryset.items.get(target)
        if doc is None or not doc.top or target in query.history:
            continue
        qid = f"rl-{query.user}"
        out.append(Query(qid, query.user, request_for(doc, qid, detail), doc.top, target, query.history, synthetic=True))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``memrec assist train-rl``."""
    parser.add_argument("--output", required=True, help="folder for rl_log.json, reward_curve.png and model/")
    parser.add_argument("--model", default="smollm2", help="'smollm2' or a local Hugging Face chat model folder")
    parser.add_argument("--dataset", default="amazon-scientific", help="registered name or folder of the Scientific files")
    parser.add_argument("--data-dir", default=None, help="folder holding amazon-scientific/ (default: $MEMREC_DATA_DIR)")
    parser.add_argument("--queries", type=int, default=32, help="users whose validation request becomes a training prompt")
    parser.add_argument("--train-queries", type=int, default=200, help="requests of other users that build the global memory")
    parser.add_argument("--seed", type=int, default=0, help="sampling of the users (the training seed is --train-seed)")
    parser.add_argument("--setting", default="hierarchical", help="memory setting of the prompts (none/naive/static/hierarchical)")
    parser.add_argument("--steps", type=int, default=-1, help="stop after this many GRPO steps (default: --epochs)")
    parser.add_argument("--epochs", type=float, default=5.0, help="passes over the training prompts")
    parser.add_argument("--num-generations", type=int, default=None, help="group size (default 5 on a GPU, 4 on a CPU)")
    parser.add_argument("--prompts-per-step", type=int, default=1, help="prompts per optimizer step (each sampled as a group)")
    parser.add_argument("--max-completion-length", type=int, default=None, help="new tokens per answer (default 256 GPU, 64 CPU)")
    parser.add_argument("--lr", type=float, default=1e-6, help="learning rate")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the group answers")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference model)")
    parser.add_argument("--strict-reward", action="store_true", help="the paper's reward without partial format credit")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM (GPU, colocated)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory for large models")
    parser.add_argument("--train-seed", type=int, default=42, help="seed of sampling and training")
    parser.add_argument("--no-save-model", action="store_true", help="do not write the trained weights")
    parser.add_argument("--prompt", default="ideal_profile", choices=("ideal_profile", "ideal_profile_compact"),
                        help="answer format: ideal_profile (profile first, long ids) or ideal_profile_compact (numbered memories, id list first)")
    parser.add_argument("--train-layers", type=int, default=0, help="train only the top N decoder layers (0: all weights)")
    return parser


def run(args: argparse.Namespace) -> int:
    """``memrec assist train-rl``: GRPO on synthetic Scientific requests; prints the summary as JSON."""
    from memrec.assist.deterministic import DeterministicReasoner
    from memrec.assist.evaluate import EvalConfig, scientific_memory, scientific_setup
    from memrec.assist.pipeline import Assistant

    gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    config = RLConfig(
        model=args.model, num_generations=args.num_generations or (5 if gpu else 4), prompts_per_step=args.prompts_per_step,
        learning_rate=args.lr, epochs=args.epochs, max_steps=args.steps,
        max_completion_length=args.max_completion_length or (256 if gpu else 64), temperature=args.temperature, beta=args.beta,
        partial_credit=not args.strict_reward, device=args.device, use_vllm=args.vllm,
        gradient_checkpointing=args.gradient_checkpointing, seed=args.train_seed,
        save_model=not args.no_save_model, train_layers=args.train_layers)
    ds, split, queryset, catalog, encode = scientific_setup(
        EvalConfig(dataset=args.dataset, data_dir=args.data_dir, num_queries=args.queries, num_train=args.train_queries, seed=args.seed))
    reasoner = DeterministicReasoner(documents=catalog.texts)  # memory and aspect choice; the policy LLM writes the profile
    memory = scientific_memory(queryset, reasoner, catalog, encode)
    assistant = Assistant(reasoner, memory, catalog, args.setting)
    examples = rl_examples(assistant, scientific_rl_queries(ds, split, queryset), prompt=args.prompt)
    print(f"GRPO on {len(examples)} synthetic Scientific requests (validation items), {len(catalog)} items, "
          f"group {config.num_generations}, {config.max_completion_length} new tokens, device {config.resolved_device()}", flush=True)
    summary = train_rl(config, examples, catalog, args.output)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # python -m memrec.assist.grpo --output runs/grpo --steps 3
    raise SystemExit(run(add_arguments(argparse.ArgumentParser(prog="memrec assist train-rl")).parse_args()))
