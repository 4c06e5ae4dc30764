"""Benchmark data and timing for the spectral-fusion op, in one file.

Each case times one backend against the eager ``torch.fft`` reference for one direction
(``"fwd"`` or ``"fwd+bwd"``), dtype and shape. The memory floor counts the bytes a fused kernel must
move: ``T``, ``E`` read and ``V`` written forward; ``G``, ``T``, ``E`` read and ``dT``, ``dE`` written
backward (docs/DESIGN.md section 3).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tedrec_fast.ops.spectral_fusion import spectral_fusion, spectral_fusion_reference
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs

__all__ = ["Case", "TARGET_SHAPE", "GPU_CASES", "CPU_CASES", "FUSED_BACKENDS", "floor_bytes", "make_step", "time_ms",
           "winners"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DIRECTIONS = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class Case:
    backend: str  # "triton", "cuda", "torch.compile" or "torch" (the eager reference itself)
    direction: str
    dtype: str
    B: int
    n: int
    d: int

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.direction}-{self.dtype}-B{self.B}-n{self.n}-d{self.d}"


#: the fused backends, each timed on the whole grid
FUSED_BACKENDS = ("triton", "cuda")

#: the shape the issue's targets are set at (TedRec's: B = 2048, n = 50, d = 300)
TARGET_SHAPE = (2048, 50, 300)

#: the issue's grid: every shape and dtype for each fused backend, torch.compile at TedRec's n and d; the
#: cases at :data:`TARGET_SHAPE` come first, so a run cut short by its time budget still has them
GPU_CASES = sorted(
    [
        Case(backend, direction, dtype, B, n, d)
        for backend, direction, dtype, B, n, d in itertools.product(
            FUSED_BACKENDS, DIRECTIONS, DTYPES, (256, 2048, 8192), (50, 100, 200), (64, 300, 512)
        )
    ]
    + [
        Case("torch.compile", direction, dtype, B, 50, 300)
        for direction, dtype, B in itertools.product(DIRECTIONS, DTYPES, (256, 2048, 8192))
    ],
    key=lambda case: (case.B, case.n, case.d) != TARGET_SHAPE,
)

#: reference sizes a CPU runs in seconds
CPU_CASES = [Case("torch", direction, "float32", 64, 50, 64) for direction in DIRECTIONS]


def winners(records: list[dict]) -> list[dict]:
    """For each measured (direction, dtype, B, n, d): the fastest fused backend and its lead over the runner-up."""
    by_shape: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r.get("op") == "spectral_fusion" and r["backend"] in FUSED_BACKENDS:
            by_shape.setdefault((r["direction"], r["dtype"], r["B"], r["n"], r["d"]), {})[r["backend"]] = r["ms"]
    table = []
    for (direction, dtype, B, n, d), times in sorted(by_shape.items()):
        ranked = sorted(times.items(), key=lambda kv: kv[1])
        row = {"direction": direction, "dtype": dtype, "B": B, "n": n, "d": d, "winner": ranked[0][0],
               "ms": ranked[0][1]}
        if len(ranked) > 1:
            row["lead"] = round(ranked[1][1] / ranked[0][1], 3)  # runner-up time / winner time
        table.append(row)
    return table


def floor_bytes(case: Case) -> int:
    """Bytes a fused implementation must move: 3 tensors forward, 3 + 5 forward and backward."""
    tensors = 3 if case.direction == "fwd" else 8
    return tensors * case.B * case.n * case.d * DTYPES[case.dtype].itemsize


def _reference(*args: torch.Tensor) -> torch.Tensor:
    return spectral_fusion_reference(*args)


_COMPILED: dict[str, Callable] = {}


def _function(backend: str) -> Callable:
    if backend == "torch":
        return _reference
    if backend == "torch.compile":
        if "fn" not in _COMPILED:
            _COMPILED["fn"] = torch.compile(_reference, dynamic=False)
        return _COMPILED["fn"]
    return lambda *args: spectral_fusion(*args, backend=backend)


def make_step(case: Case, backend: str | None = None, device: str = "cuda") -> Callable[[], None]:
    """A closure running one step of ``case`` (with ``backend`` overriding the case's backend)."""
    fn = _function(backend or case.backend)
    grad_needed = case.direction == "fwd+bwd"
    inputs = random_inputs(case.B, case.n, case.d, DTYPES[case.dtype], device, requires_grad=grad_needed)
    if not grad_needed:

        def forward() -> None:
            with torch.no_grad():
                fn(*inputs)

        return forward
    grad = torch.randn(case.B, case.n, case.d, dtype=DTYPES[case.dtype], device=device)

    def forward_backward() -> None:
        torch.autograd.grad(fn(*inputs), inputs, grad)

    return forward_backward


def time_ms(step: Callable[[], None], device: str = "cuda") -> float:
    """Median milliseconds of ``step``: CUDA events with an L2 flush on GPU (triton.testing.do_bench)."""
    if device != "cuda":
        raise ValueError("time_ms measures GPU kernels; on CPU use pytest-benchmark (pytest bench/)")
    import triton.testing

    step()  # compile / autotune outside the timed region
    return float(triton.testing.do_bench(step, warmup=25, rep=100, return_mode="median"))


def copy_gbps(device: str = "cuda", numel: int = 1 << 28) -> float:
    """Device-to-device copy bandwidth in GB/s, read + write counted (the roofline's ceiling)."""
    src = torch.empty(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    return 2 * src.numel() * src.element_size() / ms / 1e6
