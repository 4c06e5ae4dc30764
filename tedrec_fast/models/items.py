"""The item table of a recommender: :class:`ItemEmbedding`, the one module through which a model uses all its item rows.

Besides lookups (``item_embedding(ids)``), a model reads the rows of a range of items (evaluation tiles), takes the
cross-entropy of queries against every row (the training loss) and reads rows of other per-item tables (TedRec's
text vectors). All of these go through the item table, so catalog parallelism replaces one submodule
(:class:`~tedrec_fast.parallel.ShardedEmbedding`, the same methods over one process's rows) and nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy

__all__ = ["ItemEmbedding"]


class ItemEmbedding(nn.Embedding):
    """``nn.Embedding`` over the items (same parameters, same state dict) with the uses of all its rows."""

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows of items ``start .. stop - 1`` (``0 <= start < stop <= num_embeddings``)."""
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ItemEmbedding.rows: {name} must be an int, got {value!r}")
        if not 0 <= start < stop <= self.num_embeddings:
            raise ValueError(f"ItemEmbedding.rows: need 0 <= start < stop <= {self.num_embeddings}, got start={start}, "
                             f"stop={stop}")
        return self.weight[start:stop]

    def cross_entropy(
        self, query: torch.Tensor, target: torch.Tensor, *, temperature: float, normalize: bool, backend: str = "auto"
    ) -> torch.Tensor:
        """Mean cross-entropy of ``query . row / temperature`` over every row (cosine when ``normalize``) with the
        next items ``target`` (:func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy` on ``backend``)."""
        return full_catalog_cross_entropy(query, self.weight, target, temperature=temperature, normalize=normalize,
                                          backend=backend)

    def index_rows(self, ids: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, rows)`` with ``rows[index] == table[ids]`` for a per-item ``table`` held like this one: here
        ``(ids, table)`` itself."""
        return ids, table
