"""The spectral-fusion op: argument checks, backends, dispatcher, custom op and autograd.

``spectral_fusion(...)`` validates its arguments (before any launch), applies autocast, picks a
backend and runs it:

* ``"torch"``: :func:`~tedrec_fast.ops.spectral_fusion.reference.spectral_fusion_reference` with
  PyTorch's own autograd: the spec, and the CPU path.
* ``"triton"``: the fused kernels in :mod:`tedrec_fast.kernels.spectral_fusion`. On CPU tensors it
  runs under the Triton interpreter when ``TRITON_INTERPRET=1``.
* ``"cuda"``: the CUDA C++ kernels of ``csrc/spectral_fusion.cu`` (host side:
  :mod:`tedrec_fast.ops.spectral_fusion.cuda`), through the extension ``tedrec_fast._C`` or NVRTC;
  on CPU tensors through the emulator when ``TEDREC_FAST_CUDA_EMULATE=1`` (tests).

Both fused backends run as the custom op ``tedrec_fast::spectral_fusion`` (the backend's name is an
argument) with a fake (meta) implementation and a registered backward, so
``torch.compile(fullgraph=True)`` traces it without a graph break.
"""

from __future__ import annotations

import functools

import torch

from tedrec_fast.cuda.loaders import require_loader
from tedrec_fast.ops.checks import autocast_inputs, check_float_tensors, check_sequence_filter
from tedrec_fast.ops.dispatch import Backend, CudaBackend, Problem, TorchBackend, TritonBackend, choose_backend
from tedrec_fast.ops.limits import KERNEL_DTYPES, MAX_D, MAX_N
from tedrec_fast.ops.spectral_fusion.cuda import (
    CUDA_DTYPES,
    chunk_width_why_not,
    spectral_fusion_backward_cuda,
    spectral_fusion_forward_cuda,
)
from tedrec_fast.ops.spectral_fusion.reference import spectral_fusion_reference

__all__ = ["spectral_fusion", "BACKENDS", "MAX_N", "MAX_D", "check_spectral_fusion_args"]

_ARG_NAMES = (
    "item_emb",
    "text_emb",
    "complex_weight",
    "item_gate_weight",
    "item_gate_bias",
    "fusion_gate_weight",
    "fusion_gate_bias",
)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def check_spectral_fusion_args(*tensors: object) -> None:
    """Raise ``TypeError``/``ValueError`` naming the argument if the op's inputs are malformed."""
    check_float_tensors("spectral_fusion", _ARG_NAMES, tensors)
    item_emb, text_emb, complex_weight, gi_w, gi_b, gf_w, gf_b = tensors
    if item_emb.dim() == 3 and text_emb.shape != item_emb.shape:
        raise ValueError(
            f"spectral_fusion: text_emb must have the shape of item_emb {tuple(item_emb.shape)}, "
            f"got {tuple(text_emb.shape)}"
        )
    _, _, d = check_sequence_filter("spectral_fusion", item_emb, "item_emb", complex_weight)
    for name, w, b in (("item_gate", gi_w, gi_b), ("fusion_gate", gf_w, gf_b)):
        if tuple(w.shape) not in ((1, d), (d,)):
            raise ValueError(f"spectral_fusion: {name}_weight must have shape (1, {d}), got {tuple(w.shape)}")
        if b.numel() != 1 or b.dim() > 1:
            raise ValueError(f"spectral_fusion: {name}_bias must have shape (1,), got {tuple(b.shape)}")


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
def _triton_fits(problem: Problem, arch: int) -> str | None:
    """Why no Triton launch configuration runs ``problem`` on ``sm_<arch>`` (kernels/spectral_fusion.py)."""
    from tedrec_fast.kernels.spectral_fusion import config_why_not

    return config_why_not(problem.size("n"), arch, problem.dtype)


def _triton_coverage(arch: int) -> str:
    from tedrec_fast.kernels.spectral_fusion import longest

    return f"n <= {longest(arch)} (float64: n <= {longest(arch, torch.float64)})"


def _cuda_fits(problem: Problem, arch: int) -> str | None:
    return chunk_width_why_not(problem.size("n"), arch)


def _cuda_coverage(arch: int) -> str:
    return f"n <= {max(n for n in range(1, MAX_N + 1) if chunk_width_why_not(n, arch) is None)}"


#: priority order for ``backend="auto"``: Triton wherever it runs (the CUDA C++ backend is picked by
#: auto only where Triton cannot run, e.g. sequences longer than the Triton configurations of the GPU's
#: target cover; see bench/NOTES.md for the measurements this rule waits on)
BACKENDS: tuple[Backend, ...] = (
    TritonBackend(KERNEL_DTYPES, {"n": MAX_N, "d": MAX_D}, _triton_fits, _triton_coverage),
    CudaBackend(CUDA_DTYPES, {"n": MAX_N, "d": MAX_D}, _cuda_fits, _cuda_coverage),
    TorchBackend(),
)


