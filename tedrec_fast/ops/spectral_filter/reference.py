"""The readable torch reference of the learned spectral filter: this file is the spec.

FMLP-Rec's filter layer and TedRec's ``E2`` path::

    Y = irfft(rfft(X, dim=1, norm="ortho") * W, n, dim=1, norm="ortho"),  W = view_as_complex(complex_weight)
"""

from __future__ import annotations

import torch

__all__ = ["spectral_filter_reference"]


def spectral_filter_reference(x: torch.Tensor, complex_weight: torch.Tensor) -> torch.Tensor:
    """Filter ``x`` ``(B, n, d)`` along the sequence with ``complex_weight`` ``(1, n // 2 + 1, d, 2)``.

    16-bit inputs are computed in float32 (cuFFT has no bf16 transforms) and cast back.
    """
    if x.shape[0] == 0:  # empty batch (some FFT libraries reject it): empty result, zero gradients
        return x + 0 * complex_weight.sum()
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    cw = complex_weight.to(compute)
    spectrum = torch.fft.rfft(x.to(compute), dim=1, norm="ortho")
    y = torch.fft.irfft(spectrum * torch.complex(cw[..., 0], cw[..., 1]), n=x.shape[1], dim=1, norm="ortho")
    return y.to(x.dtype)
