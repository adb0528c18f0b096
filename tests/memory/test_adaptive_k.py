"""Entropy-adaptive K: diversity of the visible entries, and K from it."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memrec.memory.adaptive_k import adaptive_k, diversity

ALL = lambda n: torch.ones(1, 1, n, dtype=torch.bool)  # noqa: E731  one query that sees n entries


def renyi2_from_spectrum(vectors: torch.Tensor) -> float:
    """The documented formula computed the long way: eigenvalues of the cosine Gram matrix."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=-1)
    lam = torch.linalg.eigvalsh(unit @ unit.T).clamp(min=0)
    p = lam / lam.sum()
    n, d = vectors.shape
    return float(-torch.log((p * p).sum()) / math.log(min(n, d)))


def test_diversity_is_0_for_identical_and_1_for_orthogonal_items():
    assert diversity(torch.ones(1, 5, 4), ALL(5)).item() == pytest.approx(0.0, abs=1e-5)
    assert diversity(torch.eye(4)[None] * 3.0, ALL(4)).item() == pytest.approx(1.0)
    assert diversity(torch.ones(1, 1, 4), ALL(1)).item() == 0.0  # one entry: nothing to be diverse about


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_diversity_equals_the_collision_entropy_of_the_spectrum(n, d, seed):
    vectors = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    assert diversity(vectors[None], ALL(n)).item() == pytest.approx(renyi2_from_spectrum(vectors), abs=1e-4)


def test_diversity_of_a_visible_subset_ignores_the_rest():
    torch.manual_seed(0)
    vectors = torch.randn(1, 6, 8)
    visible = torch.tensor([[[True, True, True, False, False, False], [True] * 6]])  # (1, 2, 6)
    h = diversity(vectors, visible)
    assert h[0, 0].item() == pytest.approx(diversity(vectors[:, :3], ALL(3)).item(), abs=1e-6)
    assert h[0, 1].item() == pytest.approx(diversity(vectors, ALL(6)).item(), abs=1e-6)


def test_more_diverse_users_get_a_larger_k():
    torch.manual_seed(0)
    focused = torch.randn(1, 8) + 0.05 * torch.randn(30, 8)  # 30 items around one taste
    broad = torch.randn(30, 8)
    h = torch.stack([diversity(v[None], ALL(30))[0, 0] for v in (focused, broad)])
    k = adaptive_k(h, torch.tensor([30, 30]), 3, 20)
    assert h[0] < 0.2 < 0.8 < h[1] and k[0] < k[1]


def test_adaptive_k_formula():
    h = torch.tensor([0.0, 0.25, 1.0, 1.0, 0.5])
    n = torch.tensor([100, 100, 100, 7, 0])
    assert adaptive_k(h, n, 3, 20).tolist() == [3, round(3 + 17 * 0.25), 20, 7, 0]
    with pytest.raises(ValueError, match="k_min <= k_max"):
        adaptive_k(h, n, 5, 4)
