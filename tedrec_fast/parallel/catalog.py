"""Catalog parallelism: full-catalog cross-entropy with the item table sharded by rows across processes.

Every process holds the whole batch of queries and a contiguous block of item rows
``[shard_offset, shard_offset + V_local)``. Per query, the softmax normaliser is combined from the local
partials with two all-reduces (max, then sum of exponentials) and the target logit comes from the shard
that owns the target (an all-reduce sum of the owner's value and zeros). The loss equals the single-process
:func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy_reference` (mean over non-ignored
targets). Backward gives each process the gradient of its own shard and, after an all-reduce sum, the full
query gradient. Only gloo-compatible collectives are used (``all_reduce`` with MAX and SUM).

Memory per process is one ``B x V_local`` logits block (recomputed in backward, not saved).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["sharded_full_catalog_cross_entropy"]


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp, group: dist.ProcessGroup | None) -> torch.Tensor:
    dist.all_reduce(tensor, op=op, group=group)
    return tensor


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``scale * q @ c.T`` over the rows of ``c`` held by all processes of ``group``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        q: torch.Tensor,
        c: torch.Tensor,
        local_target: torch.Tensor,
        owned: torch.Tensor,
        weight: torch.Tensor,
        scale: float,
        group: dist.ProcessGroup | None,
    ) -> torch.Tensor:
        logits = (q @ c.t()) * scale
        row_max = _all_reduce(logits.max(dim=1).values, dist.ReduceOp.MAX, group)
        sum_exp = _all_reduce(torch.exp(logits - row_max.unsqueeze(1)).sum(dim=1), dist.ReduceOp.SUM, group)
        lse = row_max + torch.log(sum_exp)
        rows = owned.nonzero().squeeze(1)
        target_logit = torch.zeros_like(lse)
        target_logit[rows] = logits[rows, local_target[rows]]
        target_logit = _all_reduce(target_logit, dist.ReduceOp.SUM, group)
        ctx.save_for_backward(q, c, lse, local_target, owned, weight)
        ctx.scale, ctx.group = scale, group
        return ((lse - target_logit) * weight).sum()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor):  # type: ignore[override]
        q, c, lse, local_target, owned, weight = ctx.saved_tensors
        grad_logits = torch.exp((q @ c.t()) * ctx.scale - lse.unsqueeze(1))
        rows = owned.nonzero().squeeze(1)
        grad_logits[rows, local_target[rows]] -= 1.0
        grad_logits *= (weight * (grad_loss * ctx.scale)).unsqueeze(1)
        grad_q = _all_reduce(grad_logits @ c, dist.ReduceOp.SUM, ctx.group)
        return grad_q, grad_logits.t() @ q, None, None, None, None, None


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"sharded_full_catalog_cross_entropy: {name} must be an int, got {value!r}")
    return value


def sharded_full_catalog_cross_entropy(
    query: torch.Tensor,
    local_item_shard: torch.Tensor,
    shard_offset: int,
    n_items_total: int,
    targets: torch.Tensor,
    temperature: float = 0.07,
    normalize: bool = True,
    group: dist.ProcessGroup | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean cross-entropy over all ``n_items_total`` items when this process holds item rows
    ``shard_offset .. shard_offset + V_local - 1`` (``local_item_shard: (V_local, d)``).

    Args:
        query: ``(B, d)``, the same on every process of ``group``.
        local_item_shard: this process's rows of the item table (non-empty); the shards of ``group`` must
            tile ``[0, n_items_total)`` without overlap.
        shard_offset: index of the first local row in the whole table.
        n_items_total: rows of the whole table.
        targets: ``(B,)`` item indices in ``[0, n_items_total)``, the same on every process, or
            ``ignore_index`` (left out of the mean).
        temperature: logits are divided by it (> 0).
        normalize: L2-normalise queries and item rows first (cosine logits), as TedRec's loss does.
        group: the process group (default: the world).
        ignore_index: target value that contributes nothing.

    Returns the loss (a scalar, equal on every process); backward fills the query gradient (summed over the
    group) and the gradient of the local shard.
    """
    if not isinstance(query, torch.Tensor) or query.dim() != 2:
        raise ValueError(
            f"sharded_full_catalog_cross_entropy: query must be (B, d), got {getattr(query, 'shape', query)}"
        )
    shard = local_item_shard
    if not isinstance(shard, torch.Tensor) or shard.dim() != 2 or 0 in shard.shape or shard.shape[1] != query.shape[1]:
        raise ValueError(f"sharded_full_catalog_cross_entropy: local_item_shard must be (V_local >= 1, "
                         f"{query.shape[1]}), got {getattr(shard, 'shape', shard)}")
    offset, total = _check_int("shard_offset", shard_offset), _check_int("n_items_total", n_items_total)
    if not 0 <= offset <= total - local_item_shard.shape[0]:
        raise ValueError(f"sharded_full_catalog_cross_entropy: shard_offset={offset} with "
                         f"{local_item_shard.shape[0]} rows must lie within n_items_total={total}")
    if not isinstance(targets, torch.Tensor) or targets.shape != query.shape[:1] or targets.is_floating_point():
        raise ValueError(f"sharded_full_catalog_cross_entropy: targets must be integer ({query.shape[0]},), "
                         f"got {getattr(targets, 'shape', targets)}")
    valid = targets != ignore_index
    if bool(((targets < 0) | (targets >= total))[valid].any()):
        raise ValueError(f"sharded_full_catalog_cross_entropy: targets must lie in [0, n_items_total={total}) "
                         f"or equal ignore_index={ignore_index}")
    if not temperature > 0:
        raise ValueError(f"sharded_full_catalog_cross_entropy: temperature must be > 0, got {temperature!r}")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("sharded_full_catalog_cross_entropy needs an initialised torch.distributed process group")
    q, c = query, local_item_shard
    if normalize:
        q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    local_target = targets.long() - offset
    owned = valid & (local_target >= 0) & (local_target < local_item_shard.shape[0])
    weight = valid.to(q.dtype) / valid.sum().clamp_min(1)
    return _ShardedCrossEntropy.apply(q, c, local_target, owned, weight, 1.0 / temperature, group)
