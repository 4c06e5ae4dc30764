"""The CUDA C++ backend of the spectral-fusion op against the reference, through every loader that runs here.

Without a GPU the kernels of ``csrc/spectral_fusion.cu`` run on the CPU emulator (``conftest.py`` sets
``TEDREC_FAST_CUDA_EMULATE=1``): the same source, compiled by the host C++ compiler, one OS thread per
CUDA thread, real barriers and warp shuffles. With a GPU the same tests run through the extension
``tedrec_fast._C`` and NVRTC, whichever are available.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tedrec_fast import spectral_fusion
from tedrec_fast.cuda.loaders import LOADERS, Loader, loaders_report, require_loader
from tedrec_fast.kernels.targets import TARGETS
from tedrec_fast.ops.limits import MAX_D, MAX_N
from tedrec_fast.ops.spectral_fusion import cuda as host
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference
from tests.conftest import DEVICE
from tests.ops.spectral_fusion.cases import (
    assert_close_scaled,
    check_batch_zero,
    non_contiguous_copies,
    reference_with_grads,
)
from tests.tolerances import BACKWARD, FORWARD

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
GRAD_NAMES = ("d_item", "d_text", "d_complex_weight", "d_item_gate_weight", "d_item_gate_bias",
              "d_fusion_gate_weight", "d_fusion_gate_bias")


def _loaders_here() -> list:
    """The loaders for the test device's tensors (emulator on CPU; extension and NVRTC on a GPU)."""
    params = []
    for loader in LOADERS:
        if loader.device_type != torch.device(DEVICE).type:
            continue
        reason = loader.unavailable()
        marks = [pytest.mark.skip(reason=f"{loader.name}: {reason}")] if reason else []
        params.append(pytest.param(loader, id=loader.name, marks=marks))
    return params


@pytest.fixture(params=_loaders_here())
def loader(request: pytest.FixtureRequest) -> Loader:
    return request.param




def _check(loader: Loader, B: int, n: int, d: int, dtype: torch.dtype, seed: int = 0, dc: int | None = None) -> None:
    inputs = random_inputs(B, n, d, dtype, DEVICE, seed=seed)
    grad = torch.randn(B, n, d, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
    expected, expected_grads = reference_with_grads(inputs, grad)

    out = torch.full((B, n, d), float("nan"), dtype=dtype, device=DEVICE)  # poisoned
    assert host.spectral_fusion_forward_cuda(loader, *inputs, out=out, dc=dc) is out
    assert_close_scaled(out, expected, FORWARD[dtype], "V")

    d_item = torch.full((B, n, d), float("nan"), dtype=dtype, device=DEVICE)
    d_text = torch.full((B, n, d), float("nan"), dtype=dtype, device=DEVICE)
    grads = host.spectral_fusion_backward_cuda(loader, grad, *inputs, d_item=d_item, d_text=d_text, dc=dc)
    assert grads[0] is d_item and grads[1] is d_text
    for name, got, want, x in zip(GRAD_NAMES, grads, expected_grads, inputs):
        assert got.shape == x.shape and got.dtype == x.dtype, name
        assert_close_scaled(got, want, BACKWARD[dtype], name)


# --------------------------------------------------------------------------------------------
# Numerics against the reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d", "B"), list(itertools.product((1, 2, 3, 7, 50), (1, 17, 40), (1, 3))))
def test_float32(loader: Loader, n: int, d: int, B: int) -> None:
    _check(loader, B, n, d, torch.float32, seed=n + d + B)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=str)
@pytest.mark.parametrize(("n", "d"), [(1, 5), (8, 33), (50, 64)])
def test_half_precision(loader: Loader, n: int, d: int, dtype: torch.dtype) -> None:
    _check(loader, 2, n, d, dtype, seed=n * d)


