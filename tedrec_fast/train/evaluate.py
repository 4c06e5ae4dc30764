"""Full-sort evaluation: Recall@K and NDCG@K over every item, one target per user (RecBole's definitions).

With one target per user, RecBole's Recall@K is the hit rate and its NDCG@K is ``1 / log2(rank + 2)`` when
the target's 0-based ``rank`` is below K, else 0; both are averaged over users.

Ties: ``rank`` is the number of items whose score is **strictly greater** than the target's score, so
items tied with the target do not push it down (RecBole's ``topk`` breaks ties by index instead; with
continuous scores ties are practically absent). A target whose score is not finite (-inf: the padding item, or a
history item under ``mask_history``; NaN or +inf: broken weights, e.g. a NaN query) is never a hit, and an item
scoring NaN counts as ranked above the target: broken weights can only lower the metrics, never raise them.

Streaming: for models that split their scores into ``scoring_query`` and ``scoring_items``
(:func:`~tedrec_fast.models.base.supports_item_tiles`), a chunk of users walks the catalog in item tiles and
keeps only each user's target score and its count of strictly greater scores (:func:`streaming_target_ranks`),
so memory is ``O(chunk x tile)`` whatever the catalog size. Other models are scored a chunk at a time with
``full_sort_scores`` (``chunk x n_items``).

Parallelism comes from the model's :class:`~tedrec_fast.train.strategy.ParallelStrategy`
(:func:`~tedrec_fast.train.strategy.strategy_of`): which users this process scores (a share of them under data
parallelism) and which items (its shard of the catalog under catalog parallelism, the target ranks then combined
across processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
import torch.distributed as torch_dist
from tqdm.auto import tqdm

from tedrec_fast.data.compact import CompactSplit, split_rows, split_size
from tedrec_fast.models.base import supports_item_tiles
from tedrec_fast.parallel import CatalogShard
from tedrec_fast.train.distributed import DistContext, shard_bounds
from tedrec_fast.train.strategy import ParallelStrategy, strategy_of

__all__ = ["DEFAULT_KS", "DEFAULT_ITEM_TILE", "SplitLike", "target_ranks", "streaming_target_ranks", "rank_metric_sums",
           "metric_sums", "full_sort_evaluate", "metric_names"]

#: the cut-offs the paper reports
DEFAULT_KS: tuple[int, ...] = (10, 20)
#: items scored at once by the streaming evaluation
DEFAULT_ITEM_TILE = 32768
#: the rank given to a target that scores -inf (never a hit)
_NEVER = torch.iinfo(torch.int64).max


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

    Rows whose target score is not finite get the largest int64 as rank (never a hit); NaN scores of other
    items count as higher than the target's.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"target_ranks: scores must be a (B, n_items) tensor, got {getattr(scores, 'shape', scores)}")
    if not isinstance(target, torch.Tensor) or target.shape != scores.shape[:1]:
        raise ValueError(f"target_ranks: target must have shape ({scores.shape[0]},), got "
                         f"{getattr(target, 'shape', target)}")
    target_score = scores.gather(1, target.long().unsqueeze(1))
    return _ranks_or_never(_greater(scores, target_score).sum(dim=1), target_score.squeeze(1))


def _greater(scores: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """Which ``scores`` rank above ``target_score`` (``(B, 1)``): strictly greater, or NaN."""
    return ~(scores <= target_score)


def _ranks_or_never(ranks: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """``ranks``, with :data:`_NEVER` (a miss) where the target's score is not finite."""
    return torch.where(torch.isfinite(target_score), ranks, _NEVER)


