"""The dropout op: argument checks, backends, dispatcher and autograd function.

``dropout(x, p, training)`` has the distribution of :func:`~tedrec_fast.ops.dropout.reference.dropout_reference`
(torch's ``F.dropout``: each element kept with probability ``1 - p``, independently, and scaled by ``1 / (1 - p)``).
Backends:

* ``"cpp"`` (the C++ core, CPU float32/float64): element ``i`` of the contiguous input is dropped by the
  counter-based generator of :mod:`tedrec_fast.ops.philox` at counter ``i // 4``, lane ``i % 4``, from a seed
  drawn from torch's CPU generator (``torch.manual_seed`` reproduces a run). The backward pass regenerates the
  mask from the seed, so nothing but the seed is kept for it. On the development CPU it is several times faster
  than ``F.dropout``, whose ``bernoulli_`` dominates (bench/NOTES.md).
* ``"torch"``: ``F.dropout`` itself (any device and dtype; the GPU path, and the fallback without a compiler).
"""

from __future__ import annotations

import torch

from tedrec_fast.ops.checks import check_dropout_args
from tedrec_fast.ops.dispatch import Backend, CppBackend, Problem, TorchBackend, choose_backend
from tedrec_fast.ops.dropout import cpu
from tedrec_fast.ops.dropout.reference import dropout_reference
from tedrec_fast.ops.philox import draw_seed

__all__ = ["dropout", "BACKENDS"]

_OP = "dropout"
KERNEL_DTYPES = (torch.float32, torch.float64)

#: priority order for ``backend="auto"``
BACKENDS: tuple[Backend, ...] = (CppBackend(KERNEL_DTYPES, cpu.cpu_unavailable), TorchBackend())


class _CounterDropout(torch.autograd.Function):
    """``_CounterDropout.apply(x, p, seed)``: the C++ core forward, and the same mask on the gradient backward."""

    @staticmethod
    def forward(ctx, x, p, seed):
        ctx.p, ctx.seed = p, seed
        return cpu.apply(x.contiguous(), p, seed)

    @staticmethod
    def backward(ctx, grad_out):
        return cpu.apply(grad_out.contiguous(), ctx.p, ctx.seed), None, None


def dropout(x: torch.Tensor, p: float, training: bool = True, seed: int | None = None,
            backend: str = "auto") -> torch.Tensor:
    """Dropout of ``x`` at rate ``p``: in training each element is zeroed with probability ``p``, the others are
    scaled by ``1 / (1 - p)``; ``x`` itself outside training or at ``p = 0``.

    Args:
        x: a floating-point tensor, any shape and strides (the result is contiguous).
        p: the drop rate, in ``[0, 1)``.
        training: dropout on (else the identity).
        seed: the ``"cpp"`` backend's mask seed (default: drawn from torch's CPU generator); the same seed gives
            the same mask. Not accepted by the ``"torch"`` backend, whose masks come from torch's generator.
        backend: ``"auto"`` (the C++ core on a CPU with a compiler, else torch), ``"cpp"`` or ``"torch"``.
    """
    if not isinstance(backend, str):
        raise TypeError(f"{_OP}: backend must be a string, got {type(backend).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{_OP}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{_OP}: x must be a real floating-point tensor, got {x.dtype}")
    check_dropout_args(_OP, p, training, seed)
    problem = Problem(x.device, x.dtype, (("numel", x.numel()),))
    chosen = choose_backend(BACKENDS, backend, problem, op=_OP).name
    if not training or p == 0:
        return x
    if chosen == "torch":
        if seed is not None:
            raise ValueError(f"{_OP}: seed is not accepted by the torch backend (torch's generator draws its masks)")
        return dropout_reference(x, p, True)
    return _CounterDropout.apply(x, float(p), draw_seed() if seed is None else seed)
