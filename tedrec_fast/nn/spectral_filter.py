"""``SpectralFilter``: FMLP-Rec's learned filter (TedRec's item filter) as a module."""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.nn.backend_choice import chosen_backend
from tedrec_fast.nn.spectral_fusion import check_module_inputs, check_module_sizes
from tedrec_fast.ops.spectral_filter.op import BACKENDS, spectral_filter

__all__ = ["SpectralFilter"]


class SpectralFilter(nn.Module):
    """``irfft(rfft(x) * W)`` along the sequence with a learned ``complex_weight`` ``(1, n//2+1, d, 2)``.

    The parameter is named and initialised like FMLP-Rec's filter layer (``randn * 0.02``).

    Args:
        max_seq_length: the sequence length ``n`` the filter is built for.
        hidden_size: the embedding size ``d``.
        backend: ``"auto"``, ``"triton"`` or ``"torch"`` (see :func:`tedrec_fast.spectral_filter`);
            :meth:`chosen_backend` says which one runs.
    """

    #: the op this module runs (a field of :class:`tedrec_fast.config.OpBackends`)
    op_name = "spectral_filter"

    def __init__(self, max_seq_length: int, hidden_size: int, backend: str = "auto") -> None:
        super().__init__()
        check_module_sizes("SpectralFilter", max_seq_length, hidden_size, backend, BACKENDS)
        self.max_seq_length = max_seq_length
        self.hidden_size = hidden_size
        self.backend = backend
        self.complex_weight = nn.Parameter(torch.randn(1, max_seq_length // 2 + 1, hidden_size, 2) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` ``(B, n, d)``; returns ``(B, n, d)``."""
        check_module_inputs("SpectralFilter", self.max_seq_length, self.hidden_size, x=x)
        return spectral_filter(x, self.complex_weight, backend=self.backend)

    def chosen_backend(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> str:
        """The backend :meth:`forward` dispatches ``(batch, n, d)`` inputs of ``dtype`` on ``device`` to."""
        sizes = (("B", batch), ("n", self.max_seq_length), ("d", self.hidden_size))
        return chosen_backend(self.op_name, self.backend, device, dtype, sizes)

    def extra_repr(self) -> str:
        return f"max_seq_length={self.max_seq_length}, hidden_size={self.hidden_size}, backend={self.backend!r}"
