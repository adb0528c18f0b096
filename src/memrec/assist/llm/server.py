"""Serve any :class:`~memrec.assist.types.TextGenerator` as an OpenAI-compatible chat API.

For users without vLLM: ``memrec assist serve-llm`` (or ``python -m memrec.assist.llm.server``) serves
SmolLM2 or any local Hugging Face chat folder at ``POST /v1/chat/completions`` and ``GET /v1/models``,
so that :class:`~memrec.assist.llm.openai_http.OpenAIGenerator` (or any OpenAI client) can use it.
Requests are answered one at a time (a lock around the model); ``stream`` and ``n > 1`` are refused
with HTTP 400.

A final ``assistant`` message (a prefill) is continued, like vLLM with ``"continue_final_message": true,
"add_generation_prompt": false`` and like the llama.cpp server; the answer holds only the continuation,
as vLLM's does. The flags are accepted (and not needed); a request that sets ``continue_final_message``
to false, or ``add_generation_prompt`` to true, for a conversation ending with an assistant message asks
for a new turn after it, which this server does not do: HTTP 400.

Example::

    memrec assist serve-llm --model smollm2 --port 8001
    curl -s localhost:8001/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20}'
"""

import argparse
import threading
import time
import uuid

from memrec.assist.types import prefill_of
from memrec.encoders.common import require


def create_app(generator, model_name: str | None = None, default_max_tokens: int = 256):
    """A FastAPI app answering chat completions with ``generator``; ``model_name`` is the id it reports.

    Example:
        >>> class Echo:
        ...     name = "echo"
        ...     def generate(self, conversations, max_new_tokens=256, temperature=0.0):
        ...         return [c[-1]["content"][:max_new_tokens] for c in conversations]
        >>> from fastapi.testclient import TestClient
        >>> client = TestClient(create_app(Echo()))
        >>> body = {"model": "echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        >>> client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
        'hell'
        >>> client.get("/v1/models").json()["data"][0]["id"]
        'echo'
    """
    fastapi = require("fastapi", "serve")
    from pydantic import BaseModel, Field

    model_name = model_name or getattr(generator, "name", "memrec-llm")
    lock = threading.Lock()
    app = fastapi.FastAPI(title="memrec LLM server", description="OpenAI-compatible chat completions")

    class Message(BaseModel):
        role: str
        content: str

    class ChatRequest(BaseModel):
        model: str | None = None
        messages: list[Message] = Field(min_length=1)
        max_tokens: int | None = Field(default=None, ge=1)
        max_completion_tokens: int | None = Field(default=None, ge=1)
        temperature: float = Field(default=0.0, ge=0.0)
        n: int = 1
        stream: bool = False
        continue_final_message: bool | None = None  # vLLM's flags; a final assistant message is always continued
        add_generation_prompt: bool | None = None

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "memrec"}]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):  # a plain def: FastAPI runs it in a worker thread, the event loop stays free
        if request.stream or request.n != 1:
            raise fastapi.HTTPException(400, "this server answers n=1 without streaming: set stream=false and n=1")
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prefill = prefill_of(messages)
        if prefill and (request.continue_final_message is False or request.add_generation_prompt is True):
            raise fastapi.HTTPException(400, "the last message is an assistant message, which this server continues: "
                                             "send continue_final_message=true and add_generation_prompt=false (or neither)")
        max_tokens = request.max_completion_tokens or request.max_tokens or default_max_tokens
        with lock:
            text = generator.generate([messages], max_new_tokens=max_tokens, temperature=request.temperature)[0]
        if prefill and text.startswith(prefill):  # like vLLM: only the continuation
            text = text[len(prefill):]
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }

    return app


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``memrec assist serve-llm``."""
    parser.add_argument("--model", default="smollm2", help="'smollm2' (packaged SmolLM2-135M-Instruct) or a local Hugging Face folder")
    parser.add_argument("--name", default=None, help="model id reported by /v1/models (default: the model's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to bind")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="requests generated together")
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted."""
    uvicorn = require("uvicorn", "serve")
    from memrec.assist.llm.hf import HFGenerator

    generator = HFGenerator(args.model, device=args.device, batch_size=args.batch_size)
    print(f"serving {generator.name} ({generator.folder}) at http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(generator, args.name), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":  # python -m memrec.assist.llm.server --port 8001
    raise SystemExit(run(add_arguments(argparse.ArgumentParser(prog="memrec assist serve-llm")).parse_args()))
