"""Build and load the ops' C++ CPU cores (``moe_modulation/moe_cpu.cpp``, ``dropout/dropout_cpu.cpp``).

Each source is compiled with the host compiler (``$CXX``, else ``g++``/``c++``) and ``-O3 -march=native
-fopenmp`` at first use, once per source text (with the shared header ``philox.h``), compiler and CPU (its
instruction-set flags are part of the cache key), into :func:`tedrec_fast.paths.cache_dir` (``cpu``, under
``~/.cache/tedrec_fast`` or ``$TEDREC_FAST_CACHE_DIR``), and loaded with ctypes (which releases the GIL). Without
a compiler, :func:`unavailable` says why and the ops use their torch backends.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch

from tedrec_fast.cuda.emulator import _compiler
from tedrec_fast.cuda.sources import cache_key
from tedrec_fast.paths import cache_dir
from tedrec_fast.safe_files import atomic_file

__all__ = ["unavailable", "load", "pointers", "SUFFIX"]

_FLAGS = ("-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
_HEADERS = (Path(__file__).with_name("philox.h"),)
#: the suffix of each core's entry points per dtype (``moe_forward_f32``, ``dropout_f64``, ...)
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


@functools.cache
def _build(source: Path) -> Path | str:
    """The compiled library of ``source``, or why it cannot be built."""
    cxx = _compiler()
    if isinstance(cxx, str):
        return cxx
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, check=False).stdout
    text = "\0".join(path.read_text(encoding="utf-8") for path in (source, *_HEADERS))
    key = cache_key(text, (*cxx, *_FLAGS), platform.machine() + _cpu_flags(), version)
    target = cache_dir("cpu") / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    command = [*cxx, *_FLAGS, "-o", "<tmp>", str(source)]
    try:
        with atomic_file(target, "cache") as tmp:
            command[command.index("-o") + 1] = str(tmp)
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError((result.stdout + result.stderr)[:400])
    except RuntimeError as err:
        return f"compiling {source.name} failed ({shlex.join(command)}): {err}"
    return target


def unavailable(source: Path) -> str | None:
    """Why the core ``source`` cannot run here (no compiler, or a failed build), or ``None``."""
    built = _build(source)
    return built if isinstance(built, str) else None


@functools.cache
def load(source: Path, declare: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL:
    """The loaded library of ``source`` (``declare`` sets its functions' ``argtypes``, once); raises
    ``RuntimeError`` saying why when it cannot be built."""
    built = _build(source)
    if isinstance(built, str):
        raise RuntimeError(f"the C++ core {source.name} cannot be built: {built}")
    lib = ctypes.CDLL(str(built))
    declare(lib)
    return lib


def pointers(*tensors: torch.Tensor) -> list[int]:
    """The data pointers of ``tensors``, for a ctypes call."""
    return [t.data_ptr() for t in tensors]
