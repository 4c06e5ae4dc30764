"""The dropout op: the C++ core against the torch twin of its masks, exactly; its distribution; the module."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tedrec_fast.nn import Dropout
from tedrec_fast.ops.dispatch import Problem, choose_backend
from tedrec_fast.ops.dropout import BACKENDS, dropout, dropout_reference
from tedrec_fast.ops.dropout import cpu as cpu_core
from tedrec_fast.ops.philox import draw_seed, dropped_mask

#: odd sizes, one and two Philox chunks (64 elements) and around them, and a large one
SHAPES = [(1,), (3,), (63,), (64,), (65,), (7, 19), (2, 3, 50, 11), (257, 300)]


def keep(numel: int, p: float, seed: int) -> torch.Tensor:
    """The torch twin's mask of ``numel`` elements: element i at counter i // 4, lane i % 4."""
    return ~dropped_mask(torch.zeros(1, dtype=torch.long), 0, 1, numel, p, seed)[0]


def expected(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    scale = torch.tensor(1.0 / (1.0 - p), dtype=x.dtype)
    return (x.contiguous().reshape(-1) * keep(x.numel(), p, seed) * scale).view(x.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_cpp_equals_the_torch_twin_exactly(dtype, shape, p):
    x = torch.randn(shape, dtype=dtype)
    seed = 2**40 + 12345  # a seed with both 32-bit key words non-zero
    assert torch.equal(dropout(x, p, seed=seed, backend="cpp"), expected(x, p, seed))


def test_strided_input_and_poisoned_output(monkeypatch):
    """A transposed input is dropped in its logical (contiguous) order; every output element is written."""
    x = torch.randn(40, 33).t()
    monkeypatch.setattr(torch, "empty_like", lambda t, **kw: torch.full_like(t, float("nan"), **kw))
    y = dropout(x, 0.3, seed=7, backend="cpp")
    assert y.is_contiguous() and not y.isnan().any()
    assert torch.equal(y, expected(x, 0.3, 7))


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_identity_without_randomness(backend):
    x = torch.randn(5, 6, requires_grad=True)
    assert dropout(x, 0.4, training=False, backend=backend) is x
    assert dropout(x, 0.0, backend=backend) is x
    assert dropout(x, 0, training=True, backend=backend) is x


def test_backward_applies_the_same_mask():
    x = torch.randn(37, 29, dtype=torch.float64, requires_grad=True)
    g = torch.randn(37, 29, dtype=torch.float64)
    y = dropout(x, 0.25, seed=99, backend="cpp")
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.equal(grad, expected(g, 0.25, 99))
    assert torch.autograd.gradcheck(lambda t: dropout(t, 0.25, seed=99, backend="cpp"), (x,))


def test_rate_independence_and_mean():
    n, p = 1 << 20, 0.2
    kept = dropout(torch.ones(n), p, seed=3, backend="cpp") != 0
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs((~kept).float().mean().item() - p) < 5 * sigma
    # pairs inside one Philox output (lanes i, i + 1), across counters (i, i + 4) and far apart: independent
    for lag in (1, 2, 4, 64, 4097):
        both = ((~kept[:-lag]) & (~kept[lag:])).float().mean().item()
        assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / (n - lag)) ** 0.5, lag
    other = dropout(torch.ones(n), p, seed=4, backend="cpp") != 0
    both = ((~kept) & (~other)).float().mean().item()
    assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / n) ** 0.5
    # unbiased: the mean over many masks of dropout(x) is x
    x = torch.randn(256, dtype=torch.float64)
    draws = torch.stack([dropout(x, 0.5, seed=s, backend="cpp") for s in range(4000)])
    se = draws.std(0) / len(draws) ** 0.5
    assert ((draws.mean(0) - x).abs() < 5 * se + 1e-12).all()


