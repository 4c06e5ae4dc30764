"""Checks shared by the tests of both fused spectral-fusion backends (Triton and CUDA C++)."""

from __future__ import annotations

import torch

from tedrec_fast import spectral_fusion
from tedrec_fast.ops.spectral_fusion.inputs import random_inputs
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference

__all__ = ["reference_with_grads", "assert_close_scaled", "non_contiguous_copies", "check_batch_zero"]


def reference_with_grads(inputs: tuple[torch.Tensor, ...], grad: torch.Tensor):
    """Reference output and gradients in float64 from the (already rounded) inputs."""
    leaves = [x.detach().double().cpu().requires_grad_() for x in inputs]
    out = spectral_fusion_reference(*leaves)
    grads = torch.autograd.grad(out, leaves, grad.double().cpu(), allow_unused=True)
    return out.detach(), grads


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: tuple[float, float], what: str) -> None:
    """``actual`` matches the float64 ``expected`` to ``(atol, rtol)``, atol scaled by the largest magnitude."""
    atol, rtol = tol
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double().cpu(), expected, atol=atol * scale, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def non_contiguous_copies(inputs: tuple[torch.Tensor, ...], device: str) -> tuple[torch.Tensor, ...]:
    """The op's inputs copied into strided views: E, T, complex_weight and the item gate non-contiguous."""
    E, T, cw, gi_w, gi_b, gf_w, gf_b = inputs
    B, n, d = E.shape
    E_nc = torch.randn(n, B, d + 3, device=device).transpose(0, 1)[:, :, 1 : d + 1]
    T_nc = torch.randn(B, d, n, device=device).transpose(1, 2)  # channel stride != 1
    cw_nc = torch.randn(1, d, n // 2 + 1, 2, device=device).transpose(1, 2)
    gi_nc = torch.randn(d, 2, device=device)[:, 0].reshape(1, d)
    for dst, src in ((E_nc, E), (T_nc, T), (cw_nc, cw), (gi_nc, gi_w)):
        dst.copy_(src)
    assert not (E_nc.is_contiguous() or T_nc.is_contiguous() or cw_nc.is_contiguous() or gi_nc.is_contiguous())
    return E_nc, T_nc, cw_nc, gi_nc, gi_b, gf_w, gf_b


def check_batch_zero(backend: str, device: str) -> None:
    """An empty batch through the op: an empty output and zero gradients for every input."""
    inputs = random_inputs(0, 50, 16, torch.float32, device, requires_grad=True)
    out = spectral_fusion(*inputs, backend=backend)
    assert out.shape == (0, 50, 16)
    out.sum().backward()
    for x in inputs:
        assert x.grad is not None and x.grad.shape == x.shape and not x.grad.any()
