"""Catalog parallelism: 2 and 3 CPU processes (gloo), item table sharded by rows, equal the single-process loss."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tedrec_fast.ops.full_catalog_ce.reference import full_catalog_cross_entropy_reference
from tedrec_fast.parallel import sharded_full_catalog_cross_entropy
from tedrec_fast.train.distributed import shard_bounds

B, D, N_ITEMS = 9, 5, 11
#: (temperature, normalize, targets with ignored rows)
CASES = [(0.07, True, False), (1.0, False, False), (0.5, True, True)]


def inputs(ignored: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    query = torch.randn(B, D, generator=g, dtype=torch.float64)
    table = torch.randn(N_ITEMS, D, generator=g, dtype=torch.float64)
    targets = torch.randint(0, N_ITEMS, (B,), generator=g)
    targets[:3] = torch.tensor([0, N_ITEMS - 1, 4])  # first and last item: owned by the first and last shards
    if ignored:
        targets[3:5] = -100
    return query, table, targets


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        lo, hi = shard_bounds(N_ITEMS, rank, world_size)
        results = []
        for temperature, normalize, ignored in CASES:
            query, table, targets = inputs(ignored)
            query.requires_grad_()
            shard = table[lo:hi].clone().requires_grad_()
            loss = sharded_full_catalog_cross_entropy(query, shard, lo, N_ITEMS, targets, temperature=temperature,
                                                      normalize=normalize)
            loss.backward()
            results.append((loss.detach(), query.grad, shard.grad))
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_loss_and_gradients_match_reference(tmp_path, world_size):
    mp.spawn(_worker, args=(world_size, str(tmp_path)), nprocs=world_size, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    for case, (temperature, normalize, ignored) in enumerate(CASES):
        query, table, targets = inputs(ignored)
        query.requires_grad_()
        table.requires_grad_()
        loss = full_catalog_cross_entropy_reference(query, table, targets, temperature=temperature, normalize=normalize)
        loss.backward()
        for loss_r, query_grad, _ in (results[case] for results in per_rank):
            torch.testing.assert_close(loss_r, loss.detach(), atol=1e-6, rtol=0)
            torch.testing.assert_close(query_grad, query.grad, atol=1e-6, rtol=0)
        shard_grads = torch.cat([results[case][2] for results in per_rank])
        torch.testing.assert_close(shard_grads, table.grad, atol=1e-6, rtol=0)


def test_bad_arguments():
    query, table, targets = inputs(False)
    call = sharded_full_catalog_cross_entropy
    with pytest.raises(ValueError, match="query"):
        call(query[0], table, 0, N_ITEMS, targets)
    with pytest.raises(ValueError, match="local_item_shard"):
        call(query, table[:, :2], 0, N_ITEMS, targets)
    with pytest.raises(ValueError, match="shard_offset"):
        call(query, table, 1, N_ITEMS, targets)
    with pytest.raises(TypeError, match="n_items_total"):
        call(query, table, 0, float(N_ITEMS), targets)
    with pytest.raises(ValueError, match="targets"):
        call(query, table, 0, N_ITEMS, targets + N_ITEMS)
    with pytest.raises(ValueError, match="temperature"):
        call(query, table, 0, N_ITEMS, targets, temperature=0.0)
    with pytest.raises(RuntimeError, match="process group"):
        call(query, table, 0, N_ITEMS, targets)
