"""Data parallelism: 2 CPU processes (gloo) reproduce the single-process run with the same global batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tedrec_fast.config import TrainConfig
from tedrec_fast.train import DistContext, Trainer, full_sort_evaluate, seed_everything
from tedrec_fast.train.distributed import leave_process_group, shard_bounds
from tests.train.support import TinyRec, make_dataset

# batch 15 over 2 processes: shards of 8 and 7 (uneven, exercising the loss scaling); 3 steps
CONFIG = dict(epochs=2, batch_size=15, lr=1e-2, seed=3, progress=False, max_steps_per_epoch=3, patience=5)


def _run(rank: int, world_size: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    ctx = DistContext(rank, world_size)
    data = make_dataset()
    seed_everything(0)
    model = TinyRec(data.n_items, data.max_seq_length, dropout=0.0)
    initial = full_sort_evaluate(model, data.test, batch_size=7, dist=ctx)
    result = Trainer(model, data, TrainConfig(**CONFIG), dist=ctx, output_dir=f"{out_dir}/run{world_size}").fit()
    if rank == 0:
        torch.save({"initial": initial, "result": result.test, "state": model.state_dict()},
                   f"{out_dir}/world{world_size}.pt")


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world_size)
    try:
        _run(rank, world_size, out_dir)
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    _run(0, 1, str(tmp_path))
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = torch.load(tmp_path / "world1.pt", weights_only=True)
    double = torch.load(tmp_path / "world2.pt", weights_only=True)
    assert double["initial"] == pytest.approx(single["initial"], abs=1e-12)
    for name, value in single["state"].items():
        torch.testing.assert_close(double["state"][name], value, rtol=0, atol=1e-6, msg=name)
    assert (tmp_path / "run2" / "last.pt").is_file()


def test_shard_bounds_cover_disjointly():
    for n in range(0, 9):
        bounds = [shard_bounds(n, r, 3) for r in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 2, 2)


def test_the_cli_leaves_its_process_group_before_exiting(tmp_path, monkeypatch) -> None:
    """gloo's threads left to interpreter shutdown abort the process now and then: every command destroys the
    group it joined, also when it fails."""
    from tedrec_fast import cli

    def joins_then_fails(args) -> int:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
        raise ValueError("bad input")

    monkeypatch.setattr(cli, "_run", joins_then_fails)
    assert cli.main(["train"]) == 2
    assert not dist.is_initialized()
    leave_process_group()  # without a group: nothing to do
