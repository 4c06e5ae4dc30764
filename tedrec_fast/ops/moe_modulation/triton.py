"""Host side of the Triton backend of the MoE-modulation core: allocate outputs and launch the kernels of
:mod:`tedrec_fast.kernels.moe_modulation` at their :func:`~tedrec_fast.kernels.moe_modulation.launch_config`."""

from __future__ import annotations

import torch
import triton

from tedrec_fast.kernels.common import dot_precision, tl_acc_dtype
from tedrec_fast.kernels.moe_modulation import (
    _moe_bwd_rows_kernel,
    _moe_bwd_weight_kernel,
    _moe_fwd_kernel,
    launch_config,
)
from tedrec_fast.ops.philox import threshold

__all__ = ["moe_core_forward", "moe_core_backward"]


def _scalars(xu: torch.Tensor, p: float) -> tuple[int, float, int]:
    return (xu.shape[1] + 3) // 4, 1.0 / (1.0 - p), threshold(p)


def _meta(kernel: str, dtype: torch.dtype, device: torch.device) -> dict:
    cfg = launch_config(kernel, device)
    return {**cfg, "ACC": tl_acc_dtype(dtype), "PRECISION": dot_precision(dtype)}


def moe_core_forward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
                     p: float, seed: int) -> torch.Tensor:
    """``out (R, H)`` of the core (argument layouts as in :class:`~tedrec_fast.ops.moe_modulation.core.MoECore`)."""
    (R, E), (_, D, H) = gates.shape, WT.shape
    quads, scale, thresh = _scalars(xu, p)
    out = torch.empty(R, H, dtype=gates.dtype, device=gates.device)
    meta = _meta("forward", gates.dtype, gates.device)
    grid = (triton.cdiv(R, meta["BLOCK_R"]), triton.cdiv(H, meta["BLOCK_H"]))
    _moe_fwd_kernel[grid](index, xu, gates, P, WT, out, R, E, D, H, quads, scale, seed, thresh, HAS_DROPOUT=p > 0,
                          **meta)
    return out


def moe_core_backward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
                      p: float, seed: int, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(grad_gates, grad_P, grad_WT)`` of :func:`moe_core_forward` for ``grad_out (R, H)``."""
    (R, E), (_, D, H) = gates.shape, WT.shape
    quads, scale, thresh = _scalars(xu, p)
    grad_gates = torch.empty_like(gates)
    grad_P = torch.zeros_like(P)
    meta = _meta("backward_rows", gates.dtype, gates.device)
    _moe_bwd_rows_kernel[(triton.cdiv(R, meta["BLOCK_R"]),)](
        index, xu, gates, P, WT, grad_out, grad_gates, grad_P, R, E, D, H, quads, scale, seed, thresh,
        HAS_DROPOUT=p > 0, **meta)
    if p == 0:
        return grad_gates, grad_P, torch.zeros_like(WT)
    grad_WT = torch.empty_like(WT)
    meta = _meta("backward_weight", gates.dtype, gates.device)
    grid = (E, triton.cdiv(D, meta["BLOCK_D"]), triton.cdiv(H, meta["BLOCK_H"]))
    _moe_bwd_weight_kernel[grid](index, xu, gates, grad_out, grad_WT, R, E, D, H, quads, scale, seed, thresh, **meta)
    return grad_gates, grad_P, grad_WT
