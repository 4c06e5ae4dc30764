"""The C++ core of the MoE modulation on the CPU (``moe_cpu.cpp``): built with the host compiler at first use.

The shared library is compiled with ``-O3 -march=native -fopenmp`` once per source, compiler and CPU (its
instruction-set flags are part of the cache key) into :func:`tedrec_fast.paths.cache_dir` (``moe_cpu``,
under ``~/.cache/tedrec_fast`` or ``$TEDREC_FAST_CACHE_DIR``) and loaded with ctypes (which releases the GIL).
Without a compiler, :func:`cpu_unavailable` says why and the op uses its torch backend.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import shlex
import subprocess
from pathlib import Path

import torch

from tedrec_fast.cuda.emulator import _compiler
from tedrec_fast.cuda.sources import cache_key
from tedrec_fast.paths import cache_dir
from tedrec_fast.safe_files import atomic_file

__all__ = ["cpu_unavailable", "load_library", "forward", "backward", "dropped_mask_cpp"]

SOURCE = Path(__file__).with_name("moe_cpu.cpp")
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


@functools.cache
def _build() -> Path | str:
    """The compiled library's path, or why it cannot be built."""
    cxx = _compiler()
    if isinstance(cxx, str):
        return cxx
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = cache_key(SOURCE.read_text(encoding="utf-8"), (*cxx, *_FLAGS), platform.machine() + _cpu_flags(), version)
    target = cache_dir("moe_cpu") / f"moe_cpu-{key}.so"
    if target.exists():
        return target
    command = [*cxx, *_FLAGS, "-o", "<tmp>", str(SOURCE)]
    try:
        with atomic_file(target, "cache") as tmp:
            command[command.index("-o") + 1] = str(tmp)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError((result.stdout + result.stderr)[:400])
    except RuntimeError as err:
        return f"compiling {SOURCE.name} failed ({shlex.join(command)}): {err}"
    return target


def cpu_unavailable() -> str | None:
    """Why the C++ core cannot run here (no compiler, or a failed build), or ``None``."""
    built = _build()
    return built if isinstance(built, str) else None


@functools.cache
def load_library() -> ctypes.CDLL:
    """The loaded library; raises ``RuntimeError`` saying why when it cannot be built."""
    built = _build()
    if isinstance(built, str):
        raise RuntimeError(f"the MoE modulation C++ core cannot be built: {built}")
    lib = ctypes.CDLL(str(built))
    ptr, i64, i32, u32, u64, f64 = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64,
                                    ctypes.c_double)
    for suffix in _SUFFIX.values():
        getattr(lib, f"moe_forward_{suffix}").argtypes = [i64, i64, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, f64, u32,
                                                          u64, ptr, i32]
        getattr(lib, f"moe_backward_{suffix}").argtypes = [i64, i64, i32, i32, i32, ptr, ptr, ptr, ptr, ptr, f64,
                                                           u32, u64, ptr, ptr, ptr, ptr, i32]
    lib.moe_dropped_mask.argtypes = [i64, i32, i32, u32, u64, ptr]
    return lib


def _ptrs(*tensors: torch.Tensor) -> list[int]:
    return [t.data_ptr() for t in tensors]


def forward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
            scale: float, thresh: int, seed: int) -> torch.Tensor:
    """``out (R, H)``; ``index (R,)`` int64, ``xu (U, D)``, ``gates (R, E)``, ``P (U, E, H)``, ``WT (E, D, H)``,
    all contiguous CPU tensors of one dtype (float32 or float64)."""
    (R, E), (U, D), (_, _, H) = gates.shape, xu.shape, WT.shape
    out = torch.empty(R, H, dtype=gates.dtype)
    getattr(load_library(), f"moe_forward_{_SUFFIX[gates.dtype]}")(
        R, U, E, D, H, *_ptrs(index, xu, gates, P, WT), scale, thresh, seed, out.data_ptr(), torch.get_num_threads())
    return out


def backward(index: torch.Tensor, xu: torch.Tensor, gates: torch.Tensor, P: torch.Tensor, WT: torch.Tensor,
             scale: float, thresh: int, seed: int, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(grad_gates, grad_P, grad_WT)`` of :func:`forward` for ``grad_out (R, H)``."""
    (R, E), (U, _, _), (_, D, H) = gates.shape, P.shape, WT.shape
    grads = torch.empty_like(gates), torch.empty_like(P), torch.empty_like(WT)
    getattr(load_library(), f"moe_backward_{_SUFFIX[gates.dtype]}")(
        R, U, E, D, H, *_ptrs(index, xu, gates, P, WT), scale, thresh, seed, *_ptrs(grad_out, *grads),
        torch.get_num_threads())
    return grads


def dropped_mask_cpp(rows: int, n_experts: int, dim: int, thresh: int, seed: int) -> torch.Tensor:
    """The C++ core's dropped coordinates of flat positions ``0 .. rows - 1``, boolean ``(rows, E, D)`` (tests)."""
    mask = torch.empty(rows, n_experts, dim, dtype=torch.uint8)
    load_library().moe_dropped_mask(rows, n_experts, dim, thresh, seed, mask.data_ptr())
    return mask.bool()
