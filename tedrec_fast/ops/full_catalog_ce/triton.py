"""Host side of the Triton backend of the full-catalog cross-entropy: split the catalog into item ranges,
allocate partials and launch the kernels of :mod:`tedrec_fast.kernels.full_catalog_ce`."""

from __future__ import annotations

import torch
import triton
from triton.runtime import JITFunction

from tedrec_fast.kernels.common import acc_dtype, dot_precision, tl_acc_dtype
from tedrec_fast.kernels.full_catalog_ce import (
    KernelConfig,
    _dot_dtype,
    _fce_bwd_kernel,
    _fce_bwd_query_kernel,
    _fce_fwd_combine_kernel,
    _fce_fwd_split_kernel,
    kernel_config,
    validate_config,
)
from tedrec_fast.kernels.targets import launch_arch

__all__ = ["full_catalog_ce_forward", "full_catalog_ce_backward"]

#: item ranges (forward splits, backward chunks) without a GPU: a few, so the interpreter crosses ranges
_INTERPRETER_RANGES = 3
#: most bytes of the backward's partial ``U`` buffer (chunks x B x d); more rows mean fewer chunks
_PARTIALS_BYTES = 1 << 29


def _launch_config(config: KernelConfig | None, dtype: torch.dtype, device: torch.device) -> KernelConfig:
    """``config`` (default: :func:`kernel_config` for the device's target), validated; ``DOT_16BIT`` is
    refused under the Triton interpreter, whose 16-bit ``tl.dot`` is wrong: results from it could never be trusted."""
    if config is None:
        return kernel_config(dtype, launch_arch(device))
    validate_config(config, dtype)
    if config.DOT_16BIT and not isinstance(_fce_fwd_split_kernel, JITFunction):
        raise ValueError("full_catalog_ce: config.DOT_16BIT=True needs a GPU; the Triton interpreter computes "
                         "16-bit tl.dot wrongly")
    return config


def _item_ranges(n_tiles: int, wanted: int) -> tuple[int, int]:
    """``(tiles per range, ranges)``: ``n_tiles`` item tiles cut into at most ``wanted`` contiguous
    ranges of equal length but the last, none empty."""
    per_range = triton.cdiv(n_tiles, max(1, min(wanted, n_tiles)))
    return per_range, triton.cdiv(n_tiles, per_range)


def _sm_count(device: torch.device) -> int | None:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else None


def _forward_splits(device: torch.device, B: int, cfg: KernelConfig) -> int:
    """Splits wanted so that ``query tiles x splits`` is about ``cfg.fwd_programs_per_sm`` programs per SM."""
    sms = _sm_count(device)
    if sms is None:
        return _INTERPRETER_RANGES
    return cfg.fwd_programs_per_sm * sms // triton.cdiv(B, cfg.BLOCK_B)


