"""``pytest bench/``: pytest-benchmark timings of the spectral-fusion op.

On a GPU, every case of :data:`bench.spectral_fusion.GPU_CASES`; without one, the eager reference at
CPU sizes (the GPU cases are skipped, saying why).
"""

from __future__ import annotations

import pytest
import torch

from bench.spectral_fusion import CPU_CASES, GPU_CASES, Case, make_step

HAS_CUDA = torch.cuda.is_available()


def _run(benchmark, case: Case, device: str) -> None:
    try:
        step = make_step(case, device=device)
        step()
    except ValueError as exc:  # the backend cannot run here, e.g. no loader of the CUDA kernels
        pytest.skip(str(exc))
    if device == "cuda":
        def synced() -> None:
            step()
            torch.cuda.synchronize()

        synced()
        benchmark.pedantic(synced, rounds=20, warmup_rounds=3)
    else:
        benchmark(step)
    benchmark.extra_info.update(backend=case.backend, direction=case.direction, dtype=case.dtype,
                                B=case.B, n=case.n, d=case.d)


@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: c.id)
def test_cpu_reference(benchmark, case: Case) -> None:
    _run(benchmark, case, "cpu")


@pytest.mark.skipif(not HAS_CUDA, reason="GPU benchmark: no CUDA device on this machine")
@pytest.mark.parametrize("case", GPU_CASES + [Case("torch", c.direction, c.dtype, c.B, c.n, c.d)
                                              for c in GPU_CASES if c.backend == "triton"], ids=lambda c: c.id)
def test_gpu(benchmark, case: Case) -> None:
    _run(benchmark, case, "cuda")
