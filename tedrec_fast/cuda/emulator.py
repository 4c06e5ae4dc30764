"""The CPU emulator of the CUDA C++ kernels: ``csrc/`` compiled by the host C++ compiler, for the tests.

``csrc/emulate/emulate.cpp`` includes ``cuda_emulation.h`` (CUDA's built-ins on OS threads) and then
``kernels.cu`` (every op's kernels) itself, so the tests run the very kernels the GPU runs: their indexing, barriers
and warp shuffles, on CPU tensors. The shared library is compiled once per source, compiler and set of macros
defined on its command line (variants of the kernels, e.g. ``TEDREC_ROWS`` 8), and cached under
:func:`tedrec_fast.paths.cache_dir` (``emulator``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shlex
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tedrec_fast.cuda.abi import KINDS
from tedrec_fast.cuda.sources import cache_key, csrc_dir, source_files
from tedrec_fast.paths import cache_dir
from tedrec_fast.safe_files import atomic_file

__all__ = ["Emulator", "emulator_unavailable", "load_emulator"]

_FLAGS = ("-O2", "-std=c++20", "-shared", "-fPIC", "-pthread")


def _compiler() -> list[str] | str:
    """The C++ compiler command (``$CXX``, else ``g++``, else ``c++``), or why there is none."""
    cxx = os.environ.get("CXX")
    if cxx:
        command = shlex.split(cxx)
        return command if command and shutil.which(command[0]) else f"$CXX={cxx!r} is not an executable"
    for name in ("g++", "c++"):
        if shutil.which(name):
            return [name]
    return "no C++ compiler found ($CXX is unset and neither g++ nor c++ is on PATH)"


def emulator_unavailable() -> str | None:
    """Why the emulator cannot be built here, or ``None``."""
    cxx = _compiler()
    return cxx if isinstance(cxx, str) else None


def _flags(defines: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """The compiler flags: :data:`_FLAGS` and ``-DNAME=VALUE`` for each define."""
    return (*_FLAGS, *(f"-D{name}={value}" for name, value in defines))


def _library_path(cxx: list[str], flags: tuple[str, ...]) -> Path:
    """Where the library built from the current sources by ``cxx`` with ``flags`` lives in the cache."""
    root = csrc_dir()
    source = "".join(f"{p.relative_to(root)}\0{p.read_text(encoding='utf-8')}\0" for p in source_files(root))
    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = cache_key(source, (*cxx, *flags), platform.machine(), version)
    return cache_dir("emulator") / f"emulate-{key}.so"


def _compile(cxx: list[str], flags: tuple[str, ...], target: Path) -> None:
    """Compile ``emulate.cpp`` with ``flags`` into ``target``, atomically (``safe_files.atomic_file``)."""
    with atomic_file(target, "cache") as tmp:
        command = [*cxx, *flags, "-o", str(tmp), str(csrc_dir() / "emulate" / "emulate.cpp")]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"compiling the CUDA emulator failed ({shlex.join(command)}):\n"
                               f"{result.stdout}{result.stderr}")


class Emulator:
    """The compiled emulator: launches the kernels of ``csrc/`` by name on host memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))  # ctypes releases the GIL during each call
        lib.tedrec_emulate_launch.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
                                              ctypes.POINTER(ctypes.c_uint), ctypes.c_ulonglong,
                                              ctypes.POINTER(ctypes.c_void_p)]
        lib.tedrec_emulate_launch.restype = ctypes.c_int
        lib.tedrec_emulate_last_error.argtypes = []
        lib.tedrec_emulate_last_error.restype = ctypes.c_char_p
        lib.tedrec_emulate_signature.argtypes = [ctypes.c_char_p]
        lib.tedrec_emulate_signature.restype = ctypes.c_char_p
        lib.tedrec_emulate_kernel_count.argtypes = []
        lib.tedrec_emulate_kernel_count.restype = ctypes.c_int
        lib.tedrec_emulate_kernel_name.argtypes = [ctypes.c_int]
        lib.tedrec_emulate_kernel_name.restype = ctypes.c_char_p
        self._lib = lib

    def kernel_names(self) -> tuple[str, ...]:
        """Every kernel the emulator can launch."""
        lib = self._lib
        return tuple(lib.tedrec_emulate_kernel_name(i).decode() for i in range(lib.tedrec_emulate_kernel_count()))

    def signature(self, kernel: str) -> tuple[str, ...]:
        """The parameter kinds of ``kernel`` (ptr, i32, i64, f32), from its C++ types; ``KeyError`` if unknown."""
        sig = self._lib.tedrec_emulate_signature(kernel.encode())
        if sig is None:
            raise KeyError(kernel)
        return tuple(sig.decode().split(",")) if sig else ()

    def launch(self, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int], smem: int, packed: bytes,
               offsets: Sequence[int]) -> None:
        """Run ``kernel`` to completion with the arguments ``packed`` at ``offsets`` (see ``abi.pack_args``).

        Raises ``ValueError`` when ``offsets`` do not fit the kernel's signature and ``packed``, and
        ``RuntimeError`` for an unknown kernel or with the emulator's message when the launch fails.
        """
        try:
            kinds = self.signature(kernel)
        except KeyError:
            raise RuntimeError(f"CUDA emulator: unknown kernel '{kernel}'") from None
        sizes = [struct.calcsize(KINDS[k]) for k in kinds]
        if len(offsets) != len(kinds) or any(o < 0 or o + s > len(packed) for o, s in zip(offsets, sizes)):
            raise ValueError(f"{kernel} takes {len(kinds)} arguments ({', '.join(kinds)}); offsets {list(offsets)} "
                             f"do not fit them into {len(packed)} bytes")
        buffer = ctypes.create_string_buffer(packed, len(packed))
        base = ctypes.addressof(buffer)
        args = (ctypes.c_void_p * len(offsets))(*(base + o for o in offsets))
        dims = ctypes.c_uint * 3
        if self._lib.tedrec_emulate_launch(kernel.encode(), dims(*grid), dims(*block), smem, args) != 0:
            raise RuntimeError(f"CUDA emulator: {self._lib.tedrec_emulate_last_error().decode()}")


@functools.cache
def load_emulator(defines: tuple[tuple[str, int], ...] = ()) -> Emulator:
    """The emulator built from the current ``csrc/`` (compiled on first use, then from the cache), once per process
    and ``defines`` (``(name, value)`` pairs: macros defined on the command line, for variants of the kernels).

    Raises ``RuntimeError`` when it cannot be built here, with the compiler's output on a compile error.
    """
    cxx = _compiler()
    if isinstance(cxx, str):
        raise RuntimeError(f"the CUDA emulator cannot be built: {cxx}")
    flags = _flags(defines)
    target = _library_path(cxx, flags)
    if not target.exists():
        _compile(cxx, flags, target)
    return Emulator(target)
