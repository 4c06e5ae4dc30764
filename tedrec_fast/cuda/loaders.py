"""The loaders of the CUDA C++ kernels, and which one runs a launch.

* ``extension``: ``tedrec_fast._C``, built ahead of time by ``setup.py``; CUDA tensors.
* ``nvrtc``: ``csrc/`` compiled on first use with NVRTC through CuPy, cached on disk; CUDA tensors.
* ``emulator``: the same kernels compiled for the CPU (tests only, never picked by ``"auto"``); CPU
  tensors, when ``TEDREC_FAST_CUDA_EMULATE=1``.

Every loader launches by kernel name with the arguments of its signature registered in :mod:`tedrec_fast.cuda.abi`
on the current torch stream, straight on the tensors' memory (no copies). The two that compile at run time
also load variants of the kernels, built with macros defined (``NvrtcLoader({"TEDREC_ROWS": 8})``: the
tuning sweep's, bench/tune_spectral_fusion.py); :data:`LOADERS` hold the kernels as written.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Mapping, Sequence
from types import ModuleType

import torch

from tedrec_fast.cuda.abi import pack_args

__all__ = ["Loader", "LOADERS", "loader_for", "require_loader", "loaders_report", "emulation_enabled"]

Dim3 = tuple[int, int, int]


def emulation_enabled() -> bool:
    """Whether ``TEDREC_FAST_CUDA_EMULATE=1`` lets the ``cuda`` backend run on CPU tensors (tests)."""
    return os.environ.get("TEDREC_FAST_CUDA_EMULATE") == "1"


class Loader:
    """One way of getting the kernels of ``csrc/`` onto a device."""

    name: str = ""
    device_type: str = "cuda"

    def unavailable(self) -> str | None:
        """Why this loader cannot run here, or ``None``."""
        raise NotImplementedError

    def launch(self, kernel: str, grid: Dim3, block: Dim3, smem: int, args: Sequence[int | float],
               device: torch.device) -> None:
        """Launch ``kernel`` on the current stream of ``device``."""
        raise NotImplementedError


class ExtensionLoader(Loader):
    """``tedrec_fast._C``, compiled by ``setup.py`` (``TEDREC_FAST_BUILD_CUDA=1`` or auto-detected)."""

    name = "extension"

    @staticmethod
    @functools.cache
    def _import() -> ModuleType | str:
        """The extension module, or why it cannot be imported (tried once per process: dispatch asks per call)."""
        try:
            return importlib.import_module("tedrec_fast._C")
        except ImportError as exc:
            return (f"tedrec_fast._C is not built ({exc}); reinstall with a CUDA toolkit, a CUDA build of torch "
                    "and TEDREC_FAST_BUILD_CUDA=1")

    def _module(self) -> ModuleType:
        module = self._import()
        if isinstance(module, str):
            raise RuntimeError(module)
        return module

    def unavailable(self) -> str | None:
        module = self._import()
        if isinstance(module, str):
            return module
        if not torch.cuda.is_available():
            return "no CUDA device"
        return None

    def launch(self, kernel, grid, block, smem, args, device):
        packed, offsets = pack_args(kernel, args)
        stream = torch.cuda.current_stream(device).cuda_stream
        with torch.cuda.device(device):
            self._module().launch(kernel, grid, block, smem, stream, packed, offsets)


class _CompilingLoader(Loader):
    """A loader that compiles ``csrc/`` itself, so it can define macros first (a variant of the kernels)."""

    def __init__(self, defines: Mapping[str, int] | None = None) -> None:
        #: ``(name, value)`` pairs, sorted: part of the compile-cache key
        self.defines: tuple[tuple[str, int], ...] = tuple(sorted((defines or {}).items()))


class NvrtcLoader(_CompilingLoader):
    """``csrc/`` compiled at run time with NVRTC through CuPy (extras ``cuda12`` / ``cuda13``)."""

    name = "nvrtc"

    def unavailable(self) -> str | None:
        from tedrec_fast.cuda.nvrtc import nvrtc_unavailable

        return nvrtc_unavailable()

    def launch(self, kernel, grid, block, smem, args, device):
        from tedrec_fast.cuda.nvrtc import load_module

        stream = torch.cuda.current_stream(device).cuda_stream
        load_module(device, self.defines).launch(kernel, grid, block, smem, stream, args)


class EmulatorLoader(_CompilingLoader):
    """The kernels compiled by the host C++ compiler and run on CPU threads: proves their logic in CI."""

    name = "emulator"
    device_type = "cpu"

    def unavailable(self) -> str | None:
        if not emulation_enabled():
            return "TEDREC_FAST_CUDA_EMULATE=1 is not set (the CPU emulator is for tests)"
        from tedrec_fast.cuda.emulator import emulator_unavailable

        return emulator_unavailable()

    def launch(self, kernel, grid, block, smem, args, device):
        from tedrec_fast.cuda.emulator import load_emulator

        load_emulator(self.defines).launch(kernel, grid, block, smem, *pack_args(kernel, args))


#: in order of preference for each device type
LOADERS: tuple[Loader, ...] = (ExtensionLoader(), NvrtcLoader(), EmulatorLoader())


@torch.compiler.assume_constant_result
def _loader_index(device_type: str) -> int | str:
    """Index in :data:`LOADERS` of the first available loader for ``device_type``, or why there is none.

    A constant for ``torch.compile``: it is evaluated once while tracing (it probes files and imports)."""
    reasons = []
    for index, loader in enumerate(LOADERS):
        if loader.device_type != device_type:
            continue
        reason = loader.unavailable()
        if reason is None:
            return index
        reasons.append(f"{loader.name}: {reason}")
    return "; ".join(reasons) or f"no CUDA C++ loader runs on {device_type} tensors"


def loader_for(device: torch.device) -> Loader | str:
    """The first available loader for tensors on ``device``, or why there is none."""
    found = _loader_index(device.type)
    return found if isinstance(found, str) else LOADERS[found]


def require_loader(device: torch.device) -> Loader:
    """The loader for ``device``; ``RuntimeError`` with every loader's reason if there is none."""
    loader = loader_for(device)
    if isinstance(loader, str):
        raise RuntimeError(f"the CUDA C++ kernels cannot run on {device}: {loader}")
    return loader


def loaders_report() -> list[dict[str, object]]:
    """``[{"name", "device_type", "available", "reason"}, ...]`` for every loader, in preference order."""
    report = []
    for loader in LOADERS:
        reason = loader.unavailable()
        report.append({"name": loader.name, "device_type": loader.device_type, "available": reason is None,
                       "reason": reason})
    return report
