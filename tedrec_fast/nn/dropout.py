"""``Dropout``: ``nn.Dropout`` on the dropout op (:func:`tedrec_fast.ops.dropout.dropout`)."""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.ops.dropout import dropout

__all__ = ["Dropout"]


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` whose training masks come from the dropout op (on a CPU: the C++ core's counter-based
    masks, remade in the backward pass), or from torch's ``F.dropout`` itself with ``reference=True`` (the
    models' reference mode, which draws random numbers in the public implementations' order)."""

    def __init__(self, p: float = 0.5, reference: bool = False) -> None:
        super().__init__(p)
        if not isinstance(reference, bool):
            raise TypeError(f"Dropout: reference must be a bool, got {type(reference).__name__}")
        self.reference = reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return super().forward(x)
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, reference={self.reference}"
