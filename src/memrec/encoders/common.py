"""What the text and image encoders share: their errors, optional imports and frozen weights.

Heavy libraries (sentence-transformers, transformers, the EfficientNet packages) are imported only
when an encoder is built, so that ``import memrec.encoders`` stays cheap.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from memrec.errors import ConfigError, MemrecError


class MissingExtraError(MemrecError, ImportError):
    """An optional dependency of memrec is not installed.

    Example:
        >>> str(MissingExtraError("sentence_transformers", "text"))
        "this needs the Python package 'sentence_transformers', which is not installed: pip install memrec[text]"
    """

    def __init__(self, module: str, extra: str):
        install = extra if " " in extra else f"pip install memrec[{extra}]"  # an extra, or a whole command
        super().__init__(f"this needs the Python package {module!r}, which is not installed: {install}")


class ModelNotFoundError(MemrecError, FileNotFoundError):
    """Pretrained weights could not be found on this machine (and nothing is downloaded offline)."""


class ImageLoadError(MemrecError, OSError):
    """An image file is missing or cannot be decoded."""


def require(module: str, extra: str):
    """Import ``module`` or say which memrec extra (or command) installs it."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise MissingExtraError(module.split(".")[0], extra)
    return importlib.import_module(module)


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (None if not installed).

    Example:
        >>> package_dir("memrec").name, package_dir("no_such_package_xyz")
        ('memrec', None)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def check_device(device: str) -> str:
    """Refuse a device this machine does not have, saying which it has.

    Example:
        >>> check_device("cpu")
        'cpu'
    """
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available here (no CUDA GPU): use device='cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available here: use device='cpu'")
    return device


class FrozenModule(nn.Module):
    """A wrapper that, when ``frozen``, keeps its weights without gradient and in eval mode for good.

    ``train()`` on a parent model does not switch a frozen encoder back to training (dropout and
    batch-norm statistics stay fixed).
    """

    frozen: bool = True

    def freeze_(self, frozen: bool) -> "FrozenModule":
        self.frozen = frozen
        for p in self.parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training and not frozen)

    def train(self, mode: bool = True) -> "FrozenModule":
        return super().train(mode and not self.frozen)
