"""Host side of the Triton backend of spectral fusion: allocate outputs and partials, pick the launch
configuration and launch the kernels of :mod:`tedrec_fast.kernels.spectral_fusion`."""

from __future__ import annotations

import torch

from tedrec_fast.kernels.common import acc_dtype, dot_precision, persistent_programs, tl_acc_dtype
from tedrec_fast.kernels.spectral_fusion import KernelConfig, kernel_config, kernels_for, validate_config
from tedrec_fast.kernels.targets import launch_arch

__all__ = ["spectral_fusion_forward", "spectral_fusion_backward"]


def _config(config: KernelConfig | None, n: int, device: torch.device, dtype: torch.dtype) -> KernelConfig:
    """``config`` checked for length ``n``, or the default :func:`kernel_config` of ``n`` and ``dtype`` on
    ``device``."""
    if config is None:
        return kernel_config(n, launch_arch(device), dtype)
    validate_config(config, n)
    return config


def spectral_fusion_forward(
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    out: torch.Tensor | None = None,
    *,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """Launch the fused forward; returns ``V`` (written into ``out`` if given). Inputs are validated
    by the caller (:mod:`tedrec_fast.ops.spectral_fusion`); any strides are accepted.

    ``config`` overrides the launch configuration (default :func:`kernel_config` of ``n`` for the device's
    target, :func:`tedrec_fast.kernels.targets.launch_arch`), for tuning (bench/tune_spectral_fusion.py); its
    forward fields are used. ``ValueError`` (see
    :func:`validate_config`) if it cannot run length ``n``.
    """
    B, n, d = item_emb.shape
    cfg = _config(config, n, item_emb.device, item_emb.dtype)
    if out is None:
        out = torch.empty((B, n, d), dtype=item_emb.dtype, device=item_emb.device)
    if B == 0:
        return out
    w = complex_weight[0]
    kernels_for(cfg)[0][(B,)](
        text_emb, item_emb, w, item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias, out,
        n, d,
        *text_emb.stride(), *item_emb.stride(), *w.stride(),
        item_gate_weight.stride(-1), fusion_gate_weight.stride(-1), *out.stride(),
        BLOCK_N=cfg.BLOCK_N, BLOCK_K=cfg.BLOCK_K, BLOCK_D=cfg.BLOCK_D,
        ACC=tl_acc_dtype(item_emb.dtype), PRECISION=dot_precision(item_emb.dtype),
        SINGLE_CHUNK=d <= cfg.BLOCK_D, num_warps=cfg.num_warps,
    )
    return out


def spectral_fusion_backward(
    grad_out: torch.Tensor,
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    d_item: torch.Tensor | None = None,
    d_text: torch.Tensor | None = None,
    *,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, ...]:
    """Launch the fused backward.

    Returns the gradients of ``(item_emb, text_emb, complex_weight, item_gate_weight,
    item_gate_bias, fusion_gate_weight, fusion_gate_bias)``, each shaped and typed like its input.
    Batch reductions are accumulated in fp32 (float64 for float64 inputs) without atomics.

    ``config`` overrides the launch configuration (default :func:`kernel_config` of ``n``), for tuning
    (bench/tune_spectral_fusion.py); its ``BLOCK_N``, ``BLOCK_K`` and backward fields are used.
    ``ValueError`` (see :func:`validate_config`) if it cannot run length ``n``.
    """
    B, n, d = item_emb.shape
    cfg = _config(config, n, item_emb.device, item_emb.dtype)
    device, dtype = item_emb.device, item_emb.dtype
    if d_item is None:
        d_item = torch.empty((B, n, d), dtype=dtype, device=device)
    if d_text is None:
        d_text = torch.empty((B, n, d), dtype=dtype, device=device)
    acc_torch = acc_dtype(dtype)
    programs = persistent_programs(device, B)
    K = n // 2 + 1
    part_w = torch.zeros((programs, 2, K, d), dtype=acc_torch, device=device)
    part_g = torch.zeros((programs, 2, d), dtype=acc_torch, device=device)
    part_b = torch.zeros((programs, 2), dtype=acc_torch, device=device)
    if B > 0:
        w = complex_weight[0]
        g = grad_out
        kernels_for(cfg)[1][(programs,)](
            g, text_emb, item_emb, w, item_gate_weight, item_gate_bias, fusion_gate_weight,
            fusion_gate_bias, d_text, d_item, part_w, part_g, part_b,
            B, n, d,
            *g.stride(), *text_emb.stride(), *item_emb.stride(), *w.stride(),
            item_gate_weight.stride(-1), fusion_gate_weight.stride(-1),
            *d_text.stride(), *d_item.stride(),
            part_w.stride(0), part_w.stride(1), part_w.stride(2), part_g.stride(0), part_g.stride(1),
            BLOCK_N=cfg.BLOCK_N, BLOCK_K=cfg.BLOCK_K, BLOCK_D=cfg.BLOCK_D_BWD,
            ACC=tl_acc_dtype(dtype), PRECISION=dot_precision(dtype), num_warps=cfg.num_warps_bwd,
        )
    # fixed-order sums over programs: deterministic
    d_weight = part_w.sum(0).permute(1, 2, 0).unsqueeze(0).contiguous()  # (1, K, d, 2)
    return (
        d_item,
        d_text,
        d_weight.to(complex_weight.dtype),
        part_g[:, 0].sum(0).reshape(item_gate_weight.shape).to(item_gate_weight.dtype),
        part_b[:, 0].sum(0).reshape(item_gate_bias.shape).to(item_gate_bias.dtype),
        part_g[:, 1].sum(0).reshape(fusion_gate_weight.shape).to(fusion_gate_weight.dtype),
        part_b[:, 1].sum(0).reshape(fusion_gate_bias.shape).to(fusion_gate_bias.dtype),
    )
