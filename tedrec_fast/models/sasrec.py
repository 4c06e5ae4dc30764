"""SASRec: the ID-only baseline (RecBole defaults, cross-entropy over the whole catalog)."""

from __future__ import annotations

from tedrec_fast.models.backbone import SASRecBackbone
from tedrec_fast.models.heads import DotProductHead

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
        reference: run the last Transformer layer at every position (RecBole's computation) instead of only
            at each sequence's last position.
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
        reference: bool = False,
    ) -> None:
        super().__init__(
            n_items, max_seq_length, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout,
            reference=reference,
        )
