"""Full-sort metrics checked by hand on tiny score matrices."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tedrec_fast.train.evaluate import full_sort_evaluate, metric_names, metric_sums, target_ranks


class FixedScores(nn.Module):
    """Row ``item_seq[:, 0] - 1`` of a fixed score table (the first history item names the row)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.calls: list[int] = []

    def full_sort_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        self.calls.append(item_seq.shape[0])
        return self.table[item_seq[:, 0] - 1].clone()


def test_rank_counts_strictly_greater_scores():
    scores = torch.tensor([[0.9, 0.5, 0.1, 0.7, 0.3], [0.0, 0.5, 0.5, 0.5, 0.2], [0.0, 0.1, 0.2, 0.3, 0.4]])
    target = torch.tensor([1, 2, 1])
    assert target_ranks(scores, target).tolist() == [2, 0, 3]


def test_target_scored_minus_inf_is_never_a_hit():
    scores = torch.tensor([[float("-inf"), float("-inf"), float("-inf")]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [torch.iinfo(torch.int64).max]
    assert metric_sums(scores, torch.tensor([1]), ks=(10,)).tolist() == [0.0, 0.0]  # K > n_items: still a miss


def test_metric_sums_by_hand():
    # ranks 2 and 12 (the second target is beaten by the 12 items 1..12)
    scores = torch.zeros(2, 30)
    scores[0, :3] = torch.tensor([3.0, 2.0, 1.0])
    target0 = 2
    scores[1, 1:13] = 1.0
    scores[1, 20] = 0.5
    sums = metric_sums(scores, torch.tensor([target0, 20]), ks=(10, 20))
    expected = [1.0, 1 / math.log2(4), 2.0, 1 / math.log2(4) + 1 / math.log2(14)]
    assert sums.tolist() == pytest.approx(expected, abs=1e-15)
    assert metric_names((10, 20)) == ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def _split(first_items, targets, seq_len=3):
    item_seq = torch.zeros(len(first_items), seq_len, dtype=torch.long)
    item_seq[:, 0] = torch.tensor(first_items)
    return SimpleNamespace(item_seq=item_seq, item_seq_len=torch.ones(len(first_items), dtype=torch.long),
                           target=torch.tensor(targets))


def test_full_sort_padding_minus_inf_and_chunking():
    # 3 users, 25 items; the padding item 0 scores highest but is excluded
    table = torch.linspace(1.0, 0.0, 25).repeat(3, 1)
    table[:, 0] = 100.0
    model = FixedScores(table)
    split = _split([1, 2, 3], [1, 11, 21])  # ranks 0, 10, 20 once item 0 is -inf
    got = full_sort_evaluate(model, split, ks=(10, 20), batch_size=2)
    assert model.calls == [2, 1]
    assert got["recall@10"] == pytest.approx(1 / 3)
    assert got["ndcg@10"] == pytest.approx(1 / 3)
    assert got["recall@20"] == pytest.approx(2 / 3)
    assert got["ndcg@20"] == pytest.approx((1 + 1 / math.log2(12)) / 3)
    assert full_sort_evaluate(model, split, batch_size=1) == pytest.approx(got)


def test_mask_history_sends_history_items_to_minus_inf():
    table = torch.linspace(1.0, 0.0, 25).unsqueeze(0)  # item 1 best, then 2, 3, ...
    model = FixedScores(table)
    split = _split([1], [3])
    split.item_seq[0, 1] = 2  # history: items 1 and 2 outrank the target 3
    plain = full_sort_evaluate(model, split, ks=(10,))
    masked = full_sort_evaluate(model, split, ks=(10,), mask_history=True)
    assert plain["ndcg@10"] == pytest.approx(1 / math.log2(4))  # rank 2: item 0 is -inf, items 1 and 2 above
    assert masked["ndcg@10"] == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ks"):
        metric_sums(torch.zeros(1, 3), torch.tensor([1]), ks=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        full_sort_evaluate(FixedScores(torch.zeros(1, 3)), _split([1], [1]), batch_size=0)
    with pytest.raises(ValueError, match="target"):
        target_ranks(torch.zeros(2, 3), torch.tensor([1]))
