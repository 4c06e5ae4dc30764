"""The full-catalog cross-entropy op: argument checks, backends, the chunked torch path, custom op, autograd.

``full_catalog_cross_entropy(...)`` validates its arguments (before any launch), applies autocast,
picks a backend and runs it:

* ``"triton"``: the kernels in :mod:`tedrec_fast.kernels.full_catalog_ce` (online log-sum-exp over item
  tiles, recompute in backward). CUDA, or CPU tensors under ``TRITON_INTERPRET=1``.
* ``"torch-chunked"``: the same algorithm in torch over chunks of items (at most ``CHUNK_ELEMENTS``
  logits live at a time): never holds ``B x |V|``; the CPU path.
* ``"torch"``: :func:`~tedrec_fast.ops.full_catalog_ce.reference.full_catalog_cross_entropy_reference`
  with PyTorch's autograd: the spec; materialises the logits.

The two fused backends run inside the custom op ``tedrec_fast::full_catalog_ce`` (per-row loss and
log-sum-exp) with a fake implementation and a registered backward (``tedrec_fast::full_catalog_ce_backward``,
which recomputes the logits tile by tile), so ``torch.compile(fullgraph=True)`` traces them without a
graph break. The reduction runs in torch on the device (no host sync).
"""

from __future__ import annotations

import math

import torch

from tedrec_fast.ops.checks import autocast_inputs
from tedrec_fast.ops.dispatch import Backend, Problem, TorchBackend, TritonBackend, choose_backend
from tedrec_fast.ops.full_catalog_ce.reference import full_catalog_cross_entropy_reference

__all__ = ["full_catalog_cross_entropy", "BACKENDS", "CHUNK_ELEMENTS", "check_full_catalog_ce_args"]

EPS = 1e-12  # F.normalize's default
REDUCTIONS = ("mean", "sum", "none")
#: logits per chunk of the torch-chunked backend (16 MB in fp32)
CHUNK_ELEMENTS = 1 << 22
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_OP = "full_catalog_cross_entropy"


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def check_full_catalog_ce_args(
    query: object, item_weight: object, targets: object, temperature: object, ignore_index: object, reduction: object
) -> None:
    """Raise ``TypeError``/``ValueError`` naming the argument if the op's inputs are malformed.

    Does not look at the values of ``targets`` (see :func:`_check_target_range`).
    """
    for name, x in (("query", query), ("item_weight", item_weight), ("targets", targets)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(x).__name__}")
    for name, x in (("query", query), ("item_weight", item_weight)):
        if not x.dtype.is_floating_point:
            raise TypeError(f"{_OP}: {name} must be a real floating-point tensor "
                            f"(float32, bfloat16, float16 or float64), got {x.dtype}")
    if item_weight.dtype != query.dtype:
        raise TypeError(f"{_OP}: item_weight has dtype {item_weight.dtype} but query has {query.dtype}; "
                        "cast them to one dtype or run under torch.autocast")
    if targets.dtype != torch.int64:
        raise TypeError(f"{_OP}: targets must be an int64 (long) tensor, got {targets.dtype}")
    for name, x in (("item_weight", item_weight), ("targets", targets)):
        if x.device != query.device:
            raise ValueError(f"{_OP}: {name} is on {x.device} but query is on {query.device}")
    if query.dim() != 2:
        raise ValueError(f"{_OP}: query must have shape (B, d), got {tuple(query.shape)}")
    if item_weight.dim() != 2:
        raise ValueError(f"{_OP}: item_weight must have shape (|V|, d), got {tuple(item_weight.shape)}")
    B, d = query.shape
    if d < 1:
        raise ValueError(f"{_OP}: query must have a hidden size d >= 1, got {tuple(query.shape)}")
    if item_weight.shape[1] != d:
        raise ValueError(f"{_OP}: item_weight must have hidden size d={d} like query, got {tuple(item_weight.shape)}")
    if item_weight.shape[0] < 1:
        raise ValueError(f"{_OP}: item_weight must have at least one row (item), got {tuple(item_weight.shape)}")
    if targets.dim() != 1 or targets.shape[0] != B:
        raise ValueError(f"{_OP}: targets must have shape (B,) = ({B},), got {tuple(targets.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{_OP}: temperature must be a float, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{_OP}: temperature must be finite and > 0, got {temperature}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"{_OP}: ignore_index must be an int, got {type(ignore_index).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{_OP}: unknown reduction {reduction!r}; expected one of {REDUCTIONS}")


def _check_target_range(targets: torch.Tensor, n_items: int, ignore_index: int) -> None:
    """Reject a target other than ``ignore_index`` outside ``[0, n_items)``, without a host sync on GPU.

    On CPU: ``ValueError``. On CUDA the check is a device-side assertion (``torch._assert_async``), so a
    training step never waits for the device; a bad target then fails the next synchronising call with
    this message. Skipped while ``torch.compile`` traces; the kernels never read out of bounds either
    way (an out-of-range target's loss is the log-sum-exp alone).
    """
    if torch.compiler.is_compiling():
        return
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= n_items))
    message = f"{_OP}: targets must be in [0, {n_items}) or equal ignore_index={ignore_index}"
    if targets.is_cuda:
        torch._assert_async(~bad.any(), message)
    elif bad.any():
        raise ValueError(f"{message}; got {targets[bad][0].item()}")


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------
class TorchChunkedBackend(Backend):
    """Online log-sum-exp over item chunks in torch, recompute in backward. Runs everywhere."""

    name = "torch-chunked"


