"""The C++ core of the dropout op on the CPU (``dropout_cpu.cpp``).

Built and loaded by :mod:`tedrec_fast.ops.cpu_build`. Without a compiler, :func:`cpu_unavailable` says why and
the op uses its torch backend.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from tedrec_fast.ops import cpu_build
from tedrec_fast.ops.philox import threshold

__all__ = ["cpu_unavailable", "apply"]

SOURCE = Path(__file__).with_name("dropout_cpu.cpp")
#: below this many elements one thread does the work (a parallel region costs more than it saves)
SERIAL_ELEMENTS = 1 << 15


def cpu_unavailable() -> str | None:
    """Why the C++ core cannot run here (no compiler, or a failed build), or ``None``."""
    return cpu_build.unavailable(SOURCE)


def _declare(lib: ctypes.CDLL) -> None:
    for suffix in cpu_build.SUFFIX.values():
        getattr(lib, f"dropout_{suffix}").argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                                      ctypes.c_double, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int]


def apply(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``x`` (contiguous CPU float32/float64) with the elements that ``seed`` drops at rate ``p`` zeroed and the
    others scaled by ``1 / (1 - p)``: a new tensor."""
    y = torch.empty_like(x)
    threads = 1 if x.numel() < SERIAL_ELEMENTS else torch.get_num_threads()
    getattr(cpu_build.load(SOURCE, _declare), f"dropout_{cpu_build.SUFFIX[x.dtype]}")(
        x.numel(), x.data_ptr(), y.data_ptr(), 1.0 / (1.0 - p), threshold(p), seed, threads)
    return y
