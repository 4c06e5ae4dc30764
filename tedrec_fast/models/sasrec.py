"""SASRec: the ID-only baseline (RecBole defaults, cross-entropy over the whole catalog)."""

from __future__ import annotations

from tedrec_fast.models.backbone import SASRecBackbone
from tedrec_fast.models.heads import DotProductHead
from tedrec_fast.nn.backend_choice import check_backend_name

__all__ = ["SASRec"]


class SASRec(DotProductHead, SASRecBackbone):
    """Self-attentive sequential recommendation (Kang & McAuley 2018) as RecBole trains it.

    Logits are dot products of the sequence representation with every row of the item table (padding row
    included); the loss is their cross-entropy with the next item; eval scores are the same logits.

    Args:
        n_items: number of items including the padding item 0.
        max_seq_length: the longest input sequence.
        hidden_size, n_layers, n_heads, inner_size: Transformer sizes (RecBole defaults).
        hidden_dropout, attn_dropout: dropout on hidden states and on attention probabilities.
        loss_backend: backend of the training loss :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(
        self,
        n_items: int,
        max_seq_length: int = 50,
        hidden_size: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        inner_size: int = 256,
        hidden_dropout: float = 0.5,
        attn_dropout: float = 0.5,
        loss_backend: str = "auto",
    ) -> None:
        super().__init__(
            n_items, max_seq_length, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout
        )
        check_backend_name("SASRec", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
