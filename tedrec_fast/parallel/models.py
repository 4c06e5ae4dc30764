"""Catalog-parallel recommenders: the item table (and TedRec's frozen text table) sharded by rows across processes.

:func:`to_catalog_parallel` turns a model built alike on every process (same seed) into its catalog-parallel
form, in place: process ``r`` of ``W`` keeps rows ``shard_bounds(n_items, r, W)`` of ``item_embedding``
(a :class:`~tedrec_fast.parallel.sharding.ShardedEmbedding`) and, for TedRec, of ``text_embeddings``; every
other parameter stays whole on every process. Every process then runs the same batches: lookups of item
rows are summed across processes, and the loss is
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
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tedrec_fast.models import FMLPRec, SASRec, TedRec
from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.parallel.catalog import sharded_full_catalog_cross_entropy
from tedrec_fast.parallel.sharding import CatalogShard, ShardedEmbedding, shard_bounds, sharded_embedding_lookup

__all__ = ["to_catalog_parallel", "catalog_shard_of", "sharded_state_keys", "merge_catalog_state_dicts",
           "check_replicated", "clip_grad_norm_", "CatalogParallelSASRec", "CatalogParallelFMLPRec",
           "CatalogParallelTedRec"]


class _CatalogHead:
    """Loss and eval item side of a recommender whose ``item_embedding`` is a :class:`ShardedEmbedding`.

    Logits are ``query . item / temperature``, both sides L2-normalised when ``normalize_logits``.
    """

    catalog_shard: CatalogShard
    item_embedding: ShardedEmbedding
    normalize_logits: bool = False

    def loss_temperature(self) -> float:
        """Temperature of the training softmax (the single-process model's)."""
        return 1.0

    def check_item_range(self, start: int, stop: int) -> None:
        """Raise unless ``[start, stop)`` is a non-empty range of this process's item rows."""
        shard = self.catalog_shard
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{type(self).__name__}.scoring_items: {name} must be an int, got {value!r}")
        if not shard.start <= start < stop <= shard.stop:
            raise ValueError(f"{type(self).__name__}.scoring_items: this process holds items [{shard.start}, "
                             f"{shard.stop}); need {shard.start} <= start < stop <= {shard.stop}, got start={start}, "
                             f"stop={stop}")

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        """Item side of the eval scores for global items ``start .. stop - 1``, all held by this process."""
        self.check_item_range(start, stop)
        offset = self.catalog_shard.start
        rows = self.item_embedding.weight[start - offset:stop - offset]
        return F.normalize(rows, dim=-1) if self.normalize_logits else rows

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The single-process model's full-catalog cross-entropy, with the catalog sharded across processes.

        Under autocast both operands are rounded to the autocast dtype and the logits accumulated in float32,
        as the single-process loss does.
        """
        query, rows = self.forward(item_seq, item_seq_len), self.item_embedding.weight  # type: ignore[attr-defined]
        device = query.device.type
        if torch.is_autocast_enabled(device):
            low = torch.get_autocast_dtype(device)
            query, rows = query.to(low).float(), rows.to(low).float()
        shard = self.catalog_shard
        with torch.autocast(device, enabled=False):
            return sharded_full_catalog_cross_entropy(
                query, rows, shard.start, shard.n_items, target, temperature=self.loss_temperature(),
                normalize=self.normalize_logits, group=shard.group,
            )


class CatalogParallelSASRec(_CatalogHead, SASRec):
    """:class:`~tedrec_fast.models.SASRec` in catalog-parallel form (made by :func:`to_catalog_parallel`)."""


class CatalogParallelFMLPRec(_CatalogHead, FMLPRec):
    """:class:`~tedrec_fast.models.FMLPRec` in catalog-parallel form (made by :func:`to_catalog_parallel`)."""


class CatalogParallelTedRec(_CatalogHead, TedRec):
    """:class:`~tedrec_fast.models.TedRec` in catalog-parallel form (made by :func:`to_catalog_parallel`).

    ``text_embeddings`` holds the local rows of the frozen text table; a batch's text vectors are read with
    :func:`~tedrec_fast.parallel.sharding.sharded_embedding_lookup`, once per distinct item.
    """

    normalize_logits = True

    def loss_temperature(self) -> float:
        return self.temperature

    def embed_sequence(self, item_seq: torch.Tensor) -> torch.Tensor:
        if item_seq.shape[1] != self.max_seq_length:
            raise ValueError(
                f"TedRec: item_seq must have length max_seq_length={self.max_seq_length} (right-padded with 0), "
                f"got {item_seq.shape[1]}"
            )
        # forward_items(index, table[unique]) equals forward_items(item_seq, table) value for value
        unique, index = torch.unique(item_seq, return_inverse=True)
        shard = self.catalog_shard
        text = sharded_embedding_lookup(unique, self.text_embeddings, shard.start, group=shard.group)
        return self.fusion(self.item_embedding(item_seq), self.moe_adaptor.forward_items(index, text))


#: single-process class -> catalog-parallel class (exact types: a subclass may change what is sharded)
_CATALOG_CLASSES: dict[type[SequentialRecommender], type[SequentialRecommender]] = {
    SASRec: CatalogParallelSASRec,
    FMLPRec: CatalogParallelFMLPRec,
    TedRec: CatalogParallelTedRec,
}
#: state-dict keys of the catalog-parallel classes that hold item rows
_SHARDED_KEYS: dict[type[SequentialRecommender], tuple[str, ...]] = {
    CatalogParallelSASRec: ("item_embedding.weight",),
    CatalogParallelFMLPRec: ("item_embedding.weight",),
    CatalogParallelTedRec: ("item_embedding.weight", "text_embeddings"),
}


def catalog_shard_of(model: nn.Module) -> CatalogShard | None:
    """The :class:`CatalogShard` of a model converted by :func:`to_catalog_parallel`, else ``None``."""
    return model.catalog_shard if type(model) in _SHARDED_KEYS else None


def sharded_state_keys(model: nn.Module) -> tuple[str, ...]:
    """State-dict keys of a catalog-parallel ``model`` that hold its local item rows (the rest is replicated)."""
    if type(model) not in _SHARDED_KEYS:
        raise TypeError(f"sharded_state_keys: {type(model).__name__} is not a catalog-parallel model")
    return _SHARDED_KEYS[type(model)]


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
    if type(model) in _SHARDED_KEYS:
        raise TypeError(f"to_catalog_parallel: the model is already a {type(model).__name__}")
    target = _CATALOG_CLASSES.get(type(model))
    if target is None:
        names = ", ".join(cls.__name__ for cls in _CATALOG_CLASSES)
        raise TypeError(f"to_catalog_parallel supports {names} (and TedRec's ablations), got {type(model).__name__}")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("to_catalog_parallel needs an initialised torch.distributed process group (torchrun)")
    rank, world_size = dist.get_rank(group), dist.get_world_size(group)
    if model.n_items < world_size:
        raise ValueError(f"to_catalog_parallel: {world_size} processes but only {model.n_items} item rows (padding "
                         "included); every process needs at least one row")
    start, stop = shard_bounds(model.n_items, rank, world_size)
    model.item_embedding = ShardedEmbedding.from_embedding(model.item_embedding, start, stop, group)
    if isinstance(model, TedRec):
        model.text_embeddings = model.text_embeddings[start:stop].clone()
    model.catalog_shard = CatalogShard(start, stop, model.n_items, rank, world_size, group)
    model.__class__ = target
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
    shard = model.catalog_shard
    replicated = [(k, v) for k, v in model.state_dict().items() if k not in keys and v.is_floating_point()]
    if not replicated:
        return
    sums = torch.stack([torch.stack([v.double().sum(), v.double().square().sum()]) for _, v in replicated])
    extremes = torch.cat([sums, -sums])
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=shard.group)
    differ = (extremes[: len(sums)] != -extremes[len(sums):]).any(dim=1)
    if bool(differ.any()):
        names = [name for (name, _), bad in zip(replicated, differ.tolist(), strict=True) if bad]
        raise RuntimeError(f"catalog parallelism: replicated tensors differ across processes ({', '.join(names[:5])}"
                           f"{', ...' if len(names) > 5 else ''}); build the model from the same seed everywhere")


def clip_grad_norm_(model: nn.Module, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` of a catalog-parallel ``model``: the norm of the whole gradient, the
    local rows of every process included (one all-reduce); returns that norm (alike on every process)."""
    shard = model.catalog_shard
    sharded = {id(module.weight) for module in model.modules() if isinstance(module, ShardedEmbedding)}
    grads = [(id(p) in sharded, p.grad) for p in model.parameters() if p.grad is not None]

    weight = model.item_embedding.weight

    def square_norm(local: bool) -> torch.Tensor:
        norms = [torch.linalg.vector_norm(g) for is_local, g in grads if is_local == local]
        if not norms:
            return torch.zeros((), dtype=weight.dtype, device=weight.device)
        return torch.linalg.vector_norm(torch.stack(norms)).square().to(weight.device)

    local = square_norm(True)
    dist.all_reduce(local, op=dist.ReduceOp.SUM, group=shard.group)
    total = (square_norm(False) + local).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for _, grad in grads:
        grad.mul_(coef.to(grad.dtype))
    return total
