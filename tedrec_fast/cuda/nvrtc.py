"""Run-time loader of the CUDA C++ kernels: ``csrc/`` compiled with NVRTC through CuPy, cached on disk.

The sources need no header, so :func:`tedrec_fast.cuda.sources.assemble` gives NVRTC one text. It is
compiled straight to a cubin for the device's architecture (no PTX, so no JIT by the driver, and a cubin
from a newer NVRTC of the same CUDA major version loads on an older driver), written once to
``cache_dir("nvrtc")/<key>.cubin`` under a key that covers source, options, target and compiler version,
and loaded with ``cupy.RawModule``. A variant of the kernels (a tuning sweep's, e.g. ``TEDREC_ROWS`` 8) is
the same source with ``#define`` lines in front: another text, so another cache key. Launches go on a
stream given by its handle (torch's current stream), with arguments converted by the parameter kinds of
their registered signatures (:mod:`tedrec_fast.cuda.abi`).

Compiling needs only CuPy and the NVRTC library (wheel ``nvidia-cuda-nvrtc``), no GPU: the tests
compile the real source on CPU machines. Loading and launching need a CUDA device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tedrec_fast.cuda.abi import signature
from tedrec_fast.cuda.sources import assemble, cache_key
from tedrec_fast.paths import cache_dir
from tedrec_fast.safe_files import atomic_write_bytes

__all__ = [
    "NvrtcModule",
    "compile_cubin",
    "compile_options",
    "cached_cubin",
    "compiler_unavailable",
    "define_lines",
    "kernel_args",
    "load_module",
    "nvrtc_unavailable",
    "nvrtc_version",
    "target_arch",
]

Dim3 = tuple[int, int, int]

#: the translation unit NVRTC compiles
ENTRY = "kernels.cu"
#: dynamic shared memory a kernel may use without opting in (cudaFuncAttributeMaxDynamicSharedMemorySize)
DEFAULT_MAX_DYNAMIC_SMEM = 48 * 1024

_SCALAR_TYPES = {"ptr": np.uint64, "i32": np.int32, "i64": np.int64, "f32": np.float32}


def _cuda12() -> bool:
    return (torch.version.cuda or "").startswith("12.")


def _install_hint() -> str:
    if torch.version.cuda is None:
        return 'pip install "tedrec_fast[cuda13]" (or [cuda12]) beside a CUDA build of torch'
    extra = "cuda12" if _cuda12() else "cuda13"
    return f'pip install "tedrec_fast[{extra}]" (CuPy for the CUDA {torch.version.cuda} build of torch)'


def compiler_unavailable() -> str | None:
    """Why NVRTC cannot compile here (CuPy or the NVRTC library missing), else ``None``. Needs no GPU."""
    try:
        from cupy_backends.cuda.libs import nvrtc
    except Exception as exc:  # ImportError, or a broken CuPy install failing in its own way
        return f"CuPy is not installed ({exc}); {_install_hint()}"
    try:
        nvrtc.getVersion()
    except Exception as exc:  # cuda.pathfinder's DynamicLibNotFoundError (a RuntimeError), OSError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        wheel = "nvidia-cuda-nvrtc-cu12" if _cuda12() else "nvidia-cuda-nvrtc"
        return f"the NVRTC library cannot be loaded ({reason}); pip install {wheel}"
    return None


@functools.cache
def nvrtc_unavailable() -> str | None:
    """Why NVRTC through CuPy cannot run the kernels here, else ``None``.

    Never raises. Asks torch for a device before CuPy touches CUDA, so a machine without a GPU stays
    uninitialised; the answer is computed once per process.
    """
    try:
        import cupy
    except Exception as exc:
        return f"CuPy is not installed ({exc}); {_install_hint()}"
    try:
        if not hasattr(cupy.cuda.Stream, "from_external"):
            return f"CuPy {cupy.__version__} is too old (14 or newer launches on torch's streams); {_install_hint()}"
        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # e.g. a driver too old for this CuPy build
        return f"CuPy cannot use the GPU: {exc}"
    return compiler_unavailable()


def nvrtc_version() -> str:
    """The NVRTC library's version, e.g. ``"nvrtc 13.5"``; raises if CuPy or the library is missing."""
    from cupy_backends.cuda.libs import nvrtc

    major, minor = nvrtc.getVersion()
    return f"nvrtc {major}.{minor}"


def compile_options(arch: str) -> tuple[str, ...]:
    """NVRTC options for a cubin of ``arch`` (``"sm_90"``).

    No ``--use_fast_math`` (nor ``--ftz``/``--prec-div``/``--prec-sqrt`` relaxations): the kernels'
    accuracy against the fp32 reference depends on exact ``expf``, ``sqrtf`` and ``sincospif``.
    """
    return ("--std=c++17", f"--gpu-architecture={arch}", "-default-device")