@pytest.mark.parametrize(("B", "n", "d"), [(2, 129, 3), (1, 257, 9), (1, MAX_N, 2), (1, 4, MAX_D)])
def test_every_chunk_width_and_the_size_limits(loader: Loader, B: int, n: int, d: int) -> None:
    _check(loader, B, n, d, torch.float32)


@pytest.mark.parametrize(("B", "n", "d"), [(2, 13, 9), (1, 300, 5)])
def test_four_channel_chunks(loader: Loader, B: int, n: int, d: int) -> None:
    """dc = 4: what the 99-KiB targets (sm_86, sm_89, sm_120) launch for 478 <= n <= 512."""
    _check(loader, B, n, d, torch.float32, dc=4)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(B=st.integers(1, 5), n=st.integers(1, 70), d=st.integers(1, 45), dtype=st.sampled_from(DTYPES))
def test_hypothesis_shapes(loader: Loader, B: int, n: int, d: int, dtype: torch.dtype) -> None:
    _check(loader, B, n, d, dtype, seed=B * 7 + n * 3 + d)


def test_non_contiguous_inputs(loader: Loader) -> None:
    B, n, d = 3, 7, 19
    plain = random_inputs(B, n, d, torch.float32, DEVICE)
    args = non_contiguous_copies(plain, DEVICE)
    torch.testing.assert_close(host.spectral_fusion_forward_cuda(loader, *args),
                               host.spectral_fusion_forward_cuda(loader, *plain))
    grad = torch.randn(B, d, n, device=DEVICE).transpose(1, 2)
    for got, want in zip(host.spectral_fusion_backward_cuda(loader, grad, *args),
                         host.spectral_fusion_backward_cuda(loader, grad.contiguous(), *plain)):
        torch.testing.assert_close(got, want)


def test_nan_stays_in_its_sequence(loader: Loader) -> None:
    E, T, *params = random_inputs(3, 9, 5, torch.float32, DEVICE)
    E[1, 4, 2] = float("nan")
    T[2, 0, 0] = float("inf")
    out = host.spectral_fusion_forward_cuda(loader, E, T, *params)
    expected = spectral_fusion_reference(E.cpu(), T.cpu(), *(p.cpu() for p in params))
    # the direct convolution keeps an inf in its channel where the FFT smears NaN over the sequence:
    # only the isolation of the sequences is common to both
    torch.testing.assert_close(out[0].cpu(), expected[0])
    assert not out[1].isfinite().all() and not out[2].isfinite().all()
    grads = host.spectral_fusion_backward_cuda(loader, torch.randn_like(out), E, T, *params)
    assert grads[0][0].isfinite().all() and grads[1][0].isfinite().all()


def test_backward_is_deterministic(loader: Loader) -> None:
    inputs = random_inputs(5, 20, 40, torch.float32, DEVICE)
    grad = torch.randn(5, 20, 40, device=DEVICE)
    first = host.spectral_fusion_backward_cuda(loader, grad, *inputs)
    second = host.spectral_fusion_backward_cuda(loader, grad, *inputs)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# Through the public op: dispatch, autograd, B = 0, bad input, torch.compile
# --------------------------------------------------------------------------------------------
@pytest.fixture
def cuda_backend_runs_here() -> None:
    runs = any(row["available"] and row["device_type"] == torch.device(DEVICE).type for row in loaders_report())
    if not runs:
        pytest.skip(f"no loader of the CUDA kernels runs {DEVICE} tensors here")


@pytest.mark.usefixtures("cuda_backend_runs_here")
def test_autograd_through_the_op() -> None:
    inputs = random_inputs(2, 6, 10, torch.float32, DEVICE, requires_grad=True)
    out = spectral_fusion(*inputs, backend="cuda")
    grad = torch.randn_like(out)
    out.backward(grad)
    expected, expected_grads = reference_with_grads(inputs, grad)
    assert_close_scaled(out.detach(), expected, FORWARD[torch.float32], "V")
    for name, x, want in zip(GRAD_NAMES, inputs, expected_grads):
        assert_close_scaled(x.grad, want, BACKWARD[torch.float32], name)


