"""The spec of the dropout op: torch's own ``F.dropout``.

In training each element is kept with probability ``1 - p``, independently, and scaled by ``1 / (1 - p)``; the
other elements are zero. Outside training, and at ``p = 0``, the input passes unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dropout_reference"]


def dropout_reference(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``: torch's masks, drawn from torch's generator."""
    return F.dropout(x, p, training)