def target_arch(capability: tuple[int, int], supported: Sequence[int]) -> str:
    """The cubin target for a device of compute ``capability`` among NVRTC's ``supported`` ones (``90``, ...).

    The device's own architecture when NVRTC knows it, else the newest known one of the same major
    version below it (a cubin for X.y runs on X.z for z >= y). ``RuntimeError`` when there is none.
    """
    major, minor = capability
    own = 10 * major + minor
    compatible = [sm for sm in supported if sm // 10 == major and sm <= own]
    if not compatible:
        raise RuntimeError(f"NVRTC cannot target compute capability {major}.{minor} (it supports sm_"
                           f"{', sm_'.join(map(str, supported))}); install a newer nvidia-cuda-nvrtc")
    return f"sm_{max(compatible)}"


def compile_cubin(source: str, arch: str, name: str = ENTRY) -> bytes:
    """``source`` compiled by NVRTC to a cubin for ``arch``; ``RuntimeError`` with the program log on failure."""
    from cupy_backends.cuda.libs import nvrtc

    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, list(compile_options(arch)))
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(program).strip()
            raise RuntimeError(f"NVRTC failed to compile {name} for {arch} ({exc}):\n{log}") from None
        return nvrtc.getCUBIN(program)
    finally:
        nvrtc.destroyProgram(program)


def cached_cubin(source: str, arch: str) -> Path:
    """The cubin of ``source`` for ``arch`` in the disk cache, compiled and written (atomically) if missing."""
    key = cache_key(source, compile_options(arch), arch, nvrtc_version())
    path = cache_dir("nvrtc") / f"{key}.cubin"
    if not path.is_file():
        atomic_write_bytes(path, compile_cubin(source, arch), "cache")
    return path


def kernel_args(kernel: str, values: Sequence[int | float]) -> tuple[np.generic, ...]:
    """``values`` as the typed scalars CuPy passes by value: ``ptr`` -> uint64, ``i32`` -> int32, ...

    Raises ``KeyError`` for an unknown kernel, ``ValueError`` for a wrong number of values and
    ``OverflowError`` for a value out of its type's range.
    """
    kinds = signature(kernel)
    if len(values) != len(kinds):
        raise ValueError(f"{kernel} takes {len(kinds)} arguments ({', '.join(kinds)}), got {len(values)}")
    return tuple(_SCALAR_TYPES[kind](value) for kind, value in zip(kinds, values))


class _StreamHandle:
    """A raw ``cudaStream_t`` behind the CUDA stream protocol, for ``cupy.cuda.Stream.from_external``."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


class NvrtcModule:
    """The kernels of one cubin, loaded on one device."""

    def __init__(self, path: Path, device_index: int) -> None:
        import cupy

        self.path = path
        self.device_index = device_index
        self._cupy = cupy
        self._device = cupy.cuda.Device(device_index)
        with self._device:
            self._module = cupy.RawModule(path=str(path))
        self._functions: dict[str, Any] = {}
        self._smem_limits: dict[str, int] = {}

    def _function(self, kernel: str) -> Any:
        function = self._functions.get(kernel)
        if function is None:
            with self._device:
                function = self._functions[kernel] = self._module.get_function(kernel)
        return function

    def launch(self, kernel: str, grid: Dim3, block: Dim3, smem: int, stream: int,
               args: Sequence[int | float]) -> None:
        """Launch ``kernel`` on the stream with handle ``stream`` (e.g. ``torch.cuda.current_stream().cuda_stream``).

        ``args`` are converted by :func:`kernel_args`; more than 48 KiB of dynamic shared memory is opted
        into once per kernel (raised again only for a larger launch).
        """
        values = kernel_args(kernel, args)
        function = self._function(kernel)
        with self._device, self._cupy.cuda.Stream.from_external(_StreamHandle(stream)):
            if smem > max(DEFAULT_MAX_DYNAMIC_SMEM, self._smem_limits.get(kernel, 0)):
                function.max_dynamic_shared_size_bytes = smem
                self._smem_limits[kernel] = smem
            function(tuple(grid), tuple(block), values, shared_mem=smem)


_MODULES: dict[tuple[int, str], NvrtcModule] = {}


def define_lines(defines: tuple[tuple[str, int], ...]) -> str:
    """``#define NAME VALUE`` lines for each ``(name, value)``, to put in front of the sources."""
    return "".join(f"#define {name} {value}\n" for name, value in defines)


@functools.cache
def _device_cubin(index: int, defines: tuple[tuple[str, int], ...] = ()) -> Path:
    """The cached cubin of ``csrc/`` (with ``defines``) for device ``index``; sources are read and hashed once
    per process, device and defines."""
    from cupy_backends.cuda.libs import nvrtc

    arch = target_arch(torch.cuda.get_device_capability(index), nvrtc.getSupportedArchs())
    return cached_cubin(define_lines(defines) + assemble(ENTRY), arch)


def load_module(device: torch.device, defines: tuple[tuple[str, int], ...] = ()) -> NvrtcModule:
    """The kernels of ``csrc/`` loaded on CUDA ``device``: compiled on first use, then from the disk cache.

    ``defines`` (``(name, value)`` pairs) are macros defined before the sources, for variants of the kernels.
    Memoised per (device index, cache key), so calling it for every launch costs two dictionary lookups.
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    path = _device_cubin(index, defines)
    module = _MODULES.get((index, path.stem))
    if module is None:
        module = _MODULES[(index, path.stem)] = NvrtcModule(path, index)
    return module
