"""The spectral-filter op: reference vs time-domain convolution, Triton kernels vs reference, API."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tedrec_fast import SpectralFilter, spectral_filter
from tedrec_fast.ops.spectral_filter import triton as host
from tedrec_fast.ops.spectral_filter.reference import spectral_filter_reference
from tedrec_fast.ops.spectral_fusion.reference import filter_kernel_reference
from tests.ops.spectral_fusion.cases import assert_close_scaled
from tests.tolerances import BACKWARD, FORWARD


def _inputs(B: int, n: int, d: int, dtype: torch.dtype, device: str = "cpu", seed: int = 0, grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, d, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    w = (torch.randn(1, n // 2 + 1, d, 2, generator=gen, dtype=torch.float64) * 0.5).to(dtype=dtype, device=device)
    return x.requires_grad_(grad), w.requires_grad_(grad)


@pytest.mark.parametrize("n", (1, 2, 7, 50, 64))
def test_reference_is_circular_convolution_with_h(n: int) -> None:
    x, w = _inputs(3, n, 4, torch.float64)
    h = filter_kernel_reference(w, n)
    j = torch.arange(n)
    expected = (h[None, None] * x[:, (j[:, None] - j[None, :]) % n]).sum(2)
    torch.testing.assert_close(spectral_filter_reference(x, w), expected, atol=1e-12, rtol=1e-12)


def _check(B: int, n: int, d: int, dtype: torch.dtype, device: str) -> None:
    x, w = _inputs(B, n, d, dtype, device, seed=B + n + d)
    grad = torch.randn(B, n, d, dtype=torch.float64).to(dtype=dtype, device=device)
    leaves = [x.detach().double().cpu().requires_grad_(), w.detach().double().cpu().requires_grad_()]
    expected = spectral_filter_reference(*leaves)
    expected_grads = torch.autograd.grad(expected, leaves, grad.double().cpu())
    out = torch.full((B, n, d), float("nan"), dtype=dtype, device=device)  # poisoned
    host.spectral_filter_forward(x, w, out=out)
    assert_close_scaled(out, expected, FORWARD[dtype], "Y")
    d_x = torch.full((B, n, d), float("nan"), dtype=dtype, device=device)
    got = host.spectral_filter_backward(grad, x, w, d_x=d_x)
    assert got[0] is d_x
    for name, g, e in zip(("d_x", "d_complex_weight"), got, expected_grads):
        assert_close_scaled(g, e, BACKWARD[dtype], name)


@pytest.mark.parametrize(("n", "d", "B"), list(itertools.product((1, 2, 3, 7, 50, 64, 100), (1, 17, 300), (0, 1, 3))))
def test_triton_float32(n: int, d: int, B: int, device: str) -> None:
    _check(B, n, d, torch.float32, device)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16, torch.float64), ids=str)
@pytest.mark.parametrize(("n", "d"), [(1, 5), (7, 17), (50, 64), (100, 33)])
def test_triton_other_dtypes(n: int, d: int, dtype: torch.dtype, device: str) -> None:
    _check(3, n, d, dtype, device)


def test_triton_size_limits(device: str) -> None:
    _check(1, 512, 17, torch.float32, device)
    _check(1, 5, 2048, torch.float32, device)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(B=st.integers(0, 4), n=st.integers(1, 80), d=st.integers(1, 70))
def test_triton_hypothesis_shapes(B: int, n: int, d: int, device: str) -> None:
    _check(B, n, d, torch.float32, device)


def test_triton_gradcheck_float64(device: str) -> None:
    for n in (1, 4, 7):
        x, w = _inputs(2, n, 3, torch.float64, device, grad=True)
        assert torch.autograd.gradcheck(lambda a, b: spectral_filter(a, b, backend="triton"), (x, w))


def test_triton_non_contiguous_and_deterministic(device: str) -> None:
    x, w = _inputs(3, 9, 20, torch.float32, device)
    x_nc = torch.empty(9, 3, 20, device=device).transpose(0, 1)
    x_nc.copy_(x)
    torch.testing.assert_close(host.spectral_filter_forward(x_nc, w), host.spectral_filter_forward(x, w))
    grad = torch.randn(3, 9, 20, device=device)
    first, second = (host.spectral_filter_backward(grad, x_nc, w) for _ in range(2))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_custom_ops_pass_opcheck(device: str) -> None:
    from tedrec_fast.ops.spectral_filter.op import _spectral_filter_backward_op, _spectral_filter_op

    x, w = _inputs(2, 6, 3, torch.float32, device, grad=True)
    torch.library.opcheck(_spectral_filter_op, (x, w))
    torch.library.opcheck(_spectral_filter_backward_op, (torch.randn_like(x), x.detach(), w.detach()))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (lambda x, w: ([1.0], w), TypeError, "x must be a torch.Tensor"),
        (lambda x, w: (x.long(), w), TypeError, "x must be a real floating"),
        (lambda x, w: (x[0], w), ValueError, r"x must have shape \(B, n, d\)"),
        (lambda x, w: (x, w[:, :2]), ValueError, "complex_weight must have shape"),
        (lambda x, w: (x, w.double()), TypeError, "complex_weight has dtype"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "torch", "triton"])
def test_bad_input_is_rejected(args, error, match, backend: str) -> None:
    with pytest.raises(error, match=match):
        spectral_filter(*args(*_inputs(2, 6, 3, torch.float32)), backend=backend)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_module(backend: str, device: str) -> None:
    module = SpectralFilter(8, 5, backend=backend).to(device)
    assert tuple(module.complex_weight.shape) == (1, 5, 5, 2)
    x = torch.randn(2, 8, 5, device=device)
    torch.testing.assert_close(module(x), spectral_filter_reference(x, module.complex_weight), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sequence length 9"):
        module(torch.randn(2, 9, 5, device=device))
    with pytest.raises(ValueError, match="max_seq_length"):
        SpectralFilter(0, 5)
