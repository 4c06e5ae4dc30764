"""The MoE-modulation op: argument checks, backends, dispatcher.

``moe_modulation(items, table, ...)`` is TedRec's MoE modulation of the frozen text vectors ``table[items]``
(:func:`~tedrec_fast.ops.moe_modulation.reference.moe_modulation_reference` is the spec) computed without
any ``(B, n, D)`` tensor per expert:

* the gate logits and each expert's dense projection ``W_k x_u`` once per distinct item ``u`` of the batch;
* ``W_k (m * x) = W_k x - W_k ((1 - m) * x)``: per position and expert only the ``~p * D`` dropped
  coordinates are visited (``core``, :mod:`.core`), their masks made from a counter-based generator
  (:mod:`tedrec_fast.ops.philox`) where they are used and remade in the backward pass;
* ``W_k s_{k,j}`` once per position ``j`` (not per sequence).

Backends: ``"cpp"`` (the C++ core, CPU, float32/float64; built at first use), ``"triton"`` (CUDA, or CPU
tensors under ``TRITON_INTERPRET=1``, never picked by auto on a CPU), ``"torch"`` (the same semantics in
torch ops, any device; the fallback). All three draw the same masks for the same seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tedrec_fast.ops.checks import check_dropout_args, check_float_tensors
from tedrec_fast.ops.dispatch import Backend, CppBackend, Problem, TorchBackend, TritonBackend, choose_backend
from tedrec_fast.ops.moe_modulation import cpu
from tedrec_fast.ops.moe_modulation.core import MoECore
from tedrec_fast.ops.moe_modulation.reference import NOISE_EPSILON
from tedrec_fast.ops.philox import draw_seed

__all__ = ["moe_modulation", "BACKENDS"]

_OP = "moe_modulation"
KERNEL_DTYPES = (torch.float32, torch.float64)


#: priority order for ``backend="auto"``
BACKENDS: tuple[Backend, ...] = (TritonBackend(KERNEL_DTYPES, {}), CppBackend(KERNEL_DTYPES, cpu.cpu_unavailable),
                                  TorchBackend())


def _check(items, table, w_gate, w_noise, weight, bias, p, training, noise, seed) -> None:
    check_float_tensors(_OP, ("table", "w_gate", "w_noise", "weight", "bias"), (table, w_gate, w_noise, weight, bias))
    if not isinstance(items, torch.Tensor) or items.dtype.is_floating_point or items.dtype.is_complex \
            or items.dtype == torch.bool:
        raise TypeError(f"{_OP}: items must be an integer tensor, got {getattr(items, 'dtype', type(items).__name__)}")
    if items.dim() != 2:
        raise ValueError(f"{_OP}: items must have shape (B, n), got {tuple(items.shape)}")
    if items.device != table.device:
        raise ValueError(f"{_OP}: items is on {items.device} but table is on {table.device}")
    if table.dim() != 2:
        raise ValueError(f"{_OP}: table must have shape (n_items, D), got {tuple(table.shape)}")
    if table.requires_grad:
        raise ValueError(f"{_OP}: table must not require grad (frozen text vectors); use moe_modulation_reference")
    D = table.shape[1]
    if weight.dim() != 3 or weight.shape[2] != D:
        raise ValueError(f"{_OP}: weight must have shape (E, H, D={D}), got {tuple(weight.shape)}")
    E = weight.shape[0]
    for name, w in (("w_gate", w_gate), ("w_noise", w_noise)):
        if tuple(w.shape) != (D, E):
            raise ValueError(f"{_OP}: {name} must have shape (D, E) = {(D, E)}, got {tuple(w.shape)}")
    if bias.dim() != 3 or bias.shape[0] != E or bias.shape[2] != D or bias.shape[1] not in (1, items.shape[1]):
        raise ValueError(f"{_OP}: bias must have shape (E, 1 or n, D) = ({E}, 1 or {items.shape[1]}, {D}), "
                         f"got {tuple(bias.shape)}")
    check_dropout_args(_OP, p, training, seed)
    if noise is not None and (not isinstance(noise, torch.Tensor) or tuple(noise.shape) != (*items.shape, E)):
        raise ValueError(f"{_OP}: noise must be a tensor of shape (B, n, E) = {(*items.shape, E)}, "
                         f"got {getattr(noise, 'shape', type(noise).__name__)}")


def moe_modulation(items: torch.Tensor, table: torch.Tensor, w_gate: torch.Tensor, w_noise: torch.Tensor,
                   weight: torch.Tensor, bias: torch.Tensor, p: float, training: bool,
                   noise: torch.Tensor | None = None, seed: int | None = None, backend: str = "auto") -> torch.Tensor:
    """MoE modulation of the text vectors of ``items``: ``(B, n)`` item ids -> ``(B, n, H)``.

    Args:
        items: integer ``(B, n)``, rows of ``table``.
        table: frozen text vectors ``(n_items, D)`` (must not require grad).
        w_gate, w_noise: gate and noise weights ``(D, E)``.
        weight: expert weights ``(E, H, D)``; bias: modulation tables ``(E, P, D)``, ``P`` 1 or ``n``.
        p: dropout rate of the experts' input (used in training only).
        training: gate noise and dropout on.
        noise: gate noise ``(B, n, E)`` (default in training: ``torch.randn``, drawn first).
        seed: the masks' seed (default in training with ``p > 0``: drawn from torch's CPU generator after the
            noise, so ``torch.manual_seed`` reproduces a run).
        backend: ``"auto"`` (Triton on CUDA, the C++ core on a CPU with a compiler, else torch), ``"triton"``,
            ``"cpp"`` or ``"torch"``.

    Returns ``(B, n, H)`` in the weights' dtype, also under ``torch.autocast`` (which is disabled inside: the
    C++ and Triton cores compute in float32 or float64). Gradients reach every tensor argument except
    ``items``, ``table`` and ``noise``.
    """
    if not isinstance(backend, str):
        raise TypeError(f"{_OP}: backend must be a string, got {type(backend).__name__}")
    _check(items, table, w_gate, w_noise, weight, bias, p, training, noise, seed)
    B, n = items.shape
    E, H, D = weight.shape
    problem = Problem(table.device, table.dtype, (("B", B), ("n", n), ("D", D), ("H", H), ("E", E)))
    impl = choose_backend(BACKENDS, backend, problem, op=_OP).name
    with torch.autocast(table.device.type, enabled=False):
        return _forward(items, table, w_gate, w_noise, weight, bias, p, training, noise, seed, impl)


def _forward(items, table, w_gate, w_noise, weight, bias, p, training, noise, seed, impl) -> torch.Tensor:
    B, n = items.shape
    E, H, D = weight.shape
    unique, inverse = torch.unique(items, return_inverse=True)
    if unique.numel() and (int(unique[0]) < 0 or int(unique[-1]) >= table.shape[0]):
        raise ValueError(f"{_OP}: items must lie in [0, {table.shape[0]}), got values in "
                         f"[{int(unique[0])}, {int(unique[-1])}]")
    xu = table[unique].contiguous()
    logits = F.embedding(inverse, xu @ w_gate)
    if training:
        if noise is None:
            noise = torch.randn(B, n, E, dtype=table.dtype, device=table.device)
        logits = logits + noise.to(logits.dtype) * (F.softplus(F.embedding(inverse, xu @ w_noise)) + NOISE_EPSILON)
    gates = torch.softmax(logits, dim=-1)
    rate = float(p) if training else 0.0
    if rate > 0 and seed is None:
        seed = draw_seed()
    P = (xu @ weight.reshape(E * H, D).t()).view(-1, E, H)
    WT = weight.transpose(1, 2).contiguous()
    core = MoECore.apply(gates.reshape(B * n, E).contiguous(), P, WT, inverse.reshape(-1), xu, rate, seed or 0, impl)
    positional = torch.bmm(bias, WT)  # (E, P, H): W_k s_{k, j} once per position
    if bias.shape[1] == 1:
        return core.view(B, n, H) - gates @ positional[:, 0]
    return core.view(B, n, H) - torch.einsum("bjk,kjh->bjh", gates, positional)
