"""Full-sort evaluation: Recall@K and NDCG@K over every item, one target per user (RecBole's definitions).

With one target per user, RecBole's Recall@K is the hit rate and its NDCG@K is ``1 / log2(rank + 2)`` when
the target's 0-based ``rank`` is below K, else 0; both are averaged over users.

Ties: ``rank`` is the number of items whose score is **strictly greater** than the target's score, so
items tied with the target do not push it down (RecBole's ``topk`` breaks ties by index instead; with
continuous scores ties are practically absent). A target whose score is -inf (the padding item, or a
history item under ``mask_history``) is never a hit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Protocol

import torch

from tedrec_fast.train.distributed import DistContext, shard_bounds

__all__ = ["DEFAULT_KS", "SplitLike", "target_ranks", "metric_sums", "full_sort_evaluate", "metric_names"]

#: the cut-offs the paper reports
DEFAULT_KS: tuple[int, ...] = (10, 20)


class SplitLike(Protocol):
    """What evaluation and training read from a split (``tedrec_fast.data.SequenceSplit`` fits)."""

    item_seq: torch.Tensor
    item_seq_len: torch.Tensor
    target: torch.Tensor


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}")
    return ks


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """``["recall@10", "ndcg@10", "recall@20", "ndcg@20"]`` for ``ks = (10, 20)``."""
    return [f"{name}@{k}" for k in _check_ks(ks) for name in ("recall", "ndcg")]


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target: the number of items scored strictly higher (``(B,)`` int64).

    Rows whose target scores -inf get the largest int64 as rank (never a hit).
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"target_ranks: scores must be a (B, n_items) tensor, got {getattr(scores, 'shape', scores)}")
    if not isinstance(target, torch.Tensor) or target.shape != scores.shape[:1]:
        raise ValueError(f"target_ranks: target must have shape ({scores.shape[0]},), got "
                         f"{getattr(target, 'shape', target)}")
    target_score = scores.gather(1, target.long().unsqueeze(1))
    ranks = (scores > target_score).sum(dim=1)
    return torch.where(target_score.squeeze(1) == float("-inf"), torch.iinfo(torch.int64).max, ranks)


def metric_sums(scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> torch.Tensor:
    """Per-metric sums over the rows of ``scores`` in :func:`metric_names` order (float64, on ``scores``' device)."""
    ks = _check_ks(ks)
    ranks = target_ranks(scores, target).double()
    gains = 1.0 / torch.log2(ranks + 2.0)
    sums = []
    for k in ks:
        hit = ranks < k
        sums += [hit.double().sum(), torch.where(hit, gains, 0.0).sum()]
    return torch.stack(sums)


@torch.no_grad()
def full_sort_evaluate(
    model: torch.nn.Module,
    split: SplitLike,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
    mask_history: bool = False,
    bf16: bool = False,
    dist: DistContext | None = None,
) -> dict[str, float]:
    """Recall@K and NDCG@K of ``model`` on ``split``, ranking every item for every user.

    Args:
        model: a :class:`~tedrec_fast.models.base.SequentialRecommender` (its ``full_sort_scores`` is used).
        split: item sequences, lengths and targets, on the model's device.
        ks: cut-offs.
        batch_size: users scored at once; only one ``(batch_size, n_items)`` score matrix is alive.
        mask_history: give the items of each input sequence score -inf (RecBole's default is not to).
        bf16: score under bfloat16 autocast (ranks are computed in float32).
        dist: under data parallelism each process scores a contiguous shard of users and the sums are
            all-reduced, so every process returns the same metrics.

    The padding item 0 always scores -inf. Ties are counted as described in the module docstring.
    """
    ks = _check_ks(ks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"full_sort_evaluate: batch_size must be a positive int, got {batch_size!r}")
    dist = dist or DistContext()
    n_users = split.target.shape[0]
    start, stop = shard_bounds(n_users, dist.rank, dist.world_size)
    device = split.target.device
    sums = torch.zeros(2 * len(ks), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    try:
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            item_seq = split.item_seq[lo:hi]
            with autocast:
                scores = model.full_sort_scores(item_seq, split.item_seq_len[lo:hi])
            scores = scores.float()
            scores[:, 0] = float("-inf")
            if mask_history:
                scores.scatter_(1, item_seq.long(), float("-inf"))
            sums += metric_sums(scores, split.target[lo:hi], ks)
    finally:
        model.train(was_training)
    dist.all_reduce_sum(sums)
    totals = sums.tolist()
    if n_users == 0:
        return {name: math.nan for name in metric_names(ks)}
    return {name: value / n_users for name, value in zip(metric_names(ks), totals, strict=True)}
