"""Real item encoders: text (sentence-transformers) and images (EfficientNet-Lite0, CLIP), with
per-item features aligned with memrec item indices and cached on disk.

Example:
    >>> from memrec.encoders import encode_item_texts, TextEncoderConfig
    >>> TextEncoderConfig().model
    'all-MiniLM-L6-v2'
"""
from memrec.encoders.common import ImageLoadError, MissingExtraError, ModelNotFoundError
from memrec.encoders.image import ImageEncoder, ImageEncoderConfig, load_image
from memrec.encoders.items import ItemFeatures, encode_item_images, encode_item_texts
from memrec.encoders.text import TextEncoder, TextEncoderConfig

__all__ = [
    "ImageEncoder",
    "ImageEncoderConfig",
    "ImageLoadError",
    "ItemFeatures",
    "MissingExtraError",
    "ModelNotFoundError",
    "TextEncoder",
    "TextEncoderConfig",
    "encode_item_images",
    "encode_item_texts",
    "load_image",
]
