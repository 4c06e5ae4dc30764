"""The learned spectral filter alone (FMLP-Rec's filter layer, TedRec's ``E2`` path) in Triton.

``Y = irfft(rfft(X, norm="ortho") * W, n, norm="ortho")`` along the sequence, for ``X`` of shape
``(B, n, d)`` and ``W = view_as_complex(complex_weight[0])`` of shape ``(n // 2 + 1, d)``.

It shares the DFT building blocks of :mod:`tedrec_fast.kernels.spectral_fusion` (twiddles in registers,
transforms as ``tl.dot`` products, Hermitian weights). Without a gate there is no reduction over
channels, so each program owns one ``(sequence, channel chunk)`` tile and reads ``X`` and writes ``Y``
exactly once. The backward program is persistent over sequences for its channel chunk and adds the
filter gradient into its own fp32 partial (no atomics: deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tedrec_fast.kernels.common import aot_signature, dot_precision, tl_acc_dtype
from tedrec_fast.kernels.spectral_fusion import CONFIGS as _FUSION_CONFIGS
from tedrec_fast.kernels.spectral_fusion import (
    KernelConfig,
    _dft_rows,
    _hermitian_weight,
    _inverse,
    _load_filter,
    _load_tile,
    _spectrum,
    _twiddles,
    dtype_group,
    kernel_config,
    padded_length,
)
from tedrec_fast.kernels.targets import TargetConfigs

__all__ = ["CONFIGS", "filter_config", "filter_block_k", "compile_specs"]

_TABLE = {arch: dict(configs) for arch, configs in _FUSION_CONFIGS.table.items()}
#: sm_80, 16-bit inputs at TedRec's length: the fusion's configuration there (forward at 4 warps, backward in
#: 32-channel chunks) makes the filter spill 20 / 36 B; the previous one spills 8 / 0 B (bench/NOTES.md)
_TABLE[80][("16-bit", 64)] = KernelConfig(64, 16, 16, 8, 16, 8)

#: The filter's launch configurations per target: the fusion's (:data:`tedrec_fast.kernels.spectral_fusion.CONFIGS`;
#: its forward fields for the forward, its backward fields for the backward) but one. The filter kernels hold fewer
#: tiles than the fusion's, and each is checked on every target on its own (tests/kernels/test_aot_compile.py).
CONFIGS: TargetConfigs = TargetConfigs("spectral_filter", _TABLE, why=_FUSION_CONFIGS.why)


def filter_config(n: int, arch: int | None, dtype: torch.dtype) -> KernelConfig:
    """The filter's launch configuration for length ``n`` of ``dtype`` on ``sm_<arch>`` (``None``: the
    interpreter's, the fusion's); ``ValueError`` saying why when none fits the target."""
    config = None if arch is None else CONFIGS.get(arch, (dtype_group(dtype), padded_length(n)))
    return kernel_config(n, arch, dtype) if config is None else config


@triton.jit
def _filter_block(x, w_ptr, k0, ch, n, d, sw_k, sw_d, sw_c, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  ACC: tl.constexpr, PRECISION: tl.constexpr):
    """For frequencies ``k0 + [0, BLOCK_K)``: the spectrum of ``x``, the filter, and the weight ``w_k / n``."""
    k = k0 + tl.arange(0, BLOCK_K)
    cos_kt, msin_kt = _dft_rows(k0, n, BLOCK_N, BLOCK_K, ACC)
    xr, xi = _spectrum(cos_kt, msin_kt, x, ACC, PRECISION)
    wr, wi = _load_filter(w_ptr, k, ch, n, d, sw_k, sw_d, sw_c, ACC)
    scale = _hermitian_weight(k, n, ACC)[:, None] / n.to(ACC)  # two ortho factors and w_k
    return k, cos_kt, msin_kt, xr, xi, wr, wi, scale


@triton.jit(do_not_specialize=["n", "d"])
def _spectral_filter_fwd_kernel(
    x_ptr, w_ptr, y_ptr, n, d,
    sx_b, sx_n, sx_d, sw_k, sw_d, sw_c, sy_b, sy_n, sy_d,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    pos = tl.arange(0, BLOCK_N)
    ch = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    x = _load_tile(x_ptr + b * sx_b, pos, ch, n, d, sx_n, sx_d, ACC)
    y = tl.zeros((BLOCK_N, BLOCK_D), ACC)
    for k0 in range(0, n // 2 + 1, BLOCK_K):
        k, _, _, xr, xi, wr, wi, scale = _filter_block(x, w_ptr, k0, ch, n, d, sw_k, sw_d, sw_c,
                                                       BLOCK_N, BLOCK_K, ACC, PRECISION)
        cos_tk, msin_tk = _twiddles(k[None, :], pos[:, None], n, ACC)
        y += _inverse(cos_tk, msin_tk, (xr * wr - xi * wi) * scale, (xr * wi + xi * wr) * scale, ACC, PRECISION)
    mask = (pos[:, None] < n) & (ch[None, :] < d)
    tl.store(y_ptr + b * sy_b + pos[:, None] * sy_n + ch[None, :] * sy_d, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["B", "n", "d"])
def _spectral_filter_bwd_kernel(
    g_ptr, x_ptr, w_ptr, dx_ptr, pw_ptr, B, n, d,
    sg_b, sg_n, sg_d, sx_b, sx_n, sx_d, sw_k, sw_d, sw_c, sdx_b, sdx_n, sdx_d, pw_p, pw_c, pw_k,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    pos = tl.arange(0, BLOCK_N)
    ch = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    pw_base = pw_ptr + pid.to(tl.int64) * pw_p
    for i in range(0, tl.cdiv(B - pid, programs)):
        b = pid.to(tl.int64) + i * programs
        x = _load_tile(x_ptr + b * sx_b, pos, ch, n, d, sx_n, sx_d, ACC)
        g = _load_tile(g_ptr + b * sg_b, pos, ch, n, d, sg_n, sg_d, ACC)
        dx = tl.zeros((BLOCK_N, BLOCK_D), ACC)
        for k0 in range(0, n // 2 + 1, BLOCK_K):
            k, cos_kt, msin_kt, xr, xi, wr, wi, scale = _filter_block(x, w_ptr, k0, ch, n, d, sw_k, sw_d, sw_c,
                                                                      BLOCK_N, BLOCK_K, ACC, PRECISION)
            # adjoint of the inverse transform, then of the product with W
            gr, gi = _spectrum(cos_kt, msin_kt, g, ACC, PRECISION)
            gr = gr * scale
            gi = gi * scale
            k_ok = (k[:, None] <= n // 2) & (ch[None, :] < d)
            pw_re = pw_base + k[:, None] * pw_k + ch[None, :]
            pw_im = pw_re + pw_c
            tl.store(pw_re, tl.load(pw_re, mask=k_ok, other=0.0) + (gr * xr + gi * xi), mask=k_ok)
            tl.store(pw_im, tl.load(pw_im, mask=k_ok, other=0.0) + (gi * xr - gr * xi), mask=k_ok)
            cos_tk, msin_tk = _twiddles(k[None, :], pos[:, None], n, ACC)
            dx += _inverse(cos_tk, msin_tk, gr * wr + gi * wi, gi * wr - gr * wi, ACC, PRECISION)
        mask = (pos[:, None] < n) & (ch[None, :] < d)
        tl.store(dx_ptr + b * sdx_b + pos[:, None] * sdx_n + ch[None, :] * sdx_d, dx.to(dx_ptr.dtype.element_ty),
                 mask=mask)
        tl.debug_barrier()  # the partial is read back by other threads of this program next iteration


def filter_block_k(cfg: KernelConfig) -> int:
    """The filter's frequency block for a fusion configuration ``cfg``: its ``BLOCK_K``, at least 16 (the
    filter's products take ``BLOCK_K`` rows; the fusion's stack two blocks, so it may use 8)."""
    return max(16, cfg.BLOCK_K)


def compile_specs(dtype: torch.dtype = torch.float32, precision: str | None = None,
                  block_n: int | None = None, *, arch: int = 90) -> list[dict]:
    """Everything ``triton.compile`` needs for each filter kernel configuration the dispatcher can pick on
    ``sm_<arch>`` (see kernels/aot.py)."""
    precision = precision or dot_precision(dtype)
    specs = []
    for cfg in [c for (group, _), c in CONFIGS.table[arch].items() if group == dtype_group(dtype)]:
        if block_n is not None and cfg.BLOCK_N != block_n:
            continue
        for label, fn, block_d, warps in (("forward", _spectral_filter_fwd_kernel, cfg.BLOCK_D, cfg.num_warps),
                                          ("backward", _spectral_filter_bwd_kernel, cfg.BLOCK_D_BWD,
                                           cfg.num_warps_bwd)):
            constexprs = dict(BLOCK_N=cfg.BLOCK_N, BLOCK_K=filter_block_k(cfg), BLOCK_D=block_d,
                              ACC=tl_acc_dtype(dtype), PRECISION=precision)
            signature = aot_signature(fn, constexprs, dtype, accumulators=("pw_ptr",))
            specs.append(dict(name=f"spectral_filter {label} {cfg.BLOCK_N}x{filter_block_k(cfg)}x{block_d} w{warps}",
                              fn=fn, signature=signature, constexprs=constexprs, num_warps=warps,
                              block_n=cfg.BLOCK_N))
    return specs