def _backward_chunks(device: torch.device, B: int, d: int, acc: torch.dtype, wanted: int | None = None,
                     programs_per_sm: int = 1) -> int:
    """Chunks wanted: ``wanted`` or ``programs_per_sm`` per SM, fewer if the partial ``U`` buffer would pass
    ``_PARTIALS_BYTES`` (which also keeps its offsets in int32)."""
    if wanted is None:
        sms = _sm_count(device)
        wanted = _INTERPRETER_RANGES if sms is None else programs_per_sm * sms
    return min(wanted, _PARTIALS_BYTES // (B * d * acc.itemsize))


def full_catalog_ce_forward(
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    query_scale: torch.Tensor,
    item_scale: torch.Tensor,
    ignore_index: int,
    loss: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    *,
    splits: int | None = None,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward; returns per-row ``(loss, lse)`` (written into ``loss``/``lse`` if given).

    ``query_scale`` (``B``) and ``item_scale`` (``|V|``) are contiguous vectors in the accumulation dtype
    (fp32, fp64 for fp64 inputs), like the outputs. Ignored rows get loss 0. Inputs are validated by
    the caller (:mod:`tedrec_fast.ops.full_catalog_ce`); any strides are accepted. ``splits`` overrides
    the number of item ranges (default: from the device's SM count; never more than the item tiles).
    ``config`` overrides :func:`kernel_config` (checked by :func:`validate_config`; ``DOT_16BIT`` raises
    ``ValueError`` under the interpreter).
    """
    B, d = query.shape
    V = item_weight.shape[0]
    device = query.device
    acc = acc_dtype(query.dtype)
    cfg = _launch_config(config, query.dtype, device)
    if loss is None:
        loss = torch.empty(B, dtype=acc, device=device)
    if lse is None:
        lse = torch.empty(B, dtype=acc, device=device)
    if B == 0:
        return loss, lse
    split_tiles, splits = _item_ranges(triton.cdiv(V, cfg.BLOCK_V), splits or _forward_splits(device, B, cfg))
    stats = torch.empty((2, splits, B), dtype=acc, device=device)  # per split and row: (max, sumexp)
    tgt_logit = torch.empty(B, dtype=acc, device=device)
    query_tiles = triton.cdiv(B, cfg.BLOCK_B)
    _fce_fwd_split_kernel[(query_tiles, splits)](
        query, item_weight, targets, query_scale, item_scale, stats, tgt_logit,
        B, V, d, ignore_index, split_tiles * cfg.BLOCK_V,
        *query.stride(), *item_weight.stride(), targets.stride(0), *stats.stride()[:2],
        BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K,
        ACC=tl_acc_dtype(acc), DOT=_dot_dtype(cfg, acc), PRECISION=dot_precision(query.dtype),
        num_warps=cfg.num_warps,
    )
    _fce_fwd_combine_kernel[(query_tiles,)](
        stats, tgt_logit, targets, loss, lse, B, V, splits, ignore_index, targets.stride(0), *stats.stride()[:2],
        BLOCK_B=cfg.BLOCK_B, ACC=tl_acc_dtype(acc), num_warps=cfg.num_warps,
    )
    return loss, lse


def full_catalog_ce_backward(
    grad_loss: torch.Tensor,
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    query_scale: torch.Tensor,
    item_scale: torch.Tensor,
    query_pi: torch.Tensor,
    item_pi: torch.Tensor,
    ignore_index: int,
    d_query: torch.Tensor | None = None,
    d_item: torch.Tensor | None = None,
    *,
    chunks: int | None = None,
    config: KernelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the backward; returns ``(d_query, d_item_weight)`` in the inputs' dtype.

    ``grad_loss`` is the per-row gradient (``B``, accumulation dtype); ``query_pi``/``item_pi`` are the
    normalisation's ``1/|x|^2`` per row (0 where not normalising). ``d_query``/``d_item`` buffers (any
    strides) may be passed in; their contents are overwritten. ``chunks`` overrides the number of item
    ranges (default: ``config.bwd_programs_per_sm`` per SM; never more than the item tiles, nor than 512 MiB
    of partials allow). ``config`` overrides :func:`kernel_config`, as for :func:`full_catalog_ce_forward`.
    """
    B, d = query.shape
    V = item_weight.shape[0]
    dtype, device = query.dtype, query.device
    acc = acc_dtype(dtype)
    cfg = _launch_config(config, dtype, device)
    if d_query is None:
        d_query = torch.empty((B, d), dtype=dtype, device=device)
    if d_item is None:
        d_item = torch.empty((V, d), dtype=dtype, device=device)
    if B == 0:
        return d_query, d_item.zero_()
    wanted = _backward_chunks(device, B, d, acc, chunks, cfg.bwd_programs_per_sm)
    chunk_tiles, chunks = _item_ranges(triton.cdiv(V, cfg.BLOCK_V), wanted)
    partials = torch.empty((chunks, B, d), dtype=acc, device=device)  # per chunk: U for every query
    w_rows = torch.empty((chunks, cfg.GROUP_V * cfg.BLOCK_V, d), dtype=acc, device=device)  # per program: W
    _fce_bwd_kernel[(chunks,)](
        query, item_weight, targets, query_scale, item_scale, item_pi, lse, grad_loss, partials, w_rows, d_item,
        B, V, d, ignore_index, chunk_tiles * cfg.BLOCK_V,
        *query.stride(), *item_weight.stride(), targets.stride(0), *partials.stride()[:2], *w_rows.stride()[:2],
        *d_item.stride(),
        BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K, GROUP_V=cfg.GROUP_V,
        ACC=tl_acc_dtype(acc), DOT=_dot_dtype(cfg, acc), PRECISION=dot_precision(dtype), num_warps=cfg.num_warps,
    )
    _fce_bwd_query_kernel[(triton.cdiv(B, cfg.BLOCK_B),)](
        partials, query, query_scale, query_pi, d_query, B, d, chunks,
        *partials.stride()[:2], *query.stride(), *d_query.stride(),
        BLOCK_B=cfg.BLOCK_B, BLOCK_K=cfg.BLOCK_K, ACC=tl_acc_dtype(acc), num_warps=cfg.num_warps,
    )
    return d_query, d_item
