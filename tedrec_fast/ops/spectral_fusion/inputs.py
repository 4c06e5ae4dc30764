"""Random inputs for the spectral-fusion op, shared by the tests and the benchmarks."""

from __future__ import annotations

import torch

__all__ = ["random_inputs"]


def random_inputs(
    B: int,
    n: int,
    d: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, ...]:
    """``(item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight,
    fusion_gate_bias)`` with every part of the op exercised: an O(1) filter (not the 0.02 init, which
    would make ``E2`` negligible), gate weights of norm ~1 so both gates vary over ``(0, 1)``, and
    non-zero biases."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        x = (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype, device=device)
        return x.requires_grad_(requires_grad)

    return (
        randn(B, n, d),
        randn(B, n, d),
        randn(1, n // 2 + 1, d, 2, scale=0.5),
        randn(1, d, scale=d**-0.5),
        randn(1),
        randn(1, d, scale=d**-0.5),
        randn(1),
    )
