"""``pytest bench/``: pytest-benchmark timings of one training step (fast and reference mode) and of the MoE op.

On a CPU at batch 256 (the paper's settings otherwise, bench/train_step.py); on a GPU at batch 2048.
"""

from __future__ import annotations

import pytest
import torch

from bench.moe_modulation import make_moe_step
from bench.train_step import make_train_step

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCH = 2048 if DEVICE == "cuda" else 256


def _run(benchmark, step, **info) -> None:
    def synced() -> None:
        step()
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(device=DEVICE, B=BATCH, n=50, **info)


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("model", ["tedrec", "sasrec"])
def test_train_step(benchmark, model: str, reference: bool) -> None:
    _run(benchmark, make_train_step(model, reference, BATCH, device=DEVICE), op="train_step", model=model,
         path="reference" if reference else "fast")


@pytest.mark.parametrize("reference", [False, True], ids=["op", "eager"])
def test_moe_modulation(benchmark, reference: bool) -> None:
    _run(benchmark, make_moe_step(reference, BATCH, device=DEVICE), op="moe_modulation",
         path="reference" if reference else "fast")
