"""Host side of the Triton backend of the spectral filter: allocate outputs and partials and launch the
kernels of :mod:`tedrec_fast.kernels.spectral_filter` at the fusion's launch configurations."""

from __future__ import annotations

import torch
import triton

from tedrec_fast.kernels.common import acc_dtype, dot_precision, persistent_programs, tl_acc_dtype
from tedrec_fast.kernels.spectral_filter import (
    _spectral_filter_bwd_kernel,
    _spectral_filter_fwd_kernel,
    filter_block_k,
    filter_config,
)
from tedrec_fast.kernels.targets import launch_arch

__all__ = ["spectral_filter_forward", "spectral_filter_backward"]


def spectral_filter_forward(x: torch.Tensor, complex_weight: torch.Tensor, out: torch.Tensor | None = None
                            ) -> torch.Tensor:
    """Launch the forward; returns ``Y`` (into ``out`` if given). Validated by the caller; any strides."""
    B, n, d = x.shape
    if out is None:
        out = torch.empty((B, n, d), dtype=x.dtype, device=x.device)
    if B == 0:
        return out
    cfg = filter_config(n, launch_arch(x.device), x.dtype)
    w = complex_weight[0]
    _spectral_filter_fwd_kernel[(B, triton.cdiv(d, cfg.BLOCK_D))](
        x, w, out, n, d, *x.stride(), *w.stride(), *out.stride(),
        BLOCK_N=cfg.BLOCK_N, BLOCK_K=filter_block_k(cfg), BLOCK_D=cfg.BLOCK_D,
        ACC=tl_acc_dtype(x.dtype), PRECISION=dot_precision(x.dtype), num_warps=cfg.num_warps,
    )
    return out


def spectral_filter_backward(grad_out: torch.Tensor, x: torch.Tensor, complex_weight: torch.Tensor,
                             d_x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the backward; returns ``(d_x, d_complex_weight)``, the latter reduced over the batch in fp32."""
    B, n, d = x.shape
    if d_x is None:
        d_x = torch.empty((B, n, d), dtype=x.dtype, device=x.device)
    acc = acc_dtype(x.dtype)
    programs = persistent_programs(x.device, B)
    part_w = torch.zeros((programs, 2, n // 2 + 1, d), dtype=acc, device=x.device)
    if B > 0:
        cfg = filter_config(n, launch_arch(x.device), x.dtype)
        w = complex_weight[0]
        _spectral_filter_bwd_kernel[(programs, triton.cdiv(d, cfg.BLOCK_D_BWD))](
            grad_out, x, w, d_x, part_w, B, n, d,
            *grad_out.stride(), *x.stride(), *w.stride(), *d_x.stride(),
            part_w.stride(0), part_w.stride(1), part_w.stride(2),
            BLOCK_N=cfg.BLOCK_N, BLOCK_K=filter_block_k(cfg), BLOCK_D=cfg.BLOCK_D_BWD,
            ACC=tl_acc_dtype(x.dtype), PRECISION=dot_precision(x.dtype), num_warps=cfg.num_warps_bwd,
        )
    d_weight = part_w.sum(0).permute(1, 2, 0).unsqueeze(0).contiguous()  # (1, K, d, 2), fixed-order sum
    return d_x, d_weight.to(complex_weight.dtype)
