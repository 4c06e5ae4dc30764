"""Stand-ins for the trainer tests: a tiny recommender and a synthetic dataset (no test functions here)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tedrec_fast.models.base import SequentialRecommender


class TinyRec(SequentialRecommender):
    """Embedding + position + dropout + linear; representation at position ``len - 1``; dot-product scores."""

    def __init__(self, n_items: int, max_seq_length: int, hidden: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_items, self.max_seq_length = n_items, max_seq_length
        self.item_embedding = nn.Embedding(n_items, hidden, padding_idx=0)
        self.position = nn.Embedding(max_seq_length, hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item_seq.shape[1], device=item_seq.device)
        h = self.dropout(self.item_embedding(item_seq) + self.position(positions))
        h = torch.tanh(self.proj(h)).cumsum(dim=1)
        return h.gather(1, (item_seq_len - 1).view(-1, 1, 1).expand(-1, 1, h.shape[2])).squeeze(1)

    def full_sort_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.forward(item_seq, item_seq_len) @ self.item_embedding.weight.T

    def calculate_loss(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.full_sort_scores(item_seq, item_seq_len), target)


@dataclass
class Split:
    user: torch.Tensor
    item_seq: torch.Tensor
    item_seq_len: torch.Tensor
    target: torch.Tensor


@dataclass
class TinyDataset:
    name: str
    n_users: int
    n_items: int
    max_seq_length: int
    train: Split
    valid: Split
    test: Split


def make_dataset(n_users: int = 40, n_items: int = 30, max_seq_length: int = 6, seed: int = 0) -> TinyDataset:
    """Users walk the item circle with small random steps; every prefix is a training sample (leave-one-out)."""
    g = torch.Generator().manual_seed(seed)
    splits: dict[str, list[tuple[int, list[int], int]]] = {"train": [], "valid": [], "test": []}
    for user in range(1, n_users + 1):
        length = int(torch.randint(5, 10, (1,), generator=g))
        start = int(torch.randint(1, n_items, (1,), generator=g))
        steps = torch.randint(1, 3, (length,), generator=g).tolist()
        items, item = [], start
        for s in steps:
            items.append(item)
            item = (item - 1 + s) % (n_items - 1) + 1
        for t in range(1, length):
            name = "test" if t == length - 1 else "valid" if t == length - 2 else "train"
            splits[name].append((user, items[max(0, t - max_seq_length):t], items[t]))

    def to_split(rows: list[tuple[int, list[int], int]]) -> Split:
        seq = torch.zeros(len(rows), max_seq_length, dtype=torch.long)
        for i, (_, hist, _) in enumerate(rows):
            seq[i, :len(hist)] = torch.tensor(hist)
        return Split(torch.tensor([r[0] for r in rows]), seq, torch.tensor([len(r[1]) for r in rows]),
                     torch.tensor([r[2] for r in rows]))

    return TinyDataset("tiny", n_users, n_items, max_seq_length, *(to_split(splits[k]) for k in splits))