def streaming_target_ranks(
    score_tile: Callable[[int, int], torch.Tensor], target: torch.Tensor, n_items: int, tile_size: int
) -> torch.Tensor:
    """:func:`target_ranks` of the score matrix whose columns ``start .. stop - 1`` are ``score_tile(start, stop)``.

    ``score_tile`` returns ``(B, stop - start)`` scores (padding and history already at -inf); it is called
    on the aligned tiles ``[t * tile_size, min((t + 1) * tile_size, n_items))`` only, so each user's target
    score is the very value its tile holds (exact ties). One pass over the tiles holding the targets finds
    the target scores, a second pass over all tiles counts the strictly greater scores (the last tile of the
    first pass is reused). Memory: one ``(B, tile_size)`` tile.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ValueError(f"streaming_target_ranks: n_items must be a positive int, got {n_items!r}")
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"streaming_target_ranks: tile_size must be a positive int, got {tile_size!r}")
    if not isinstance(target, torch.Tensor) or target.dim() != 1:
        raise ValueError(
            f"streaming_target_ranks: target must be a (B,) tensor, got {getattr(target, 'shape', target)}"
        )
    return _tile_ranks(score_tile, target.long(), CatalogShard(0, n_items, n_items, 0, 1), tile_size)


def _tile_ranks(
    score_tile: Callable[[int, int], torch.Tensor], target: torch.Tensor, shard: CatalogShard, tile_size: int
) -> torch.Tensor:
    """:func:`streaming_target_ranks` over the columns ``[shard.start, shard.stop)``, in tiles aligned at
    ``shard.start``.

    With a shard of one process these are all the columns. Otherwise they are this process's items: each target's
    score comes from the process that holds it (an all-reduce max, -inf elsewhere) and the counts of strictly
    greater scores are summed across processes, so every process returns the global ranks (score tiles
    must then be float32, as the evaluation makes them).
    """
    start, stop = shard.start, shard.stop
    if target.numel() == 0:
        return target.new_empty(0)
    if int(target.min()) < 0 or int(target.max()) >= shard.n_items:
        raise ValueError(f"streaming_target_ranks: target must lie in [0, n_items={shard.n_items})")

    def bounds(tile: int) -> tuple[int, int]:
        return start + tile * tile_size, min(start + (tile + 1) * tile_size, stop)

    local = target - start
    owned = (local >= 0) & (local < stop - start)
    target_tile = local // tile_size
    target_score: torch.Tensor | None = None
    last_tile, last_scores = -1, None
    for tile in torch.unique(target_tile[owned]).tolist():
        last_tile, last_scores = tile, score_tile(*bounds(tile))
        if target_score is None:
            target_score = torch.full(target.shape, float("-inf"), dtype=last_scores.dtype, device=target.device)
        rows = (owned & (target_tile == tile)).nonzero().squeeze(1)
        target_score[rows] = last_scores[rows, local[rows] - tile * tile_size]
    if target_score is None:  # no target among these columns (only with a shard)
        target_score = torch.full(target.shape, float("-inf"), dtype=torch.float32, device=target.device)
    if shard.world_size > 1:
        torch_dist.all_reduce(target_score, op=torch_dist.ReduceOp.MAX, group=shard.group)
    greater = torch.zeros_like(target)
    n_tiles = -(-(stop - start) // tile_size)
    for tile in ([last_tile] if last_tile >= 0 else []) + [t for t in range(n_tiles) if t != last_tile]:
        scores = last_scores if tile == last_tile else score_tile(*bounds(tile))
        greater += _greater(scores, target_score.unsqueeze(1)).sum(dim=1)
    if shard.world_size > 1:
        torch_dist.all_reduce(greater, op=torch_dist.ReduceOp.SUM, group=shard.group)
    return _ranks_or_never(greater, target_score)


def rank_metric_sums(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> torch.Tensor:
    """Per-metric sums over 0-based target ``ranks`` ``(B,)`` in :func:`metric_names` order (float64)."""
    ks = _check_ks(ks)
    ranks = ranks.double()
    gains = 1.0 / torch.log2(ranks + 2.0)
    sums = []
    for k in ks:
        hit = ranks < k
        sums += [hit.double().sum(), torch.where(hit, gains, 0.0).sum()]
    return torch.stack(sums)


def metric_sums(scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> torch.Tensor:
    """Per-metric sums over the rows of ``scores`` in :func:`metric_names` order (float64, on ``scores``' device)."""
    return rank_metric_sums(target_ranks(scores, target), ks)


def _mask_scores(scores: torch.Tensor, item_seq: torch.Tensor, start: int, mask_history: bool) -> torch.Tensor:
    """Set, in place, the padding item and (with ``mask_history``) the history items of the score columns
    ``start .. start + width - 1`` to -inf; returns ``scores``."""
    width = scores.shape[1]
    if start == 0:
        scores[:, 0] = float("-inf")
    if mask_history:
        local = item_seq.long() - start
        inside = (local >= 0) & (local < width)
        hit = torch.zeros(scores.shape[0], width + 1, dtype=torch.bool, device=scores.device)
        hit.scatter_(1, torch.where(inside, local, width), True)
        scores.masked_fill_(hit[:, :width], float("-inf"))
    return scores


def _chunk_ranks(
    model: torch.nn.Module,
    item_seq: torch.Tensor,
    item_seq_len: torch.Tensor,
    target: torch.Tensor,
    mask_history: bool,
    autocast: AbstractContextManager,
    item_tile_size: int,
    strategy: ParallelStrategy,
) -> torch.Tensor:
    """Target ranks of one chunk of users: streamed over item tiles when the model supports it (over the items
    ``strategy`` gives this process, ranks combined across the processes that hold the others)."""
    if not supports_item_tiles(model):
        with autocast:
            scores = model.full_sort_scores(item_seq, item_seq_len)
        return target_ranks(_mask_scores(scores.float(), item_seq, 0, mask_history), target)
    with autocast:
        query = model.scoring_query(item_seq, item_seq_len)

    def score_tile(start: int, stop: int) -> torch.Tensor:
        with autocast:
            scores = query @ model.scoring_items(start, stop).t()
        return _mask_scores(scores.float(), item_seq, start, mask_history)

    return _tile_ranks(score_tile, target.long(), strategy.item_shard(model), item_tile_size)


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
    item_tile_size: int = DEFAULT_ITEM_TILE,
    progress: str | None = None,
) -> dict[str, float]:
    """Recall@K and NDCG@K of ``model`` on ``split``, ranking every item for every user.

    Args:
        model: a :class:`~tedrec_fast.models.base.SequentialRecommender`; scored tile by tile when it implements
            ``scoring_query`` and ``scoring_items``, else with ``full_sort_scores``.
        split: item sequences, lengths and targets, on the model's device (or a
            :class:`~tedrec_fast.data.compact.CompactSplit` there: each chunk's rows gathered on the device).
        ks: cut-offs.
        batch_size: users scored at once.
        mask_history: give the items of each input sequence score -inf (RecBole's default is not to).
        bf16: score under bfloat16 autocast (ranks are computed in float32).
        dist: under data parallelism each process scores a contiguous shard of users and the sums are
            all-reduced, so every process returns the same metrics. Leave it out for a catalog-parallel model
            (:func:`~tedrec_fast.parallel.to_catalog_parallel`): every process then scores every user on its
            own items and the target ranks are combined across processes (two all-reduces of one value per
            user and chunk), giving exactly the metrics of the single-process model.
        item_tile_size: items per tile when streaming: one ``(batch_size, item_tile_size)`` score tile is alive
            (without streaming, one ``(batch_size, n_items)`` score matrix).
        progress: show a tqdm bar over the user chunks with this description (``None``: no bar).

    The padding item 0 always scores -inf. Ties and non-finite scores are counted as described in the module
    docstring.

    Raises:
        ValueError: ``split`` holds no users (metrics of nothing would be NaN).
    """
    ks = _check_ks(ks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"full_sort_evaluate: batch_size must be a positive int, got {batch_size!r}")
    if isinstance(item_tile_size, bool) or not isinstance(item_tile_size, int) or item_tile_size < 1:
        raise ValueError(f"full_sort_evaluate: item_tile_size must be a positive int, got {item_tile_size!r}")
    try:
        strategy = strategy_of(model, dist or DistContext())
    except ValueError as err:
        raise ValueError(f"full_sort_evaluate: {err}") from None
    users = strategy.data
    n_users = split_size(split)
    if n_users == 0:
        raise ValueError("full_sort_evaluate: the split holds no users (0 sequences)")
    start, stop = shard_bounds(n_users, users.rank, users.world_size)
    device = split.device if isinstance(split, CompactSplit) else split.target.device
    sums = torch.zeros(2 * len(ks), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    chunks = range(start, stop, batch_size)
    try:
        for lo in tqdm(chunks, desc=progress, unit="chunk", leave=False, disable=progress is None):
            hi = min(lo + batch_size, stop)
            item_seq, item_seq_len, target = split_rows(split, slice(lo, hi))
            ranks = _chunk_ranks(model, item_seq, item_seq_len, target, mask_history, autocast, item_tile_size,
                                 strategy)
            sums += rank_metric_sums(ranks, ks)
    finally:
        model.train(was_training)
    users.all_reduce_sum(sums)
    totals = sums.tolist()
    return {name: value / n_users for name, value in zip(metric_names(ks), totals, strict=True)}
