"""SASRec: the ID-only baseline (RecBole defaults, cross-entropy over the whole catalog)."""

from __future__ import annotations

from tedrec_fast.config import SASRecConfig
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
        reference: run the last Transformer layer at every position with torch's dropout masks (RecBole's
            computation and random draws) instead of only at each sequence's last position with the dropout op's.
        loss_backend: backend of the training loss :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(
        self,
        n_items: int,
        max_seq_length: int = 50,
        hidden_size: int = SASRecConfig.hidden_size,
        n_layers: int = SASRecConfig.n_layers,
        n_heads: int = SASRecConfig.n_heads,
        inner_size: int = SASRecConfig.inner_size,
        hidden_dropout: float = SASRecConfig.hidden_dropout,
        attn_dropout: float = SASRecConfig.attn_dropout,
        loss_backend: str = "auto",
        reference: bool = False,
    ) -> None:
        super().__init__(
            n_items, max_seq_length, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout,
            reference=reference,
        )
        check_backend_name("SASRec", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
