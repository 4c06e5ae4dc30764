"""Streaming full-sort evaluation (item tiles) gives exactly the metrics of whole-catalog scoring."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tedrec_fast.models import build_model
from tedrec_fast.models.base import SequentialRecommender, supports_item_tiles
from tedrec_fast.train.evaluate import full_sort_evaluate, streaming_target_ranks, target_ranks

N_ITEMS, N = 23, 8


class IntegerScores(SequentialRecommender):
    """Integer-valued queries and items (exact scores, many exact ties); records the tile widths it scores."""

    def __init__(self, n_items: int, dim: int = 2) -> None:
        super().__init__()
        self.n_items, self.max_seq_length = n_items, N
        self.register_buffer("queries", torch.randint(-1, 2, (n_items, dim)).float())
        self.register_buffer("items", torch.randint(-1, 2, (n_items, dim)).float())
        self.widths: list[int] = []

    def scoring_query(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.queries[item_seq[:, 0]]

    def scoring_items(self, start: int, stop: int) -> torch.Tensor:
        self.check_item_range(start, stop)
        self.widths.append(stop - start)
        return self.items[start:stop]


class WholeCatalog(nn.Module):
    """Hides the tile interface of ``model``: the evaluator falls back to ``full_sort_scores``."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def full_sort_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.model.full_sort_scores(item_seq, item_seq_len)


def make_split(n_users: int, n_items: int = N_ITEMS, seed: int = 3) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, N + 1, (n_users,), generator=g)
    seq = torch.randint(1, n_items, (n_users, N), generator=g)
    seq[torch.arange(N) >= lengths[:, None]] = 0
    target = torch.randint(1, n_items, (n_users,), generator=g)
    target[:3] = seq[:3, 0]  # some targets are history items (-inf under mask_history)
    return SimpleNamespace(item_seq=seq, item_seq_len=lengths, target=target)


def test_streaming_ranks_equal_target_ranks_with_ties():
    scores = torch.randint(0, 4, (40, 29)).float()
    scores[5, 7] = float("-inf")
    target = torch.randint(0, 29, (40,))
    target[5] = 7
    expected = target_ranks(scores, target)
    for tile in (1, 4, 7, 29, 100):
        calls: list[tuple[int, int]] = []

        def score_tile(start: int, stop: int, calls: list[tuple[int, int]] = calls) -> torch.Tensor:
            calls.append((start, stop))
            return scores[:, start:stop].clone()

        assert torch.equal(streaming_target_ranks(score_tile, target, 29, tile), expected)
        assert all(stop - start <= tile and start % tile == 0 for start, stop in calls)


@pytest.mark.parametrize("mask_history", [False, True])
def test_integer_model_streaming_equals_whole_catalog(mask_history):
    model = IntegerScores(N_ITEMS)
    split = make_split(30)
    expected = full_sort_evaluate(WholeCatalog(model), split, ks=(1, 3, 10), batch_size=7, mask_history=mask_history)
    for tile in (1, 5, 8, N_ITEMS, 1000):
        model.widths.clear()
        got = full_sort_evaluate(model, split, ks=(1, 3, 10), batch_size=7, mask_history=mask_history,
                                 item_tile_size=tile)
        assert got == expected
        assert max(model.widths) == min(tile, N_ITEMS)


@pytest.mark.parametrize("name", ["sasrec", "fmlprec", "tedrec", "unisrec", "tssr"])
def test_models_streaming_equals_whole_catalog(name):
    text = torch.randn(N_ITEMS, 16)
    overrides = {"hidden_size": 12, "inner_size": 20}
    if name.startswith("tedrec"):
        overrides["fusion_backend"] = "torch"
    if name == "fmlprec":
        overrides["filter_backend"] = "torch"
    model = build_model(name, N_ITEMS, N, text, **overrides)
    assert supports_item_tiles(model)
    split = make_split(17)
    for mask_history in (False, True):
        expected = full_sort_evaluate(WholeCatalog(model), split, batch_size=6, mask_history=mask_history)
        for tile in (4, 9):
            got = full_sort_evaluate(model, split, batch_size=6, mask_history=mask_history, item_tile_size=tile)
            assert got == expected
    model.eval()
    with torch.no_grad():
        whole = model.full_sort_scores(split.item_seq, split.item_seq_len)
        query = model.scoring_query(split.item_seq, split.item_seq_len)
        torch.testing.assert_close(query @ model.scoring_items(5, 14).t(), whole[:, 5:14])


def test_models_without_tiles_fall_back():
    assert not supports_item_tiles(WholeCatalog(IntegerScores(5)))
    assert not supports_item_tiles(SequentialRecommender())


def test_bad_arguments():
    model = IntegerScores(N_ITEMS)
    split = make_split(4)
    with pytest.raises(ValueError, match="item_tile_size"):
        full_sort_evaluate(model, split, item_tile_size=0)
    with pytest.raises(ValueError, match="start"):
        model.scoring_items(3, 3)
    with pytest.raises(ValueError, match="stop"):
        model.scoring_items(0, N_ITEMS + 1)
    with pytest.raises(TypeError, match="start"):
        model.scoring_items(1.0, 3)
    score_tile = lambda start, stop: torch.zeros(2, stop - start)
    with pytest.raises(ValueError, match="target"):
        streaming_target_ranks(score_tile, torch.tensor([0, 5]), 5, 2)
    with pytest.raises(ValueError, match="tile_size"):
        streaming_target_ranks(score_tile, torch.tensor([0, 1]), 5, 0)
    with pytest.raises(ValueError, match="n_items"):
        streaming_target_ranks(score_tile, torch.tensor([0, 1]), 0, 2)
