"""Row shards of a table across processes: :func:`shard_bounds`, :class:`CatalogShard` and :class:`ShardedEmbedding`.

A table of ``n`` rows is split into contiguous blocks, rank ``r`` of ``W`` holding rows
``shard_bounds(n, r, W)``. A lookup of ids that every process holds alike (:func:`sharded_embedding_lookup`)
reads the ids a process owns from its block, leaves zeros for the others, and sums the results across
the processes, so every process gets the full ``table[ids]``. :class:`ShardedEmbedding` is the sharded form of a
model's :class:`~tedrec_fast.models.items.ItemEmbedding` (the same methods: lookups, rows of a range of items, the
full-catalog cross-entropy, rows of other per-item tables sharded alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tedrec_fast.parallel.catalog import sharded_full_catalog_cross_entropy

__all__ = ["shard_bounds", "CatalogShard", "sharded_embedding_lookup", "ShardedEmbedding"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_bounds: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if n < 0:
        raise ValueError(f"shard_bounds: n must be >= 0, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class CatalogShard:
    """The item rows ``[start, stop)`` of ``n_items`` that process ``rank`` of ``world_size`` (in ``group``) holds."""

    start: int
    stop: int
    n_items: int
    rank: int
    world_size: int
    group: dist.ProcessGroup | None = None


class _SumOfReplicas(torch.autograd.Function):
    """All-reduce sum whose backward is the identity.

    The sum is consumed by computation that every process repeats alike up to one global loss, so each
    process already holds the whole gradient of that loss with respect to the sum, which is also the
    gradient with respect to its own summand.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor, group: dist.ProcessGroup | None
    ) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def sharded_embedding_lookup(
    ids: torch.Tensor,
    local_rows: torch.Tensor,
    shard_start: int,
    padding_idx: int | None = None,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """``table[ids]`` (shape ``(*ids.shape, d)``) when this process holds rows ``shard_start ..
    shard_start + len(local_rows) - 1`` of ``table`` and the other processes of ``group`` the rest.

    ``ids`` must be the same on every process, and the result must feed computation that every process
    repeats alike up to one global loss: backward then passes the incoming gradient through without a
    collective and gives ``local_rows`` the gradient of the ids it owns, as ``F.embedding`` does (none to
    ``padding_idx``, a global row index). Ids outside the table give zero rows. Forward costs one
    all-reduce of ``ids.numel() * d`` values.
    """
    local = ids - shard_start
    owned = (local >= 0) & (local < local_rows.shape[0])
    local_padding = None
    if padding_idx is not None and 0 <= padding_idx - shard_start < local_rows.shape[0]:
        local_padding = padding_idx - shard_start
    rows = F.embedding(torch.where(owned, local, 0), local_rows, padding_idx=local_padding)
    return _SumOfReplicas.apply(torch.where(owned.unsqueeze(-1), rows, 0), group)


class ShardedEmbedding(nn.Module):
    """The rows ``[shard_start, shard_start + len(weight))`` of a ``num_embeddings x d`` embedding table.

    ``forward(ids)`` returns the full ``table[ids]`` on every process (:func:`sharded_embedding_lookup`):
    ids must be alike on all processes of ``group``. The parameter ``weight`` holds only the local rows, so
    an optimiser built on this module keeps state for those rows only.

    Args:
        weight: this process's rows ``(V_local, d)``.
        shard_start: global index of the first local row.
        num_embeddings: rows of the whole table.
        padding_idx: global index of the row that gets no gradient from lookups (``nn.Embedding``'s meaning).
        group: the process group whose shards tile the table (default: the world).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        shard_start: int,
        num_embeddings: int,
        padding_idx: int | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        if weight.dim() != 2 or not 0 <= shard_start <= num_embeddings - weight.shape[0]:
            raise ValueError(f"ShardedEmbedding: weight (V_local, d) starting at row {shard_start} must lie within "
                             f"num_embeddings={num_embeddings}, got {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight)
        self.shard_start = shard_start
        self.num_embeddings = num_embeddings
        self.embedding_dim = weight.shape[1]
        self.padding_idx = padding_idx
        self.group = group

    @classmethod
    def from_embedding(
        cls, embedding: nn.Embedding, start: int, stop: int, group: dist.ProcessGroup | None = None
    ) -> ShardedEmbedding:
        """A shard holding a copy of rows ``[start, stop)`` of ``embedding`` (same dtype, device, requires_grad)."""
        if embedding.max_norm is not None or embedding.scale_grad_by_freq or embedding.sparse:
            raise ValueError("ShardedEmbedding.from_embedding: max_norm, scale_grad_by_freq and sparse are not "
                             "supported")
        shard = cls(embedding.weight.detach()[start:stop].clone(), start, embedding.num_embeddings,
                    embedding.padding_idx, group)
        shard.weight.requires_grad_(embedding.weight.requires_grad)
        return shard

    @property
    def shard(self) -> CatalogShard:
        """The rows this process holds, and where (needs the initialised process group)."""
        return CatalogShard(self.shard_start, self.shard_start + self.weight.shape[0], self.num_embeddings,
                            dist.get_rank(self.group), dist.get_world_size(self.group), self.group)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return sharded_embedding_lookup(ids, self.weight, self.shard_start, self.padding_idx, self.group)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows of the global items ``start .. stop - 1``, all held by this process."""
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ShardedEmbedding.rows: {name} must be an int, got {value!r}")
        first, end = self.shard_start, self.shard_start + self.weight.shape[0]
        if not first <= start < stop <= end:
            raise ValueError(f"ShardedEmbedding.rows: this process holds items [{first}, {end}); need {first} <= "
                             f"start < stop <= {end}, got start={start}, stop={stop}")
        return self.weight[start - first:stop - first]

    def cross_entropy(
        self, query: torch.Tensor, target: torch.Tensor, *, temperature: float, normalize: bool, backend: str = "auto"
    ) -> torch.Tensor:
        """The full-catalog cross-entropy of the whole table
        (:func:`~tedrec_fast.parallel.catalog.sharded_full_catalog_cross_entropy` of the local rows). ``backend``
        must be ``"auto"``: the sharded loss has one implementation.

        Under autocast both operands are rounded to the autocast dtype and the logits accumulated in float32,
        as the single-process loss does.
        """
        if backend != "auto":
            raise ValueError(f"backend={backend!r}: the catalog-parallel loss has one implementation; use 'auto'")
        rows, device = self.weight, query.device.type
        if torch.is_autocast_enabled(device):
            low = torch.get_autocast_dtype(device)
            query, rows = query.to(low).float(), rows.to(low).float()
        with torch.autocast(device, enabled=False):
            return sharded_full_catalog_cross_entropy(query, rows, self.shard_start, self.num_embeddings, target,
                                                      temperature=temperature, normalize=normalize, group=self.group)

    def index_rows(self, ids: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, rows)`` with ``rows[index]`` the rows ``ids`` of a per-item table sharded like this one, of
        which ``table`` holds this process's rows: the distinct ids' rows, gathered from all processes
        (:func:`sharded_embedding_lookup`; ``ids`` alike on every process)."""
        if table.shape[0] != self.weight.shape[0]:
            raise ValueError(f"ShardedEmbedding.index_rows: table must hold this process's {self.weight.shape[0]} "
                             f"rows, got {tuple(table.shape)}")
        unique, index = torch.unique(ids, return_inverse=True)
        return index, sharded_embedding_lookup(unique, table, self.shard_start, group=self.group)

    def extra_repr(self) -> str:
        stop = self.shard_start + self.weight.shape[0]
        return (f"rows [{self.shard_start}, {stop}) of {self.num_embeddings}, {self.embedding_dim}"
                + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""))
