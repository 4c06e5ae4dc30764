"""Full-catalog cross-entropy in Triton: online log-sum-exp forward, recomputing backward.

The op (DESIGN.md sections 1 and 3) for queries ``q_i`` (``B x d``) and an item table ``c_j``
(``|V| x d``)::

    s_ij = qs_i * cs_j * <q_i, c_j>            loss_i = logsumexp_j(s_ij) - s_{i, t_i}

where the wrappers receive the per-row scales from the caller: with L2 normalisation
``qs_i = 1 / (max(|q_i|, eps) * tau)`` and ``cs_j = 1 / max(|c_j|, eps)``, without it ``qs_i = 1 / tau``
and ``cs_j = 1``. The scales are folded into the logits tile, so no normalised copy of the table and no
``B x |V|`` tensor is ever written.

Kernels (tiles ``BLOCK_B`` queries x ``BLOCK_V`` items, the hidden size walked in ``BLOCK_K`` chunks):

* forward: one program per query tile loops over all item tiles with an online log-sum-exp, picks the
  target logit out of its tile, and writes ``loss_i`` and ``lse_i`` (fp32; fp64 for fp64 inputs).
* backward, queries: one program per query tile loops over all item tiles, recomputes the tile's
  probabilities ``p = exp(s - lse)`` and ``G = w_i (p - onehot)`` (``w_i``: the incoming per-row
  gradient, 0 for ignored rows) and accumulates ``U_i = sum_j G_ij cs_j c_j``.
* backward, items: one program per item tile loops over all query tiles (the same recompute,
  transposed) and accumulates ``W_j = sum_i G_ij qs_i q_i``.

Each backward program owns its rows of the fp32 accumulator (``B x d`` or ``|V| x d``), so there are no
atomics and the backward is deterministic. The accumulator rows live in memory (read-modify-write per
tile, L2-resident) rather than registers, so any hidden size works with one configuration. After its
loop the program applies the normalisation's Jacobian in an epilogue::

    dx = scale * (acc - x * <acc, x> * pi)        pi = 1 / |x|^2 if normalising and |x| > eps, else 0

For fp32/fp64 inputs the accumulator is the gradient buffer itself (updated in place); 16-bit inputs
use an fp32 scratch buffer.

Precision: 16-bit inputs are upcast to fp32 on load (the interpreter computes 16-bit ``tl.dot``
wrongly, and TF32 represents bf16/fp16 operands exactly); fp32 products use the ``input_precision``
that follows PyTorch's matmul precision setting; float64 inputs compute in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from tedrec_fast.kernels.common import acc_dtype, aot_signature, dot_precision, tl_acc_dtype

__all__ = [
    "KernelConfig",
    "kernel_config",
    "all_kernel_configs",
    "full_catalog_ce_forward",
    "full_catalog_ce_backward",
    "compile_specs",
]


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def _dot_tile(a_ptr, b_ptr, ra, rb, na, nb, d, sa_r, sa_d, sb_r, sb_d,
              BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
              ACC: tl.constexpr, PRECISION: tl.constexpr):
    """``A[ra] @ B[rb]^T`` over the whole hidden size; rows past ``na``/``nb`` read as zero."""
    acc = tl.zeros((BLOCK_A, BLOCK_B), ACC)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + ra[:, None] * sa_r + ks[None, :] * sa_d,
                    mask=(ra[:, None] < na) & (ks[None, :] < d), other=0.0).to(ACC)
        b = tl.load(b_ptr + rb[None, :] * sb_r + ks[:, None] * sb_d,
                    mask=(rb[None, :] < nb) & (ks[:, None] < d), other=0.0).to(ACC)
        acc += tl.dot(a, b, input_precision=PRECISION, out_dtype=ACC)
    return acc


@triton.jit
def _accumulate_rows(acc_ptr, ra, na, g, src_ptr, rs, ns, d, s_acc, ss_r, ss_d,
                     BLOCK_K: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """``acc[ra] += g @ src[rs]`` chunk by chunk over the hidden size (``acc`` rows are contiguous)."""
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        src = tl.load(src_ptr + rs[:, None] * ss_r + ks[None, :] * ss_d,
                      mask=(rs[:, None] < ns) & (ks[None, :] < d), other=0.0).to(ACC)
        ptrs = acc_ptr + ra[:, None] * s_acc + ks[None, :]
        mask = (ra[:, None] < na) & (ks[None, :] < d)
        total = tl.load(ptrs, mask=mask, other=0.0) + tl.dot(g, src, input_precision=PRECISION, out_dtype=ACC)
        tl.store(ptrs, total, mask=mask)


@triton.jit
def _normalize_backward_rows(acc_ptr, x_ptr, out_ptr, ra, na, scale, pi, d, s_acc, sx_r, sx_d, so_r, so_d,
                             BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    """``out[ra] = scale * (acc - x * <acc, x> * pi)``: the normalisation's Jacobian, row-wise.

    ``out`` may alias ``acc``: each element is read and written by the same thread in the second pass.
    """
    row_ok = ra[:, None] < na
    dot = tl.zeros((BLOCK_R,), ACC)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        mask = row_ok & (ks[None, :] < d)
        acc = tl.load(acc_ptr + ra[:, None] * s_acc + ks[None, :], mask=mask, other=0.0)
        x = tl.load(x_ptr + ra[:, None] * sx_r + ks[None, :] * sx_d, mask=mask, other=0.0).to(ACC)
        dot += tl.sum(acc * x, axis=1)
    tl.debug_barrier()
    coef = dot * pi
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        mask = row_ok & (ks[None, :] < d)
        acc = tl.load(acc_ptr + ra[:, None] * s_acc + ks[None, :], mask=mask, other=0.0)
        x = tl.load(x_ptr + ra[:, None] * sx_r + ks[None, :] * sx_d, mask=mask, other=0.0).to(ACC)
        grad = scale[:, None] * (acc - x * coef[:, None])
        tl.store(out_ptr + ra[:, None] * so_r + ks[None, :] * so_d, grad.to(out_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["B", "V", "d", "ignore_index"])
def _fce_fwd_kernel(
    q_ptr, c_ptr, t_ptr, qs_ptr, cs_ptr, loss_ptr, lse_ptr,
    B, V, d, ignore_index,
    sq_b, sq_d, sc_v, sc_d, st_b,
    BLOCK_B: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    tgt = tl.load(t_ptr + rows * st_b, mask=row_ok, other=ignore_index)
    qs = tl.load(qs_ptr + rows, mask=row_ok, other=0.0)
    run_max = tl.full((BLOCK_B,), float("-inf"), ACC)
    run_sum = tl.zeros((BLOCK_B,), ACC)
    tgt_logit = tl.zeros((BLOCK_B,), ACC)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V).to(tl.int64)
        col_ok = cols < V
        cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
        s = _dot_tile(q_ptr, c_ptr, rows, cols, B, V, d, sq_b, sq_d, sc_v, sc_d,
                      BLOCK_B, BLOCK_V, BLOCK_K, ACC, PRECISION)
        s = tl.where(col_ok[None, :], s * qs[:, None] * cs[None, :], float("-inf"))
        new_max = tl.maximum(run_max, tl.max(s, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(s - new_max[:, None]), axis=1)
        run_max = new_max
        tgt_logit += tl.sum(tl.where(cols[None, :] == tgt[:, None], s, 0.0), axis=1)
    lse = run_max + tl.log(run_sum)
    tl.store(lse_ptr + rows, lse, mask=row_ok)
    tl.store(loss_ptr + rows, tl.where(tgt != ignore_index, lse - tgt_logit, 0.0), mask=row_ok)


@triton.jit
def _grad_logits(s, lse, w, is_target):
    """``w * (softmax - onehot)`` of a logits tile; ``lse`` and ``w`` broadcast like ``s``."""
    return w * (tl.exp(s - lse) - tl.where(is_target, 1.0, 0.0))


@triton.jit
def _backward_row_terms(t_ptr, qs_ptr, lse_ptr, g_ptr, rows, B, st_b, ignore_index, ACC: tl.constexpr):
    """Per query row of a backward tile: ``(target, scale, lse, incoming gradient)``; the gradient is 0
    for ignored and out-of-range rows."""
    row_ok = rows < B
    tgt = tl.load(t_ptr + rows * st_b, mask=row_ok, other=ignore_index)
    qs = tl.load(qs_ptr + rows, mask=row_ok, other=0.0)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    w = tl.load(g_ptr + rows, mask=row_ok & (tgt != ignore_index), other=0.0).to(ACC)
    return tgt, qs, lse, w


@triton.jit(do_not_specialize=["B", "V", "d", "ignore_index"])
def _fce_bwd_query_kernel(
    q_ptr, c_ptr, t_ptr, qs_ptr, cs_ptr, pi_ptr, lse_ptr, g_ptr, acc_ptr, dq_ptr,
    B, V, d, ignore_index,
    sq_b, sq_d, sc_v, sc_d, st_b, s_acc, sdq_b, sdq_d,
    BLOCK_B: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    tgt, qs, lse, w = _backward_row_terms(t_ptr, qs_ptr, lse_ptr, g_ptr, rows, B, st_b, ignore_index, ACC)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V).to(tl.int64)
        col_ok = cols < V
        cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
        s = _dot_tile(q_ptr, c_ptr, rows, cols, B, V, d, sq_b, sq_d, sc_v, sc_d,
                      BLOCK_B, BLOCK_V, BLOCK_K, ACC, PRECISION)
        g = _grad_logits(s * qs[:, None] * cs[None, :], lse[:, None], w[:, None], cols[None, :] == tgt[:, None])
        g = tl.where(col_ok[None, :], g * cs[None, :], 0.0)
        _accumulate_rows(acc_ptr, rows, B, g, c_ptr, cols, V, d, s_acc, sc_v, sc_d, BLOCK_K, ACC, PRECISION)
        tl.debug_barrier()  # the next tile's read-modify-write may run on other threads
    pi = tl.load(pi_ptr + rows, mask=row_ok, other=0.0)
    _normalize_backward_rows(acc_ptr, q_ptr, dq_ptr, rows, B, qs, pi, d, s_acc, sq_b, sq_d, sdq_b, sdq_d,
                             BLOCK_B, BLOCK_K, ACC)


@triton.jit(do_not_specialize=["B", "V", "d", "ignore_index"])
def _fce_bwd_item_kernel(
    q_ptr, c_ptr, t_ptr, qs_ptr, cs_ptr, pi_ptr, lse_ptr, g_ptr, acc_ptr, dc_ptr,
    B, V, d, ignore_index,
    sq_b, sq_d, sc_v, sc_d, st_b, s_acc, sdc_v, sdc_d,
    BLOCK_B: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    cols = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    col_ok = cols < V
    cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B).to(tl.int64)
        tgt, qs, lse, w = _backward_row_terms(t_ptr, qs_ptr, lse_ptr, g_ptr, rows, B, st_b, ignore_index, ACC)
        s_t = _dot_tile(c_ptr, q_ptr, cols, rows, V, B, d, sc_v, sc_d, sq_b, sq_d,
                        BLOCK_V, BLOCK_B, BLOCK_K, ACC, PRECISION)  # (items, queries)
        g_t = _grad_logits(s_t * cs[:, None] * qs[None, :], lse[None, :], w[None, :], cols[:, None] == tgt[None, :])
        g_t = tl.where(col_ok[:, None], g_t * qs[None, :], 0.0)
        _accumulate_rows(acc_ptr, cols, V, g_t, q_ptr, rows, B, d, s_acc, sq_b, sq_d, BLOCK_K, ACC, PRECISION)
        tl.debug_barrier()
    pi = tl.load(pi_ptr + cols, mask=col_ok, other=0.0)
    _normalize_backward_rows(acc_ptr, c_ptr, dc_ptr, cols, V, cs, pi, d, s_acc, sc_v, sc_d, sdc_v, sdc_d,
                             BLOCK_V, BLOCK_K, ACC)


# --------------------------------------------------------------------------------------------
# Launch configuration and wrappers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes and warps; every field is a compile-time constant."""

    BLOCK_B: int
    BLOCK_V: int
    BLOCK_K: int
    num_warps: int


