"""GPU-only checks of the spectral-fusion op at TedRec's shape, for both fused backends (skipped without CUDA).

The interpreter tests in test_spectral_fusion.py also run on the GPU when one is present; these add what
only a device shows: real shapes, TF32 numerics, CUDA graphs, no host synchronisation, a batch of 100,000
sequences.
"""

from __future__ import annotations

import pytest
import torch

from tedrec_fast import FusedSpectralFusion, spectral_fusion
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference
from tests.tolerances import BACKWARD, FORWARD, TF32

pytestmark = pytest.mark.gpu


@pytest.fixture(params=["triton", "cuda"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each fused backend; the CUDA C++ one is skipped, saying why, where none of its loaders runs."""
    from tedrec_fast.ops.spectral_fusion.op import BACKENDS

    reason = next(b for b in BACKENDS if b.name == request.param).unavailable()
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


def _compare(B: int, n: int, d: int, dtype: torch.dtype, fwd_tol, bwd_tol, backend: str = "triton") -> None:
    if backend == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA C++ backend has no float64 kernels")
    inputs = random_inputs(B, n, d, dtype, "cuda", requires_grad=True)
    out = spectral_fusion(*inputs, backend=backend)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad)
    leaves = [x.detach().double().requires_grad_() for x in inputs]
    expected = spectral_fusion_reference(*leaves)
    expected_grads = torch.autograd.grad(expected, leaves, grad.double())
    torch.testing.assert_close(out.double(), expected, atol=fwd_tol[0] * 4, rtol=fwd_tol[1])
    for got, want in zip(grads, expected_grads):
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got.double(), want, atol=bwd_tol[0] * scale * 4, rtol=bwd_tol[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_tedrec_shape(dtype: torch.dtype, backend: str) -> None:
    _compare(2048, 50, 300, dtype, FORWARD[dtype], BACKWARD[dtype], backend)


def test_tedrec_shape_tf32() -> None:
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        _compare(2048, 50, 300, torch.float32, TF32, TF32)
    finally:
        torch.set_float32_matmul_precision(previous)


@pytest.mark.parametrize(("n", "d"), [(128, 512), (200, 512), (512, 64), (3, 2048)])
def test_other_shapes(n: int, d: int, backend: str) -> None:
    """Lengths beyond what the Triton configurations of this GPU's target run are refused with the reason."""
    from tedrec_fast.kernels.spectral_fusion import config_why_not
    from tedrec_fast.kernels.targets import launch_arch

    reason = config_why_not(n, launch_arch(torch.device("cuda"))) if backend == "triton" else None
    if reason is not None:
        with pytest.raises(ValueError, match="shared memory per block"):
            spectral_fusion(*random_inputs(2, n, d, torch.float32, "cuda"), backend=backend)
        assert spectral_fusion(*random_inputs(2, n, d, torch.float32, "cuda")).shape == (2, n, d)  # auto: another
        return
    _compare(64, n, d, torch.float32, FORWARD[torch.float32], BACKWARD[torch.float32], backend)


def test_device_is_a_table_target_with_at_least_its_shared_memory() -> None:
    """The table's limits are what the dispatcher relies on: the device must offer at least as much."""
    from tedrec_fast.kernels.targets import device_target

    device = torch.device("cuda")
    found = device_target(device)
    assert found is not None, f"compute capability {torch.cuda.get_device_capability(device)} is not in the table"
    properties = torch.cuda.get_device_properties(device)
    assert properties.shared_memory_per_block_optin >= found.shared_per_block


def test_large_batch(backend: str) -> None:
    _compare(100_000, 7, 16, torch.float32, FORWARD[torch.float32], BACKWARD[torch.float32], backend)


def test_cuda_graph_capture_and_replay(backend: str) -> None:
    module = FusedSpectralFusion(50, 300, backend=backend).cuda()
    E = torch.randn(256, 50, 300, device="cuda", requires_grad=True)
    T = torch.randn(256, 50, 300, device="cuda", requires_grad=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (compiles the kernels) outside the capture
        for _ in range(2):
            module(E, T).sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    module.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        out = module(E, T)
        out.sum().backward()
    E.data.copy_(torch.randn_like(E))
    graph.replay()
    torch.testing.assert_close(out, module(E, T))


def test_deterministic_backward_at_tedrec_shape(backend: str) -> None:
    inputs = random_inputs(2048, 50, 300, torch.float32, "cuda", requires_grad=True)
    grad = torch.randn(2048, 50, 300, device="cuda")
    first = torch.autograd.grad(spectral_fusion(*inputs, backend=backend), inputs, grad)
    second = torch.autograd.grad(spectral_fusion(*inputs, backend=backend), inputs, grad)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_no_host_synchronisation(backend: str) -> None:
    """Forward and backward never wait on the device from the host (after a warm-up that compiles and loads)."""
    inputs = random_inputs(256, 50, 300, torch.float32, "cuda", requires_grad=True)
    grad = torch.randn(256, 50, 300, device="cuda")
    torch.autograd.grad(spectral_fusion(*inputs, backend=backend), inputs, grad)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising CUDA call raises
    try:
        torch.autograd.grad(spectral_fusion(*inputs, backend=backend), inputs, grad)
    finally:
        torch.cuda.set_sync_debug_mode("default")
