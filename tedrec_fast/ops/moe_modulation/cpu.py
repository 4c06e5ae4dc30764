"""The C++ core of the MoE modulation on the CPU (``moe_cpu.cpp``).

Built and loaded by :mod:`tedrec_fast.ops.cpu_build`. Without a compiler, :func:`cpu_unavailable` says why and
the op uses its torch backend.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from tedrec_fast.ops import cpu_build
from tedrec_fast.ops.cpu_build import SUFFIX, pointers

__all__ = ["cpu_unavailable", "load_library", "forward", "backward", "dropped_mask_cpp"]

SOURCE = Path(__file__).with_name("moe_cpu.cpp")


def cpu_unavailable() -> str | None:
    """Why the C++ core cannot run here (no compiler, or a failed build), or ``None``."""
    return cpu_build.unavailable(SOURCE)


def _declare(lib: ctypes.CDLL) -> None:
    ptr, i64, i32, u32, u64, f64 = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64,
                                    ctypes.c_double)
    for suffix in SUFFIX.values():
        getattr(lib, f"moe_forward_{suffix}").argtypes = [i64, i64, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, f64, u32,
                                                          u64, ptr, i32]
        getattr(lib, f"moe_backward_{suffix}").argtypes = [i64, i64, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, f64,
                                                           u32, u64, ptr, ptr, ptr, ptr, i32]
    lib.moe_dropped_mask.argtypes = [i64, i32, i32, u32, u64, ptr]


def load_library() -> ctypes.CDLL:
    """The loaded library; raises ``RuntimeError`` saying why when it cannot be built."""
    return cpu_build.load(SOURCE, _declare)


def forward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
            scale: float, thresh: int, seed: int) -> torch.Tensor:
    """``out (R, H)``; ``index (R,)`` int64, ``xu (U, D)``, ``gates (R, E)``, ``P (U, E, H)``, ``WT (E, D, H)``,
    all contiguous CPU tensors of one dtype (float32 or float64)."""
    (R, E), (U, D), (_, _, H) = gates.shape, xu.shape, WT.shape
    out = torch.empty(R, H, dtype=gates.dtype)
    getattr(load_library(), f"moe_forward_{SUFFIX[gates.dtype]}")(
        R, U, E, D, H, *pointers(index, xu, gates, P, WT), scale, thresh, seed, out.data_ptr(), torch.get_num_threads())
    return out


def backward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
             scale: float, thresh: int, seed: int, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(grad_gates, grad_P, grad_WT)`` of :func:`forward` for ``grad_out (R, H)``."""
    (R, E), (U, _, _), (_, D, H) = gates.shape, P.shape, WT.shape
    grads = torch.empty_like(gates), torch.empty_like(P), torch.empty_like(WT)
    getattr(load_library(), f"moe_backward_{SUFFIX[gates.dtype]}")(
        R, U, E, D, H, *pointers(index, xu, gates, P, WT), scale, thresh, seed, *pointers(grad_out, *grads),
        torch.get_num_threads())
    return grads


def dropped_mask_cpp(rows: int, n_experts: int, dim: int, thresh: int, seed: int) -> torch.Tensor:
    """The C++ core's dropped coordinates of flat positions ``0 .. rows - 1``, boolean ``(rows, E, D)`` (tests)."""
    mask = torch.empty(rows, n_experts, dim, dtype=torch.uint8)
    load_library().moe_dropped_mask(rows, n_experts, dim, thresh, seed, mask.data_ptr())
    return mask.bool()
