"""The shared SASRec backbone: item embeddings + positions, LayerNorm, dropout, Transformer, last position."""

from __future__ import annotations

import torch

from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.items import ItemEmbedding
from tedrec_fast.models.transformer import (
    PositionalInput,
    TransformerEncoder,
    causal_padding_mask,
    gather_last,
    init_recbole_weights,
)

__all__ = ["SASRecBackbone"]


class SASRecBackbone(PositionalInput, SequentialRecommender):
    """SASRec's sequence encoder; subclasses choose the per-position input via :meth:`embed_sequence`.

    Parameter names follow RecBole's SASRec (``item_embedding``, ``position_embedding``, ``LayerNorm``,
    ``trm_encoder``); all of them get RecBole's init (:func:`init_recbole_weights`).

    :meth:`forward` reads only each sequence's last position, so the Transformer runs only at the positions
    holding an item (a padded position is a masked key that no real position reads) and the last layer computes
    its queries, attention output and feed-forward only at the last position
    (:meth:`TransformerEncoder.forward_last`); its hidden-state dropout masks come from the dropout op
    (:class:`tedrec_fast.nn.Dropout`). With ``reference=True`` it runs at every position with torch's dropout and
    the last one is gathered (RecBole's computation and order of random draws).
    """

    def __init__(
        self,
        n_items: int,
        max_seq_length: int,
        hidden_size: int,
        n_layers: int,
        n_heads: int,
        inner_size: int,
        hidden_dropout: float,
        attn_dropout: float,
        layer_norm_eps: float = 1e-12,
        reference: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(reference, bool):
            raise TypeError(f"{type(self).__name__}: reference must be a bool, got {type(reference).__name__}")
        self.reference = reference
        if n_items < 2:
            raise ValueError(f"n_items counts the padding item 0 and must be >= 2, got {n_items}")
        self.n_items = n_items
        self.max_seq_length = max_seq_length
        self.hidden_size = hidden_size
        self.item_embedding = ItemEmbedding(n_items, hidden_size, padding_idx=0)
        self.init_positional_input(max_seq_length, hidden_size, hidden_dropout, layer_norm_eps, reference)
        self.trm_encoder = TransformerEncoder(
            n_layers, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, layer_norm_eps, reference
        )
        self.apply(init_recbole_weights)

    def embed_sequence(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Per-position input ``(B, L, d)`` before positions are added; SASRec: the ID embeddings."""
        return self.item_embedding(item_seq)

    def encode(self, input_emb: torch.Tensor, item_seq: torch.Tensor) -> torch.Tensor:
        """Positions + LayerNorm + dropout + Transformer: hidden states ``(B, L, d)`` for every position."""
        hidden = self.add_positions(input_emb)
        return self.trm_encoder(hidden, causal_padding_mask(item_seq, hidden.dtype))

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        if item_seq.dim() != 2 or item_seq.shape[1] > self.max_seq_length:
            raise ValueError(
                f"{type(self).__name__}: item_seq must be (B, L) with L <= {self.max_seq_length}, "
                f"got {tuple(item_seq.shape)}"
            )
        input_emb = self.embed_sequence(item_seq)
        if self.reference:
            return gather_last(self.encode(input_emb, item_seq), item_seq_len)
        hidden = self.add_positions(input_emb)
        mask = causal_padding_mask(item_seq, hidden.dtype)
        return self.trm_encoder.forward_last(hidden, mask, item_seq_len.long() - 1, real=item_seq != 0)
