"""The spectral-filter op: argument checks, backends, custom op and autograd.

``spectral_filter(x, complex_weight)`` = ``irfft(rfft(x) * W)`` along the sequence (ortho norm). Backends:
``"torch"`` (:func:`~tedrec_fast.ops.spectral_filter.reference.spectral_filter_reference`, the spec) and
``"triton"`` (:mod:`tedrec_fast.kernels.spectral_filter`, the custom op ``tedrec_fast::spectral_filter``).
"""

from __future__ import annotations

import torch

from tedrec_fast.ops.checks import autocast_inputs, check_float_tensors, check_sequence_filter
from tedrec_fast.ops.dispatch import Backend, Problem, TorchBackend, TritonBackend, choose_backend
from tedrec_fast.ops.limits import KERNEL_DTYPES, MAX_D, MAX_N
from tedrec_fast.ops.spectral_filter.reference import spectral_filter_reference

__all__ = ["spectral_filter", "BACKENDS"]


def _triton_fits(problem: Problem, arch: int) -> str | None:
    """Why no Triton launch configuration runs ``problem`` on ``sm_<arch>`` (kernels/spectral_filter.py)."""
    from tedrec_fast.kernels.spectral_filter import CONFIGS
    from tedrec_fast.kernels.spectral_fusion import dtype_group, padded_length

    return CONFIGS.why_not(arch, (dtype_group(problem.dtype), padded_length(problem.size("n"))))


def _triton_coverage(arch: int) -> str:
    from tedrec_fast.kernels.spectral_fusion import longest

    return f"n <= {longest(arch)} (float64: n <= {longest(arch, torch.float64)})"


#: priority order for ``backend="auto"``
BACKENDS: tuple[Backend, ...] = (
    TritonBackend(KERNEL_DTYPES, {"n": MAX_N, "d": MAX_D}, _triton_fits, _triton_coverage),
    TorchBackend(),
)


@torch.library.custom_op("tedrec_fast::spectral_filter", mutates_args=())
def _spectral_filter_op(x: torch.Tensor, complex_weight: torch.Tensor) -> torch.Tensor:
    from tedrec_fast.ops.spectral_filter.triton import spectral_filter_forward

    return spectral_filter_forward(x, complex_weight)


@_spectral_filter_op.register_fake
def _(x, complex_weight):
    return x.new_empty(x.shape)


@torch.library.custom_op("tedrec_fast::spectral_filter_backward", mutates_args=())
def _spectral_filter_backward_op(grad_out: torch.Tensor, x: torch.Tensor, complex_weight: torch.Tensor
                                 ) -> list[torch.Tensor]:
    from tedrec_fast.ops.spectral_filter.triton import spectral_filter_backward

    return list(spectral_filter_backward(grad_out, x, complex_weight))


@_spectral_filter_backward_op.register_fake
def _(grad_out, x, complex_weight):
    return [x.new_empty(x.shape), complex_weight.new_empty(complex_weight.shape)]


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    return tuple(_spectral_filter_backward_op(grad_out, *ctx.saved_tensors))


_spectral_filter_op.register_autograd(_backward, setup_context=_setup_context)


def spectral_filter(x: torch.Tensor, complex_weight: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Learned spectral filter along the sequence: ``irfft(rfft(x) * view_as_complex(complex_weight))``.

    Args:
        x: ``(B, n, d)``, any strides.
        complex_weight: ``(1, n // 2 + 1, d, 2)`` (real, imaginary), FMLP-Rec's and TedRec's layout.
        backend: ``"auto"`` (Triton on CUDA, the torch reference elsewhere), ``"triton"`` or ``"torch"``.

    Returns ``(B, n, d)`` in ``x``'s dtype (the autocast dtype under autocast). Numerics as for
    :func:`tedrec_fast.spectral_fusion`.
    """
    if not isinstance(backend, str):
        raise TypeError(f"spectral_filter: backend must be a string, got {type(backend).__name__}")
    names = ("x", "complex_weight")
    tensors = autocast_inputs((x, complex_weight))
    check_float_tensors("spectral_filter", names, tensors)
    B, n, d = check_sequence_filter("spectral_filter", tensors[0], "x", tensors[1])
    problem = Problem(tensors[0].device, tensors[0].dtype, (("B", B), ("n", n), ("d", d)))
    if choose_backend(BACKENDS, backend, problem, op="spectral_filter").name == "torch":
        return spectral_filter_reference(*tensors)
    with torch.autocast(tensors[0].device.type, enabled=False):
        return _spectral_filter_op(*tensors)
