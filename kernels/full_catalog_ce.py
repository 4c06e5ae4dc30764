"""Full-catalog cross-entropy in Triton: item-split online log-sum-exp forward, one recomputing backward.

The op (docs/DESIGN.md sections 1 and 3) for queries ``q_i`` (``B x d``) and an item table ``c_j``
(``|V| x d``)::

    s_ij = qs_i * cs_j * <q_i, c_j>            loss_i = logsumexp_j(s_ij) - s_{i, t_i}

where the wrappers receive the per-row scales from the caller: with L2 normalisation
``qs_i = 1 / (max(|q_i|, eps) * tau)`` and ``cs_j = 1 / max(|c_j|, eps)``, without it ``qs_i = 1 / tau``
and ``cs_j = 1``. The scales are folded into the logits tile, so no normalised copy of the table and no
``B x |V|`` tensor is ever written.

Kernels (tiles ``BLOCK_B`` queries x ``BLOCK_V`` items, the hidden size walked in ``BLOCK_K`` chunks; the
item dimension is cut into contiguous ranges of whole item tiles, "splits" forward and "chunks" backward):

* forward, grid ``(query tiles, splits)``: each program runs an online log-sum-exp over its split's item
  tiles and writes the partials ``(max, sumexp)`` of its rows (``(splits, B)`` each), plus the target
  logit of the rows whose target falls in its range. Programs are numbered query tile first, so the
  programs of one split run together and read its item tiles from HBM about once.
* forward, combine: one program per query tile folds the partials in split order into ``lse_i`` and
  ``loss_i`` (fp32; fp64 for fp64 inputs). A kernel rather than torch reductions: one launch writing into
  the caller's buffers, with the summation order fixed by the loop.
* backward, grid ``(chunks,)``: each program owns its chunk's items. For ``GROUP_V`` item tiles at a time
  it loops over all query tiles, recomputes the tile's probabilities ``p = exp(s - lse)`` and
  ``G = w_i (p - onehot)`` (``w_i``: the incoming per-row gradient, 0 for ignored rows), and accumulates
  ``W_j = sum_i G_ij qs_i q_i`` for its items and its chunk's partial ``U_i = sum_j G_ij cs_j c_j`` for
  every query. Three products per tile pair: the recompute, ``U``, ``W``; four with the forward's.
* backward, queries: one program per query tile sums the ``U`` partials in chunk order.

Every program writes only rows it owns (its split's partials, its chunk's ``U`` partial and items'
``W``) and every reduction runs in a fixed order, so there are no atomics and results are bitwise
reproducible. The accumulators live in memory (fp32 scratch, read-modify-write per tile, the first tile
writing fresh) rather than registers, so any hidden size works with one configuration; a program keeps
the ``W`` rows of ``GROUP_V`` item tiles and sweeps its ``U`` partial once per group (see
bench/NOTES.md). After the accumulation, an epilogue applies the normalisation's Jacobian::

    dx = scale * (acc - x * <acc, x> * pi)        pi = 1 / |x|^2 if normalising and |x| > eps, else 0

Precision: 16-bit inputs are upcast to fp32 on load (the interpreter computes 16-bit ``tl.dot``
wrongly, and TF32 represents bf16/fp16 operands exactly); fp32 products use the ``input_precision``
that follows PyTorch's matmul precision setting; float64 inputs compute in float64. The device-only
switch ``KernelConfig.DOT_16BIT`` (off by default, bfloat16 inputs only) feeds the bf16 data to ``tl.dot``
as it is (bf16 tensor cores, twice TF32's rate) and rounds the softmax gradient ``G`` (times its row
scale) to bf16 for the two gradient products: the logits stay exact (bf16 x bf16 products accumulate in
fp32), the gradients carry bf16 rounding of ``G`` as a bf16 ``F.cross_entropy`` would. The kernels take
it as the constexpr ``DOT``, the dtype every ``tl.dot`` operand is cast to (``ACC`` by default: the casts
are then no-ops and the compiled code is unchanged). Under the interpreter the wrappers refuse it with a
``ValueError`` rather than ignore it: nothing computed there with it could be trusted, nor pass for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import torch
import triton
import triton.language as tl

from tedrec_fast.kernels.common import acc_dtype, aot_signature, dot_precision, tl_acc_dtype
from tedrec_fast.kernels.targets import INTERPRETER_ARCH, TARGETS, TargetConfigs

__all__ = [
    "KernelConfig",
    "kernel_config",
    "all_kernel_configs",
    "validate_config",
    "compile_specs",
]


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def _dot_tile(a_ptr, b_ptr, ra, rb, na, nb, d, sa_r, sa_d, sb_r, sb_d,
              BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
              ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr):
    """``A[ra] @ B[rb]^T`` over the whole hidden size (operands cast to ``DOT``); rows past ``na``/``nb``
    read as zero."""
    acc = tl.zeros((BLOCK_A, BLOCK_B), ACC)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + ra[:, None] * sa_r + ks[None, :] * sa_d,
                    mask=(ra[:, None] < na) & (ks[None, :] < d), other=0.0).to(DOT)
        b = tl.load(b_ptr + rb[None, :] * sb_r + ks[:, None] * sb_d,
                    mask=(rb[None, :] < nb) & (ks[:, None] < d), other=0.0).to(DOT)
        acc += tl.dot(a, b, input_precision=PRECISION, out_dtype=ACC)
    return acc


@triton.jit
def _accumulate_rows(acc_ptr, acc_rows, rows_ok, accumulate, g, src_ptr, rs, ns, d, s_acc, ss_r, ss_d,
                     BLOCK_K: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr):
    """``acc[acc_rows] = g @ src[rs]`` (operands cast to ``DOT``), plus the old value if ``accumulate``,
    chunk by chunk over the hidden size; rows where ``rows_ok`` is false are left alone (``acc`` rows are
    contiguous)."""
    g = g.to(DOT)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        src = tl.load(src_ptr + rs[:, None] * ss_r + ks[None, :] * ss_d,
                      mask=(rs[:, None] < ns) & (ks[None, :] < d), other=0.0).to(DOT)
        ptrs = acc_ptr + acc_rows[:, None] * s_acc + ks[None, :]
        mask = rows_ok[:, None] & (ks[None, :] < d)
        # the scalar `accumulate` broadcast as a boolean block first: the interpreter of Triton 3.9 gives
        # `block & scalar` an integer dtype, which its masked load refuses
        keep = mask & (tl.full(mask.shape, 1, tl.int1) & accumulate).to(tl.int1)
        total = tl.load(ptrs, mask=keep, other=0.0) + tl.dot(g, src, input_precision=PRECISION, out_dtype=ACC)
        tl.store(ptrs, total, mask=mask)


@triton.jit
def _normalize_backward_rows(acc_ptr, acc_rows, x_ptr, out_ptr, rows, rows_ok, scale, pi, d, s_acc,
                             sx_r, sx_d, so_r, so_d, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
                             ACC: tl.constexpr):
    """``out[rows] = scale * (acc[acc_rows] - x[rows] * <acc, x> * pi)``: the normalisation's Jacobian,
    row-wise (``acc`` rows are contiguous)."""
    dot = tl.zeros((BLOCK_R,), ACC)
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        mask = rows_ok[:, None] & (ks[None, :] < d)
        acc = tl.load(acc_ptr + acc_rows[:, None] * s_acc + ks[None, :], mask=mask, other=0.0)
        x = tl.load(x_ptr + rows[:, None] * sx_r + ks[None, :] * sx_d, mask=mask, other=0.0).to(ACC)
        dot += tl.sum(acc * x, axis=1)
    coef = dot * pi
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        mask = rows_ok[:, None] & (ks[None, :] < d)
        acc = tl.load(acc_ptr + acc_rows[:, None] * s_acc + ks[None, :], mask=mask, other=0.0)
        x = tl.load(x_ptr + rows[:, None] * sx_r + ks[None, :] * sx_d, mask=mask, other=0.0).to(ACC)
        grad = scale[:, None] * (acc - x * coef[:, None])
        tl.store(out_ptr + rows[:, None] * so_r + ks[None, :] * so_d, grad.to(out_ptr.dtype.element_ty), mask=mask)


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


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["B", "V", "d", "ignore_index", "split_items"])
def _fce_fwd_split_kernel(
    q_ptr, c_ptr, t_ptr, qs_ptr, cs_ptr, stats_ptr, tgt_logit_ptr,
    B, V, d, ignore_index, split_items,
    sq_b, sq_d, sc_v, sc_d, st_b, ss_k, ss_s,
    BLOCK_B: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    split = tl.program_id(1)
    lo = split * split_items
    hi = tl.minimum(lo + split_items, V)
    row_ok = rows < B
    tgt = tl.load(t_ptr + rows * st_b, mask=row_ok, other=ignore_index)
    qs = tl.load(qs_ptr + rows, mask=row_ok, other=0.0)
    run_max = tl.full((BLOCK_B,), float("-inf"), ACC)
    run_sum = tl.zeros((BLOCK_B,), ACC)
    tgt_logit = tl.zeros((BLOCK_B,), ACC)
    for v0 in range(lo, hi, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V).to(tl.int64)
        col_ok = cols < V
        cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
        s = _dot_tile(q_ptr, c_ptr, rows, cols, B, V, d, sq_b, sq_d, sc_v, sc_d,
                      BLOCK_B, BLOCK_V, BLOCK_K, ACC, DOT, PRECISION)
        s = tl.where(col_ok[None, :], s * qs[:, None] * cs[None, :], float("-inf"))
        new_max = tl.maximum(run_max, tl.max(s, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(s - new_max[:, None]), axis=1)
        run_max = new_max
        tgt_logit += tl.sum(tl.where(cols[None, :] == tgt[:, None], s, 0.0), axis=1)
    tl.store(stats_ptr + split * ss_s + rows, run_max, mask=row_ok)
    tl.store(stats_ptr + ss_k + split * ss_s + rows, run_sum, mask=row_ok)
    tl.store(tgt_logit_ptr + rows, tgt_logit, mask=row_ok & (tgt >= lo) & (tgt < hi))


@triton.jit(do_not_specialize=["B", "V", "splits", "ignore_index"])
def _fce_fwd_combine_kernel(
    stats_ptr, tgt_logit_ptr, t_ptr, loss_ptr, lse_ptr,
    B, V, splits, ignore_index,
    st_b, ss_k, ss_s,
    BLOCK_B: tl.constexpr, ACC: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    run_max = tl.full((BLOCK_B,), float("-inf"), ACC)
    for split in range(0, splits):
        run_max = tl.maximum(run_max, tl.load(stats_ptr + split * ss_s + rows, mask=row_ok, other=0.0))
    total = tl.zeros((BLOCK_B,), ACC)
    for split in range(0, splits):
        split_max = tl.load(stats_ptr + split * ss_s + rows, mask=row_ok, other=0.0)
        split_sum = tl.load(stats_ptr + ss_k + split * ss_s + rows, mask=row_ok, other=1.0)  # no log(0) past B
        total += split_sum * tl.exp(split_max - run_max)
    lse = run_max + tl.log(total)
    tgt = tl.load(t_ptr + rows * st_b, mask=row_ok, other=ignore_index)
    has_target = row_ok & (tgt != ignore_index)
    # a target outside [0, V) (unchecked under torch.compile) has no logit: its loss is the lse alone
    tgt_logit = tl.load(tgt_logit_ptr + rows, mask=has_target & (tgt >= 0) & (tgt < V), other=0.0)
    tl.store(lse_ptr + rows, lse, mask=row_ok)
    tl.store(loss_ptr + rows, tl.where(has_target, lse - tgt_logit, 0.0), mask=row_ok)


@triton.jit(do_not_specialize=["B", "V", "d", "ignore_index", "chunk_items"])
def _fce_bwd_kernel(
    q_ptr, c_ptr, t_ptr, qs_ptr, cs_ptr, pi_ptr, lse_ptr, g_ptr, dqp_ptr, dca_ptr, dc_ptr,
    B, V, d, ignore_index, chunk_items,
    sq_b, sq_d, sc_v, sc_d, st_b, sp_c, sp_b, sa_c, sa_v, sdc_v, sdc_d,
    BLOCK_B: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_V: tl.constexpr,
    ACC: tl.constexpr, DOT: tl.constexpr, PRECISION: tl.constexpr,
):
    chunk = tl.program_id(0)
    lo = chunk * chunk_items
    hi = tl.minimum(lo + chunk_items, V)
    dqp_ptr += chunk * sp_c  # this chunk's partial U (B x d)
    dca_ptr += chunk * sa_c  # this program's W rows for one group of item tiles (GROUP_V * BLOCK_V x d)
    for g0 in range(lo, hi, GROUP_V * BLOCK_V):
        g1 = tl.minimum(g0 + GROUP_V * BLOCK_V, hi)
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B).to(tl.int64)
            tgt, qs, lse, w = _backward_row_terms(t_ptr, qs_ptr, lse_ptr, g_ptr, rows, B, st_b, ignore_index, ACC)
            for v0 in range(g0, g1, BLOCK_V):
                cols = v0 + tl.arange(0, BLOCK_V).to(tl.int64)
                col_ok = cols < V
                cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
                s = _dot_tile(q_ptr, c_ptr, rows, cols, B, V, d, sq_b, sq_d, sc_v, sc_d,
                              BLOCK_B, BLOCK_V, BLOCK_K, ACC, DOT, PRECISION)
                g = _grad_logits(s * qs[:, None] * cs[None, :], lse[:, None], w[:, None],
                                 cols[None, :] == tgt[:, None])
                g = tl.where(col_ok[None, :], g, 0.0)
                # U[rows] (+)= (G * cs) @ C[cols]: fresh at the chunk's first item tile
                _accumulate_rows(dqp_ptr, rows, rows < B, v0 > lo, g * cs[None, :], c_ptr, cols, V, d,
                                 sp_b, sc_v, sc_d, BLOCK_K, ACC, DOT, PRECISION)
                # W[cols] (+)= (G * qs)^T @ Q[rows]: fresh at the first query tile
                _accumulate_rows(dca_ptr, cols - g0, col_ok, b0 > 0, tl.trans(g * qs[:, None]), q_ptr, rows, B, d,
                                 sa_v, sq_b, sq_d, BLOCK_K, ACC, DOT, PRECISION)
                tl.debug_barrier()  # the next tile's read-modify-write may run on other threads
        for v0 in range(g0, g1, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V).to(tl.int64)
            col_ok = cols < V
            cs = tl.load(cs_ptr + cols, mask=col_ok, other=0.0)
            pi = tl.load(pi_ptr + cols, mask=col_ok, other=0.0)
            _normalize_backward_rows(dca_ptr, cols - g0, c_ptr, dc_ptr, cols, col_ok, cs, pi, d, sa_v,
                                     sc_v, sc_d, sdc_v, sdc_d, BLOCK_V, BLOCK_K, ACC)
        tl.debug_barrier()  # the next group overwrites the W rows


@triton.jit(do_not_specialize=["B", "d", "chunks"])
def _fce_bwd_query_kernel(
    dqp_ptr, q_ptr, qs_ptr, pi_ptr, dq_ptr,
    B, d, chunks,
    sp_c, sp_b, sq_b, sq_d, sdq_b, sdq_d,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    for k0 in range(0, d, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        ptrs = dqp_ptr + rows[:, None] * sp_b + ks[None, :]
        mask = row_ok[:, None] & (ks[None, :] < d)
        total = tl.load(ptrs, mask=mask, other=0.0)
        for chunk in range(1, chunks):
            total += tl.load(ptrs + chunk * sp_c, mask=mask, other=0.0)
        tl.store(ptrs, total, mask=mask)  # the sum replaces chunk 0's partial
    tl.debug_barrier()
    qs = tl.load(qs_ptr + rows, mask=row_ok, other=0.0)
    pi = tl.load(pi_ptr + rows, mask=row_ok, other=0.0)
    _normalize_backward_rows(dqp_ptr, rows, q_ptr, dq_ptr, rows, row_ok, qs, pi, d, sp_b, sq_b, sq_d, sdq_b, sdq_d,
                             BLOCK_B, BLOCK_K, ACC)


# --------------------------------------------------------------------------------------------
# Launch configurations (the launchers: tedrec_fast/ops/full_catalog_ce/triton.py)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelConfig:
    """How the kernels are compiled and launched.

    Compile-time constants: the tiles (``BLOCK_B`` queries x ``BLOCK_V`` items, the hidden size in
    ``BLOCK_K`` chunks; ``tl.dot`` dimensions, so powers of two >= 16), the backward's item tiles per group
    ``GROUP_V``, ``num_warps`` and ``DOT_16BIT`` (bf16 ``tl.dot`` operands, see the module docstring; GPU
    only). Launch grid: forward programs per SM (the splits are ``fwd_programs_per_sm x SMs / query
    tiles``) and backward programs per SM (the chunks, before the cap on partials).
    """

    BLOCK_B: int
    BLOCK_V: int
    BLOCK_K: int
    GROUP_V: int
    num_warps: int
    DOT_16BIT: bool = False
    #: several waves of equal forward programs keep every SM busy to the end
    fwd_programs_per_sm: int = 4
    #: a backward program fills an SM's registers at the default tiles
    bwd_programs_per_sm: int = 1


#: fp32: 3xTF32 products split every operand in two, so 64 x 64 x 32 tiles spill in the backward; fp64: half
#: the tile (twice the bytes per element)
_CONFIGS = {torch.float32: KernelConfig(32, 64, 16, 4, 8), torch.float64: KernelConfig(32, 32, 16, 4, 4)}
#: bf16 / fp16 (upcast to fp32 on load, TF32 products)
_DEFAULT_CONFIG = KernelConfig(64, 64, 32, 4, 8)
_NUM_WARPS = (1, 2, 4, 8, 16)


_PER_DTYPE = {torch.float32: _CONFIGS[torch.float32], torch.bfloat16: _DEFAULT_CONFIG,
              torch.float16: _DEFAULT_CONFIG, torch.float64: _CONFIGS[torch.float64]}

#: The launch configurations per target, keyed by dtype: the tiles are small enough for every target's
#: shared memory (tests/kernels/test_aot_compile.py), so every target has the same ones.
CONFIGS: TargetConfigs[torch.dtype, KernelConfig] = TargetConfigs(
    "full_catalog_ce", {arch: _PER_DTYPE for arch in TARGETS},
    why=lambda arch, dtype: f"dtype {dtype} has no configuration on sm_{arch}")


def kernel_config(dtype: torch.dtype, arch: int | None = 90) -> KernelConfig:
    """The launch configuration for inputs of ``dtype`` (any shape: every dimension is tiled and masked)
    on ``sm_<arch>`` (``None``: the Triton interpreter, which launches sm_90's)."""
    config = CONFIGS.get(INTERPRETER_ARCH if arch is None else arch, dtype)
    return _DEFAULT_CONFIG if config is None else config


def all_kernel_configs(arch: int = 90) -> list[KernelConfig]:
    """Every configuration :func:`kernel_config` can return on ``sm_<arch>``."""
    return sorted(CONFIGS.configs(arch), key=lambda c: c.BLOCK_B * c.BLOCK_V)


def validate_config(config: KernelConfig, dtype: torch.dtype) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``config`` (and the field) unless the kernels can be
    compiled and launched with ``config`` for inputs of ``dtype``."""
    if not isinstance(config, KernelConfig):
        raise TypeError(f"full_catalog_ce: config must be a KernelConfig, got {type(config).__name__}")

    def fail(field: str, wanted: str) -> NoReturn:
        raise ValueError(f"full_catalog_ce: config.{field} must be {wanted}, got {getattr(config, field)!r}")

    for field in ("BLOCK_B", "BLOCK_V", "BLOCK_K"):
        value = getattr(config, field)
        if type(value) is not int or value < 16 or value & (value - 1):
            fail(field, "a power of two >= 16 (a tl.dot dimension)")
    for field in ("GROUP_V", "fwd_programs_per_sm", "bwd_programs_per_sm"):
        value = getattr(config, field)
        if type(value) is not int or value < 1:
            fail(field, "an int >= 1")
    if type(config.num_warps) is not int or config.num_warps not in _NUM_WARPS:
        fail("num_warps", f"one of {_NUM_WARPS}")
    if type(config.DOT_16BIT) is not bool:
        fail("DOT_16BIT", "a bool")
    if config.DOT_16BIT and dtype != torch.bfloat16:
        # float16 cannot hold G times the 1/eps scale of a zero (padding) row: inf * 0 would make NaN
        fail("DOT_16BIT", f"False for {dtype} inputs (bf16 tl.dot operands are for bfloat16 inputs only)")


def _dot_dtype(cfg: KernelConfig, acc: torch.dtype) -> tl.dtype:
    """The ``DOT`` constexpr: bf16 operands with ``DOT_16BIT``, else the accumulation dtype."""
    return tl.bfloat16 if cfg.DOT_16BIT else tl_acc_dtype(acc)


def compile_specs(dtype: torch.dtype = torch.float32, precision: str | None = None,
                  config: KernelConfig | None = None, *, arch: int = 90) -> list[dict]:
    """Everything ``triton.compile`` needs to build each kernel the wrappers launch for ``dtype`` with
    ``config`` (default :func:`kernel_config` on ``sm_<arch>``): one entry per kernel (forward, its combine,
    backward, its query sum), named by the configuration fields it is compiled with; see kernels/aot.py."""
    precision = precision or dot_precision(dtype)
    cfg = kernel_config(dtype, arch) if config is None else config
    validate_config(cfg, dtype)
    acc = acc_dtype(dtype)
    tiles = dict(BLOCK_B=cfg.BLOCK_B, BLOCK_V=cfg.BLOCK_V, BLOCK_K=cfg.BLOCK_K)
    products = dict(DOT=_dot_dtype(cfg, acc), PRECISION=precision)
    shape = f"{cfg.BLOCK_B}x{cfg.BLOCK_V}x{cfg.BLOCK_K}"
    dots = " bf16-dot" if cfg.DOT_16BIT else ""
    kernels = [
        (f"forward {shape}{dots}", _fce_fwd_split_kernel, dict(**tiles, **products)),
        (f"forward combine B{cfg.BLOCK_B}", _fce_fwd_combine_kernel, dict(BLOCK_B=cfg.BLOCK_B)),
        (f"backward {shape} g{cfg.GROUP_V}{dots}", _fce_bwd_kernel, dict(**tiles, GROUP_V=cfg.GROUP_V, **products)),
        (f"backward queries B{cfg.BLOCK_B} K{cfg.BLOCK_K}", _fce_bwd_query_kernel,
         dict(BLOCK_B=cfg.BLOCK_B, BLOCK_K=cfg.BLOCK_K)),
    ]
    specs = []
    for label, fn, constexprs in kernels:
        constexprs = dict(**constexprs, ACC=tl_acc_dtype(dtype))
        # t_ptr: int64 targets; pointers other than the data are fp32 (fp64) scales, statistics, scratch
        signature = aot_signature(fn, constexprs, dtype, overrides={"t_ptr": "*i64"},
                                  accumulators=[a for a in fn.arg_names if a.endswith("_ptr")
                                                and a not in ("q_ptr", "c_ptr", "dq_ptr", "dc_ptr")])
        specs.append(dict(name=f"full_catalog_ce {label} w{cfg.num_warps}", fn=fn, signature=signature,
                          constexprs=constexprs, num_warps=cfg.num_warps))
    return specs