@pytest.mark.usefixtures("cuda_backend_runs_here")
def test_batch_zero() -> None:
    check_batch_zero("cuda", DEVICE)


@pytest.mark.usefixtures("cuda_backend_runs_here")
@pytest.mark.parametrize(("B", "n", "d", "dtype", "message"), [
    (2, 5, 3, torch.float64, "dtype torch.float64 is not supported"),
    (1, MAX_N + 1, 2, torch.float32, f"n={MAX_N + 1} exceeds {MAX_N}"),
    (1, 3, MAX_D + 1, torch.float32, f"d={MAX_D + 1} exceeds {MAX_D}"),
])
def test_unsupported_calls_say_why(B: int, n: int, d: int, dtype: torch.dtype, message: str) -> None:
    inputs = random_inputs(B, n, d, dtype, DEVICE)
    with pytest.raises(ValueError, match=f"backend='cuda' cannot run this call: {message}"):
        spectral_fusion(*inputs, backend="cuda")


@pytest.mark.usefixtures("cuda_backend_runs_here")
def test_torch_compile_fullgraph() -> None:
    inputs = random_inputs(2, 5, 8, torch.float32, DEVICE)
    compiled = torch.compile(lambda *x: spectral_fusion(*x, backend="cuda"), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(*inputs), spectral_fusion(*inputs, backend="cuda"))


def test_auto_never_picks_the_emulator() -> None:
    from tedrec_fast.ops.dispatch import Problem
    from tedrec_fast.ops.spectral_fusion.op import BACKENDS

    cuda = next(b for b in BACKENDS if b.name == "cuda")
    problem = Problem(torch.device("cpu"), torch.float32, (("B", 1), ("n", 4), ("d", 4)))
    assert "emulator" in cuda.auto_why_not(problem)


# --------------------------------------------------------------------------------------------
# Launch geometry (the host-side launch description)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(TARGETS), ids=[t.name for t in TARGETS.values()])
def test_launch_geometry_fits_every_length_on_every_target(arch: int) -> None:
    """The dynamic shared memory of every kernel at every n <= MAX_N within the target's limit per block (the
    kernels declare no static shared memory: tests/cuda/test_cuda_compile.py checks ``ptxas -v``)."""
    limit = TARGETS[arch].shared_per_block
    for n in range(1, MAX_N + 1):
        dc = host.chunk_width(n, arch)
        assert dc in host.VALID_CHUNK_WIDTHS and 32 % dc == 0 and host.THREADS % dc == 0
        for smem in (host.forward_smem(n, dc), host.stats_smem(n, dc), host.main_smem(n, dc)):
            assert smem <= limit, (arch, n, dc, smem)
        if arch in (90, 100):
            assert host.largest_smem(n, dc) <= 110 * 1024, (n, dc)  # two blocks per SM (228 KB)


@pytest.mark.parametrize(("B", "chunks", "target"), [(1, 1, 4), (7, 1, 4), (2048, 10, 528), (5, 64, 528),
                                                     (1000, 3, 4)])
def test_backward_groups_cover_the_batch(B: int, chunks: int, target: int) -> None:
    groups, per_group = host.backward_groups(B, chunks, target)
    assert 1 <= groups <= B and (groups - 1) * per_group < B <= groups * per_group  # no empty group
    assert groups * chunks <= max(target, chunks) + chunks


def test_loaders_report_names_every_loader() -> None:
    report = loaders_report()
    assert [row["name"] for row in report] == ["extension", "nvrtc", "emulator"]
    for row in report:
        assert row["available"] == (row["reason"] is None)
        assert row["reason"] is None or isinstance(row["reason"], str) and row["reason"]


def test_require_loader_explains_when_none_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEDREC_FAST_CUDA_EMULATE", "0")
    with pytest.raises(RuntimeError, match="TEDREC_FAST_CUDA_EMULATE=1 is not set"):
        require_loader(torch.device("cpu"))
