"""The readable torch reference of the full-catalog cross-entropy: this file is the spec.

It is written as the public TedRec model writes its loss (docs/DESIGN.md section 1, item 6)::

    logits = F.normalize(query) @ F.normalize(item_weight).T / temperature
    loss   = F.cross_entropy(logits, targets)

It materialises the ``B x |V|`` logits (and, normalising, a normalised copy of the table). Every other
backend is tested against :func:`full_catalog_cross_entropy_reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["full_catalog_cross_entropy_reference"]


def full_catalog_cross_entropy_reference(
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 0.07,
    normalize: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``normalize(query) @ normalize(item_weight).T / temperature`` over every item.

    With ``normalize=False`` the logits are plain dot products divided by ``temperature``. Computed in
    float32 (float64 for float64 inputs); the loss is returned in that dtype.
    """
    compute = torch.float64 if query.dtype == torch.float64 else torch.float32
    q, c = query.to(compute), item_weight.to(compute)
    if normalize:
        q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    logits = q @ c.t() / temperature
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction=reduction)
