"""The fused inference path of the causal Transformer computes the training path's function."""
import pytest
import torch

from memrec.nn import transformer
from memrec.nn.transformer import CausalTransformer, linear


def test_this_torch_has_the_fused_linear():
    assert transformer.FUSED_LINEAR is not None  # the evaluation speed in the README relies on it


@pytest.mark.parametrize("gelu,residual", [(False, False), (True, False), (False, True)])
def test_fused_linear_equals_separate_ops(gelu, residual):
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 256 if not residual else 64)
    x = torch.randn(3, 40, 64)
    extra = torch.randn(3, 40, 64) if residual else None
    expected = linear(x, layer.weight, layer.bias, gelu=gelu, residual=extra)  # autograd ops
    assert expected.requires_grad
    with torch.no_grad():
        fused = linear(x, layer.weight, layer.bias, gelu=gelu, residual=extra)
    assert not fused.requires_grad
    torch.testing.assert_close(fused, expected.detach(), rtol=1e-5, atol=1e-5)


def test_inference_equals_the_training_path_in_eval_mode():
    torch.manual_seed(0)
    net = CausalTransformer(d=64, heads=2, inner=256, layers=2, dropout=0.5).eval()
    x = torch.randn(9, 48, 64)
    last = torch.randint(0, 48, (9,))
    expected_all, expected_at = net(x).detach(), net.forward_at(x, last).detach()
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected_all, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net.forward_at(x, last), expected_at, rtol=1e-5, atol=1e-5)


def test_dropout_still_applies_without_gradients_in_training_mode():
    torch.manual_seed(0)
    net = CausalTransformer(d=64, heads=2, inner=256, layers=1, dropout=0.5)
    x = torch.randn(4, 16, 64)
    with torch.no_grad():
        reference = net.eval()(x)
        dropped = net.train()(x)
    assert (dropped - reference).abs().max() > 0.1
