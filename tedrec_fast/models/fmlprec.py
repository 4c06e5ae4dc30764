"""FMLP-Rec: an all-MLP sequential recommender with learnable filters (Zhou et al., WWW 2022).

Each block filters the sequence in the frequency domain with :class:`~tedrec_fast.nn.SpectralFilter`
(the fused ``spectral_filter`` op: rfft · learned filter · irfft, TedRec's item filter on its own), adds
the input back and normalises, then applies the position-wise feed-forward block. The filter is a
circular convolution over all ``n`` positions, padding included, as in the published model: there is no
attention mask to apply. Logits are dot products with the item table (cross-entropy over the catalog).
"""

from __future__ import annotations

import torch
from torch import nn

from tedrec_fast.config import FMLPRecConfig
from tedrec_fast.models.base import SequentialRecommender
from tedrec_fast.models.heads import DotProductHead
from tedrec_fast.models.items import ItemEmbedding
from tedrec_fast.models.transformer import FeedForward, PositionalInput, gather_last, init_recbole_weights
from tedrec_fast.nn import Dropout, SpectralFilter
from tedrec_fast.nn.backend_choice import check_backend_name

__all__ = ["FMLPRec", "FilterBlock"]


class FilterBlock(nn.Module):
    """``LayerNorm(x + dropout(filter(x)))`` followed by the feed-forward block."""

    def __init__(self, max_seq_length: int, hidden_size: int, inner_size: int, hidden_dropout: float, eps: float,
                 filter_backend: str, reference: bool = False) -> None:
        super().__init__()
        self.filter = SpectralFilter(max_seq_length, hidden_size, backend=filter_backend)
        self.dropout = Dropout(hidden_dropout, reference)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, eps, reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.LayerNorm(x + self.dropout(self.filter(x))))

    def forward_last(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``forward(x)[arange(B), last]`` ``(B, d)``: the filter at every position (it mixes them), the residual,
        LayerNorm and feed-forward only at positions ``last`` (``(B,)`` indices)."""
        rows = torch.arange(x.shape[0], device=x.device)
        return self.feed_forward(self.LayerNorm(x[rows, last] + self.dropout(self.filter(x)[rows, last])))


class FMLPRec(DotProductHead, PositionalInput, SequentialRecommender):
    """FMLP-Rec on the fused spectral-filter op.

    Args:
        n_items: number of items including the padding item 0.
        max_seq_length: the input length ``n`` (inputs must have exactly this length: the filters are
            built for it).
        hidden_size, n_layers, inner_size, hidden_dropout: the paper's defaults (64, 2, 256, 0.5).
        filter_backend: ``"auto"``, ``"triton"`` or ``"torch"`` for the spectral filters.
        reference: run the last block's LayerNorm and feed-forward at every position (then gather the last one)
            with torch's dropout masks, instead of only at each sequence's last position with the dropout op's.
        loss_backend: backend of the training loss :func:`~tedrec_fast.ops.full_catalog_ce.full_catalog_cross_entropy`
            (``"auto"``, ``"triton"``, ``"torch-chunked"``, ``"torch"``).
    """

    def __init__(self, n_items: int, max_seq_length: int = 50, hidden_size: int = FMLPRecConfig.hidden_size,
                 n_layers: int = FMLPRecConfig.n_layers, inner_size: int = FMLPRecConfig.inner_size,
                 hidden_dropout: float = FMLPRecConfig.hidden_dropout, filter_backend: str = "auto",
                 layer_norm_eps: float = FMLPRecConfig.layer_norm_eps, loss_backend: str = "auto",
                 reference: bool = False) -> None:
        super().__init__()
        if not isinstance(reference, bool):
            raise TypeError(f"FMLPRec: reference must be a bool, got {type(reference).__name__}")
        self.reference = reference
        if n_items < 2:
            raise ValueError(f"n_items counts the padding item 0 and must be >= 2, got {n_items}")
        check_backend_name("FMLPRec", "full_catalog_ce", loss_backend)
        self.loss_backend = loss_backend
        self.n_items = n_items
        self.max_seq_length = max_seq_length
        self.item_embedding = ItemEmbedding(n_items, hidden_size, padding_idx=0)
        self.init_positional_input(max_seq_length, hidden_size, hidden_dropout, layer_norm_eps, reference)
        self.blocks = nn.ModuleList(
            FilterBlock(max_seq_length, hidden_size, inner_size, hidden_dropout, layer_norm_eps, filter_backend,
                        reference)
            for _ in range(n_layers)
        )
        self.apply(init_recbole_weights)  # Linear/Embedding N(0, 0.02), LayerNorm (1, 0); filters keep theirs

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        if item_seq.dim() != 2 or item_seq.shape[1] != self.max_seq_length:
            raise ValueError(f"FMLPRec: item_seq must be (B, {self.max_seq_length}), got {tuple(item_seq.shape)}")
        hidden = self.add_positions(self.item_embedding(item_seq))
        if self.reference:
            for block in self.blocks:
                hidden = block(hidden)
            return gather_last(hidden, item_seq_len)
        for block in self.blocks[:-1]:
            hidden = block(hidden)
        return self.blocks[-1].forward_last(hidden, item_seq_len.long() - 1)
