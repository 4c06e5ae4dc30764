"""TedRec's text-ID fusion with parts switched off (the paper's AG / IF / TF ablations), in torch ops.

The full fusion (all parts on) is :class:`tedrec_fast.nn.FusedSpectralFusion`; this module follows the
same reference semantics (:mod:`tedrec_fast.ops.spectral_fusion.reference`, docs/DESIGN.md section 2) with:

* ``use_item_filter=False`` (w/o IF): ``E2 = E``, the raw ID embeddings (no ``complex_weight``);
* ``use_spectral_fusion=False`` (w/o TF): ``F = T * E``, the element-wise product in the time domain
  instead of ``irfft(rfft(T) * rfft(E))``;
* ``use_gates=False`` (w/o AG): ``V = E2 + F`` (no gates, no factor 2) instead of
  ``V = 2 * (E2 * sigmoid(E2 @ g_i + b_i) + F * sigmoid(F @ g_f + b_f))``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AblatedSpectralFusion"]


class AblatedSpectralFusion(nn.Module):
    """Fusion ``V(E, T)`` with optional item filter, spectral fusion and gates; parameters only for parts on.

    Parameter names and init match :class:`~tedrec_fast.nn.FusedSpectralFusion` (``complex_weight``
    ``randn * 0.02``; ``item_gating``/``fusion_gating`` ``Linear(d, 1)`` with weights N(0, 0.02) and
    PyTorch's default bias init).
    """

    def __init__(
        self,
        max_seq_length: int,
        hidden_size: int,
        use_gates: bool = True,
        use_item_filter: bool = True,
        use_spectral_fusion: bool = True,
    ) -> None:
        super().__init__()
        self.max_seq_length = max_seq_length
        self.use_gates = use_gates
        self.use_item_filter = use_item_filter
        self.use_spectral_fusion = use_spectral_fusion
        if use_item_filter:
            self.complex_weight = nn.Parameter(torch.randn(1, max_seq_length // 2 + 1, hidden_size, 2) * 0.02)
        if use_gates:
            self.item_gating = nn.Linear(hidden_size, 1)
            self.fusion_gating = nn.Linear(hidden_size, 1)
            nn.init.normal_(self.item_gating.weight, std=0.02)
            nn.init.normal_(self.fusion_gating.weight, std=0.02)

    def forward(self, item_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        n = item_emb.shape[1]
        e_spec = None
        if self.use_item_filter or self.use_spectral_fusion:
            e_spec = torch.fft.rfft(item_emb.float(), dim=1, norm="ortho")
        if self.use_item_filter:
            weight = torch.view_as_complex(self.complex_weight.float())
            filtered = torch.fft.irfft(e_spec * weight, n=n, dim=1, norm="ortho").to(item_emb.dtype)
        else:
            filtered = item_emb
        if self.use_spectral_fusion:
            t_spec = torch.fft.rfft(text_emb.float(), dim=1, norm="ortho")
            fused = torch.fft.irfft(t_spec * e_spec, n=n, dim=1, norm="ortho").to(item_emb.dtype)
        else:
            fused = text_emb * item_emb
        if not self.use_gates:
            return filtered + fused
        item_gate = torch.sigmoid(self.item_gating(filtered))
        fusion_gate = torch.sigmoid(self.fusion_gating(fused))
        return 2 * (filtered * item_gate + fused * fusion_gate)

    def extra_repr(self) -> str:
        return (
            f"max_seq_length={self.max_seq_length}, use_gates={self.use_gates}, "
            f"use_item_filter={self.use_item_filter}, use_spectral_fusion={self.use_spectral_fusion}"
        )
