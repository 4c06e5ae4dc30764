"""The spectral-fusion op: reference vs an independent time-domain form, Triton kernels vs reference.

Without a GPU the Triton kernels run on CPU tensors under the interpreter (see conftest.py); with one,
the same tests run on the device.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tedrec_fast import spectral_fusion
from tedrec_fast.kernels import spectral_fusion as kernels
from tedrec_fast.kernels.targets import TARGETS
from tedrec_fast.ops.limits import MAX_N
from tedrec_fast.ops.spectral_fusion import triton as host
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import filter_kernel_reference, spectral_fusion_reference
from tests.ops.spectral_fusion.cases import (
    assert_close_scaled,
    check_batch_zero,
    non_contiguous_copies,
    reference_with_grads,
)
from tests.tolerances import BACKWARD, FORWARD

NS = (1, 2, 3, 7, 50, 64, 100)
DS = (1, 17, 64, 300)
BS = (0, 1, 3)
HALF_AND_DOUBLE = (torch.bfloat16, torch.float16, torch.float64)


# --------------------------------------------------------------------------------------------
# The reference against the time-domain formulation (docs/DESIGN.md section 2)
# --------------------------------------------------------------------------------------------
def time_domain_fusion(E, T, complex_weight, gi_w, gi_b, gf_w, gf_b):
    """Circular convolutions written out with indices: independent of torch.fft's conventions."""
    n = E.shape[1]
    h = filter_kernel_reference(complex_weight, n)  # (n, d) real kernel
    j = torch.arange(n)
    shift = (j[:, None] - j[None, :]) % n  # shift[j, k] = j - k mod n
    E_shift = E[:, shift]  # (B, j, k, d) = E[j - k]
    fused = (T[:, None, :, :] * E_shift).sum(2) / n**0.5
    filtered = (h[None, None, :, :] * E_shift).sum(2)
    a = torch.sigmoid(filtered @ gi_w.reshape(-1) + gi_b)
    c = torch.sigmoid(fused @ gf_w.reshape(-1) + gf_b)
    return 2 * a[..., None] * filtered + 2 * c[..., None] * fused


@pytest.mark.parametrize("n", (1, 2, 3, 7, 13, 50, 64))
@pytest.mark.parametrize("d", (1, 5))
def test_reference_matches_time_domain(n: int, d: int) -> None:
    inputs = random_inputs(3, n, d, torch.float64, seed=n * 10 + d)
    torch.testing.assert_close(spectral_fusion_reference(*inputs), time_domain_fusion(*inputs),
                               atol=1e-12, rtol=1e-12)


def test_reference_filter_ignores_dc_and_nyquist_imaginary_parts() -> None:
    E, T, cw, *gates = random_inputs(2, 8, 3, torch.float64)
    cw2 = cw.clone()
    cw2[0, 0, :, 1] += 5.0  # DC imaginary
    cw2[0, 4, :, 1] -= 3.0  # Nyquist imaginary (n = 8)
    expected = spectral_fusion_reference(E, T, cw, *gates)
    torch.testing.assert_close(spectral_fusion_reference(E, T, cw2, *gates), expected)


# --------------------------------------------------------------------------------------------
# Triton kernels against the reference
# --------------------------------------------------------------------------------------------


def _check_forward_and_backward(B: int, n: int, d: int, dtype: torch.dtype, device: str, seed: int = 0) -> None:
    inputs = random_inputs(B, n, d, dtype, device, seed=seed)
    grad = torch.randn(B, n, d, dtype=torch.float64).to(dtype=dtype, device=device)
    expected, expected_grads = reference_with_grads(inputs, grad)

    out = torch.full((B, n, d), float("nan"), dtype=dtype, device=device)  # poisoned
    host.spectral_fusion_forward(*inputs, out=out)
    assert_close_scaled(out, expected, FORWARD[dtype], "V")

    d_item = torch.full((B, n, d), float("nan"), dtype=dtype, device=device)
    d_text = torch.full((B, n, d), float("nan"), dtype=dtype, device=device)
    grads = host.spectral_fusion_backward(grad, *inputs, d_item=d_item, d_text=d_text)
    assert grads[0] is d_item and grads[1] is d_text
    names = ("d_item", "d_text", "d_complex_weight", "d_item_gate_weight", "d_item_gate_bias",
             "d_fusion_gate_weight", "d_fusion_gate_bias")
    for name, got, want, x in zip(names, grads, expected_grads, inputs):
        assert got.shape == x.shape and got.dtype == x.dtype, name
        assert_close_scaled(got, want, BACKWARD[dtype], name)