def _forward_impl(backend: str, device: torch.device):
    if backend == "triton":
        from tedrec_fast.ops.spectral_fusion.triton import spectral_fusion_forward

        return spectral_fusion_forward
    return functools.partial(spectral_fusion_forward_cuda, require_loader(device))


def _backward_impl(backend: str, device: torch.device):
    if backend == "triton":
        from tedrec_fast.ops.spectral_fusion.triton import spectral_fusion_backward

        return spectral_fusion_backward
    return functools.partial(spectral_fusion_backward_cuda, require_loader(device))


# --------------------------------------------------------------------------------------------
# Custom op (the fused backends: ``backend`` is "triton" or "cuda")
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("tedrec_fast::spectral_fusion", mutates_args=())
def _spectral_fusion_op(
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    backend: str,
) -> torch.Tensor:
    return _forward_impl(backend, item_emb.device)(
        item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias
    )


@_spectral_fusion_op.register_fake
def _(item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight, fusion_gate_bias,
      backend):
    return item_emb.new_empty(item_emb.shape)


@torch.library.custom_op("tedrec_fast::spectral_fusion_backward", mutates_args=())
def _spectral_fusion_backward_op(
    grad_out: torch.Tensor,
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    backend: str,
) -> list[torch.Tensor]:
    return list(
        _backward_impl(backend, item_emb.device)(
            grad_out, item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias,
            fusion_gate_weight, fusion_gate_bias,
        )
    )


@_spectral_fusion_backward_op.register_fake
def _(grad_out, item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight,
      fusion_gate_bias, backend):
    return [x.new_empty(x.shape) for x in (item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias,
                                           fusion_gate_weight, fusion_gate_bias)]


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:-1])
    ctx.backend = inputs[-1]


def _backward(ctx, grad_out):
    return (*_spectral_fusion_backward_op(grad_out, *ctx.saved_tensors, ctx.backend), None)


_spectral_fusion_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# Public functional form
# --------------------------------------------------------------------------------------------
def spectral_fusion(
    item_emb: torch.Tensor,
    text_emb: torch.Tensor,
    complex_weight: torch.Tensor,
    item_gate_weight: torch.Tensor,
    item_gate_bias: torch.Tensor,
    fusion_gate_weight: torch.Tensor,
    fusion_gate_bias: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """TedRec's text-ID fusion: ``2 * (E2 * sigmoid(E2 @ g_i + b_i) + F * sigmoid(F @ g_f + b_f))``.

    ``F = irfft(rfft(T) * rfft(E))`` and ``E2 = irfft(rfft(E) * W)`` along the sequence (ortho norm),
    ``W = view_as_complex(complex_weight)``; exact semantics in docs/DESIGN.md section 2.

    Args:
        item_emb: ID embeddings ``E``, ``(B, n, d)``, any strides.
        text_emb: text embeddings ``T``, ``(B, n, d)``.
        complex_weight: the learned filter, ``(1, n // 2 + 1, d, 2)`` (real, imaginary).
        item_gate_weight, item_gate_bias: ``nn.Linear(d, 1)`` weight ``(1, d)`` and bias ``(1,)``.
        fusion_gate_weight, fusion_gate_bias: the same for the fusion gate.
        backend: ``"auto"`` (Triton on CUDA, the torch reference elsewhere), ``"triton"``, ``"cuda"`` (the
            CUDA C++ kernels: fp32, bf16, fp16; exact fp32 arithmetic, deterministic) or ``"torch"``.

    Returns:
        ``V``, ``(B, n, d)``, contiguous, in the inputs' dtype (the autocast dtype under autocast).

    All tensors must share one device and one floating dtype, except under ``torch.autocast``,
    where they are cast to the autocast dtype. Numerics of the Triton backend (accumulation is
    always fp32, float64 for float64 inputs): float32 inputs follow
    ``torch.get_float32_matmul_precision()``: ``"highest"`` (the default) uses 3xTF32 products and
    matches the reference to ~1e-6 relative; ``"high"``/``"medium"`` use one TF32 product per
    multiply, ~5e-4 relative. bfloat16/float16 inputs are computed in fp32 (TF32 products) and
    rounded once on output. float64 is exact to ~1e-15.
    """
    if not isinstance(backend, str):
        raise TypeError(f"spectral_fusion: backend must be a string, got {type(backend).__name__}")
    tensors = (item_emb, text_emb, complex_weight, item_gate_weight, item_gate_bias, fusion_gate_weight,
               fusion_gate_bias)
    tensors = autocast_inputs(tensors)
    check_spectral_fusion_args(*tensors)
    B, n, d = tensors[0].shape
    problem = Problem(tensors[0].device, tensors[0].dtype, (("B", B), ("n", n), ("d", d)))
    chosen = choose_backend(BACKENDS, backend, problem, op="spectral_fusion")
    if chosen.name == "torch":
        return spectral_fusion_reference(*tensors).contiguous()  # V is contiguous whatever the inputs' strides
    with torch.autocast(tensors[0].device.type, enabled=False):
        return _spectral_fusion_op(*tensors, chosen.name)
