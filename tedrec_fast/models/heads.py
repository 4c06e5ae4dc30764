"""Output heads shared by the ID-based recommenders."""

from __future__ import annotations

import torch

from tedrec_fast.models.items import ItemEmbedding

__all__ = ["DotProductHead"]


class DotProductHead:
    """Mixin for a :class:`~tedrec_fast.models.base.SequentialRecommender` with an ``item_embedding``
    table (:class:`~tedrec_fast.models.items.ItemEmbedding`): scores are dot products of the sequence
    representation with every item row (padding row included), and the loss is their cross-entropy with the
    next item (RecBole's SASRec CE)."""

    item_embedding: ItemEmbedding
    #: backend of :func:`full_catalog_cross_entropy` (set by the model's constructor)
    loss_backend: str = "auto"

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.forward(item_seq, item_seq_len)

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        self.check_item_range(start, stop)
        return self.item_embedding.rows(start, stop)

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.item_embedding.cross_entropy(self.forward(item_seq, item_seq_len), target, temperature=1.0,
                                                 normalize=False,
                                                 backend=self.loss_backend)
