"""The interface every sequential recommender of tedrec_fast implements (the trainer relies on it)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SequentialRecommender", "supports_item_tiles"]


class SequentialRecommender(nn.Module):
    """Next-item recommender over right-padded item sequences (item 0 = padding, RecBole convention).

    Subclasses implement :meth:`forward` and :meth:`calculate_loss`, and either :meth:`full_sort_scores`
    or the two scoring halves :meth:`scoring_query` and :meth:`scoring_items` (scores are then
    ``scoring_query(...) @ scoring_items(start, stop).T``, which lets evaluation walk the catalog in tiles).
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

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Query side of the eval scores ``(B, d)`` (e.g. the L2-normalised sequence representation)."""
        raise NotImplementedError

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        """Item side of the eval scores ``(stop - start, d)`` for items ``start .. stop - 1``."""
        raise NotImplementedError

    def full_sort_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, n_items)`` of every item (padding included; the evaluator sets it to -inf)."""
        return self.scoring_query(item_seq, item_seq_len) @ self.scoring_items(0, self.n_items).t()

    def check_item_range(self, start: int, stop: int) -> None:
        """Raise ValueError unless ``0 <= start < stop <= n_items`` (ints): a valid :meth:`scoring_items` range."""
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{type(self).__name__}.scoring_items: {name} must be an int, got {value!r}")
        if not 0 <= start < stop <= self.n_items:
            raise ValueError(
                f"{type(self).__name__}.scoring_items: need 0 <= start < stop <= n_items={self.n_items}, "
                f"got start={start}, stop={stop}"
            )


def supports_item_tiles(model: nn.Module) -> bool:
    """Whether ``model`` implements :meth:`SequentialRecommender.scoring_query` and ``scoring_items``."""
    return isinstance(model, SequentialRecommender) and all(
        getattr(type(model), name) is not getattr(SequentialRecommender, name)
        for name in ("scoring_query", "scoring_items")
    )
