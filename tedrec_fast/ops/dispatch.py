"""One dispatcher for every op: each backend states what it supports and, if not, why.

Modelled on xformers' operator registry: an op lists its backends in priority order; ``"auto"``
picks the first one that is available on this machine, accepts the call and is allowed for
automatic selection; an explicitly named backend that cannot run the call raises with its reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tedrec_fast.cuda.loaders import loader_for
from tedrec_fast.kernels.targets import TARGETS, device_target, unsupported_capability

__all__ = [
    "Backend",
    "TorchBackend",
    "KernelBackend",
    "TritonBackend",
    "CudaBackend",
    "CppBackend",
    "Problem",
    "choose_backend",
    "triton_unavailable_reason",
    "target_why_not",
]

#: ``(problem, arch) -> reason or None``: why no launch configuration of a backend fits ``problem`` on
#: ``sm_<arch>``; and ``arch -> text``: what a backend runs on ``sm_<arch>`` (e.g. ``"n <= 128"``)
Fits = Callable[["Problem", int], "str | None"]
Coverage = Callable[[int], str]


@dataclass(frozen=True)
class Problem:
    """What a backend needs to know to accept or refuse a call."""

    device: torch.device
    dtype: torch.dtype
    sizes: tuple[tuple[str, int], ...] = ()

    def size(self, name: str) -> int:
        return dict(self.sizes)[name]


class Backend:
    """A backend of one op. Subclasses set ``name`` and override :meth:`why_not`."""

    name: str = ""
    #: whether ``backend="auto"`` may pick this backend (the Triton interpreter is never picked)
    auto: bool = True

    def unavailable(self) -> str | None:
        """Why this backend cannot run on this machine at all, or ``None`` if it can."""
        return None

    def why_not(self, problem: Problem) -> str | None:
        """Why this backend cannot run ``problem``, or ``None`` if it can."""
        return self.unavailable()

    def auto_why_not(self, problem: Problem) -> str | None:
        """Why ``backend="auto"`` does not pick this backend for ``problem``."""
        return self.why_not(problem)

    def detail(self) -> str | None:
        """Extra facts for :func:`tedrec_fast.backends` (e.g. which loader is active), or ``None``."""
        return None


def triton_unavailable_reason() -> str | None:
    """Why Triton kernels cannot run here: missing package, or no GPU and no interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:  # pragma: no cover - triton is installed on Linux
        return f"triton is not importable ({exc})"
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return "no CUDA device, and TRITON_INTERPRET=1 is not set for the Triton interpreter"
    return None


class TorchBackend(Backend):
    """An op's readable torch reference: runs everywhere, any size."""

    name = "torch"


def target_why_not(problem: Problem, fits: Fits | None) -> str | None:
    """On a CUDA device: why the kernels cannot run ``problem`` on its GPU target (not in the table of
    :mod:`tedrec_fast.kernels.targets`, or no launch configuration ``fits`` there), else ``None``."""
    if problem.device.type != "cuda":
        return None
    found = device_target(problem.device)
    if found is None:
        names = ", ".join(t.name for t in TARGETS.values())
        return (f"compute capability {unsupported_capability(problem.device)} is not a supported GPU target "
                f"({names})")
    return None if fits is None else fits(problem, found.arch)


class KernelBackend(Backend):
    """Fused kernels with a set of supported dtypes and size ``limits`` (problem size name -> largest value);
    ``fits`` checks a problem against the launch configurations of the device's GPU target, and
    ``coverage`` says per target what they run (for :func:`tedrec_fast.backends`)."""

    def __init__(self, dtypes: tuple[torch.dtype, ...], limits: dict[str, int], fits: Fits | None = None,
                 coverage: Coverage | None = None) -> None:
        self.dtypes = dtypes
        self.limits = limits
        self.fits = fits
        self.coverage = coverage

    def coverage_detail(self) -> str | None:
        """What the kernels run on this machine's GPU target, or on each target when there is no GPU."""
        if self.coverage is None:
            return None
        if torch.cuda.is_available():
            found = device_target(torch.device("cuda"))
            if found is None:
                return None
            return f"on {found.name} (this GPU): {self.coverage(found.arch)}"
        return "per GPU target: " + "; ".join(f"{t.name} {self.coverage(t.arch)}" for t in TARGETS.values())

    def dtype_and_size_why_not(self, problem: Problem) -> str | None:
        """Why ``problem``'s dtype or sizes are outside this backend's support, or ``None``."""
        if problem.dtype not in self.dtypes:
            names = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
            return f"dtype {problem.dtype} is not supported ({names})"
        for size, limit in self.limits.items():
            if problem.size(size) > limit:
                return f"{size}={problem.size(size)} exceeds {limit}"
        return None


