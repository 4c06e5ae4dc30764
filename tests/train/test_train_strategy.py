"""The parallel strategies in one process: Replicated is plain training, the strategy choice and its errors, the
file names of catalog-parallel checkpoints, and the item table every model reads its rows through
(ItemEmbedding; ShardedEmbedding's checks that need no process group). The multi-process behaviour of
CatalogSharded is tested by tests/parallel/test_catalog_parallel_training.py."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from tedrec_fast.models import build_model
from tedrec_fast.models.items import ItemEmbedding
from tedrec_fast.ops.full_catalog_ce import full_catalog_cross_entropy
from tedrec_fast.parallel import ShardedEmbedding
from tedrec_fast.train import DistContext
from tedrec_fast.train.checkpoint import save_atomic
from tedrec_fast.train.strategy import (
    CatalogSharded,
    Replicated,
    previous_file,
    shard_file_name,
    strategy_for,
    strategy_of,
)

N_ITEMS, DIM = 13, 5


def _table(seed: int = 0) -> ItemEmbedding:
    torch.manual_seed(seed)
    return ItemEmbedding(N_ITEMS, DIM, padding_idx=0, dtype=torch.float64)


def test_item_embedding_is_nn_embedding_with_its_rows_and_loss():
    table = _table()
    torch.testing.assert_close(table.rows(3, 9), table.weight[3:9], rtol=0, atol=0)
    g = torch.Generator().manual_seed(1)
    query = torch.randn(7, DIM, generator=g, dtype=torch.float64)
    target = torch.randint(0, N_ITEMS, (7,), generator=g)
    for temperature, normalize in ((1.0, False), (0.07, True)):
        got = table.cross_entropy(query, target, temperature=temperature, normalize=normalize)
        want = full_catalog_cross_entropy(query, table.weight, target, temperature=temperature, normalize=normalize)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    text = torch.randn(N_ITEMS, 3, generator=g)
    ids = torch.tensor([[1, 4, 4, 0]])
    index, rows = table.index_rows(ids, text)
    torch.testing.assert_close(rows[index], text[ids], rtol=0, atol=0)
    assert isinstance(table, nn.Embedding) and list(table.state_dict()) == ["weight"]


@pytest.mark.parametrize(("start", "stop", "error"), [(3, 3, ValueError), (0, N_ITEMS + 1, ValueError),
                                                      (-1, 2, ValueError), (1.0, 3, TypeError), (1, True, TypeError)])
def test_item_embedding_rows_bad_range(start, stop, error):
    with pytest.raises(error, match="ItemEmbedding.rows"):
        _table().rows(start, stop)


def test_sharded_embedding_rows_are_its_own_items():
    table = _table()
    shard = ShardedEmbedding.from_embedding(table, 4, 9)
    torch.testing.assert_close(shard.rows(5, 9), table.weight[5:9], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"this process holds items \[4, 9\)"):
        shard.rows(0, N_ITEMS)
    with pytest.raises(TypeError, match="start must be an int"):
        shard.rows(4.0, 9)
    with pytest.raises(ValueError, match="this process's 5 rows"):
        shard.index_rows(torch.tensor([1, 2]), torch.zeros(N_ITEMS, 3))


@pytest.mark.parametrize("name", ["sasrec", "fmlprec", "tedrec"])
def test_models_read_their_item_rows_through_the_item_table(name):
    kw = {"sasrec": {}, "fmlprec": {"filter_backend": "torch"}, "tedrec": {"fusion_backend": "torch"}}[name]
    model = build_model(name, N_ITEMS, 6, torch.randn(N_ITEMS, 4), hidden_size=8, **kw)
    assert type(model.item_embedding) is ItemEmbedding
    assert "item_embedding.weight" in model.state_dict()


def test_replicated_in_one_process_is_plain_training():
    strategy = strategy_for(False, DistContext())
    assert isinstance(strategy, Replicated) and strategy.data == DistContext()
    model = build_model("sasrec", N_ITEMS, 6, None, hidden_size=8)
    assert strategy.place(model, torch.device("cpu")) is model
    module = nn.Linear(2, 2)
    assert strategy.loss_module(module, torch.device("cpu")) is module
    assert strategy.writes_checkpoints and strategy.file_name("last.pt") == "last.pt"
    assert strategy.checkpoint_entries(model) == {}
    shard = strategy.item_shard(model)
    assert (shard.start, shard.stop, shard.n_items, shard.world_size) == (0, N_ITEMS, N_ITEMS, 1)
    reference = copy.deepcopy(model)
    for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        mine.grad = torch.randn_like(mine)
        theirs.grad = mine.grad.clone()
    strategy.clip_grad_norm_(model, 0.5)
    nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=0, atol=0)
    assert strategy_of(model, DistContext()).data == DistContext()


def test_replicated_only_rank_zero_writes():
    assert not Replicated(DistContext(1, 2)).writes_checkpoints
    assert Replicated(DistContext(0, 2)).writes_checkpoints
    assert Replicated(DistContext(1, 2)).data == DistContext(1, 2)


def test_catalog_sharded_names_and_layout():
    with pytest.raises(ValueError, match="torchrun"):
        strategy_for(True, DistContext())
    strategy = strategy_for(True, DistContext(1, 3))
    assert isinstance(strategy, CatalogSharded) and strategy.data == DistContext()
    assert strategy.writes_checkpoints
    assert strategy.file_name("best.pt") == "best.rank1-of-3.pt" == shard_file_name("best.pt", 1, 3)
    assert previous_file(Path("run/last.rank1-of-3.pt")) == Path("run/last.rank1-of-3.pt.prev")
    with pytest.raises(TypeError, match="not catalog-parallel"):
        strategy.item_shard(build_model("sasrec", N_ITEMS, 6, None, hidden_size=8))


def test_replicated_resume_refuses_files_of_another_layout(tmp_path):
    strategy = Replicated(DistContext())
    assert strategy.load_last(tmp_path, "last.pt", torch.device("cpu")) is None
    save_atomic({"epoch": 1}, tmp_path / shard_file_name("last.pt", 0, 2))
    with pytest.raises(ValueError, match=r"another parallel layout than this run's last.pt"):
        strategy.load_last(tmp_path, "last.pt", torch.device("cpu"))
    strategy.save_last({"epoch": 2}, tmp_path, "last.pt")
    assert strategy.load_last(tmp_path, "last.pt", torch.device("cpu"))["epoch"] == 2
