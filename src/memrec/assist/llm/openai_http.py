"""Any OpenAI-compatible chat server as a :class:`~memrec.assist.types.TextGenerator`.

vLLM (``vllm serve MODEL``), the llama.cpp server, Ollama and ``memrec assist serve-llm`` all answer
``POST {url}/v1/chat/completions``. Only the standard library is used. A server that cannot be
reached, answers with an error status, or returns something that is not a chat completion raises an
:class:`LLMError` naming the URL and what was expected; an LLM's *text*, however odd, is returned as is
(parsing it is the reasoner's job).

**Prefill.** A conversation that ends with an ``assistant`` message (the start of the answer, e.g.
``{"ideal_item_profile": "``) is sent as is, with vLLM's continuation flags in the request body,
``"continue_final_message": true, "add_generation_prompt": false`` (``continue_flags=True``, the
default): vLLM, and ``memrec assist serve-llm``, then continue that message and return only the
continuation; the prefill is put back in front (:func:`~memrec.assist.types.join_prefill`), so the
caller gets the whole answer. What other servers do:

- the llama.cpp server continues a final assistant message by itself and returns the continuation
  (the flags are extra body fields it does not need); the result is the same;
- a server that ignores both the flags and the prefill (it renders the assistant message as a closed
  earlier turn and starts a new one) writes a whole answer of its own: when that answer starts with the
  prefill it is returned as is, otherwise the prefill is put in front of it, which leaves any complete
  JSON object in it for the parser to find (prefill + ``{...}`` still parses); the prefill then simply
  does not help;
- a server that rejects unknown body fields (OpenAI's own API answers HTTP 400 for them, and does not
  continue assistant messages either) needs ``continue_flags=False`` (``--no-continue-flags``).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from memrec.assist.types import join_prefill, prefill_of
from memrec.errors import MemrecError


class LLMError(MemrecError, RuntimeError):
    """An LLM back-end failed (not: the LLM wrote bad text)."""


class LLMConnectionError(LLMError, ConnectionError):
    """The LLM server cannot be reached."""


class LLMResponseError(LLMError):
    """The LLM server answered with an error status or with something that is not a chat completion."""


def base_url(url: str) -> str:
    """The server root: a trailing ``/`` or ``/v1`` is dropped.

    Example:
        >>> base_url("http://localhost:8000/v1/"), base_url("http://localhost:11434")
        ('http://localhost:8000', 'http://localhost:11434')
    """
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def completion_text(body: object, where: str) -> str:
    """The assistant's text in an OpenAI chat-completion response body.

    Example:
        >>> completion_text({"choices": [{"message": {"role": "assistant", "content": "hi"}}]}, "x")
        'hi'
        >>> try:
        ...     completion_text({"error": "overloaded"}, "http://h/v1/chat/completions")
        ... except LLMResponseError as e:
        ...     print(e)
        http://h/v1/chat/completions: expected a chat completion {"choices": [{"message": {"content": ...}}]}, got {"error": "overloaded"}
    """
    try:
        content = body["choices"][0]["message"].get("content", "")  # type: ignore[index]
    except (KeyError, IndexError, TypeError, AttributeError):
        content = False
    if content is None:  # a valid completion without text (a refusal or a tool call): empty text
        return ""
    if not isinstance(content, str):
        raise LLMResponseError(f"{where}: expected a chat completion {{\"choices\": [{{\"message\": {{\"content\": ...}}}}]}}, "
                               f"got {json.dumps(body)[:300]}")
    return content


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server at ``url`` (with or without ``/v1``).

    ``concurrency`` requests are in flight at once (servers such as vLLM batch them); the answers keep
    the order of the conversations. A final ``assistant`` message (a prefill) is continued: see the
    module notes; ``continue_flags=False`` leaves vLLM's continuation flags out of the request body.

    Example:
        >>> llm = OpenAIGenerator("http://127.0.0.1:8000", "Qwen/Qwen2.5-3B-Instruct", timeout=30)
        >>> llm.endpoint, llm.name
        ('http://127.0.0.1:8000/v1/chat/completions', 'openai:Qwen/Qwen2.5-3B-Instruct')
    """

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 120.0, concurrency: int = 4,
                 continue_flags: bool = True):
        self.url = base_url(url)
        self.endpoint = self.url + "/v1/chat/completions"
        self.model = model
        self.name = f"openai:{model}"
        self.api_key = api_key
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.continue_flags = continue_flags

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        """One completion per conversation, in order."""
        if self.concurrency == 1 or len(conversations) <= 1:
            return [self.complete(c, max_new_tokens, temperature) for c in conversations]
        with ThreadPoolExecutor(min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(lambda c: self.complete(c, max_new_tokens, temperature), conversations))

    def payload(self, messages: list[dict[str, str]], max_new_tokens: int = 256, temperature: float = 0.0) -> dict:
        """The request body of one conversation; with a prefill, vLLM's flags to continue it.

        Example:
            >>> llm = OpenAIGenerator("http://127.0.0.1:8000", "m")
            >>> body = llm.payload([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": '{"a": "'}], 8)
            >>> body["continue_final_message"], body["add_generation_prompt"]
            (True, False)
            >>> "continue_final_message" in llm.payload([{"role": "user", "content": "Hi"}], 8)
            False
        """
        payload = {"model": self.model, "messages": messages, "max_tokens": max_new_tokens, "temperature": temperature, "n": 1}
        if self.continue_flags and prefill_of(messages):
            payload |= {"continue_final_message": True, "add_generation_prompt": False}
        return payload

    def complete(self, messages: list[dict[str, str]], max_new_tokens: int = 256, temperature: float = 0.0) -> str:
        """One conversation -> the assistant's text (with a prefill: prefill + continuation)."""
        payload = self.payload(messages, max_new_tokens, temperature)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            raise LLMResponseError(f"{self.endpoint} answered HTTP {e.code} for model {self.model!r}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise LLMConnectionError(
                f"cannot reach the LLM server at {self.url} ({type(reason).__name__}: {reason}); start one "
                f"(vllm serve MODEL, or memrec assist serve-llm) or pass the right URL"
            ) from None
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            raise LLMResponseError(f"{self.endpoint}: expected a JSON chat completion, got {raw[:300]!r}") from None
        return join_prefill(prefill_of(messages), completion_text(body, self.endpoint))

    def __repr__(self) -> str:
        return f"OpenAIGenerator({self.url!r}, {self.model!r})"