@pytest.mark.parametrize(("n", "d", "B"), list(itertools.product(NS, DS, BS)))
def test_triton_float32(n: int, d: int, B: int, device: str) -> None:
    _check_forward_and_backward(B, n, d, torch.float32, device, seed=n + d + B)


@pytest.mark.parametrize("dtype", HALF_AND_DOUBLE, ids=str)
@pytest.mark.parametrize(("n", "d"), [*itertools.product(NS, (1, 17, 64)), (50, 300)])
def test_triton_other_dtypes(n: int, d: int, dtype: torch.dtype, device: str) -> None:
    _check_forward_and_backward(3, n, d, dtype, device, seed=n * d)


@pytest.mark.parametrize(("B", "n", "d"), [(1, 512, 20), (1, 3, 2048), (2, 257, 5)])
def test_triton_size_limits(B: int, n: int, d: int, device: str) -> None:
    _check_forward_and_backward(B, n, d, torch.float32, device)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(B=st.integers(0, 4), n=st.integers(1, 80), d=st.integers(1, 70),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_triton_hypothesis_shapes(B: int, n: int, d: int, dtype: torch.dtype, device: str) -> None:
    _check_forward_and_backward(B, n, d, dtype, device, seed=B * 7 + n * 3 + d)


@pytest.mark.parametrize(("B", "n", "d"), [(2, 1, 2), (1, 2, 2), (1, 5, 2), (1, 8, 1), (1, 33, 1)])
def test_triton_gradcheck_float64(B: int, n: int, d: int, device: str) -> None:
    """Also through TedRec's padded length (n = 33: ``BLOCK_N = 64``, frequency blocks of 8, the last holding
    one frequency)."""
    inputs = random_inputs(B, n, d, torch.float64, device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *x: spectral_fusion(*x, backend="triton"), inputs, atol=1e-8, rtol=1e-6)


def test_triton_non_contiguous_inputs(device: str) -> None:
    B, n, d = 3, 7, 19
    plain = random_inputs(B, n, d, torch.float32, device)
    args = non_contiguous_copies(plain, device)
    torch.testing.assert_close(host.spectral_fusion_forward(*args), host.spectral_fusion_forward(*plain))
    grad = torch.randn(B, d, n, device=device).transpose(1, 2)
    for got, want in zip(host.spectral_fusion_backward(grad, *args),
                         host.spectral_fusion_backward(grad.contiguous(), *plain)):
        torch.testing.assert_close(got, want)


def test_triton_batch_zero(device: str) -> None:
    check_batch_zero("triton", device)


def test_triton_nan_stays_in_its_sequence(device: str) -> None:
    E, T, *params = random_inputs(3, 9, 5, torch.float32, device)
    E[1, 4, 2] = float("nan")
    T[2, 0, 0] = float("inf")
    out = host.spectral_fusion_forward(E, T, *params)
    expected = spectral_fusion_reference(E.cpu(), T.cpu(), *(p.cpu() for p in params))
    assert torch.equal(out.isnan().cpu(), expected.isnan())
    torch.testing.assert_close(out[0].cpu(), expected[0])
    grads = host.spectral_fusion_backward(torch.randn_like(out), E, T, *params)
    assert grads[0][0].isfinite().all() and grads[1][0].isfinite().all()


def test_triton_backward_is_deterministic(device: str) -> None:
    inputs = random_inputs(5, 50, 40, torch.float32, device)
    grad = torch.randn(5, 50, 40, device=device)
    first = host.spectral_fusion_backward(grad, *inputs)
    second = host.spectral_fusion_backward(grad, *inputs)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_kernel_configs_cover_every_length() -> None:
    for n in range(1, MAX_N + 1):
        cfg = kernels.kernel_config(n, None)  # the interpreter's: every length
        assert cfg in kernels.all_kernel_configs(None)
        dot_rows = (1 + cfg.stacked) * cfg.BLOCK_K  # the stacked kernels' twiddles have 2 BLOCK_K rows
        assert cfg.BLOCK_N >= n and min(cfg.BLOCK_N, dot_rows, cfg.BLOCK_D, cfg.BLOCK_D_BWD) >= 16
        for arch in TARGETS:  # each target's: the lengths its shared memory allows
            if kernels.config_why_not(n, arch) is None:
                cfg = kernels.kernel_config(n, arch)
                assert cfg in kernels.all_kernel_configs(arch) and cfg.BLOCK_N >= n
            else:
                with pytest.raises(ValueError, match=f"sm_{arch}"):
                    kernels.kernel_config(n, arch)
