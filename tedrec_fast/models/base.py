"""The interface every sequential recommender of tedrec_fast implements (the trainer relies on it)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SequentialRecommender"]


class SequentialRecommender(nn.Module):
    """Next-item recommender over right-padded item sequences (item 0 = padding, RecBole convention).

    Subclasses implement :meth:`forward`, :meth:`calculate_loss` and :meth:`full_sort_scores`.
    """

    #: number of items including the padding item 0
    n_items: int
    #: length of the input sequences
    max_seq_length: int

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Sequence representations ``(B, d)`` at the last valid position of each ``(B, L)`` sequence."""
        raise NotImplementedError

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss (mean over the batch) for next items ``target`` ``(B,)``."""
        raise NotImplementedError

    def full_sort_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n_items)`` of every item (padding included; the evaluator sets it to -inf)."""
        raise NotImplementedError
