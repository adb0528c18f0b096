"""Entropy-adaptive K: how many memories a query reads, from the diversity of what it may read (RAMRec).

From ``n`` item vectors (unit-normalised, ``d`` dims) visible to a query::

    G = cosine Gram matrix of the n vectors (n x n)
    H = log(n^2 / ||G||_F^2) / log(min(n, d))      for n >= 2, else 0;  H in [0, 1]
    K = min(n, round(k_min + (k_max - k_min) * H))

``n^2 / ||G||_F^2`` is the exponential of the Renyi-2 (collision) entropy of the normalised spectrum
of ``G``, the "effective number of directions" the user's items span: 1 when every item is alike
(H = 0, K = k_min), n when they are orthogonal (H = 1, K = k_max). A diverse user gets more memories.
It needs only ``||G||_F^2``, so it is computed per position, over the entries visible there, in one matmul.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def diversity(vectors: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Normalised collision entropy H in [0, 1] of the vectors each query sees.

    vectors (B, n, d), visible (B, Q, n) bool -> (B, Q). See the module docstring for the formula.

    Example:
        >>> same = torch.ones(1, 4, 3)
        >>> orthogonal = torch.eye(3).unsqueeze(0)
        >>> round(diversity(same, torch.ones(1, 1, 4, dtype=torch.bool)).item(), 4), diversity(orthogonal, torch.ones(1, 1, 3, dtype=torch.bool)).item()
        (0.0, 1.0)
    """
    unit = F.normalize(vectors.detach().float(), dim=-1)
    gram2 = (unit @ unit.transpose(1, 2)).square()  # (B, n, n)
    a = visible.float()  # (B, Q, n)
    frob = ((a @ gram2) * a).sum(-1)  # (B, Q): ||G||_F^2 over the visible entries
    n = a.sum(-1)
    span = n.clamp(max=float(vectors.size(-1))).clamp(min=2.0)  # min(n, d), at least 2
    h = torch.log(n.square() / frob.clamp(min=1e-12)) / torch.log(span)
    return torch.where(n >= 2, h, torch.zeros_like(h)).clamp(0.0, 1.0)


def adaptive_k(h: torch.Tensor, n: torch.Tensor, k_min: int, k_max: int) -> torch.Tensor:
    """K = min(n, round(k_min + (k_max - k_min) * H)), elementwise; ``n`` entries are available.

    Example:
        >>> adaptive_k(torch.tensor([0.0, 0.5, 1.0, 1.0]), torch.tensor([50, 50, 50, 4]), 3, 20).tolist()
        [3, 12, 20, 4]
    """
    if not 1 <= k_min <= k_max:
        raise ValueError(f"expected 1 <= k_min <= k_max, got {k_min} and {k_max}")
    k = torch.round(k_min + (k_max - k_min) * h).long()
    return torch.minimum(k, n.long())
