"""The MoE-modulation core in Triton: forward and backward, dropout masks made in registers from Philox.

Semantics (:mod:`tedrec_fast.ops.moe_modulation.core`): ``out[r] = sum_k g[r, k] * scale * (P[u_r, k] -
((1 - m_{r,k}) * xu[u_r]) @ WT[k])``. Coordinate ``i`` of expert ``k`` at row ``r`` is dropped iff lane ``i % 4``
of ``tl.randint4x(seed, (r * E + k) * ceil(D / 4) + i // 4)`` is below ``thresh`` — the same masks as the C++
core and the torch twin (:mod:`tedrec_fast.ops.philox`). No mask is stored: every kernel that needs
one regenerates its tile.

* forward: one program per (row block, column block); the correction is a ``tl.dot`` of the dropped
  inputs with ``WT[k]`` (on a GPU the ``~p``-dense product runs on tensor cores at full width).
* backward, rows: one program per row block: ``dgates`` (``dt . P`` and ``xd . (W_k^T dt)``) and ``dP`` by
  atomic adds into the distinct items' rows.
* backward, weights: one program per (expert, D block, H block), looping over all rows: ``dWT[k] =
  -xd^T (g * scale * dt)``, deterministic (no atomics).

Launch configurations live in :data:`CONFIGS` / :func:`launch_config` (one place, for a per-GPU table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import triton
import triton.language as tl

from tedrec_fast.kernels.common import aot_signature, dot_precision, tl_acc_dtype
from tedrec_fast.kernels.targets import TARGETS, TargetConfigs, launch_arch

__all__ = ["CONFIGS", "MoEConfig", "launch_config", "compile_specs"]


@dataclass(frozen=True)
class MoEConfig:
    """Block sizes and warps of one MoE-modulation kernel."""

    BLOCK_R: int
    BLOCK_H: int
    BLOCK_D: int
    num_warps: int


_GPU_CONFIG = MoEConfig(BLOCK_R=64, BLOCK_H=64, BLOCK_D=32, num_warps=8)
_INTERPRETER_CONFIG = MoEConfig(BLOCK_R=16, BLOCK_H=16, BLOCK_D=16, num_warps=1)
KERNELS = ("forward", "backward_rows", "backward_weight")

#: kernel -> launch configuration per GPU target. Shared memory per block (fp32): forward/rows
#: ``4 * BLOCK_D * (BLOCK_R + BLOCK_H)`` bytes for the ``tl.dot`` operands, far below every target's limit, so
#: every target runs the same tiles (any shape: the kernels loop over rows, columns and input coordinates).
CONFIGS: TargetConfigs[str, MoEConfig] = TargetConfigs(
    "moe_modulation", {arch: dict.fromkeys(KERNELS, _GPU_CONFIG) for arch in TARGETS},
    why=lambda arch, kernel: f"no {kernel} configuration on sm_{arch}")


def launch_config(kernel: str, device: torch.device) -> dict[str, int]:
    """The launch configuration of ``kernel`` on ``device`` (16-wide blocks under the CPU interpreter)."""
    arch = launch_arch(device)
    cfg = _INTERPRETER_CONFIG if device.type != "cuda" or arch is None else CONFIGS.get(arch, kernel)
    return asdict(cfg)


@triton.jit
def _dropped(seed, rows, k, E, dd, QUADS, thresh):
    """Boolean ``(BLOCK_R, BLOCK_D)``: coordinates ``dd`` of expert ``k`` dropped at rows ``rows``."""
    counter = ((rows * E + k) * QUADS)[:, None] + (dd // 4)[None, :].to(tl.int64)
    r0, r1, r2, r3 = tl.randint4x(seed, counter)
    lane = (dd % 4)[None, :]
    value = tl.where(lane == 0, r0, tl.where(lane == 1, r1, tl.where(lane == 2, r2, r3)))
    return value < thresh.to(tl.uint32)


@triton.jit
def _dropped_inputs(xu_ptr, u, rows, rmask, k, E, D, d0, QUADS, seed, thresh, BLOCK_D: tl.constexpr,
                    ACC: tl.constexpr):
    """The dropped inputs ``(1 - m) * x`` ``(BLOCK_R, BLOCK_D)`` of columns ``d0 + [0, BLOCK_D)``, and the columns."""
    dd = d0 + tl.arange(0, BLOCK_D)
    dmask = dd < D
    both = rmask[:, None] & dmask[None, :]
    x = tl.load(xu_ptr + u[:, None] * D + dd[None, :], mask=both, other=0.0).to(ACC)
    drop = _dropped(seed, rows, k, E, dd, QUADS, thresh) & both
    return tl.where(drop, x, 0.0), dd, dmask


@triton.jit
def _moe_fwd_kernel(index_ptr, xu_ptr, gates_ptr, p_ptr, wt_ptr, out_ptr, R, E, D, H, QUADS, scale, seed, thresh,
                    HAS_DROPOUT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
                    ACC: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    hh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    rmask, hmask = rows < R, hh < H
    tile = rmask[:, None] & hmask[None, :]
    u = tl.load(index_ptr + rows, mask=rmask, other=0)
    acc = tl.zeros((BLOCK_R, BLOCK_H), ACC)
    for k in range(E):
        g = tl.load(gates_ptr + rows * E + k, mask=rmask, other=0.0).to(ACC) * scale
        term = tl.load(p_ptr + (u * E + k)[:, None] * H + hh[None, :], mask=tile, other=0.0).to(ACC)
        if HAS_DROPOUT:
            for d0 in range(0, D, BLOCK_D):
                xd, dd, dmask = _dropped_inputs(xu_ptr, u, rows, rmask, k, E, D, d0, QUADS, seed, thresh,
                                                BLOCK_D, ACC)
                w = tl.load(wt_ptr + (k * D + dd)[:, None].to(tl.int64) * H + hh[None, :],
                            mask=dmask[:, None] & hmask[None, :], other=0.0).to(ACC)
                term -= tl.dot(xd, w, input_precision=PRECISION, out_dtype=ACC)
        acc += g[:, None] * term
    tl.store(out_ptr + rows[:, None] * H + hh[None, :], acc.to(out_ptr.dtype.element_ty), mask=tile)


@triton.jit
def _moe_bwd_rows_kernel(index_ptr, xu_ptr, gates_ptr, p_ptr, wt_ptr, dout_ptr, dgates_ptr, dp_ptr, R, E, D, H,
                         QUADS, scale, seed, thresh, HAS_DROPOUT: tl.constexpr, BLOCK_R: tl.constexpr,
                         BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    u = tl.load(index_ptr + rows, mask=rmask, other=0)
    for k in range(E):
        g = tl.load(gates_ptr + rows * E + k, mask=rmask, other=0.0).to(ACC) * scale
        dot = tl.zeros((BLOCK_R,), ACC)
        for h0 in range(0, H, BLOCK_H):
            hh = h0 + tl.arange(0, BLOCK_H)
            tile = rmask[:, None] & (hh < H)[None, :]
            dt = tl.load(dout_ptr + rows[:, None] * H + hh[None, :], mask=tile, other=0.0).to(ACC)
            offs = (u * E + k)[:, None] * H + hh[None, :]
            p = tl.load(p_ptr + offs, mask=tile, other=0.0).to(ACC)
            dot += tl.sum(dt * p, axis=1)
            tl.atomic_add(dp_ptr + offs, (g[:, None] * dt).to(dp_ptr.dtype.element_ty), mask=tile)
        if HAS_DROPOUT:
            for d0 in range(0, D, BLOCK_D):
                xd, dd, dmask = _dropped_inputs(xu_ptr, u, rows, rmask, k, E, D, d0, QUADS, seed, thresh,
                                                BLOCK_D, ACC)
                wdt = tl.zeros((BLOCK_R, BLOCK_D), ACC)  # (W_k^T dt) at columns dd
                for h0 in range(0, H, BLOCK_H):
                    hh = h0 + tl.arange(0, BLOCK_H)
                    hmask = hh < H
                    dt = tl.load(dout_ptr + rows[:, None] * H + hh[None, :], mask=rmask[:, None] & hmask[None, :],
                                 other=0.0).to(ACC)
                    w = tl.load(wt_ptr + (k * D + dd)[:, None].to(tl.int64) * H + hh[None, :],
                                mask=dmask[:, None] & hmask[None, :], other=0.0).to(ACC)
                    wdt += tl.dot(dt, tl.trans(w), input_precision=PRECISION, out_dtype=ACC)
                dot -= tl.sum(xd * wdt, axis=1)
        tl.store(dgates_ptr + rows * E + k, (dot * scale).to(dgates_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _moe_bwd_weight_kernel(index_ptr, xu_ptr, gates_ptr, dout_ptr, dwt_ptr, R, E, D, H, QUADS, scale, seed, thresh,
                           BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr,
                           PRECISION: tl.constexpr):
    k = tl.program_id(0)
    d0 = tl.program_id(1) * BLOCK_D
    hh = tl.program_id(2) * BLOCK_H + tl.arange(0, BLOCK_H)
    hmask = hh < H
    acc = tl.zeros((BLOCK_D, BLOCK_H), ACC)
    for r0 in range(0, R, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        rmask = rows < R
        u = tl.load(index_ptr + rows, mask=rmask, other=0)
        xd, dd, dmask = _dropped_inputs(xu_ptr, u, rows, rmask, k, E, D, d0, QUADS, seed, thresh, BLOCK_D, ACC)
        g = tl.load(gates_ptr + rows * E + k, mask=rmask, other=0.0).to(ACC) * scale
        dt = tl.load(dout_ptr + rows[:, None] * H + hh[None, :], mask=rmask[:, None] & hmask[None, :],
                     other=0.0).to(ACC)
        acc += tl.dot(tl.trans(xd), g[:, None] * dt, input_precision=PRECISION, out_dtype=ACC)
    dd = d0 + tl.arange(0, BLOCK_D)
    tl.store(dwt_ptr + (k * D + dd)[:, None].to(tl.int64) * H + hh[None, :], (-acc).to(dwt_ptr.dtype.element_ty),
             mask=(dd < D)[:, None] & hmask[None, :])


def compile_specs(dtype: torch.dtype = torch.float32, precision: str | None = None,
                  block_n: int | None = None, *, arch: int = 90) -> list[dict]:
    """Everything ``triton.compile`` needs for each kernel at its :data:`CONFIGS` entry on ``sm_<arch>`` (see
    kernels/aot.py); ``block_n`` is accepted for the common interface and ignored (no sequence-length blocks)."""
    precision = precision or dot_precision(dtype)
    scalars = {"R": "i32", "E": "i32", "D": "i32", "H": "i32", "QUADS": "i32", "seed": "i64", "thresh": "i64",
               "scale": "fp64" if dtype == torch.float64 else "fp32", "index_ptr": "*i64"}
    specs = []
    for label, fn, extra in (("forward", _moe_fwd_kernel, {"HAS_DROPOUT": True}),
                             ("backward_rows", _moe_bwd_rows_kernel, {"HAS_DROPOUT": True}),
                             ("backward_weight", _moe_bwd_weight_kernel, {})):
        cfg = asdict(CONFIGS.get(arch, label))
        warps = cfg.pop("num_warps")
        constexprs = {**cfg, **extra, "ACC": tl_acc_dtype(dtype), "PRECISION": precision}
        signature = aot_signature(fn, constexprs, dtype, overrides=scalars)
        specs.append(dict(name=f"moe_modulation {label} {cfg['BLOCK_R']}x{cfg['BLOCK_H']}x{cfg['BLOCK_D']} w{warps}",
                          fn=fn, signature=signature, constexprs=constexprs, num_warps=warps))
    return specs
