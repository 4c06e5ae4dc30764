"""Catalog-parallel recommenders: the item table (and TedRec's frozen text table) sharded by rows across processes.

:func:`to_catalog_parallel` turns a model built alike on every process (same seed) into its catalog-parallel
form, in place and by composition: process ``r`` of ``W`` replaces the model's ``item_embedding``
(:class:`~tedrec_fast.models.items.ItemEmbedding`) by a :class:`~tedrec_fast.parallel.sharding.ShardedEmbedding`
of rows ``shard_bounds(n_items, r, W)`` and, for TedRec, keeps those rows of ``text_embeddings``; the model's
class and every other parameter stay as they are. The model uses its item rows only through its item table, so
every process then runs the same batches: lookups of item rows are summed across processes, and the loss is
:func:`~tedrec_fast.parallel.catalog.sharded_full_catalog_cross_entropy` of the local shard (softmax
normaliser combined with all-reduces, query gradient all-reduced). The replicated parameters therefore get
the same gradient on every process, the whole-batch gradient of single-process training, and stay equal
without DistributedDataParallel; an optimiser built after the conversion holds state for the local rows only.

Supported: :class:`~tedrec_fast.models.SASRec` and :class:`~tedrec_fast.models.FMLPRec` (dot-product logits),
:class:`~tedrec_fast.models.TedRec` and its ablations (cosine / temperature). UniSRec-style and TSSR are not:
the item side of their loss passes every item row through replicated layers (UniSRec's MoE adaptor with
dropout and gate noise drawn over the whole catalog, TSSR's content projection), which would need those
layers' gradients summed across processes and, for UniSRec, a random stream that does not depend on the
sharding.

After conversion ``scoring_items(start, stop)`` takes global item indices within the local rows, and the
state dict holds the local rows under the single-process keys (:func:`sharded_state_keys`);
:func:`merge_catalog_state_dicts` joins the per-process state dicts into a single-process one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tedrec_fast.models import FMLPRec, SASRec, TedRec
from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.parallel.sharding import CatalogShard, ShardedEmbedding, shard_bounds

__all__ = ["to_catalog_parallel", "catalog_shard_of", "sharded_state_keys", "merge_catalog_state_dicts",
           "check_replicated", "clip_grad_norm_"]

#: supported classes -> their per-item buffers sharded like ``item_embedding`` (exact types: a subclass may
#: change what is sharded)
_SHARDED_BUFFERS: dict[type[SequentialRecommender], tuple[str, ...]] = {
    SASRec: (),
    FMLPRec: (),
    TedRec: ("text_embeddings",),
}


def catalog_shard_of(model: nn.Module) -> CatalogShard | None:
    """The :class:`CatalogShard` of a model converted by :func:`to_catalog_parallel`, else ``None``."""
    table = getattr(model, "item_embedding", None)
    return table.shard if isinstance(table, ShardedEmbedding) else None


def sharded_state_keys(model: nn.Module) -> tuple[str, ...]:
    """State-dict keys of a catalog-parallel ``model`` that hold its local item rows (the rest is replicated)."""
    if not isinstance(getattr(model, "item_embedding", None), ShardedEmbedding):
        raise TypeError(f"sharded_state_keys: {type(model).__name__} is not a catalog-parallel model")
    return ("item_embedding.weight", *_SHARDED_BUFFERS[type(model)])


def to_catalog_parallel(model: nn.Module, group: dist.ProcessGroup | None = None) -> SequentialRecommender:
    """Convert ``model`` in place to its catalog-parallel form over the processes of ``group``; returns it.

    Build ``model`` from the same seed on every process (the conversion copies this process's rows of the
    full tables, so the start equals single-process training; :func:`check_replicated` verifies the rest),
    convert it before moving it to the accelerator (only the local rows get there), and build the optimiser
    afterwards. No collective is run.

    Raises:
        TypeError: ``model`` is wrapped in DistributedDataParallel (catalog parallelism replaces data
            parallelism), already converted, or of an unsupported class.
        RuntimeError: no initialised process group.
        ValueError: fewer items (padding included) than processes.
    """
    if isinstance(model, DistributedDataParallel):
        raise TypeError("to_catalog_parallel: the model is wrapped in DistributedDataParallel; catalog parallelism "
                        "replaces data parallelism (every process runs the whole batch): pass the bare model")
    if isinstance(getattr(model, "item_embedding", None), ShardedEmbedding):
        raise TypeError(f"to_catalog_parallel: the {type(model).__name__} is already catalog-parallel")
    if type(model) not in _SHARDED_BUFFERS:
        names = ", ".join(cls.__name__ for cls in _SHARDED_BUFFERS)
        raise TypeError(f"to_catalog_parallel supports {names} (and TedRec's ablations), got {type(model).__name__}")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("to_catalog_parallel needs an initialised torch.distributed process group (torchrun)")
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    if model.n_items < world_size:
        raise ValueError(f"to_catalog_parallel: {world_size} processes but only {model.n_items} item rows (padding "
                         "included); every process needs at least one row")
    start, stop = shard_bounds(model.n_items, rank, world_size)
    model.item_embedding = ShardedEmbedding.from_embedding(model.item_embedding, start, stop, group)
    for name in _SHARDED_BUFFERS[type(model)]:
        setattr(model, name, getattr(model, name)[start:stop].clone())
    return model


def merge_catalog_state_dicts(
    state_dicts: Sequence[dict[str, torch.Tensor]], sharded_keys: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The single-process state dict of the per-process state dicts of a catalog-parallel model (in rank order).

    ``sharded_keys`` (:func:`sharded_state_keys`) are concatenated along rows; every other entry is taken from
    the first state dict.
    """
    if not state_dicts:
        raise ValueError("merge_catalog_state_dicts: no state dicts")
    merged = dict(state_dicts[0])
    for key in sharded_keys:
        merged[key] = torch.cat([state[key] for state in state_dicts])
    return merged


