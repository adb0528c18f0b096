"""Per-item text and image features aligned with memrec item indices, encoded once and cached.

Row ``i`` of the result belongs to item index ``i``; row 0 (padding) and items without text or image
are zero rows, and ``mask`` says which rows hold a real feature. Features are cached on disk under
``$MEMREC_CACHE_DIR/features`` (default ``~/.cache/memrec/features``), keyed by the encoder's name
and a hash of the inputs (texts, or the bytes of each image), so a second call loads them. A cache
file that cannot be read or whose checksum does not match is rebuilt, with a warning.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from memrec.data.dataset import SequenceDataset
from memrec.data.registry import cache_dir
from memrec.encoders.image import ImageEncoder, ImageEncoderConfig, image_encoder_name, load_image
from memrec.encoders.text import TextEncoder, TextEncoderConfig, text_encoder_name

CACHE_FORMAT = 1  # bump when preprocessing or the file layout changes


@dataclass
class ItemFeatures:
    """Feature rows aligned with item indices 0..N (0 = padding).

    Example:
        >>> f = ItemFeatures(torch.zeros(3, 4), torch.tensor([False, True, False]), "toy")
        >>> f.num_items, f.dim, f.mask.sum().item()
        (2, 4, 1)
    """

    features: torch.Tensor  # (N + 1, D) float32; zero rows where mask is False
    mask: torch.Tensor  # (N + 1,) bool; True where the item had a text / an image
    encoder: str  # the encoder's name
    from_cache: bool = False  # loaded from the cache file rather than encoded
    cache_path: Path | None = None

    @property
    def num_items(self) -> int:
        return self.features.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.features.shape[1]


def encode_item_texts(
    items,
    encoder: TextEncoder | TextEncoderConfig | str | None = None,
    normalize: bool = False,
    cache: bool | str | Path = True,
    num_items: int | None = None,
) -> ItemFeatures:
    """Encode every item's text once: ``items`` is a SequenceDataset (its ``items.text``), a list of
    texts for items 1..N, or a dict {item index: text}. Empty or None texts give zero rows.

    ``encoder``: a TextEncoder, its config, a sentence-transformers model name or folder, or None for
    the packaged MiniLM. ``cache``: True (the memrec cache dir), a folder, or False (no cache).

    Example:
        >>> f = encode_item_texts(["", ""], cache=False)  # no text: nothing to encode, no model loaded
        >>> f.features.shape, f.mask.tolist()
        (torch.Size([3, 0]), [False, False, False])
    """
    config = _config(encoder, TextEncoder, TextEncoderConfig)
    name = encoder.name if isinstance(encoder, TextEncoder) else text_encoder_name(config)
    rows = _item_rows(items, "text", num_items)
    for i, text in enumerate(rows):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"item {i}: expected a text (str), got {type(text).__name__}")
    rows = [t if t else None for t in rows]
    digests = [None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in rows]

    def encode(first_rows: list[int]) -> torch.Tensor:
        model = encoder if isinstance(encoder, TextEncoder) else TextEncoder(config)
        with torch.no_grad():
            return model([rows[i] for i in first_rows])  # (U, D)

    return _cached_features("text", name, digests, encode, normalize, cache)


def encode_item_images(
    items,
    encoder: ImageEncoder | ImageEncoderConfig | str | None = None,
    normalize: bool = False,
    cache: bool | str | Path = True,
    num_items: int | None = None,
    root: str | Path | None = None,
) -> ItemFeatures:
    """Encode every item's image once: ``items`` is a SequenceDataset (its ``items.image`` paths), a
    list for items 1..N, or a dict {item index: image}; an image is a file path (relative to ``root``
    if given), a PIL image or a preprocessed (3, S, S) tensor. Empty or None entries give zero rows;
    a missing or unreadable file raises :class:`ImageLoadError`.

    ``encoder``: an ImageEncoder, its config, a model name (``"efficientnet-lite0"``), or None for
    EfficientNet-Lite0. ``cache``: True (the memrec cache dir), a folder, or False (no cache).

    Example:
        >>> f = encode_item_images({2: None}, cache=False)  # no image: nothing to encode
        >>> f.features.shape, f.mask.tolist()
        (torch.Size([3, 0]), [False, False, False])
    """
    config = _config(encoder, ImageEncoder, ImageEncoderConfig)
    name = encoder.name if isinstance(encoder, ImageEncoder) else image_encoder_name(config)
    rows = _item_rows(items, "image", num_items)
    rows = [None if (x is None or (isinstance(x, (str, Path)) and str(x) == "")) else x for x in rows]
    digests = [None if x is None else _image_digest(x, root, i) for i, x in enumerate(rows)]

    def encode(first_rows: list[int]) -> torch.Tensor:
        model = encoder if isinstance(encoder, ImageEncoder) else ImageEncoder(config)
        images = [rows[i] for i in first_rows]
        step = model.config.batch_size  # load and preprocess one batch at a time
        with torch.no_grad():
            chunks = [model(model.pixels(images[s : s + step], root)) for s in range(0, len(images), step)]
        return torch.cat(chunks)  # (U, D)

    return _cached_features("image", name, digests, encode, normalize, cache)


def _cached_features(kind, name, digests, encode, normalize, cache) -> ItemFeatures:
    """Load (N + 1, D) features for per-row input digests from the cache, or encode and store them.

    ``encode(rows)`` encodes the inputs of the given rows → (len(rows), D). With no input at all,
    nothing is loaded and D is 0.
    """
    key = hashlib.sha256("\n".join([f"{kind}:{CACHE_FORMAT}", name, *(d or "-" for d in digests)]).encode()).hexdigest()
    mask = torch.tensor([d is not None for d in digests], dtype=torch.bool)  # (N + 1,)
    path = _cache_file(cache, kind, name, key)
    result = _read_cache(path, key, name, mask) if path is not None else None
    if result is None:
        slots: dict[str, int] = {}  # identical inputs are encoded once
        slot_of_row = {i: slots.setdefault(d, len(slots)) for i, d in enumerate(digests) if d is not None}
        first_row: dict[int, int] = {}
        for i, slot in slot_of_row.items():
            first_row.setdefault(slot, i)
        features = torch.zeros(len(digests), 0)
        if slots:
            encoded = encode(list(first_row.values())).float().cpu()  # (U, D), in slot order
            features = torch.zeros(len(digests), encoded.shape[1])  # (N + 1, D)
            features[list(slot_of_row)] = encoded[list(slot_of_row.values())]
        if path is not None:
            _write_cache(path, key, name, features, mask)
        result = ItemFeatures(features, mask, name, from_cache=False, cache_path=path)
    if normalize and result.dim:
        result.features = F.normalize(result.features, dim=-1)  # zero rows stay zero
    return result


def _cache_file(cache, kind: str, name: str, key: str) -> Path | None:
    if cache is False or cache is None:
        return None
    root = cache_dir() / "features" if cache is True else Path(cache).expanduser()
    slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", name)[-60:]
    return root / f"{kind}-{slug}-{key[:24]}.pt"


def _checksum(features: torch.Tensor, mask: torch.Tensor) -> str:
    h = hashlib.sha256(features.contiguous().numpy().tobytes())
    h.update(mask.numpy().tobytes())
    return h.hexdigest()


def _read_cache(path: Path, key: str, name: str, mask: torch.Tensor) -> ItemFeatures | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        features, stored_mask = payload["features"], payload["mask"]
        problem = (
            "another key" if payload.get("key") != key
            else "rows do not match the items" if features.shape[0] != len(mask) or not torch.equal(stored_mask, mask)
            else "checksum mismatch" if _checksum(features, stored_mask) != payload.get("checksum")
            else None
        )
    except Exception as exc:  # truncated or overwritten file: torch.load raises many kinds
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        warnings.warn(f"feature cache {path} is corrupted ({problem}); encoding again", RuntimeWarning, stacklevel=4)
        return None
    return ItemFeatures(features, stored_mask, name, from_cache=True, cache_path=path)


def _write_cache(path: Path, key: str, name: str, features: torch.Tensor, mask: torch.Tensor) -> None:
    """Write atomically (temporary file, then rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"key": key, "encoder": name, "features": features, "mask": mask, "checksum": _checksum(features, mask)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _item_rows(items, field: str, num_items: int | None) -> list:
    """Inputs per item index 0..N (index 0 = padding = None)."""
    if isinstance(items, SequenceDataset):
        rows = list(getattr(items.items, field))
        n = items.num_items
    elif isinstance(items, Mapping):
        bad = [k for k in items if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
        if bad:
            raise TypeError(f"expected item indices 1..N as dict keys, got {bad[:3]}")
        n = max(items, default=0) if num_items is None else num_items
        if items and max(items) > n:
            raise ValueError(f"item index {max(items)} is above num_items={n}")
        rows = [None] + [items.get(i) for i in range(1, n + 1)]
    elif isinstance(items, (list, tuple)):
        rows = [None, *items]
        n = len(items)
    else:
        raise TypeError(
            f"expected a SequenceDataset, a list of item {field}s for items 1..N or a dict {{item index: {field}}}, "
            f"got {type(items).__name__}"
        )
    if num_items is not None and num_items != n:
        raise ValueError(f"got {field}s for {n} items but num_items={num_items}")
    rows[0] = None
    return rows


def _image_digest(image, root, index: int) -> str:
    if torch.is_tensor(image):
        return hashlib.sha256(str(tuple(image.shape)).encode() + image.float().contiguous().numpy().tobytes()).hexdigest()
    if isinstance(image, (str, Path)):
        path = Path(root) / image if root is not None else Path(image)
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            load_image(image, root)  # raises the clear error (missing file, a folder, no permission)
            raise
    try:
        pil = load_image(image)
    except TypeError:
        kind = type(image).__name__
        raise TypeError(f"item {index}: expected an image path, a PIL image or a (3, S, S) tensor, got {kind}") from None
    return hashlib.sha256(f"{pil.size}".encode() + pil.tobytes()).hexdigest()


def _config(encoder, encoder_cls, config_cls):
    """The config an ``encoder`` argument stands for: an encoder instance, a config, a model name or None."""
    if isinstance(encoder, encoder_cls):
        return encoder.config
    if encoder is None or isinstance(encoder, str):
        return config_cls() if encoder is None else config_cls(model=encoder)
    if isinstance(encoder, config_cls):
        return encoder
    kind = type(encoder).__name__
    raise TypeError(f"expected a {encoder_cls.__name__}, a {config_cls.__name__} or a model name, got {kind}")
