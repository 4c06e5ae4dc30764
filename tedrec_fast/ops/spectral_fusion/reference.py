"""The readable torch reference of the spectral-fusion op: this file is the spec.

It is written exactly as the public TedRec model writes the fusion (docs/DESIGN.md section 2)::

    F  = irfft(rfft(T) * rfft(E))            # "ortho" norm, along the sequence
    E2 = irfft(rfft(E) * W)                  # W = view_as_complex(complex_weight)
    V  = 2 * (E2 * sigmoid(E2 @ g_i + b_i) + F * sigmoid(F @ g_f + b_f))

Every other backend is tested against :func:`spectral_fusion_reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["spectral_fusion_reference", "filter_kernel_reference"]


def spectral_fusion_reference(
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
) -> torch.Tensor:
    """TedRec's text-ID fusion with ``torch.fft``; returns ``V`` shaped like ``item_emb``.

    cuFFT has no bf16 transforms and needs power-of-two lengths for fp16, so 16-bit inputs are
    computed in float32 and the result is cast back to the input dtype.
    """
    out_dtype = item_emb.dtype
    if item_emb.shape[0] == 0:  # empty batch (some FFT libraries reject it): empty result, zero gradients
        params = (complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias)
        return item_emb + text_emb + 0 * sum(p.sum() for p in params)
    compute = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    e, t = item_emb.to(compute), text_emb.to(compute)
    cw = complex_weight.to(compute)
    n = e.shape[1]

    e_spec = torch.fft.rfft(e, dim=1, norm="ortho")
    t_spec = torch.fft.rfft(t, dim=1, norm="ortho")
    fused = torch.fft.irfft(t_spec * e_spec, n=n, dim=1, norm="ortho")
    weight = torch.complex(cw[..., 0], cw[..., 1])
    filtered = torch.fft.irfft(e_spec * weight, n=n, dim=1, norm="ortho")

    item_gate = torch.sigmoid(F.linear(filtered, item_gate_weight.to(compute), item_gate_bias.to(compute)))
    fusion_gate = torch.sigmoid(F.linear(fused, fusion_gate_weight.to(compute), fusion_gate_bias.to(compute)))
    return (2 * (filtered * item_gate + fused * fusion_gate)).to(out_dtype)


def filter_kernel_reference(complex_weight: torch.Tensor, n: int) -> torch.Tensor:
    """The real length-``n`` kernel ``h = irfft(W, n)`` (backward norm) the filter collapses to, ``(n, d)``."""
    cw = complex_weight[0]
    return torch.fft.irfft(torch.complex(cw[..., 0], cw[..., 1]), n=n, dim=0)
