"""The MoE-modulation op alone (forward + backward at training time), against its eager reference: the step
``python -m bench --train-step`` and ``pytest bench/`` time beside the training steps (bench/train_step.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.train_step import N_ITEMS, TEXT_DIM, batch
from tedrec_fast.ops.moe_modulation import moe_modulation, moe_modulation_reference

__all__ = ["make_moe_step"]


def make_moe_step(reference: bool, B: int, n: int = 50, hidden: int = 300, experts: int = 8,
                  device: str = "cpu") -> Callable[[], None]:
    """Forward + backward of the MoE modulation alone (the op, or its eager reference) at training time."""
    torch.manual_seed(0)
    table = torch.randn(N_ITEMS, TEXT_DIM, device=device) * 0.05
    table[0] = 0  # the padding item's text vector, as TedRec stores it
    shapes = [(TEXT_DIM, experts), (TEXT_DIM, experts), (experts, hidden, TEXT_DIM), (experts, n, TEXT_DIM)]
    params = [torch.randn(shape, device=device) * 0.02 for shape in shapes]
    for p in params:
        p.requires_grad_(True)
    items, _, _ = batch(B, n, device)

    def step() -> None:
        if reference:
            out = moe_modulation_reference(table[items], *params, 0.2, True)
        else:
            out = moe_modulation(items, table, *params, 0.2, True)
        out.sum().backward()
        for p in params:
            p.grad = None

    return step
