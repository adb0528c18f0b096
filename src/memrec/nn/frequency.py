"""BSARec's frequency layer (Shin et al., AAAI 2024): a low-pass filter over the sequence axis, the
high frequencies added back scaled by a learned per-channel beta^2, then residual and LayerNorm.

The filter reads the whole sequence (it is not causal): use it on left-padded rows whose last
position is the only one read, as BSARec does (:class:`memrec.models.bsarec.BSARec`).
"""
from __future__ import annotations

import torch
from torch import nn

from memrec.nn.dropout import Dropout


class FrequencyFilter(nn.Module):
    """``LayerNorm(x + dropout(low(x) + beta^2 * (x - low(x))))`` where ``low`` keeps the
    ``cutoff // 2 + 1`` lowest frequencies of the real FFT over the L positions: (B, L, d) -> (B, L, d).

    Example:
        >>> layer = FrequencyFilter(d=8, cutoff=5, dropout=0.0)
        >>> layer(torch.randn(2, 10, 8)).shape
        torch.Size([2, 10, 8])
        >>> x = torch.randn(1, 10, 8)
        >>> torch.allclose(layer.low_pass(x).sum(1), x.sum(1), atol=1e-5)  # the mean (frequency 0) passes
        True
    """

    def __init__(self, d: int, cutoff: int, dropout: float):
        super().__init__()
        if cutoff < 0:
            raise ValueError(f"the frequency cutoff must be >= 0, got {cutoff}")
        self.keep = cutoff // 2 + 1  # rfft bins kept by the low-pass filter
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, d))
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def low_pass(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # (B, L // 2 + 1, d), complex
        spectrum[:, self.keep :] = 0
        return torch.fft.irfft(spectrum, n=x.size(1), dim=1, norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
        low = self.low_pass(x)
        return self.norm(x + self.dropout(low + self.sqrt_beta**2 * (x - low)))

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, -1]`` with the work after the filter done for the last position only: (B, L, d) -> (B, d)."""
        low, last = self.low_pass(x)[:, -1], x[:, -1]  # (B, d) each
        return self.norm(last + self.dropout(low + self.sqrt_beta.view(-1) ** 2 * (last - low)))
