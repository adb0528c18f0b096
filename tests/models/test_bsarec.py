"""BSARec: its frequency filter is BSARec's low/high-pass mix, its rows are left-aligned so the last
item always sits at max_len - 1 and padding is never attended to, and it trains on prefixes.
(The conformance suite, tests/models/test_conformance.py, covers it as a registered model.)"""
import numpy as np
import pytest
import torch

from memrec.data.batching import TrainBatches, training_windows
from memrec.errors import ConfigError
from memrec.models import build_model
from memrec.models.bsarec import BSARecConfig
from memrec.nn import FrequencyFilter
from memrec.train.losses import make_objective


def test_filter_keeps_the_low_frequencies_and_scales_the_rest_by_beta_squared():
    layer = FrequencyFilter(d=4, cutoff=1, dropout=0.0)  # keeps frequency 0 only: the mean over positions
    x = torch.randn(2, 10, 4)
    assert torch.allclose(layer.low_pass(x), x.mean(1, keepdim=True).expand_as(x), atol=1e-5)
    with torch.no_grad():
        layer.sqrt_beta.fill_(1.0)  # beta^2 = 1: the filter passes x unchanged
    assert torch.allclose(layer(x), layer.norm(2 * x), atol=1e-5)
    with torch.no_grad():
        layer.sqrt_beta.zero_()  # beta = 0: only the mean is added
    assert torch.allclose(layer(x), layer.norm(x + x.mean(1, keepdim=True)), atol=1e-5)


def model(**options):
    torch.manual_seed(0)
    return build_model("bsarec", 30, 8, BSARecConfig(hidden_size=16, **options)).eval()


def test_rows_are_left_aligned_up_to_the_position_read():
    m = model()
    rows = m.left_aligned(torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]]), torch.tensor([1, 1]))
    assert rows.tolist() == [[0, 0, 0, 0, 0, 0, 3, 4], [0, 0, 0, 0, 0, 0, 6, 7]]


def test_padding_is_never_read_and_the_filter_changes_the_state():
    m = model()
    items, last = torch.tensor([[3, 4, 5]]), torch.tensor([2])
    state = m.encode_last(items, last)
    with torch.no_grad():
        m.pos_emb.weight[:5] += torch.randn(5, 16)  # the embeddings of the padded slots only (the items sit at 5, 6, 7)
    assert not torch.allclose(m.encode_last(items, last), state, atol=1e-3)  # the filter mixes every slot, padding too, as BSARec
    sasrec_like = model(alpha=0.0)  # attention only: padding keys are hidden
    state = sasrec_like.encode_last(items, last)
    with torch.no_grad():
        sasrec_like.pos_emb.weight[:5] += torch.randn(5, 16)
    assert torch.allclose(sasrec_like.encode_last(items, last), state, atol=1e-5)
    assert not torch.allclose(m.encode_last(items, last), sasrec_like.encode_last(items, last), atol=1e-3)


def test_the_last_block_computed_at_the_last_position_alone_equals_the_whole_stack():
    m = model(num_layers=3)
    items, last = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9], [2, 0, 0, 0]]), torch.tensor([2, 3, 0])
    rows = m.left_aligned(items, last)
    x = m.norm(m.item_emb(rows) + m.pos_emb.weight)  # eval: no dropout
    for block, frequency in zip(m.encoder.blocks, m.filters):  # BSARec's stack, every position of every block
        attended = block.norm1(x + block.attn.out(block.attn.mix(x, rows > 0)))
        y = m.config.alpha * frequency(x) + (1 - m.config.alpha) * attended
        x = block.norm2(y + block.ff(y))
    assert torch.allclose(m.encode_last(items, last), x[:, -1], atol=1e-5)
    layer = m.filters[0]
    assert torch.allclose(layer.forward_last(x), layer(x)[:, -1], atol=1e-6)


def test_prefix_training_lowers_the_loss():
    windows = training_windows([np.arange(1, 9), np.arange(10, 16)], max_len=8, mode="prefixes")
    batch = next(TrainBatches(windows, batch_size=32, last_only=True).epoch(0))
    m = model(dropout=0.1).train()
    objective, optimizer = make_objective("ce", 1), torch.optim.Adam(m.parameters(), lr=1e-2)
    before = m.loss(batch, objective).item()
    for _ in range(20):
        optimizer.zero_grad()
        m.loss(batch, objective).backward()
        optimizer.step()
    assert m.loss(batch, objective).item() < before - 0.5


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="alpha in \\[0, 1\\]"):
        BSARecConfig(alpha=1.5)
