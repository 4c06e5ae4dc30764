"""The counter-based masks of the fast dropout paths: Philox4x32-10 (Triton's ``tl.randint4x``) in torch ops.

Both users index a ``(rows, groups, dim)`` tensor the same way: coordinate ``i`` of group ``k`` at row ``r`` is
dropped iff output lane ``i % 4`` of Philox4x32-10 with key ``(seed mod 2^32, seed >> 32)`` and counter
``((r * groups + k) * ceil(dim / 4) + i // 4, 0, 0)`` (64-bit counter split low/high) is below
``threshold(p) = floor(p * 2^32)``. The MoE modulation's rows are positions and its groups experts; the dropout
op is one row and one group of ``numel`` coordinates, so element ``i`` uses counter ``i // 4``, lane ``i % 4``.
The C++ cores (``philox.h``) and the Triton kernels make the same masks; this module is their torch twin (the
MoE op's torch backend, and the tests' oracle).
"""

from __future__ import annotations

import torch

__all__ = ["threshold", "draw_seed", "philox4x32", "dropped_mask"]

_M32 = 0xFFFFFFFF


def threshold(p: float) -> int:
    """The uint32 threshold of dropout rate ``p`` in ``[0, 1)``: a 32-bit draw below it drops a coordinate."""
    return min(int(p * 2.0**32), _M32)


def draw_seed() -> int:
    """A 63-bit mask seed from torch's default CPU generator (so ``torch.manual_seed`` reproduces it)."""
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64).item())


def philox4x32(counter: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """The four 32-bit outputs (as int64 tensors) of Philox4x32-10 at 64-bit ``counter`` (int64 tensor)."""
    c0, c1 = counter & _M32, (counter >> 32) & _M32
    c2 = c3 = torch.zeros_like(c0)
    k0, k1 = seed & _M32, (seed >> 32) & _M32
    for _ in range(10):
        a, b = c0 * 0xD2511F53, c2 * 0xCD9E8D57  # < 2^64: int64 wraps, the low 64 bits are exact
        c0, c2, c1, c3 = ((b >> 32) & _M32) ^ c1 ^ k0, ((a >> 32) & _M32) ^ c3 ^ k1, b & _M32, a & _M32
        k0, k1 = (k0 + 0x9E3779B9) & _M32, (k1 + 0xBB67AE85) & _M32
    return c0, c1, c2, c3


def dropped_mask(rows: torch.Tensor, expert: int, n_experts: int, dim: int, p: float, seed: int) -> torch.Tensor:
    """Boolean ``(len(rows), dim)``: which coordinates of group ``expert`` (of ``n_experts``) are dropped at
    ``rows``."""
    quads = (dim + 3) // 4
    counter = ((rows.long() * n_experts + expert) * quads)[:, None] + torch.arange(quads, device=rows.device)
    lanes = torch.stack(philox4x32(counter, seed), dim=-1).reshape(len(rows), 4 * quads)[:, :dim]
    return lanes < threshold(p)
