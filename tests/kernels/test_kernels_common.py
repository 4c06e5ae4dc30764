"""The numerics policy and helpers shared by the Triton kernel modules."""

from __future__ import annotations

import torch

from tedrec_fast.kernels import common


def test_dot_precision_follows_torch_setting() -> None:
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert common.dot_precision(torch.float32) == "tf32x3"
        torch.set_float32_matmul_precision("high")
        assert common.dot_precision(torch.float32) == "tf32"
        assert common.dot_precision(torch.float64) == "ieee"
        assert common.dot_precision(torch.bfloat16) == "tf32"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_persistent_programs_are_bounded_by_the_work() -> None:
    cpu = torch.device("cpu")
    assert common.persistent_programs(cpu, 0) == 1
    assert common.persistent_programs(cpu, 1) == 1
    assert common.persistent_programs(cpu, 100) == 2  # interpreter: two programs exercise the loop