def check_replicated(model: nn.Module) -> None:
    """Raise RuntimeError unless every replicated parameter and buffer of a catalog-parallel ``model`` holds the
    same values on all processes of its group (checks a sum and a sum of squares per tensor, on the model's
    device: one all-reduce of ``4 x`` the number of tensors)."""
    keys = set(sharded_state_keys(model))
    group = model.item_embedding.group
    replicated = [(k, v) for k, v in model.state_dict().items() if k not in keys and v.is_floating_point()]
    if not replicated:
        return
    sums = torch.stack([torch.stack([v.double().sum(), v.double().square().sum()]) for _, v in replicated])
    extremes = torch.cat([sums, -sums])
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=group)
    differ = (extremes[: len(sums)] != -extremes[len(sums):]).any(dim=1)
    if bool(differ.any()):
        names = [name for (name, _), bad in zip(replicated, differ.tolist(), strict=True) if bad]
        raise RuntimeError(f"catalog parallelism: replicated tensors differ across processes ({', '.join(names[:5])}"
                           f"{', ...' if len(names) > 5 else ''}); build the model from the same seed everywhere")


def clip_grad_norm_(model: nn.Module, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` of a catalog-parallel ``model``: the norm of the whole gradient, the
    local rows of every process included (one all-reduce); returns that norm (alike on every process)."""
    sharded = {id(module.weight) for module in model.modules() if isinstance(module, ShardedEmbedding)}
    grads = [(id(p) in sharded, p.grad) for p in model.parameters() if p.grad is not None]
    weight = model.item_embedding.weight

    def square_norm(local: bool) -> torch.Tensor:
        norms = [torch.linalg.vector_norm(g) for is_local, g in grads if is_local == local]
        if not norms:
            return torch.zeros((), dtype=weight.dtype, device=weight.device)
        return torch.linalg.vector_norm(torch.stack(norms)).square().to(weight.device)

    local = square_norm(True)
    dist.all_reduce(local, op=dist.ReduceOp.SUM, group=model.item_embedding.group)
    total = (square_norm(False) + local).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for _, grad in grads:
        grad.mul_(coef.to(grad.dtype))
    return total