#: priority order for ``backend="auto"``; the ``"torch"`` reference materialises the ``B x |V|`` logits
BACKENDS: tuple[Backend, ...] = (TritonBackend(_KERNEL_DTYPES, {}), TorchChunkedBackend(), TorchBackend())


# --------------------------------------------------------------------------------------------
# Shared pieces of the fused backends
# --------------------------------------------------------------------------------------------
def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_scales(x: torch.Tensor, temperature: float, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, pi)`` in the accumulation dtype, with ``F.normalize``'s eps.

    Normalising: ``scale = 1 / (max(|x|, eps) * temperature)`` and ``pi = 1 / |x|^2`` where ``|x| > eps``
    (0 where the clamp is active: there the Jacobian is ``I / eps``). Otherwise ``scale = 1 / temperature``
    and ``pi = 0``. The backward of a normalised row is ``scale * (acc - x * <acc, x> * pi)``.
    """
    acc = _acc_dtype(x.dtype)
    if not normalize:
        return (torch.full((x.shape[0],), 1.0 / temperature, dtype=acc, device=x.device),
                torch.zeros(x.shape[0], dtype=acc, device=x.device))
    norm = torch.linalg.vector_norm(x, dim=1, dtype=acc)
    scale = 1.0 / (norm.clamp_min(EPS) * temperature)
    pi = torch.where(norm > EPS, 1.0 / norm.square(), torch.zeros_like(norm))
    return scale, pi


def _chunk_size(n_queries: int, n_items: int) -> int:
    """Items per chunk of the torch-chunked backend: about ``CHUNK_ELEMENTS`` logits."""
    return max(1, min(n_items, CHUNK_ELEMENTS // max(1, n_queries)))


def _chunked_forward(query, item_weight, targets, temperature, normalize, ignore_index):
    """Per-row ``(loss, lse)`` by an online log-sum-exp over item chunks (torch-chunked backend)."""
    acc = _acc_dtype(query.dtype)
    V = item_weight.shape[0]
    q_scale, _ = _row_scales(query, temperature, normalize)
    c_scale, _ = _row_scales(item_weight, 1.0, normalize)
    q = query.to(acc) * q_scale[:, None]
    lse = torch.full((query.shape[0],), float("-inf"), dtype=acc, device=query.device)
    tgt_logit = torch.zeros_like(lse)
    step = _chunk_size(query.shape[0], V)
    for v0 in range(0, V, step):
        v1 = min(v0 + step, V)
        logits = q @ (item_weight[v0:v1].to(acc) * c_scale[v0:v1, None]).t()
        lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        in_chunk = (targets >= v0) & (targets < v1)
        picked = logits.gather(1, (targets - v0).clamp(0, v1 - v0 - 1)[:, None])[:, 0]
        tgt_logit += torch.where(in_chunk, picked, torch.zeros_like(picked))
    loss = torch.where(targets != ignore_index, lse - tgt_logit, torch.zeros_like(lse))
    return loss, lse


def _chunked_backward(grad_loss, query, item_weight, targets, lse, temperature, normalize, ignore_index):
    """``(d_query, d_item_weight)`` recomputing each item chunk's logits (torch-chunked backend)."""
    acc = _acc_dtype(query.dtype)
    V = item_weight.shape[0]
    q_scale, q_pi = _row_scales(query, temperature, normalize)
    c_scale, c_pi = _row_scales(item_weight, 1.0, normalize)
    q_raw = query.to(acc)
    q = q_raw * q_scale[:, None]
    w = torch.where(targets != ignore_index, grad_loss.to(acc), torch.zeros_like(lse))
    acc_q = torch.zeros_like(q)
    d_item = torch.empty_like(item_weight)
    step = _chunk_size(query.shape[0], V)
    for v0 in range(0, V, step):
        v1 = min(v0 + step, V)
        c_raw = item_weight[v0:v1].to(acc)
        c = c_raw * c_scale[v0:v1, None]
        probs = torch.exp(q @ c.t() - lse[:, None])
        onehot = targets[:, None] == torch.arange(v0, v1, device=query.device)[None, :]
        grad = w[:, None] * (probs - onehot.to(acc))
        acc_q += grad @ c
        acc_c = grad.t() @ q
        d_item[v0:v1] = _normalize_backward(acc_c, c_raw, c_scale[v0:v1], c_pi[v0:v1])
    return _normalize_backward(acc_q, q_raw, q_scale, q_pi).to(query.dtype), d_item


