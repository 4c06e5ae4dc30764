"""The heavy part of the MoE modulation as one autograd function, with three implementations of one semantics.

``core(gates, P, WT) = sum_k gates[:, k] * scale * (P[index, k] - ((1 - m_k) * xu[index]) @ WT[k])`` with
``scale = 1 / (1 - p)``, ``P (U, E, H)`` the dense projections of the distinct items ``xu (U, D)``, ``WT (E, D, H)``
the experts' transposed weights and ``1 - m_k`` the dropped coordinates of :mod:`tedrec_fast.ops.philox` (drawn
from ``seed``; regenerated in the backward pass, never stored). Implementations: ``"cpp"`` (:mod:`.cpu`), ``"triton"``
(:mod:`tedrec_fast.kernels.moe_modulation`) and ``"torch"`` (below, in chunks of positions).
"""

from __future__ import annotations

import torch

from tedrec_fast.ops.moe_modulation import cpu
from tedrec_fast.ops.philox import dropped_mask, threshold

__all__ = ["MoECore", "CHUNK_ROWS"]

#: positions per chunk of the torch implementation (bounds its ``(rows, D)`` temporaries)
CHUNK_ROWS = 2048


def _torch_forward(index, xu, gates, P, WT, p, seed):
    R, E = gates.shape
    scale = 1.0 / (1.0 - p)
    out = torch.zeros(R, WT.shape[2], dtype=gates.dtype, device=gates.device)
    for start in range(0, R, CHUNK_ROWS):
        rows = torch.arange(start, min(start + CHUNK_ROWS, R), device=gates.device)
        u = index[rows]
        x = xu[u]
        for k in range(E):
            term = P[u, k]
            if p > 0:
                term = term - (x * dropped_mask(rows, k, E, xu.shape[1], p, seed)) @ WT[k]
            out[rows] += gates[rows, k, None] * scale * term
    return out


def _torch_backward(index, xu, gates, P, WT, p, seed, grad_out):
    R, E = gates.shape
    scale = 1.0 / (1.0 - p)
    grad_gates, grad_P, grad_WT = torch.zeros_like(gates), torch.zeros_like(P), torch.zeros_like(WT)
    for start in range(0, R, CHUNK_ROWS):
        rows = torch.arange(start, min(start + CHUNK_ROWS, R), device=gates.device)
        u, dt = index[rows], grad_out[rows]
        x = xu[u]
        for k in range(E):
            g = gates[rows, k, None] * scale
            dot = (dt * P[u, k]).sum(-1)
            if p > 0:
                xd = x * dropped_mask(rows, k, E, xu.shape[1], p, seed)
                dot = dot - (dt * (xd @ WT[k])).sum(-1)
                grad_WT[k] -= xd.t() @ (g * dt)
            grad_gates[rows, k] = dot * scale
            grad_P[:, k].index_add_(0, u, g * dt)
    return grad_gates, grad_P, grad_WT


class MoECore(torch.autograd.Function):
    """``MoECore.apply(gates (R, E), P (U, E, H), WT (E, D, H), index (R,), xu (U, D), p, seed, impl) -> (R, H)``;
    gradients for ``gates``, ``P`` and ``WT`` (``xu`` is constant: frozen text vectors)."""

    @staticmethod
    def forward(ctx, gates, P, WT, index, xu, p, seed, impl):
        ctx.save_for_backward(gates, P, WT, index, xu)
        ctx.p, ctx.seed, ctx.impl = p, seed, impl
        if impl == "cpp":
            return cpu.forward(index, xu, gates, P, WT, 1.0 / (1.0 - p), threshold(p), seed)
        if impl == "triton":
            from tedrec_fast.ops.moe_modulation.triton import moe_core_forward

            return moe_core_forward(index, xu, gates, P, WT, p, seed)
        return _torch_forward(index, xu, gates, P, WT, p, seed)

    @staticmethod
    def backward(ctx, grad_out):
        gates, P, WT, index, xu = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        if ctx.impl == "cpp":
            grads = cpu.backward(index, xu, gates, P, WT, 1.0 / (1.0 - ctx.p), threshold(ctx.p), ctx.seed, grad_out)
        elif ctx.impl == "triton":
            from tedrec_fast.ops.moe_modulation.triton import moe_core_backward

            grads = moe_core_backward(index, xu, gates, P, WT, ctx.p, ctx.seed, grad_out)
        else:
            grads = _torch_backward(index, xu, gates, P, WT, ctx.p, ctx.seed, grad_out)
        return (*grads, None, None, None, None, None)