#: fp32 (also used by 16-bit inputs after the upcast) and fp64 (half the tile: twice the bytes per element)
_CONFIGS = {torch.float64: KernelConfig(32, 32, 16, 4)}
_DEFAULT_CONFIG = KernelConfig(64, 64, 32, 8)


def kernel_config(dtype: torch.dtype) -> KernelConfig:
    """The launch configuration for inputs of ``dtype`` (any shape: every dimension is tiled and masked)."""
    return _CONFIGS.get(dtype, _DEFAULT_CONFIG)


def all_kernel_configs() -> list[KernelConfig]:
    """Every configuration :func:`kernel_config` can return."""
    return sorted({_DEFAULT_CONFIG, *_CONFIGS.values()}, key=lambda c: c.BLOCK_B * c.BLOCK_V)


def full_catalog_ce_forward(
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    query_scale: torch.Tensor,
    item_scale: torch.Tensor,
    ignore_index: int,
    loss: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward; returns per-row ``(loss, lse)`` (written into ``loss``/``lse`` if given).

    ``query_scale`` (``B``) and ``item_scale`` (``|V|``) are contiguous vectors in the accumulation dtype
    (fp32, fp64 for fp64 inputs), like the outputs. Ignored rows get loss 0. Inputs are validated by
    the caller (:mod:`tedrec_fast.ops.full_catalog_ce`); any strides are accepted.
    """
    B, d = query.shape
    V = item_weight.shape[0]
    acc = acc_dtype(query.dtype)
    if loss is None:
        loss = torch.empty(B, dtype=acc, device=query.device)
    if lse is None:
        lse = torch.empty(B, dtype=acc, device=query.device)
    if B == 0:
        return loss, lse
    cfg = kernel_config(query.dtype)
    _fce_fwd_kernel[(triton.cdiv(B, cfg.BLOCK_B),)](
        query, item_weight, targets, query_scale, item_scale, loss, lse,
        B, V, d, ignore_index,
        *query.stride(), *item_weight.stride(), targets.stride(0),
        BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K,
        ACC=tl_acc_dtype(acc), PRECISION=dot_precision(query.dtype), num_warps=cfg.num_warps,
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the two backward kernels; returns ``(d_query, d_item_weight)`` in the inputs' dtype.

    ``grad_loss`` is the per-row gradient (``B``, accumulation dtype); ``query_pi``/``item_pi`` are the
    normalisation's ``1/|x|^2`` per row (0 where not normalising). Contiguous ``d_query``/``d_item``
    buffers may be passed in; their contents are overwritten.
    """
    B, d = query.shape
    V = item_weight.shape[0]
    dtype, device = query.dtype, query.device
    acc = acc_dtype(dtype)
    if d_query is None:
        d_query = torch.empty((B, d), dtype=dtype, device=device)
    if d_item is None:
        d_item = torch.empty((V, d), dtype=dtype, device=device)
    if B == 0:
        return d_query, d_item.zero_()
    # accumulate in place when the gradient is already in the accumulation dtype
    acc_q = d_query.zero_() if dtype == acc else torch.zeros((B, d), dtype=acc, device=device)
    acc_c = d_item.zero_() if dtype == acc else torch.zeros((V, d), dtype=acc, device=device)
    cfg = kernel_config(dtype)
    common = dict(BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K, ACC=tl_acc_dtype(acc),
                  PRECISION=dot_precision(dtype), num_warps=cfg.num_warps)
    strides = (*query.stride(), *item_weight.stride(), targets.stride(0))
    _fce_bwd_query_kernel[(triton.cdiv(B, cfg.BLOCK_B),)](
        query, item_weight, targets, query_scale, item_scale, query_pi, lse, grad_loss, acc_q, d_query,
        B, V, d, ignore_index, *strides, acc_q.stride(0), *d_query.stride(), **common,
    )
    _fce_bwd_item_kernel[(triton.cdiv(V, cfg.BLOCK_V),)](
        query, item_weight, targets, query_scale, item_scale, item_pi, lse, grad_loss, acc_c, d_item,
        B, V, d, ignore_index, *strides, acc_c.stride(0), *d_item.stride(), **common,
    )
    return d_query, d_item


def compile_specs(dtype: torch.dtype = torch.float32, precision: str | None = None) -> list[dict]:
    """Everything ``triton.compile`` needs to build each kernel the wrappers can launch for ``dtype``:
    one entry per kernel (forward, backward for queries, backward for items), see kernels/aot.py."""
    precision = precision or dot_precision(dtype)
    cfg = kernel_config(dtype)
    kernels = [("forward", _fce_fwd_kernel), ("backward queries", _fce_bwd_query_kernel),
               ("backward items", _fce_bwd_item_kernel)]
    specs = []
    for label, fn in kernels:
        constexprs = dict(BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K,
                          ACC=tl_acc_dtype(dtype), PRECISION=precision)
        # t_ptr: int64 targets; other pointers besides the data are fp32 (fp64) scales, losses, accumulators
        signature = aot_signature(fn, constexprs, dtype, overrides={"t_ptr": "*i64"},
                                  accumulators=[a for a in fn.arg_names if a.endswith("_ptr")
                                                and a not in ("q_ptr", "c_ptr", "dq_ptr", "dc_ptr")])
        specs.append(dict(name=f"full_catalog_ce {label} {cfg.BLOCK_B}x{cfg.BLOCK_V}x{cfg.BLOCK_K} w{cfg.num_warps}",
                          fn=fn, signature=signature, constexprs=constexprs, num_warps=cfg.num_warps))
    return specs
