"""``FusedSpectralFusion``: TedRec's fusion layer as a drop-in module."""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.nn.backend_choice import chosen_backend
from tedrec_fast.ops.spectral_fusion.op import BACKENDS, spectral_fusion

__all__ = ["FusedSpectralFusion", "check_module_sizes", "check_module_inputs"]


def check_module_sizes(module: str, max_seq_length: object, hidden_size: object, backend: object,
                       backends: tuple) -> None:
    """Constructor checks shared by the sequence-filter modules."""
    for name, value in (("max_seq_length", max_seq_length), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{module}: {name} must be a positive int, got {value!r}")
    names = ["auto"] + [b.name for b in backends]
    if backend not in names:
        raise ValueError(f"{module}: backend must be one of {names}, got {backend!r}")


def check_module_inputs(module: str, max_seq_length: int, hidden_size: int, **inputs: object) -> None:
    """``(B, n, d)`` inputs must match the module's ``max_seq_length`` and ``hidden_size``."""
    for name, x in inputs.items():
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            if x.shape[1] != max_seq_length:
                raise ValueError(f"{module}: {name} has sequence length {x.shape[1]}, "
                                 f"but the module was built for max_seq_length={max_seq_length}")
            if x.shape[2] != hidden_size:
                raise ValueError(f"{module}: {name} has hidden size {x.shape[2]}, "
                                 f"but the module was built for hidden_size={hidden_size}")


class FusedSpectralFusion(nn.Module):
    """TedRec's text-ID fusion with the public model's parameter names and shapes.

    A state dict of the public TedRec model's fusion parameters (``complex_weight``,
    ``item_gating.{weight,bias}``, ``fusion_gating.{weight,bias}``) loads with ``strict=True``.

    Args:
        max_seq_length: the sequence length ``n`` the filter is built for.
        hidden_size: the embedding size ``d``.
        backend: ``"auto"``, ``"triton"``, ``"cuda"`` or ``"torch"`` (see :func:`tedrec_fast.spectral_fusion`).

    ``forward(item_emb, text_emb)`` takes two ``(B, n, d)`` tensors and returns ``(B, n, d)``;
    :meth:`chosen_backend` says which backend it runs.
    """

    #: the op this module runs (a field of :class:`tedrec_fast.config.OpBackends`)
    op_name = "spectral_fusion"

    def __init__(self, max_seq_length: int, hidden_size: int, backend: str = "auto") -> None:
        super().__init__()
        check_module_sizes("FusedSpectralFusion", max_seq_length, hidden_size, backend, BACKENDS)
        self.max_seq_length = max_seq_length
        self.hidden_size = hidden_size
        self.backend = backend
        self.complex_weight = nn.Parameter(torch.randn(1, max_seq_length // 2 + 1, hidden_size, 2) * 0.02)
        self.item_gating = nn.Linear(hidden_size, 1)
        self.fusion_gating = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.item_gating.weight, std=0.02)
        nn.init.normal_(self.fusion_gating.weight, std=0.02)

    def forward(self, item_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        check_module_inputs("FusedSpectralFusion", self.max_seq_length, self.hidden_size,
                            item_emb=item_emb, text_emb=text_emb)
        return spectral_fusion(
            item_emb,
            text_emb,
            self.complex_weight,
            self.item_gating.weight,
            self.item_gating.bias,
            self.fusion_gating.weight,
            self.fusion_gating.bias,
            backend=self.backend,
        )

    def chosen_backend(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> str:
        """The backend :meth:`forward` dispatches ``(batch, n, d)`` inputs of ``dtype`` on ``device`` to."""
        sizes = (("B", batch), ("n", self.max_seq_length), ("d", self.hidden_size))
        return chosen_backend(self.op_name, self.backend, device, dtype, sizes)

    def extra_repr(self) -> str:
        return f"max_seq_length={self.max_seq_length}, hidden_size={self.hidden_size}, backend={self.backend!r}"