class TritonBackend(KernelBackend):
    """Fused Triton kernels: CUDA devices, or CPU tensors under ``TRITON_INTERPRET=1`` (never picked by auto)."""

    name = "triton"

    def unavailable(self) -> str | None:
        return triton_unavailable_reason()

    def why_not(self, problem: Problem) -> str | None:
        reason = self.unavailable()
        if reason is not None:
            return reason
        if problem.device.type not in ("cuda", "cpu"):
            return f"device {problem.device.type} is not supported (CUDA, or CPU under the interpreter)"
        if problem.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "CPU tensors need TRITON_INTERPRET=1 (the Triton interpreter)"
        return self.dtype_and_size_why_not(problem) or target_why_not(problem, self.fits)

    def auto_why_not(self, problem: Problem) -> str | None:
        if problem.device.type != "cuda":
            return "auto does not pick the Triton interpreter for CPU tensors (it is for tests)"
        return self.why_not(problem)

    def detail(self) -> str | None:
        """What the launch configurations cover on this GPU's target (or per target without a GPU)."""
        return self.coverage_detail()


class CppBackend(KernelBackend):
    """A C++ CPU core built at first use (:mod:`tedrec_fast.ops.cpu_build`): CPU tensors of ``dtypes``;
    ``unavailable`` says why the core cannot be built here (no compiler, a failed build), or ``None``."""

    name = "cpp"

    def __init__(self, dtypes: tuple[torch.dtype, ...], unavailable: Callable[[], str | None]) -> None:
        super().__init__(dtypes, {})
        self._unavailable = unavailable

    def unavailable(self) -> str | None:
        return self._unavailable()

    def why_not(self, problem: Problem) -> str | None:
        if problem.device.type != "cpu":
            return f"device {problem.device.type} is not supported (CPU only)"
        return self.dtype_and_size_why_not(problem) or self.unavailable()


class CudaBackend(KernelBackend):
    """The CUDA C++ kernels of ``csrc/``: CUDA tensors through the extension ``tedrec_fast._C`` or NVRTC,
    CPU tensors through the emulator under ``TEDREC_FAST_CUDA_EMULATE=1`` (never picked by auto)."""

    name = "cuda"

    def unavailable(self) -> str | None:
        reasons = []
        for device_type in ("cuda", "cpu"):
            loader = loader_for(torch.device(device_type))
            if not isinstance(loader, str):
                return None
            reasons.append(loader)
        return "; ".join(reasons)

    def why_not(self, problem: Problem) -> str | None:
        loader = loader_for(problem.device)
        if isinstance(loader, str):
            return loader
        return self.dtype_and_size_why_not(problem) or target_why_not(problem, self.fits)

    def auto_why_not(self, problem: Problem) -> str | None:
        if problem.device.type != "cuda":
            return "auto does not pick the CPU emulator of the CUDA kernels (it is for tests)"
        return self.why_not(problem)

    def detail(self) -> str | None:
        """Which loader runs CUDA tensors here, and what the launch configurations cover."""
        loader = loader_for(torch.device("cuda"))
        parts = [None if isinstance(loader, str) else f"loader: {loader.name}", self.coverage_detail()]
        return "; ".join(p for p in parts if p) or None


def choose_backend(backends: Sequence[Backend], requested: str, problem: Problem, *, op: str) -> Backend:
    """Resolve ``requested`` (a backend name or ``"auto"``) to a backend that can run ``problem``."""
    if requested == "auto":
        for backend in backends:
            if backend.auto and backend.auto_why_not(problem) is None:
                return backend
        reasons = "; ".join(f"{b.name}: {b.auto_why_not(problem)}" for b in backends)
        raise RuntimeError(f"{op}: no backend can run this call ({reasons})")
    for backend in backends:
        if backend.name == requested:
            reason = backend.why_not(problem)
            if reason is not None:
                raise ValueError(f"{op}: backend={requested!r} cannot run this call: {reason}")
            return backend
    names = ", ".join(repr(b.name) for b in backends)
    raise ValueError(f"{op}: unknown backend {requested!r}; expected 'auto' or one of {names}")
