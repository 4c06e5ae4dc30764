"""Fused spectral fusion in Triton: one kernel forward, one kernel backward (each in two variants, see below).

The op (docs/DESIGN.md section 2) for one sequence of ``n`` positions and ``d`` channels::

    F  = irfft(rfft(T) * rfft(E))      E2 = irfft(rfft(E) * W)          ("ortho" norm)
    V  = 2 * (E2 * sigmoid(E2 @ g_i + b_i) + F * sigmoid(F @ g_f + b_f))

Algorithm: the real DFT as small matrix products on tensor cores. One program owns one whole
sequence (the gates reduce over all ``d`` channels while the transforms run over ``n``) and walks
its channels in ``BLOCK_D`` chunks. For a chunk it loads ``[T | E]`` once (``BLOCK_N x 2 BLOCK_D``),
and for each block of ``BLOCK_K`` frequencies builds the twiddles ``[cos; -sin]`` of ``2 pi k t / n``
(``2 BLOCK_K x BLOCK_N``) in registers, transforms both inputs in one product, multiplies the spectra
(with the filter ``W`` for ``E2``) and transforms back in one product ``[cos | -sin] @ [[Pr, Qr]; [Pi, Qi]]``
giving ``[F | E2]``. Stacking the operands makes each transform one product whose result the warps split;
four separate ``BLOCK_K x BLOCK_D`` products are computed whole by every warp, each thread holding whole
operands, which spilled at TedRec's length (bench/NOTES.md). The quarter tiles are taken apart and put
together with ``tl.reshape``, ``tl.permute``, ``tl.split`` and ``tl.join``. The split kernels (``*_split``:
four products per transform, cos and -sin separately) remain for the other lengths and float64, where they
spill less (``KernelConfig.stacked``, :data:`STACKED_LENGTHS`). The twiddles are unnormalised; the ortho scales
``n^-3/2`` (for ``F``) and ``n^-1`` (for ``E2``) and the Hermitian weights ``w_k`` (1 for the DC and
Nyquist bins, 2 otherwise) are applied to the spectra. Nothing but ``V`` is written to memory.

Two passes over the chunks: the first accumulates the two gate logits per position, the second
recomputes the chunk (its inputs now come from L2) and writes ``V``. When ``d <= BLOCK_D`` a single
pass does both.

The backward kernel is persistent (one program per SM, looping over sequences). Per sequence it first
recomputes ``F``, ``E2`` and the four per-position scalars (both gate logits, ``<G, E2>``, ``<G, F>``),
then per chunk forms ``[T | E | dF | dE2]`` and applies the adjoints of the transforms (one product for the
eight half spectra, one for ``[dT | dE]``). Batch reductions
(``d complex_weight``, gate weights, biases) are accumulated in fp32 into the program's own slice of a
partial buffer and summed over programs afterwards, so the backward never uses atomics and is
deterministic.

Precision: 16-bit inputs are upcast to fp32 on load. fp32 products use the ``input_precision`` the
launcher (tedrec_fast/ops/spectral_fusion/triton.py) chooses from PyTorch's matmul precision setting; float64
inputs compute in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import triton
import triton.language as tl

from tedrec_fast.kernels.common import aot_signature, dot_precision, tl_acc_dtype
from tedrec_fast.kernels.targets import INTERPRETER_ARCH, TARGETS, TargetConfigs
from tedrec_fast.ops.limits import MAX_N

__all__ = [
    "KernelConfig",
    "CONFIGS",
    "padded_length",
    "config_why_not",
    "dtype_group",
    "longest",
    "kernel_config",
    "all_kernel_configs",
    "validate_config",
    "kernels_for",
    "STACKED_LENGTHS",
]

# 2*pi split into an fp32-exact head and a tail, so the angle is accurate in float64 too
# (Triton materialises Python float constants as fp32).
_TWO_PI_HI_PY = float(torch.tensor(2 * math.pi, dtype=torch.float32).item())
TWO_PI_HI = tl.constexpr(_TWO_PI_HI_PY)
TWO_PI_LO = tl.constexpr(2 * math.pi - _TWO_PI_HI_PY)


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------
@triton.jit
def _twiddles(k, t, n, ACC: tl.constexpr):
    """Unnormalised ``cos`` and ``-sin`` of ``2 pi k t / n`` for broadcast index tiles ``k``, ``t``.

    Zero outside ``k <= n // 2`` and ``t < n``. The phase is reduced to ``(-n/2, n/2]`` in integers
    before the float conversion, so the angle stays in ``[-pi, pi]``.
    """
    valid = (k <= n // 2) & (t < n)
    phase = (k * t) % n
    phase = tl.where(2 * phase > n, phase - n, phase).to(ACC)
    theta = (phase * TWO_PI_HI + phase * TWO_PI_LO) / n
    cos = tl.where(valid, tl.cos(theta), 0.0)
    msin = tl.where(valid, -tl.sin(theta), 0.0)
    return cos, msin


@triton.jit
def _hermitian_weight(k, n, ACC: tl.constexpr):
    """``w_k`` of the c2r inverse: 1 for DC and (even ``n``) Nyquist, 2 between, 0 past ``n // 2``."""
    w = tl.where((k == 0) | (2 * k == n), 1.0, 2.0)
    return tl.where(k <= n // 2, w, 0.0).to(ACC)


@triton.jit
def _load_tile(base, pos, ch, n, d, s_n, s_d, ACC: tl.constexpr):
    """Load a ``(BLOCK_N, BLOCK_D)`` tile of a ``(n, d)`` sequence, zero-padded, as ``ACC``."""
    mask = (pos[:, None] < n) & (ch[None, :] < d)
    return tl.load(base + pos[:, None] * s_n + ch[None, :] * s_d, mask=mask, other=0.0).to(ACC)


@triton.jit
def _load_filter(w_ptr, k, ch, n, d, s_k, s_d, s_c, ACC: tl.constexpr):
    """Real and imaginary parts of the filter ``W`` for frequencies ``k`` and channels ``ch``."""
    mask = (k[:, None] <= n // 2) & (ch[None, :] < d)
    offs = k[:, None] * s_k + ch[None, :] * s_d
    wr = tl.load(w_ptr + offs, mask=mask, other=0.0).to(ACC)
    wi = tl.load(w_ptr + offs + s_c, mask=mask, other=0.0).to(ACC)
    return wr, wi


@triton.jit
def _dft_rows(k0, n, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    """``cos`` and ``-sin`` twiddles ``(BLOCK_K, BLOCK_N)`` for frequencies ``k0 + [0, BLOCK_K)``."""
    k = k0 + tl.arange(0, BLOCK_K)
    t = tl.arange(0, BLOCK_N)
    return _twiddles(k[:, None], t[None, :], n, ACC)


@triton.jit
def _spectrum(cos_kt, msin_kt, x, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """Unnormalised half spectrum (real, imaginary), each ``(BLOCK_K, BLOCK_D)``, of a ``(BLOCK_N, BLOCK_D)`` tile."""
    xr = tl.dot(cos_kt, x, input_precision=PRECISION, out_dtype=ACC)
    xi = tl.dot(msin_kt, x, input_precision=PRECISION, out_dtype=ACC)
    return xr, xi


@triton.jit
def _inverse(cos_tk, msin_tk, xr, xi, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """Unnormalised c2r contribution ``(BLOCK_N, BLOCK_D)`` of a block of weighted spectrum rows, given
    the ``(BLOCK_N, BLOCK_K)`` twiddles ``_twiddles(k[None, :], pos[:, None], ...)``."""
    out = tl.dot(cos_tk, xr, input_precision=PRECISION, out_dtype=ACC)
    return tl.dot(msin_tk, xi, acc=out, input_precision=PRECISION, out_dtype=ACC)


# --------------------------------------------------------------------------------------------
# Stacked operands: one product per transform of several tiles
# --------------------------------------------------------------------------------------------
@triton.jit
def _stacked_rows(k0, n, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    """Forward twiddles ``[cos; -sin]``, ``(2 BLOCK_K, BLOCK_N)``: row ``r`` is frequency ``k0 + r % BLOCK_K``,
    its ``cos`` for ``r < BLOCK_K`` and its ``-sin`` after."""
    r = tl.arange(0, 2 * BLOCK_K)
    cos, msin = _twiddles((k0 + r % BLOCK_K)[:, None], tl.arange(0, BLOCK_N)[None, :], n, ACC)
    return tl.where((r < BLOCK_K)[:, None], cos, msin)


@triton.jit
def _stacked_cols(k0, n, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    """Inverse twiddles ``[cos | -sin]``, ``(BLOCK_N, 2 BLOCK_K)``: the transpose of :func:`_stacked_rows`."""
    j = tl.arange(0, 2 * BLOCK_K)
    cos, msin = _twiddles((k0 + j % BLOCK_K)[None, :], tl.arange(0, BLOCK_N)[:, None], n, ACC)
    return tl.where((j < BLOCK_K)[None, :], cos, msin)


@triton.jit
def _load_block(base, pos, ch, n, d, s_n, s_d, cols, ACC: tl.constexpr):
    """Like :func:`_load_tile`, zero also outside the columns ``cols`` (a boolean vector): one block of a
    stacked tile whose columns ``ch`` repeat the chunk's channels."""
    mask = (pos[:, None] < n) & (ch[None, :] < d) & cols[None, :]
    return tl.load(base + pos[:, None] * s_n + ch[None, :] * s_d, mask=mask, other=0.0).to(ACC)


@triton.jit
def _re_im(x):
    """Split a ``(..., 2)`` tile into its ``[..., 0]`` and ``[..., 1]`` halves."""
    return tl.split(x)


@triton.jit
def _quarters(x, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """The four ``(BLOCK_K, BLOCK_D)`` blocks of a ``(2 BLOCK_K, 2 BLOCK_D)`` tile: top-left, top-right,
    bottom-left, bottom-right."""
    y = tl.permute(tl.reshape(x, (2, BLOCK_K, 2, BLOCK_D)), (1, 3, 0, 2))  # (k, ch, row block, col block)
    left, right = tl.split(y)
    top_left, bottom_left = _re_im(left)
    top_right, bottom_right = _re_im(right)
    return top_left, top_right, bottom_left, bottom_right


@triton.jit
def _eighths(x, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """The eight ``(BLOCK_K, BLOCK_D)`` blocks of a ``(2 BLOCK_K, 4 BLOCK_D)`` tile: the four column blocks
    of the top rows, then the four of the bottom rows."""
    # (k, ch, row block, column block // 2, column block % 2)
    y = tl.permute(tl.reshape(x, (2, BLOCK_K, 2, 2, BLOCK_D)), (1, 4, 0, 2, 3))
    even, odd = tl.split(y)  # column blocks 0, 2 and 1, 3
    b0, b2 = tl.split(even)
    b1, b3 = tl.split(odd)
    top0, bottom0 = _re_im(b0)
    top1, bottom1 = _re_im(b1)
    top2, bottom2 = _re_im(b2)
    top3, bottom3 = _re_im(b3)
    return top0, top1, top2, top3, bottom0, bottom1, bottom2, bottom3


@triton.jit
def _from_quarters(top_left, top_right, bottom_left, bottom_right, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """The ``(2 BLOCK_K, 2 BLOCK_D)`` tile of four ``(BLOCK_K, BLOCK_D)`` blocks (inverse of :func:`_quarters`)."""
    y = tl.join(tl.join(top_left, bottom_left), tl.join(top_right, bottom_right))  # (k, ch, row block, col block)
    return tl.reshape(tl.permute(y, (2, 0, 3, 1)), (2 * BLOCK_K, 2 * BLOCK_D))


@triton.jit
def _fuse_chunk(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                ACC: tl.constexpr, PRECISION: tl.constexpr):
    """``[F | E2]``, ``(BLOCK_N, 2 BLOCK_D)``, of one channel chunk ``[d0, d0 + BLOCK_D)`` of one sequence.

    Per block of frequencies one product ``[cos; -sin] @ [T | E]`` gives both half spectra and one
    ``[cos | -sin] @ [[Pr, Qr]; [Pi, Qi]]`` both inverses (:func:`_stacked_rows`, :func:`_stacked_cols`).
    """
    pos = tl.arange(0, BLOCK_N)
    col = tl.arange(0, 2 * BLOCK_D)
    first = col < BLOCK_D
    ch2 = d0 + col % BLOCK_D
    x = (_load_block(t_base, pos, ch2, n, d, st_n, st_d, first, ACC)
         + _load_block(e_base, pos, ch2, n, d, se_n, se_d, ~first, ACC))
    ch = d0 + tl.arange(0, BLOCK_D)
    n_acc = n.to(ACC)
    scale_f = 1.0 / (n_acc * tl.sqrt(n_acc))  # three ortho factors
    scale_e2 = 1.0 / n_acc  # two ortho factors
    out = tl.zeros((BLOCK_N, 2 * BLOCK_D), ACC)
    for k0 in range(0, n // 2 + 1, BLOCK_K):
        spec = tl.dot(_stacked_rows(k0, n, BLOCK_N, BLOCK_K, ACC), x, input_precision=PRECISION, out_dtype=ACC)
        tr, er, ti, ei = _quarters(spec, BLOCK_K, BLOCK_D)
        k = k0 + tl.arange(0, BLOCK_K)
        wr, wi = _load_filter(w_ptr, k, ch, n, d, sw_k, sw_d, sw_c, ACC)
        wk = _hermitian_weight(k, n, ACC)[:, None]
        pr = (tr * er - ti * ei) * (wk * scale_f)
        pi = (tr * ei + ti * er) * (wk * scale_f)
        qr = (er * wr - ei * wi) * (wk * scale_e2)
        qi = (er * wi + ei * wr) * (wk * scale_e2)
        out = tl.dot(_stacked_cols(k0, n, BLOCK_N, BLOCK_K, ACC), _from_quarters(pr, qr, pi, qi, BLOCK_K, BLOCK_D),
                     acc=out, input_precision=PRECISION, out_dtype=ACC)
    return out


@triton.jit
def _load_gate(g_ptr, ch, d, s_g, ACC: tl.constexpr):
    return tl.load(g_ptr + ch * s_g, mask=ch < d, other=0.0).to(ACC)


@triton.jit
def _load_gates(gf_ptr, gi_ptr, ch, d, s_gf, s_gi, first, ACC: tl.constexpr):
    """``[g_f | g_i]`` over the columns of a ``[F | E2]`` tile: ``g_f`` where ``first``, else ``g_i``."""
    return (tl.load(gf_ptr + ch * s_gf, mask=(ch < d) & first, other=0.0).to(ACC)
            + tl.load(gi_ptr + ch * s_gi, mask=(ch < d) & ~first, other=0.0).to(ACC))


@triton.jit
def _row_sums(x, first):
    """Per-row sums of a ``[left | right]`` tile over the columns where ``first`` and over the others."""
    return tl.sum(tl.where(first[None, :], x, 0.0), axis=1), tl.sum(tl.where(first[None, :], 0.0, x), axis=1)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------
@triton.jit
def _store_v(v_base, fused_filtered, a, c, pos, d0, n, d, sv_n, sv_d, first,
             BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Store ``V = 2 (a E2 + c F)`` of one chunk from its ``[F | E2]`` tile."""
    gated = fused_filtered * tl.where(first[None, :], c[:, None], a[:, None])
    v = 2.0 * tl.sum(tl.reshape(gated, (BLOCK_N, 2, BLOCK_D)), axis=1)
    ch = d0 + tl.arange(0, BLOCK_D)
    mask = (pos[:, None] < n) & (ch[None, :] < d)
    tl.store(v_base + pos[:, None] * sv_n + ch[None, :] * sv_d, v.to(v_base.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["n", "d"])
def _spectral_fusion_fwd_kernel(
    t_ptr, e_ptr, w_ptr, gi_ptr, bi_ptr, gf_ptr, bf_ptr, v_ptr,
    n, d,
    st_b, st_n, st_d, se_b, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf, sv_b, sv_n, sv_d,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr, SINGLE_CHUNK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    t_base = t_ptr + b * st_b
    e_base = e_ptr + b * se_b
    v_base = v_ptr + b * sv_b
    pos = tl.arange(0, BLOCK_N)
    col = tl.arange(0, 2 * BLOCK_D)
    first = col < BLOCK_D
    bias_i = tl.load(bi_ptr).to(ACC)
    bias_f = tl.load(bf_ptr).to(ACC)

    if SINGLE_CHUNK:
        fe = _fuse_chunk(t_base, e_base, w_ptr, 0, n, d, st_n, st_d, se_n, se_d,
                         sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
        gates = _load_gates(gf_ptr, gi_ptr, col % BLOCK_D, d, s_gf, s_gi, first, ACC)
        logit_f, logit_i = _row_sums(fe * gates[None, :], first)
        _store_v(v_base, fe, _sigmoid(logit_i + bias_i), _sigmoid(logit_f + bias_f), pos, 0, n, d, sv_n, sv_d,
                 first, BLOCK_N, BLOCK_D)
    else:
        logit_i = tl.zeros((BLOCK_N,), ACC) + bias_i
        logit_f = tl.zeros((BLOCK_N,), ACC) + bias_f
        for d0 in range(0, d, BLOCK_D):
            fe = _fuse_chunk(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                             sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            gates = _load_gates(gf_ptr, gi_ptr, d0 + col % BLOCK_D, d, s_gf, s_gi, first, ACC)
            sum_f, sum_i = _row_sums(fe * gates[None, :], first)
            logit_f += sum_f
            logit_i += sum_i
        a = _sigmoid(logit_i)
        c = _sigmoid(logit_f)
        for d0 in range(0, d, BLOCK_D):
            fe = _fuse_chunk(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                             sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            _store_v(v_base, fe, a, c, pos, d0, n, d, sv_n, sv_d, first, BLOCK_N, BLOCK_D)


# --------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------
@triton.jit
def _backward_chunk(
    g_base, t_base, e_base, w_ptr, gi_ptr, gf_ptr, dt_base, de_base, pw_base, pg_base,
    d0, n, d, a, c, coef_i, coef_f,
    sg_n, sg_d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
    sdt_n, sdt_d, sde_n, sde_d, pw_c, pw_k, pg_c,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    """Gradients of one channel chunk of one sequence, given its per-position gate scalars.

    Writes ``dT`` and ``dE`` for the chunk and adds the chunk's share of the filter and gate-weight
    gradients into this program's partial buffers. Per block of frequencies one product
    ``[cos; -sin] @ [T | E | dF | dE2]`` gives the eight half spectra and one
    ``[cos | -sin] @ [[dTr, dEr]; [dTi, dEi]]`` the adjoint transforms of both ``dT`` and ``dE``.
    """
    pos = tl.arange(0, BLOCK_N)
    col = tl.arange(0, 2 * BLOCK_D)
    first = col < BLOCK_D
    ch2 = d0 + col % BLOCK_D
    fe = _fuse_chunk(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                     sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
    # gate weights: d g_f = sum_j coef_f[j] F[j], d g_i = sum_j coef_i[j] E2[j]; partials [g_i | g_f]
    coef = tl.where(first[None, :], coef_f[:, None], coef_i[:, None])
    pg = pg_base + ch2 + tl.where(first, pg_c, 0)
    pg_ok = ch2 < d
    tl.store(pg, tl.load(pg, mask=pg_ok, other=0.0) + tl.sum(coef * fe, axis=0), mask=pg_ok)

    # [T | E | dF | dE2], dF = 2 c G + coef_f g_f, dE2 = 2 a G + coef_i g_i
    col4 = tl.arange(0, 4 * BLOCK_D)
    block = col4 // BLOCK_D
    ch4 = d0 + col4 % BLOCK_D
    is_f = (block == 2)[None, :]
    x = (_load_block(t_base, pos, ch4, n, d, st_n, st_d, block == 0, ACC)
         + _load_block(e_base, pos, ch4, n, d, se_n, se_d, block == 1, ACC))
    grad = _load_block(g_base, pos, ch4, n, d, sg_n, sg_d, block >= 2, ACC)
    gates = _load_gates(gf_ptr, gi_ptr, ch4, d, s_gf, s_gi, block == 2, ACC) * (block >= 2).to(ACC)
    x += (2.0 * tl.where(is_f, c[:, None], a[:, None]) * grad
          + tl.where(is_f, coef_f[:, None], coef_i[:, None]) * gates[None, :])

    ch = d0 + tl.arange(0, BLOCK_D)
    ch_ok = ch < d
    n_acc = n.to(ACC)
    scale_f = 1.0 / (n_acc * tl.sqrt(n_acc))
    scale_e2 = 1.0 / n_acc
    d_text_item = tl.zeros((BLOCK_N, 2 * BLOCK_D), ACC)
    for k0 in range(0, n // 2 + 1, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        spec = tl.dot(_stacked_rows(k0, n, BLOCK_N, BLOCK_K, ACC), x, input_precision=PRECISION, out_dtype=ACC)
        tr, er, dpr, dqr, ti, ei, dpi, dqi = _eighths(spec, BLOCK_K, BLOCK_D)
        wr, wi = _load_filter(w_ptr, k, ch, n, d, sw_k, sw_d, sw_c, ACC)
        wk = _hermitian_weight(k, n, ACC)[:, None]
        # adjoint of the inverse transforms: the spectra of dF and dE2, weighted
        dpr = dpr * (wk * scale_f)
        dpi = dpi * (wk * scale_f)
        dqr = dqr * (wk * scale_e2)
        dqi = dqi * (wk * scale_e2)
        # filter gradient, this program's partial
        k_ok = (k[:, None] <= n // 2) & ch_ok[None, :]
        pw_re = pw_base + k[:, None] * pw_k + ch[None, :]
        pw_im = pw_re + pw_c
        tl.store(pw_re, tl.load(pw_re, mask=k_ok, other=0.0) + (dqr * er + dqi * ei), mask=k_ok)
        tl.store(pw_im, tl.load(pw_im, mask=k_ok, other=0.0) + (dqi * er - dqr * ei), mask=k_ok)
        # adjoint of the spectral products, then of the forward transforms
        dtr = dpr * er + dpi * ei
        dti = dpi * er - dpr * ei
        der = dpr * tr + dpi * ti + dqr * wr + dqi * wi
        dei = dpi * tr - dpr * ti + dqi * wr - dqr * wi
        d_text_item = tl.dot(_stacked_cols(k0, n, BLOCK_N, BLOCK_K, ACC),
                             _from_quarters(dtr, der, dti, dei, BLOCK_K, BLOCK_D),
                             acc=d_text_item, input_precision=PRECISION, out_dtype=ACC)
    mask = (pos[:, None] < n) & (ch2 < d)[None, :]
    out = tl.where(first[None, :], dt_base + pos[:, None] * sdt_n + ch2[None, :] * sdt_d,
                   de_base + pos[:, None] * sde_n + ch2[None, :] * sde_d)
    tl.store(out, d_text_item.to(dt_base.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["B", "n", "d"])
def _spectral_fusion_bwd_kernel(
    g_ptr, t_ptr, e_ptr, w_ptr, gi_ptr, bi_ptr, gf_ptr, bf_ptr,
    dt_ptr, de_ptr, pw_ptr, pg_ptr, pb_ptr,
    B, n, d,
    sg_b, sg_n, sg_d, st_b, st_n, st_d, se_b, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
    sdt_b, sdt_n, sdt_d, sde_b, sde_n, sde_d,
    pw_p, pw_c, pw_k, pg_p, pg_c,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    pos = tl.arange(0, BLOCK_N)
    pos_ok = pos < n
    col = tl.arange(0, 2 * BLOCK_D)
    first = col < BLOCK_D
    bias_i = tl.load(bi_ptr).to(ACC)
    bias_f = tl.load(bf_ptr).to(ACC)
    pw_base = pw_ptr + pid.to(tl.int64) * pw_p
    pg_base = pg_ptr + pid.to(tl.int64) * pg_p
    db_i = tl.zeros((BLOCK_N,), ACC)
    db_f = tl.zeros((BLOCK_N,), ACC)
    for i in range(0, tl.cdiv(B - pid, programs)):
        b = pid.to(tl.int64) + i * programs
        g_base = g_ptr + b * sg_b
        t_base = t_ptr + b * st_b
        e_base = e_ptr + b * se_b
        # pass 1: gate logits and <G, E2>, <G, F> per position
        logit_i = tl.zeros((BLOCK_N,), ACC) + bias_i
        logit_f = tl.zeros((BLOCK_N,), ACC) + bias_f
        g_dot_e2 = tl.zeros((BLOCK_N,), ACC)
        g_dot_f = tl.zeros((BLOCK_N,), ACC)
        for d0 in range(0, d, BLOCK_D):
            ch2 = d0 + col % BLOCK_D
            fe = _fuse_chunk(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                             sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            sum_f, sum_i = _row_sums(fe * _load_gates(gf_ptr, gi_ptr, ch2, d, s_gf, s_gi, first, ACC)[None, :], first)
            logit_f += sum_f
            logit_i += sum_i
            sum_f, sum_i = _row_sums(fe * _load_tile(g_base, pos, ch2, n, d, sg_n, sg_d, ACC), first)
            g_dot_f += sum_f
            g_dot_e2 += sum_i
        a = _sigmoid(logit_i)
        c = _sigmoid(logit_f)
        coef_i = tl.where(pos_ok, 2.0 * a * (1.0 - a) * g_dot_e2, 0.0)
        coef_f = tl.where(pos_ok, 2.0 * c * (1.0 - c) * g_dot_f, 0.0)
        db_i += coef_i
        db_f += coef_f
        # pass 2: dT, dE and the partial parameter gradients, chunk by chunk
        for d0 in range(0, d, BLOCK_D):
            _backward_chunk(
                g_base, t_base, e_base, w_ptr, gi_ptr, gf_ptr,
                dt_ptr + b * sdt_b, de_ptr + b * sde_b, pw_base, pg_base,
                d0, n, d, a, c, coef_i, coef_f,
                sg_n, sg_d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
                sdt_n, sdt_d, sde_n, sde_d, pw_c, pw_k, pg_c,
                BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION,
            )
            # the partial buffers are read back by other threads of this program next time
            tl.debug_barrier()
    tl.store(pb_ptr + pid * 2, tl.sum(db_i, axis=0))
    tl.store(pb_ptr + pid * 2 + 1, tl.sum(db_f, axis=0))


# --------------------------------------------------------------------------------------------
# Split operands: four products per transform (lengths other than TedRec's; see CONFIGS)
# --------------------------------------------------------------------------------------------
@triton.jit
def _spectra(k0, x, y, n, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
             PRECISION: tl.constexpr):
    """Half spectra of two tiles at frequencies ``k0 + [0, BLOCK_K)``: ``(x_re, x_im, y_re, y_im)``."""
    cos_kt, msin_kt = _dft_rows(k0, n, BLOCK_N, BLOCK_K, ACC)
    xr, xi = _spectrum(cos_kt, msin_kt, x, ACC, PRECISION)
    yr, yi = _spectrum(cos_kt, msin_kt, y, ACC, PRECISION)
    return xr, xi, yr, yi


@triton.jit
def _fuse_chunk_split(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                ACC: tl.constexpr, PRECISION: tl.constexpr):
    """``F`` and ``E2`` of one channel chunk ``[d0, d0 + BLOCK_D)`` of one sequence, in registers."""
    pos = tl.arange(0, BLOCK_N)
    ch = d0 + tl.arange(0, BLOCK_D)
    t = _load_tile(t_base, pos, ch, n, d, st_n, st_d, ACC)
    e = _load_tile(e_base, pos, ch, n, d, se_n, se_d, ACC)
    n_acc = n.to(ACC)
    scale_f = 1.0 / (n_acc * tl.sqrt(n_acc))  # three ortho factors
    scale_e2 = 1.0 / n_acc  # two ortho factors
    fused = tl.zeros((BLOCK_N, BLOCK_D), ACC)
    filtered = tl.zeros((BLOCK_N, BLOCK_D), ACC)
    for k0 in range(0, n // 2 + 1, BLOCK_K):
        tr, ti, er, ei = _spectra(k0, t, e, n, BLOCK_N, BLOCK_K, ACC, PRECISION)
        k = k0 + tl.arange(0, BLOCK_K)
        wr, wi = _load_filter(w_ptr, k, ch, n, d, sw_k, sw_d, sw_c, ACC)
        wk = _hermitian_weight(k, n, ACC)[:, None]
        pr = (tr * er - ti * ei) * (wk * scale_f)
        pi = (tr * ei + ti * er) * (wk * scale_f)
        qr = (er * wr - ei * wi) * (wk * scale_e2)
        qi = (er * wi + ei * wr) * (wk * scale_e2)
        cos_tk, msin_tk = _twiddles(k[None, :], pos[:, None], n, ACC)
        fused += _inverse(cos_tk, msin_tk, pr, pi, ACC, PRECISION)
        filtered += _inverse(cos_tk, msin_tk, qr, qi, ACC, PRECISION)
    return fused, filtered


@triton.jit(do_not_specialize=["n", "d"])
def _spectral_fusion_fwd_kernel_split(
    t_ptr, e_ptr, w_ptr, gi_ptr, bi_ptr, gf_ptr, bf_ptr, v_ptr,
    n, d,
    st_b, st_n, st_d, se_b, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf, sv_b, sv_n, sv_d,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr, SINGLE_CHUNK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    t_base = t_ptr + b * st_b
    e_base = e_ptr + b * se_b
    v_base = v_ptr + b * sv_b
    pos = tl.arange(0, BLOCK_N)
    bias_i = tl.load(bi_ptr).to(ACC)
    bias_f = tl.load(bf_ptr).to(ACC)

    if SINGLE_CHUNK:
        ch = tl.arange(0, BLOCK_D)
        fused, filtered = _fuse_chunk_split(t_base, e_base, w_ptr, 0, n, d, st_n, st_d, se_n, se_d,
                                            sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
        gi = _load_gate(gi_ptr, ch, d, s_gi, ACC)
        gf = _load_gate(gf_ptr, ch, d, s_gf, ACC)
        a = _sigmoid(tl.sum(filtered * gi[None, :], axis=1) + bias_i)
        c = _sigmoid(tl.sum(fused * gf[None, :], axis=1) + bias_f)
        v = 2.0 * (a[:, None] * filtered + c[:, None] * fused)
        mask = (pos[:, None] < n) & (ch[None, :] < d)
        tl.store(v_base + pos[:, None] * sv_n + ch[None, :] * sv_d,
                 v.to(v_ptr.dtype.element_ty), mask=mask)
    else:
        logit_i = tl.zeros((BLOCK_N,), ACC) + bias_i
        logit_f = tl.zeros((BLOCK_N,), ACC) + bias_f
        for d0 in range(0, d, BLOCK_D):
            ch = d0 + tl.arange(0, BLOCK_D)
            fused, filtered = _fuse_chunk_split(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                                                sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            logit_i += tl.sum(filtered * _load_gate(gi_ptr, ch, d, s_gi, ACC)[None, :], axis=1)
            logit_f += tl.sum(fused * _load_gate(gf_ptr, ch, d, s_gf, ACC)[None, :], axis=1)
        a = _sigmoid(logit_i)
        c = _sigmoid(logit_f)
        for d0 in range(0, d, BLOCK_D):
            ch = d0 + tl.arange(0, BLOCK_D)
            fused, filtered = _fuse_chunk_split(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                                                sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            v = 2.0 * (a[:, None] * filtered + c[:, None] * fused)
            mask = (pos[:, None] < n) & (ch[None, :] < d)
            tl.store(v_base + pos[:, None] * sv_n + ch[None, :] * sv_d,
                     v.to(v_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------
@triton.jit
def _backward_chunk_split(
    g_base, t_base, e_base, w_ptr, gi_ptr, gf_ptr, dt_base, de_base, pw_base, pg_base,
    d0, n, d, a, c, coef_i, coef_f,
    sg_n, sg_d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
    sdt_n, sdt_d, sde_n, sde_d, pw_c, pw_k, pg_c,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    """Gradients of one channel chunk of one sequence, given its per-position gate scalars.

    Writes ``dT`` and ``dE`` for the chunk and adds the chunk's share of the filter and gate-weight
    gradients into this program's partial buffers.
    """
    pos = tl.arange(0, BLOCK_N)
    ch = d0 + tl.arange(0, BLOCK_D)
    ch_ok = ch < d
    fused, filtered = _fuse_chunk_split(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                                        sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
    grad = _load_tile(g_base, pos, ch, n, d, sg_n, sg_d, ACC)
    gi = _load_gate(gi_ptr, ch, d, s_gi, ACC)
    gf = _load_gate(gf_ptr, ch, d, s_gf, ACC)
    d_filtered = 2.0 * a[:, None] * grad + coef_i[:, None] * gi[None, :]
    d_fused = 2.0 * c[:, None] * grad + coef_f[:, None] * gf[None, :]

    # gate weights: d g_i = sum_j coef_i[j] E2[j], d g_f = sum_j coef_f[j] F[j]
    pg_i = pg_base + ch
    pg_f = pg_base + pg_c + ch
    tl.store(pg_i, tl.load(pg_i, mask=ch_ok, other=0.0) + tl.sum(coef_i[:, None] * filtered, axis=0),
             mask=ch_ok)
    tl.store(pg_f, tl.load(pg_f, mask=ch_ok, other=0.0) + tl.sum(coef_f[:, None] * fused, axis=0),
             mask=ch_ok)

    t = _load_tile(t_base, pos, ch, n, d, st_n, st_d, ACC)
    e = _load_tile(e_base, pos, ch, n, d, se_n, se_d, ACC)
    n_acc = n.to(ACC)
    scale_f = 1.0 / (n_acc * tl.sqrt(n_acc))
    scale_e2 = 1.0 / n_acc
    d_text = tl.zeros((BLOCK_N, BLOCK_D), ACC)
    d_item = tl.zeros((BLOCK_N, BLOCK_D), ACC)
    for k0 in range(0, n // 2 + 1, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        tr, ti, er, ei = _spectra(k0, t, e, n, BLOCK_N, BLOCK_K, ACC, PRECISION)
        wr, wi = _load_filter(w_ptr, k, ch, n, d, sw_k, sw_d, sw_c, ACC)
        wk = _hermitian_weight(k, n, ACC)[:, None]
        # adjoint of the inverse transforms: spectra of dF and dE2
        dpr, dpi, dqr, dqi = _spectra(k0, d_fused, d_filtered, n, BLOCK_N, BLOCK_K, ACC, PRECISION)
        dpr = dpr * (wk * scale_f)
        dpi = dpi * (wk * scale_f)
        dqr = dqr * (wk * scale_e2)
        dqi = dqi * (wk * scale_e2)
        # adjoint of the spectral products
        dtr = dpr * er + dpi * ei
        dti = dpi * er - dpr * ei
        der = dpr * tr + dpi * ti + dqr * wr + dqi * wi
        dei = dpi * tr - dpr * ti + dqi * wr - dqr * wi
        # filter gradient, this program's partial
        k_ok = (k[:, None] <= n // 2) & ch_ok[None, :]
        pw_re = pw_base + k[:, None] * pw_k + ch[None, :]
        pw_im = pw_re + pw_c
        tl.store(pw_re, tl.load(pw_re, mask=k_ok, other=0.0) + (dqr * er + dqi * ei), mask=k_ok)
        tl.store(pw_im, tl.load(pw_im, mask=k_ok, other=0.0) + (dqi * er - dqr * ei), mask=k_ok)
        # adjoint of the forward transforms
        cos_tk, msin_tk = _twiddles(k[None, :], pos[:, None], n, ACC)
        d_text += _inverse(cos_tk, msin_tk, dtr, dti, ACC, PRECISION)
        d_item += _inverse(cos_tk, msin_tk, der, dei, ACC, PRECISION)
    mask = (pos[:, None] < n) & ch_ok[None, :]
    tl.store(dt_base + pos[:, None] * sdt_n + ch[None, :] * sdt_d,
             d_text.to(dt_base.dtype.element_ty), mask=mask)
    tl.store(de_base + pos[:, None] * sde_n + ch[None, :] * sde_d,
             d_item.to(de_base.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["B", "n", "d"])
def _spectral_fusion_bwd_kernel_split(
    g_ptr, t_ptr, e_ptr, w_ptr, gi_ptr, bi_ptr, gf_ptr, bf_ptr,
    dt_ptr, de_ptr, pw_ptr, pg_ptr, pb_ptr,
    B, n, d,
    sg_b, sg_n, sg_d, st_b, st_n, st_d, se_b, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
    sdt_b, sdt_n, sdt_d, sde_b, sde_n, sde_d,
    pw_p, pw_c, pw_k, pg_p, pg_c,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    pos = tl.arange(0, BLOCK_N)
    pos_ok = pos < n
    bias_i = tl.load(bi_ptr).to(ACC)
    bias_f = tl.load(bf_ptr).to(ACC)
    pw_base = pw_ptr + pid.to(tl.int64) * pw_p
    pg_base = pg_ptr + pid.to(tl.int64) * pg_p
    db_i = tl.zeros((BLOCK_N,), ACC)
    db_f = tl.zeros((BLOCK_N,), ACC)
    for i in range(0, tl.cdiv(B - pid, programs)):
        b = pid.to(tl.int64) + i * programs
        g_base = g_ptr + b * sg_b
        t_base = t_ptr + b * st_b
        e_base = e_ptr + b * se_b
        # pass 1: gate logits and <G, E2>, <G, F> per position
        logit_i = tl.zeros((BLOCK_N,), ACC) + bias_i
        logit_f = tl.zeros((BLOCK_N,), ACC) + bias_f
        g_dot_e2 = tl.zeros((BLOCK_N,), ACC)
        g_dot_f = tl.zeros((BLOCK_N,), ACC)
        for d0 in range(0, d, BLOCK_D):
            ch = d0 + tl.arange(0, BLOCK_D)
            fused, filtered = _fuse_chunk_split(t_base, e_base, w_ptr, d0, n, d, st_n, st_d, se_n, se_d,
                                                sw_k, sw_d, sw_c, BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION)
            grad = _load_tile(g_base, pos, ch, n, d, sg_n, sg_d, ACC)
            logit_i += tl.sum(filtered * _load_gate(gi_ptr, ch, d, s_gi, ACC)[None, :], axis=1)
            logit_f += tl.sum(fused * _load_gate(gf_ptr, ch, d, s_gf, ACC)[None, :], axis=1)
            g_dot_e2 += tl.sum(grad * filtered, axis=1)
            g_dot_f += tl.sum(grad * fused, axis=1)
        a = _sigmoid(logit_i)
        c = _sigmoid(logit_f)
        coef_i = tl.where(pos_ok, 2.0 * a * (1.0 - a) * g_dot_e2, 0.0)
        coef_f = tl.where(pos_ok, 2.0 * c * (1.0 - c) * g_dot_f, 0.0)
        db_i += coef_i
        db_f += coef_f
        # pass 2: dT, dE and the partial parameter gradients, chunk by chunk
        for d0 in range(0, d, BLOCK_D):
            _backward_chunk_split(
                g_base, t_base, e_base, w_ptr, gi_ptr, gf_ptr,
                dt_ptr + b * sdt_b, de_ptr + b * sde_b, pw_base, pg_base,
                d0, n, d, a, c, coef_i, coef_f,
                sg_n, sg_d, st_n, st_d, se_n, se_d, sw_k, sw_d, sw_c, s_gi, s_gf,
                sdt_n, sdt_d, sde_n, sde_d, pw_c, pw_k, pg_c,
                BLOCK_N, BLOCK_K, BLOCK_D, ACC, PRECISION,
            )
            # the partial buffers are read back by other threads of this program next time
            tl.debug_barrier()
    tl.store(pb_ptr + pid * 2, tl.sum(db_i, axis=0))
    tl.store(pb_ptr + pid * 2 + 1, tl.sum(db_f, axis=0))

# --------------------------------------------------------------------------------------------
# Launch configurations (the launchers: tedrec_fast/ops/spectral_fusion/triton.py)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelConfig:
    """Block sizes and warps for one padded sequence length; every field is a compile-time constant."""

    BLOCK_N: int
    BLOCK_K: int
    BLOCK_D: int
    num_warps: int
    BLOCK_D_BWD: int
    num_warps_bwd: int
    #: the stacked-operand kernels (one product per transform; ``BLOCK_K`` may be 8), else the split ones
    stacked: bool = False


#: the padded lengths whose fp32 and 16-bit configurations run the stacked-operand kernels: TedRec's, where they
#: spill nothing on any target; elsewhere the split kernels spill less (float64 everywhere; bench/NOTES.md)
STACKED_LENGTHS = frozenset({64})


def _configs(chunks: dict[int, tuple[int, int, int, int, int]],
             float64_chunks: dict[int, tuple[int, int, int, int, int]],
             sixteen_bit: dict[int, tuple[int, int, int, int, int]] | None = None
             ) -> dict[tuple[str, int], KernelConfig]:
    """``{(dtype group, BLOCK_N): config}`` from ``{BLOCK_N: (BLOCK_K, forward BLOCK_D, forward warps, backward
    BLOCK_D, backward warps)}`` for fp32 inputs, for float64 (tiles of twice the bytes) and, where ``sixteen_bit``
    names a length, for bf16 / fp16 (fp32 tiles, one TF32 product instead of fp32's three: other registers)."""
    table = {("32-bit", block_n): KernelConfig(block_n, *c, stacked=block_n in STACKED_LENGTHS)
             for block_n, c in chunks.items()}
    table.update({("16-bit", block_n): KernelConfig(block_n, *c, stacked=block_n in STACKED_LENGTHS)
                  for block_n, c in {**chunks, **(sixteen_bit or {})}.items()})
    table.update({("float64", block_n): KernelConfig(block_n, *c) for block_n, c in float64_chunks.items()})
    return table


#: Hopper and datacenter Blackwell (227 KiB of shared memory per block; on sm_90 ``tl.dot`` reaches wgmma).
#: TedRec's length (``BLOCK_N = 64``) in frequency blocks of 8: the only block size whose forward and backward
#: compile without spills on every target, fp32 (3xTF32) and 16-bit (bench/NOTES.md)
_LARGE_SMEM = {16: (16, 64, 4, 32, 8), 32: (16, 64, 4, 32, 8), 64: (8, 16, 4, 16, 8), 128: (16, 32, 8, 16, 8),
               256: (16, 16, 8, 16, 8)}
_LARGE_SMEM_FLOAT64 = {16: (16, 64, 4, 32, 8), 32: (16, 64, 4, 32, 8), 64: (16, 32, 4, 32, 8),
                       128: (16, 32, 8, 16, 8)}
#: Ampere A100 (163 KiB) and the 99-KiB parts (A10 / RTX 30xx, L4 / RTX 40xx, RTX 50xx); ``mma.sync``
_SMALL_SMEM = {16: (16, 64, 4, 32, 8), 32: (16, 64, 4, 32, 8), 64: (8, 32, 8, 16, 8), 128: (16, 16, 8, 16, 8)}
#: sm_120: the TedRec-length forward in 16-channel chunks at 4 warps (32-channel ones spill nothing in the fusion
#: but 36 B in the filter's forward, which shares the configuration; bench/NOTES.md)
_SMALL_SMEM_NARROW_FORWARD = {**_SMALL_SMEM, 64: (8, 16, 4, 16, 8)}
#: float64 there: 64-channel forward chunks at ``BLOCK_N = 32`` need 106,496 B, over 99 KiB
_SMALL_SMEM_FLOAT64 = {16: (16, 32, 4, 32, 8), 32: (16, 32, 4, 32, 8), 64: (16, 16, 4, 16, 8)}
#: 16-bit inputs at TedRec's length where fp32's configuration spills for them (bench/NOTES.md): sm_80/86/89
#: (forward in 16-channel chunks at 4 warps, backward in 32-channel ones), sm_100/120 (both in 32-channel ones)
_SIXTEEN_BIT_NARROW_FORWARD = {64: (8, 16, 4, 32, 8)}
_SIXTEEN_BIT_WIDE = {64: (8, 32, 4, 32, 8)}


def dtype_group(dtype: torch.dtype) -> str:
    """The configuration group of inputs of ``dtype``: ``"float64"``, ``"16-bit"`` (bf16, fp16) or ``"32-bit"``."""
    if dtype == torch.float64:
        return "float64"
    return "16-bit" if dtype in (torch.bfloat16, torch.float16) else "32-bit"


def _no_config(arch: int, key: tuple[str, int]) -> str:
    group, block_n = key
    limit = TARGETS[arch].shared_per_block // 1024
    return (f"{group} sequences padded to {block_n} positions have no fused-kernel configuration within "
            f"sm_{arch}'s {limit} KiB of shared memory per block (forward and backward; bench/NOTES.md)")


#: The launch configurations per target, keyed by the dtype group and the padded length ``BLOCK_N``: every
#: one compiles for its target within its shared memory (tests/kernels/test_aot_compile.py); a key missing on a
#: target is not run by the Triton backend there (the dispatcher picks the next backend). ``BLOCK_N = 512``
#: (257 <= n <= 512) fits no target: its backward needs more shared memory than any GPU has.
CONFIGS: TargetConfigs[tuple[str, int], KernelConfig] = TargetConfigs("spectral_fusion", {
    80: _configs(_SMALL_SMEM, _SMALL_SMEM_FLOAT64, _SIXTEEN_BIT_NARROW_FORWARD),
    86: _configs(_SMALL_SMEM, _SMALL_SMEM_FLOAT64, _SIXTEEN_BIT_NARROW_FORWARD),
    89: _configs(_SMALL_SMEM, _SMALL_SMEM_FLOAT64, _SIXTEEN_BIT_NARROW_FORWARD),
    90: _configs(_LARGE_SMEM, _LARGE_SMEM_FLOAT64),
    100: _configs(_LARGE_SMEM, _LARGE_SMEM_FLOAT64, _SIXTEEN_BIT_WIDE),
    120: _configs(_SMALL_SMEM_NARROW_FORWARD, _SMALL_SMEM_FLOAT64, _SIXTEEN_BIT_WIDE),
}, why=_no_config)

#: what the Triton interpreter launches (CPU tensors; no shared memory): sm_90's 32-bit configurations, and
#: for the lengths no GPU runs the former ``BLOCK_N = 512`` configuration, so every n <= MAX_N is tested
_INTERPRETER = {**{key[1]: cfg for key, cfg in CONFIGS.table[INTERPRETER_ARCH].items() if key[0] == "32-bit"},
                512: KernelConfig(512, 16, 16, 8, 16, 8)}


def padded_length(n: int) -> int:
    """``BLOCK_N`` for sequence length ``n``: a power of two >= 16 (``tl.dot`` dimensions) that covers ``n``."""
    return max(16, triton.next_power_of_2(n))


def config_why_not(n: int, arch: int | None, dtype: torch.dtype = torch.float32) -> str | None:
    """Why no configuration runs length ``n`` of ``dtype`` on ``sm_<arch>`` (``None``: the interpreter), else
    ``None``."""
    if arch is None:
        return None if padded_length(n) in _INTERPRETER else f"n={n} exceeds {MAX_N}"
    return CONFIGS.why_not(arch, (dtype_group(dtype), padded_length(n)))


def longest(arch: int, dtype: torch.dtype = torch.float32) -> int:
    """The longest sequence the configurations of ``sm_<arch>`` run for ``dtype``."""
    return max(block_n for group, block_n in CONFIGS.keys(arch) if group == dtype_group(dtype))


def kernel_config(n: int, arch: int | None = 90, dtype: torch.dtype = torch.float32) -> KernelConfig:
    """The launch configuration for sequence length ``n`` (any hidden size) of ``dtype`` on ``sm_<arch>``
    (``None``: the Triton interpreter). ``ValueError`` saying why when none of that length fits the target.

    ``tl.dot`` needs every dimension to be a power of two >= 16, so ``n`` is padded to ``BLOCK_N`` and
    frequencies are processed in blocks of ``BLOCK_K`` (16, or 8 at TedRec's length: the stacked twiddles
    have ``2 BLOCK_K`` rows). Registers hold the tensor-core operands of a ``2 BLOCK_K x BLOCK_N`` twiddle
    tile and a ``BLOCK_N x 2 BLOCK_D`` (backward ``4 BLOCK_D``) data tile, so the channel chunk shrinks as
    the padded length grows.
    """
    reason = config_why_not(n, arch, dtype)
    if reason is not None:
        raise ValueError(f"spectral_fusion: {reason}")
    block_n = padded_length(n)
    return _INTERPRETER[block_n] if arch is None else CONFIGS.get(arch, (dtype_group(dtype), block_n))


def validate_config(config: KernelConfig, n: int) -> None:
    """Raise ``ValueError`` naming the argument ``config`` unless it can run sequences of length ``n``
    (``TypeError`` if it is not a :class:`KernelConfig`).

    ``BLOCK_N`` must cover ``n``; ``BLOCK_N``, ``BLOCK_K``, ``BLOCK_D`` and ``BLOCK_D_BWD`` are ``tl.dot``
    dimensions (powers of two >= 16; the stacked kernels' ``2 BLOCK_K`` is, so there ``BLOCK_K`` may be 8); the
    warp counts are powers of two.
    """
    if not isinstance(config, KernelConfig):
        raise TypeError(f"spectral_fusion: config must be a KernelConfig, got {type(config).__name__}")
    if not isinstance(config.stacked, bool):
        raise ValueError(f"spectral_fusion: config.stacked must be a bool, got {config.stacked!r}")
    for field in fields(KernelConfig):
        if field.name == "stacked":
            continue
        value = getattr(config, field.name)
        smallest = 1 if field.name.startswith("num_warps") else 8 if field.name == "BLOCK_K" and config.stacked else 16
        if not isinstance(value, int) or value < smallest or value & (value - 1):
            raise ValueError(f"spectral_fusion: config.{field.name} must be a power of two >= {smallest}, "
                             f"got {value!r}")
    if config.BLOCK_N < n:
        raise ValueError(f"spectral_fusion: config.BLOCK_N must be >= n = {n}, got {config.BLOCK_N}")


def all_kernel_configs(arch: int | None = 90, dtype: torch.dtype = torch.float32) -> list[KernelConfig]:
    """Every configuration :func:`kernel_config` can return on ``sm_<arch>`` for ``dtype`` (``None``: the
    interpreter, any dtype)."""
    if arch is None:
        return [_INTERPRETER[block_n] for block_n in sorted(_INTERPRETER)]
    return [cfg for (group, _), cfg in CONFIGS.table[arch].items() if group == dtype_group(dtype)]


def kernels_for(config: KernelConfig) -> tuple:
    """The ``(forward, backward)`` kernels a configuration launches: the stacked-operand ones or the split ones."""
    if config.stacked:
        return _spectral_fusion_fwd_kernel, _spectral_fusion_bwd_kernel
    return _spectral_fusion_fwd_kernel_split, _spectral_fusion_bwd_kernel_split


def compile_specs(dtype: torch.dtype = torch.float32, precision: str | None = None,
                  block_n: int | None = None, configs: Iterable[KernelConfig] | None = None, *,
                  arch: int = 90) -> list[dict]:
    """Everything ``triton.compile`` needs to build each kernel the wrappers can launch for ``dtype``.

    One entry per (kernel, configuration, single-chunk variant), optionally only for one padded
    length ``block_n``: ``name``, ``fn``, ``signature``, ``constexprs`` and ``num_warps``. Used to
    compile for a GPU target on machines without one, so GPU-only errors surface in CI. By default the
    configurations the dispatcher can pick on ``sm_<arch>`` (:func:`all_kernel_configs`); ``configs``
    replaces them (e.g. by the configurations a tuning sweep launches).
    """
    precision = precision or dot_precision(dtype)
    acc = tl_acc_dtype(dtype)
    specs = []
    for cfg in all_kernel_configs(arch, dtype) if configs is None else configs:
        if block_n is not None and cfg.BLOCK_N != block_n:
            continue
        forward, backward = kernels_for(cfg)
        variants = [
            ("forward, single pass", forward, cfg.BLOCK_D, cfg.num_warps, {"SINGLE_CHUNK": True}),
            ("forward, two passes", forward, cfg.BLOCK_D, cfg.num_warps, {"SINGLE_CHUNK": False}),
            ("backward", backward, cfg.BLOCK_D_BWD, cfg.num_warps_bwd, {}),
        ]
        for label, fn, block_d, warps, extra in variants:
            constexprs = dict(BLOCK_N=cfg.BLOCK_N, BLOCK_K=cfg.BLOCK_K, BLOCK_D=block_d, ACC=acc,
                              PRECISION=precision, **extra)
            signature = aot_signature(fn, constexprs, dtype, accumulators=("pw_ptr", "pg_ptr", "pb_ptr"))
            specs.append(dict(name=f"spectral_fusion {label} {cfg.BLOCK_N}x{cfg.BLOCK_K}x{block_d} w{warps}",
                              fn=fn, signature=signature, constexprs=constexprs, num_warps=warps,
                              block_n=cfg.BLOCK_N))
    return specs
