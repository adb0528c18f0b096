"""The answer prefill: prompt files with a final assistant section, generators that return prefill + continuation,
and the repair of cut-off answers (counted apart from the malformed ones). Hand-written texts; the real model is in
test_llm.py and test_grpo.py."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from memrec.assist.llm.openai_http import OpenAIGenerator
from memrec.assist.llm_reasoner import LLMReasoner, PromptError, load_prompt, parse_prompt, repair_ideal_profile
from memrec.assist.types import MemoryChunk, join_prefill, prefill_of

START = '{"ideal_item_profile": "'  # how every ideal-profile answer starts
PREFILL = load_prompt("ideal_profile").prefill  # the packaged prompt's prefill: START and the lead of the profile
LEAD = PREFILL.removeprefix(START)
MEMORIES = [MemoryChunk("u7/record/0", "u7", "record", "Lab", "Pyrex 1000 mL glass beaker, low form"),
            MemoryChunk("u7/pattern/Lab Supplies", "u7", "pattern", "Lab", "prefers borosilicate glassware from Pyrex")]
IDS = {m.id for m in MEMORIES}


class Continuing:
    """A generator keeping the TextGenerator contract: it returns the prefill + a scripted continuation."""

    name = "continuing"

    def __init__(self, continuations):
        self.continuations = list(continuations)
        self.seen = []

    def generate(self, conversations, max_new_tokens=256, temperature=0.0):
        self.seen.extend(conversations)
        return [prefill_of(c) + self.continuations.pop(0) for c in conversations]


# ----------------------------------------------------------------------------- prompt files
def test_a_final_assistant_section_is_the_prefill():
    prompt = parse_prompt(f"version: t/2\n### system\nS\n### user\nU $x\n### assistant\n{START}\n\n", "t")
    assert prompt.prefill == START
    assert prompt.render(x="1")[-2:] == [{"role": "user", "content": "U 1"}, {"role": "assistant", "content": START}]
    example = parse_prompt("version: t/1\n### system\nS\n### user\nQ\n### assistant\nA\n### user\nU\n", "t")
    assert example.prefill == "" and example.messages[-1] == ("user", "U")
    assert PREFILL.startswith(START) and load_prompt("ideal_profile").version == "ideal_profile/3"


@pytest.mark.parametrize("text", [
    "version: t/1\n### system\nS\n### assistant\nA\n",  # no user turn before the prefill
    "version: t/1\n### system\nS\n### user\nU\n### assistant\nA\n### assistant\nB\n",  # two final assistant sections
    "version: t/1\n### system\nS\n### user\nU\n### assistant\n\n",  # an empty prefill
])
def test_a_misplaced_or_empty_prefill_is_a_clear_error(text):
    with pytest.raises(PromptError, match="expected a '### system' section|prefill\\) is empty"):
        parse_prompt(text, "t")


def test_prefill_helpers():
    convo = [{"role": "user", "content": "U"}, {"role": "assistant", "content": START}]
    assert prefill_of(convo) == START and prefill_of(convo[:1]) == "" and prefill_of([]) == ""
    assert join_prefill(START, 'x", "useful_memory_ids": []}') == START + 'x", "useful_memory_ids": []}'
    whole = '{"ideal_item_profile": "x", "useful_memory_ids": []}'
    assert join_prefill(START, whole) == whole and join_prefill("", "abc") == "abc"


# ----------------------------------------------------------------------------- the reasoner sees prefill + continuation
def test_the_reasoner_prefills_the_answer_and_parses_prefill_plus_continuation():
    llm = Continuing([' a 600 mL Pyrex beaker", "useful_memory_ids": ["u7/record/0"]}'])
    answer = LLMReasoner(llm).ideal_item_profile("a beaker for boiling water", ["material"], MEMORIES)
    assert llm.seen[0][-1] == {"role": "assistant", "content": PREFILL}
    assert answer.well_formed and not answer.repaired
    assert (answer.ideal_item_profile, answer.useful_memory_ids) == (LEAD + " a 600 mL Pyrex beaker", ["u7/record/0"])
    assert answer.raw.startswith(PREFILL)


# ----------------------------------------------------------------------------- repair of cut-off answers
@pytest.mark.parametrize("continuation, profile, ids", [
    ("A 600 mL Pyrex beaker, borosilicate, gradu", "A 600 mL Pyrex beaker, borosilicate, gradu", []),  # cut in the string
    ('A Pyrex beaker"', "A Pyrex beaker", []),  # string closed, then stopped
    ('A Pyrex beaker",', "A Pyrex beaker", []),
    ('A Pyrex beaker", "useful_mem', "A Pyrex beaker", []),  # cut in the key
    ('A Pyrex beaker", "useful_memory_ids":', "A Pyrex beaker", []),
    ('A Pyrex beaker", "useful_memory_ids": ["u7/record/0"', "A Pyrex beaker", ["u7/record/0"]),  # cut in the list
    ('A Pyrex beaker", "useful_memory_ids": ["u7/record/0", "u7/pat', "A Pyrex beaker", ["u7/record/0"]),  # a partial id dropped
    ('A Pyrex beaker", "useful_memory_ids": ["u7/record/0"]', "A Pyrex beaker", ["u7/record/0"]),  # only the brace missing
    ('A 9 \\" ruler\\', 'A 9 " ruler', []),  # a dangling escape dropped
])
def test_a_cut_off_answer_is_repaired_and_counted_apart(continuation, profile, ids):
    reasoner = LLMReasoner(Continuing([" " + continuation]))
    answer = reasoner.ideal_item_profile("a beaker", [], MEMORIES)
    assert (answer.well_formed, answer.repaired) == (True, True)
    assert (answer.ideal_item_profile, answer.useful_memory_ids, answer.raw) == ((LEAD + " " + profile).strip(), ids, PREFILL + " " + continuation)
    assert reasoner.repaired["ideal_profile"] == 1 and reasoner.malformed["ideal_profile"] == 0


def test_an_object_closed_before_the_id_list_is_repaired_with_no_ids():
    answer = repair_ideal_profile(START + 'A beaker"}\n{"_type": "material"} and prose', IDS)
    assert (answer.ideal_item_profile, answer.useful_memory_ids, answer.well_formed, answer.repaired) == ("A beaker", [], True, True)


@pytest.mark.parametrize("text", [
    START + 'A beaker", "ids": ["u7/record/0"]}',  # a complete object with a wrong key
    START + '", "useful": 1}',  # an empty profile
    START + 'A beaker", "useful_memory_ids": ["u7/record/9"',  # cites an id that was not offered
    START + 'A beaker", "useful_memory_ids": ["u7/record/0"] and more prose',  # text after the list
    START + 'A 12" ruler, steel',  # the string closed early, text after it
    START,  # nothing written
    START + "   ",
    "A beaker would do.",  # does not start like the answer format
    'Sure! {"ideal_item_profile": "A beaker',
])
def test_what_is_not_merely_cut_off_stays_malformed(text):
    assert repair_ideal_profile(text, IDS) is None


def test_with_repair_off_a_cut_off_answer_is_malformed():
    reasoner = LLMReasoner(Continuing(["A Pyrex beaker, 600"] * 2), repair=False)
    answer = reasoner.ideal_item_profile("a beaker", [], MEMORIES)
    assert (answer.well_formed, answer.repaired, answer.ideal_item_profile) == (False, False, "a beaker")
    assert reasoner.malformed["ideal_profile"] == 1 and reasoner.repaired["ideal_profile"] == 0
    on = LLMReasoner(Continuing([" a Pyrex beaker, 600", ' ok", "useful_memory_ids": []}', "", 'x", "useful_memory_ids": ["zz"]}', ' a beaker"}']))
    out = on.ideal_item_profiles(["r1", "r2", "r3", "r4", "r5"], [[]] * 5, [MEMORIES] * 5)
    assert [(a.well_formed, a.repaired) for a in out] == [(True, True), (True, False), (False, False), (False, False), (True, True)]
    assert (on.calls["ideal_profile"], on.repaired["ideal_profile"], on.malformed["ideal_profile"]) == (5, 2, 2)
    assert on.reasons[("ideal_profile", "nothing written after the prefill")] == 1  # the prefill's lead alone is no profile


# ----------------------------------------------------------------------------- the HTTP back-end's request and answer
class Recorder(http.server.BaseHTTPRequestHandler):
    """A chat server that records each request body and answers with the scripted content."""

    bodies: list = []
    answer = ""

    def do_POST(self):
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": type(self).answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    Recorder.bodies = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_the_http_backend_sends_vllms_continuation_flags_and_puts_the_prefill_back(recorder):
    convo = [{"role": "user", "content": "U"}, {"role": "assistant", "content": START}]
    Recorder.answer = 'A beaker", "useful_memory_ids": []}'  # vLLM: only the continuation
    assert OpenAIGenerator(recorder, "m").generate([convo]) == [START + Recorder.answer]
    body = Recorder.bodies[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": START}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    Recorder.answer = '{"ideal_item_profile": "A beaker", "useful_memory_ids": []}'  # a server that wrote the whole answer
    assert OpenAIGenerator(recorder, "m").generate([convo]) == [Recorder.answer]
    OpenAIGenerator(recorder, "m", continue_flags=False).generate([convo])
    assert "continue_final_message" not in Recorder.bodies[-1] and Recorder.bodies[-1]["messages"][-1]["role"] == "assistant"
    Recorder.answer = "hi"
    OpenAIGenerator(recorder, "m").generate([convo[:1]])  # no prefill: no flags, the text as is
    assert "continue_final_message" not in Recorder.bodies[-1]