def test_seed_from_torch_generator_reproduces_and_varies():
    x = torch.randn(1000)
    torch.manual_seed(11)
    a, b = dropout(x, 0.3), dropout(x, 0.3)
    torch.manual_seed(11)
    assert torch.equal(dropout(x, 0.3), a) and not torch.equal(a, b)


def test_torch_backend_is_torchs_dropout():
    x = torch.randn(300)
    torch.manual_seed(5)
    a = dropout(x, 0.3, backend="torch")
    torch.manual_seed(5)
    assert torch.equal(a, F.dropout(x, 0.3)) and torch.equal(dropout_reference(x, 0.0), x)


def test_auto_picks_cpp_on_cpu_for_float32_and_float64_only():
    for dtype, name in ((torch.float32, "cpp"), (torch.float64, "cpp"), (torch.bfloat16, "torch")):
        assert choose_backend(BACKENDS, "auto", Problem(torch.device("cpu"), dtype, ()), op="dropout").name == name
    with pytest.raises(ValueError, match="CPU only"):
        choose_backend(BACKENDS, "cpp", Problem(torch.device("cuda"), torch.float32, ()), op="dropout")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([1.0], 0.1), {}, TypeError, "x must be a torch.Tensor"),
        ((torch.ones(3, dtype=torch.long), 0.1), {}, TypeError, "x must be a real floating-point"),
        ((torch.ones(3), 1.0), {}, ValueError, "p must be a number in"),
        ((torch.ones(3), -0.1), {}, ValueError, "p must be a number in"),
        ((torch.ones(3), True), {}, ValueError, "p must be a number in"),
        ((torch.ones(3), 0.1, "yes"), {}, TypeError, "training must be a bool"),
        ((torch.ones(3), 0.1), {"seed": -1}, ValueError, "seed must be an int"),
        ((torch.ones(3), 0.1), {"backend": 3}, TypeError, "backend must be a string"),
        ((torch.ones(3), 0.1), {"backend": "nope"}, ValueError, "nope"),
        ((torch.ones(3), 0.1), {"backend": "torch", "seed": 1}, ValueError, "seed is not accepted"),
    ],
)
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        dropout(*args, **kwargs)


def test_module_fast_and_reference():
    x = torch.randn(8, 50)
    fast, ref = Dropout(0.3), Dropout(0.3, reference=True)
    torch.manual_seed(1)
    y = fast(x)
    torch.manual_seed(1)
    assert torch.equal(y, dropout(x, 0.3, seed=draw_seed()))
    torch.manual_seed(1)
    y = ref(x)
    torch.manual_seed(1)
    assert torch.equal(y, F.dropout(x, 0.3))
    fast.eval()
    assert fast(x) is x
    assert "reference=True" in repr(ref)
    with pytest.raises(TypeError, match="reference must be a bool"):
        Dropout(0.3, reference="no")


def test_without_a_compiler_auto_falls_back_to_torch(tmp_path):
    code = ("import torch\n"
            "from tedrec_fast.ops.dropout import dropout, cpu\n"
            "print(cpu.cpu_unavailable())\n"
            "torch.manual_seed(0); y = dropout(torch.ones(100), 0.5)\n"
            "torch.manual_seed(0); print(torch.equal(y, torch.nn.functional.dropout(torch.ones(100), 0.5)))\n")
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TEDREC_FAST_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    reason, same = result.stdout.strip().splitlines()
    assert "not an executable" in reason and same == "True"


def test_small_inputs_run_on_one_thread(monkeypatch):
    """Below SERIAL_ELEMENTS the core runs serially; above it, on torch's threads: the same result."""
    x = torch.randn(cpu_core.SERIAL_ELEMENTS + 5)
    serial = dropout(x, 0.2, seed=8, backend="cpp")
    monkeypatch.setattr(cpu_core, "SERIAL_ELEMENTS", 1)
    assert torch.equal(dropout(x, 0.2, seed=8, backend="cpp"), serial)