def _normalize_backward(acc: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    return scale[:, None] * (acc - x * ((acc * x).sum(1) * pi)[:, None])


# --------------------------------------------------------------------------------------------
# Custom op (the fused backends)
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("tedrec_fast::full_catalog_ce", mutates_args=())
def _full_catalog_ce_op(
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    normalize: bool,
    ignore_index: int,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    if impl == "torch-chunked":
        return _chunked_forward(query, item_weight, targets, temperature, normalize, ignore_index)
    from tedrec_fast.ops.full_catalog_ce.triton import full_catalog_ce_forward

    q_scale, _ = _row_scales(query, temperature, normalize)
    c_scale, _ = _row_scales(item_weight, 1.0, normalize)
    return full_catalog_ce_forward(query, item_weight, targets, q_scale, c_scale, ignore_index)


@_full_catalog_ce_op.register_fake
def _(query, item_weight, targets, temperature, normalize, ignore_index, impl):
    acc = _acc_dtype(query.dtype)
    return query.new_empty(query.shape[0], dtype=acc), query.new_empty(query.shape[0], dtype=acc)


@torch.library.custom_op("tedrec_fast::full_catalog_ce_backward", mutates_args=())
def _full_catalog_ce_backward_op(
    grad_loss: torch.Tensor,
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    temperature: float,
    normalize: bool,
    ignore_index: int,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    if impl == "torch-chunked":
        return _chunked_backward(grad_loss, query, item_weight, targets, lse, temperature, normalize, ignore_index)
    from tedrec_fast.ops.full_catalog_ce.triton import full_catalog_ce_backward

    q_scale, q_pi = _row_scales(query, temperature, normalize)
    c_scale, c_pi = _row_scales(item_weight, 1.0, normalize)
    return full_catalog_ce_backward(grad_loss.contiguous(), query, item_weight, targets, lse, q_scale, c_scale,
                                    q_pi, c_pi, ignore_index)


@_full_catalog_ce_backward_op.register_fake
def _(grad_loss, query, item_weight, targets, lse, temperature, normalize, ignore_index, impl):
    return query.new_empty(query.shape), item_weight.new_empty(item_weight.shape)


def _setup_context(ctx, inputs, output):
    query, item_weight, targets, temperature, normalize, ignore_index, impl = inputs
    ctx.save_for_backward(query, item_weight, targets, output[1])
    ctx.args = (temperature, normalize, ignore_index, impl)
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_loss, grad_lse):
    query, item_weight, targets, lse = ctx.saved_tensors
    d_query, d_item = _full_catalog_ce_backward_op(grad_loss, query, item_weight, targets, lse, *ctx.args)
    return d_query, d_item, None, None, None, None, None


_full_catalog_ce_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# Public functional form
# --------------------------------------------------------------------------------------------
def full_catalog_cross_entropy(
    query: torch.Tensor,
    item_weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 0.07,
    normalize: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """Cross-entropy over the whole item catalog without materialising the ``B x |V|`` logits.

    Equals ``F.cross_entropy(normalize(query) @ normalize(item_weight).T / temperature, targets,
    ignore_index=ignore_index, reduction=reduction)`` with ``F.normalize`` semantics (L2, eps 1e-12: a
    zero row, like the padding item, gives zero logits) -- TedRec's loss (docs/DESIGN.md section 1).

    Args:
        query: sequence representations, ``(B, d)``, any strides.
        item_weight: the item table, ``(|V|, d)``; every row is a class (the padding row included).
        targets: ``(B,)`` int64 class indices in ``[0, |V|)`` or ``ignore_index``.
        temperature: divides every logit, normalised or not. With ``normalize=False`` pass
            ``temperature=1.0`` for SASRec's plain dot-product softmax (the default 0.07 is TedRec's).
        normalize: L2-normalise both sides (cosine logits); ``False`` uses raw dot products.
        ignore_index: rows with this target contribute no loss and no gradient.
        reduction: ``"mean"`` (over non-ignored rows, NaN when there are none, as ``F.cross_entropy``),
            ``"sum"`` or ``"none"`` (per row, 0 for ignored rows).
        backend: ``"auto"`` (Triton on CUDA, torch-chunked elsewhere), ``"triton"``, ``"torch-chunked"``
            or ``"torch"`` (the reference).

    Returns:
        The loss in float32 (float64 for float64 inputs, also for 16-bit inputs: it is accumulated in
        float32); a scalar, or ``(B,)`` for ``reduction="none"``.

    ``query`` and ``item_weight`` must share one device and one floating dtype, except under
    ``torch.autocast``, where both are cast to the autocast dtype. Out-of-range targets raise
    ``ValueError`` on CPU and a device-side assertion on CUDA (no host sync); the check is skipped under
    ``torch.compile``. The fused backends are deterministic (no atomics).
    Numerics of the Triton backend follow ``torch.get_float32_matmul_precision()`` for float32 inputs
    (``"highest"``: 3xTF32 products; else one TF32 product); bf16/fp16 are upcast to fp32 on load.
    """
    if not isinstance(backend, str):
        raise TypeError(f"{_OP}: backend must be a string, got {type(backend).__name__}")
    query, item_weight = autocast_inputs((query, item_weight))
    check_full_catalog_ce_args(query, item_weight, targets, temperature, ignore_index, reduction)
    B, d = query.shape
    V = item_weight.shape[0]
    problem = Problem(query.device, query.dtype, (("B", B), ("V", V), ("d", d)))
    chosen = choose_backend(BACKENDS, backend, problem, op=_OP)
    _check_target_range(targets, V, ignore_index)
    temperature = float(temperature)
    if chosen.name == "torch":
        return full_catalog_cross_entropy_reference(query, item_weight, targets, temperature, bool(normalize),
                                                    ignore_index, reduction)
    with torch.autocast(query.device.type, enabled=False):
        loss, _ = _full_catalog_ce_op(query, item_weight, targets, temperature, bool(normalize), ignore_index,
                                      chosen.name)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (targets != ignore_index).sum()
