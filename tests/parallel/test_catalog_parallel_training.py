"""Catalog parallelism in the trainer: 2 and 4 CPU processes (gloo) with the item table sharded reproduce
single-process training (losses, weights, metrics, checkpoints, resume); ShardedEmbedding on 2 and 3."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tedrec_fast.cli import build_parser, main
from tedrec_fast.config import TrainConfig
from tedrec_fast.models import build_model
from tedrec_fast.parallel import (
    ShardedEmbedding,
    catalog_shard_of,
    shard_bounds,
    sharded_embedding_lookup,
    sharded_state_keys,
    to_catalog_parallel,
)
from tedrec_fast.train import DistContext, Trainer, full_sort_evaluate, load_checkpoint, seed_everything
from tedrec_fast.train.strategy import shard_file_name
from tedrec_fast.train.trainer import BEST_NAME, CHECKPOINT_NAME, LOG_NAME, load_run_checkpoint
from tests.train.support import make_dataset

#: tiny models (dropout, MoE noise and masking on: every process must draw the same random streams)
MODELS: dict[str, dict[str, Any]] = {
    "tedrec": dict(hidden_size=16, n_layers=1, n_heads=2, inner_size=32, n_experts=2, fusion_backend="torch"),
    "sasrec": dict(hidden_size=16, n_layers=1, n_heads=2, inner_size=32),
    "fmlprec": dict(hidden_size=16, n_layers=1, inner_size=32, filter_backend="torch"),
}
#: (model, processes) pairs trained catalog-parallel (FMLPRec shares SASRec's head: 2 processes suffice)
CASES = [("tedrec", 2), ("tedrec", 4), ("sasrec", 2), ("sasrec", 4), ("fmlprec", 2)]
#: one step per epoch, so the logged epoch losses are the per-step losses; clipping active
CONFIG = dict(epochs=4, batch_size=16, lr=1e-2, seed=3, progress=False, max_steps_per_epoch=1, patience=10,
              grad_clip=0.1, eval_batch_size=7)
MASK_HISTORY = {"tedrec": True, "sasrec": False, "fmlprec": True}
TEXT_DIM, EMB_ROWS = 8, 11
ATOL = 1e-9  # float64 training: only the order of the sums differs


def _data():
    return make_dataset(n_users=40, n_items=30, max_seq_length=6)


def _model(name: str, n_items: int, seed: int = 0) -> nn.Module:
    text = torch.randn(n_items, TEXT_DIM, generator=torch.Generator().manual_seed(7))
    seed_everything(seed)
    return build_model(name, n_items, 6, text, **MODELS[name]).double()


def _config(name: str, **kw: Any) -> TrainConfig:
    return TrainConfig(**{**CONFIG, "mask_history": MASK_HISTORY[name], **kw})


def _tile_metrics(model: nn.Module, data) -> dict[str, float]:
    """Evaluation in tiles of 4 items (several tiles per process)."""
    return full_sort_evaluate(model, data.test, batch_size=9, mask_history=True, item_tile_size=4)


def _log(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / LOG_NAME).read_text().splitlines()]


def _error(fn: Callable[[], object]) -> str:
    """``"TypeName: message"`` of what ``fn`` raises, or ``"no error"``."""
    try:
        fn()
    except Exception as exc:  # recorded here, checked by the test in the main process
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def _train(name: str, run_dir: Path, ctx: DistContext | None, **kw: Any) -> tuple[nn.Module, Trainer, Any]:
    data = _data()
    model = _model(name, data.n_items)
    config = _config(name, catalog_parallel=ctx is not None, **kw)
    trainer = Trainer(model, data, config, dist=ctx, output_dir=run_dir)
    return model, trainer, trainer.fit()


# ---------------------------------------------------------------------------------------------- processes
def _embedding_case(rank: int, world_size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    table = torch.randn(EMB_ROWS, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([[0, 3, 3, 10, 5], [5, 5, 0, 1, 9], [10, 2, 7, 7, 3]])
    weight = torch.randn(*ids.shape, 4, generator=g, dtype=torch.float64)
    out = []
    for padding_idx in (0, 5, None):
        reference = nn.Embedding(EMB_ROWS, 4, padding_idx=padding_idx, dtype=torch.float64)
        reference.weight.data.copy_(table)
        lo, hi = shard_bounds(EMB_ROWS, rank, world_size)
        sharded = ShardedEmbedding.from_embedding(reference, lo, hi)
        rows = sharded(ids)
        (rows * weight).sum().backward()
        frozen = sharded_embedding_lookup(ids, table[lo:hi], lo)
        out.append({"rows": rows.detach(), "grad": sharded.weight.grad, "frozen": frozen})
    return out


def _training_case(name: str, ctx: DistContext, out_dir: Path) -> dict[str, Any]:
    data = _data()
    model, trainer, result = _train(name, out_dir / f"{name}-w{ctx.world_size}", ctx)
    item_weight = model.item_embedding.weight
    return {
        "log": _log(out_dir / f"{name}-w{ctx.world_size}") if ctx.is_main else None,
        "state": model.state_dict(),
        "sharded_keys": sharded_state_keys(model),
        "test": result.test,
        "best_epoch": result.best_epoch,
        "tile_metrics": _tile_metrics(model, data),
        "adam_rows": [tuple(trainer.optimizer.state[item_weight][k].shape) for k in ("exp_avg", "exp_avg_sq")],
        "bounds": (catalog_shard_of(model).start, catalog_shard_of(model).stop),
        "classes": (type(model).__name__, type(model.item_embedding).__name__),  # converted by composition
    }


def _resume_case(ctx: DistContext, out_dir: Path) -> dict[str, Any]:
    run_dir = out_dir / "resume"
    _train("tedrec", run_dir, ctx, epochs=2)  # "crashes" after epoch 2 ...
    if ctx.rank == 1:  # ... killed before process 1 saved epoch 2: its files are those of epoch 1
        last = run_dir / shard_file_name(CHECKPOINT_NAME, 1, ctx.world_size)
        last.with_name(last.name + ".prev").replace(last)
    dist.barrier()
    data = _data()
    model = _model("tedrec", data.n_items, seed=123)  # a different init: everything comes from the checkpoint
    result = Trainer(model, data, _config("tedrec", catalog_parallel=True), dist=ctx, output_dir=run_dir,
                     resume=True).fit()
    return {"state": model.state_dict(), "test": result.test, "log": _log(run_dir) if ctx.is_main else None}


def _bf16_losses() -> dict[str, tuple[float, float]]:
    """Single-process and catalog-parallel float32 losses of one batch under bfloat16 autocast."""
    batch = _data().train
    inputs = (batch.item_seq[:32], batch.item_seq_len[:32], batch.target[:32])
    losses = {}
    for name in ("tedrec", "sasrec"):
        single = _model(name, 30).float().eval()
        catalog = to_catalog_parallel(copy.deepcopy(single))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses[name] = (single.calculate_loss(*inputs).item(), catalog.calculate_loss(*inputs).item())
    return losses


def _bad_configurations(ctx: DistContext) -> dict[str, str]:
    data = _data()
    errors = {}
    sasrec = _model("sasrec", data.n_items)
    errors["ddp"] = _error(lambda: to_catalog_parallel(DistributedDataParallel(sasrec)))
    converted = to_catalog_parallel(_model("sasrec", data.n_items))
    errors["twice"] = _error(lambda: to_catalog_parallel(converted))
    errors["data_parallel_eval"] = _error(lambda: full_sort_evaluate(converted, data.test, dist=ctx))
    errors["whole_catalog_scores"] = _error(lambda: converted.scoring_items(0, data.n_items))
    seeded_by_rank = _model("sasrec", data.n_items, seed=ctx.rank)
    errors["different_seeds"] = _error(lambda: Trainer(seeded_by_rank, data, _config("sasrec", catalog_parallel=True),
                                                       dist=ctx))
    return errors


def _run(rank: int, world_size: int, out_dir: Path) -> dict[str, Any]:
    ctx = DistContext(rank, world_size)
    results: dict[str, Any] = {}
    if world_size in (2, 3):
        results["embedding"] = _embedding_case(rank, world_size)
    if world_size in (2, 4):
        results["train"] = {name: _training_case(name, ctx, out_dir) for name, w in CASES if w == world_size}
    if world_size == 2:
        results["resume"] = _resume_case(ctx, out_dir)
        results["errors"] = _bad_configurations(ctx)
        results["bf16"] = _bf16_losses()
    if world_size == 4:
        results["errors"] = {"too_few_items": _error(lambda: to_catalog_parallel(_model("sasrec", 3)))}
    return results


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous{world_size}", rank=rank,
                            world_size=world_size)
    try:
        torch.set_num_threads(1)
        torch.save(_run(rank, world_size, Path(out_dir)), f"{out_dir}/world{world_size}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[int, list[dict[str, Any]]]]:
    out_dir = tmp_path_factory.mktemp("catalog")
    for world_size in (2, 3, 4):
        mp.spawn(_worker, args=(world_size, str(out_dir)), nprocs=world_size, join=True)
    return out_dir, {w: [torch.load(out_dir / f"world{w}-rank{r}.pt", weights_only=True) for r in range(w)]
                     for w in (2, 3, 4)}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The single-process runs the catalog-parallel ones must reproduce."""
    out_dir = tmp_path_factory.mktemp("single")
    results = {}
    for name in MODELS:
        model, _, result = _train(name, out_dir / name, None)
        results[name] = {"log": _log(out_dir / name), "state": model.state_dict(), "test": result.test,
                         "best_epoch": result.best_epoch, "tile_metrics": _tile_metrics(model, _data())}
    return out_dir, results


def _assert_states_equal(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=ATOL, msg=key)


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("world_size", [2, 3])
def test_sharded_embedding_equals_nn_embedding(runs, world_size):
    per_rank = runs[1][world_size]
    g = torch.Generator().manual_seed(11)
    table = torch.randn(EMB_ROWS, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([[0, 3, 3, 10, 5], [5, 5, 0, 1, 9], [10, 2, 7, 7, 3]])
    weight = torch.randn(*ids.shape, 4, generator=g, dtype=torch.float64)
    for case, padding_idx in enumerate((0, 5, None)):
        reference = nn.Embedding(EMB_ROWS, 4, padding_idx=padding_idx, dtype=torch.float64)
        reference.weight.data.copy_(table)
        rows = reference(ids)
        (rows * weight).sum().backward()
        for results in per_rank:
            torch.testing.assert_close(results["embedding"][case]["rows"], rows.detach(), rtol=0, atol=0)
            torch.testing.assert_close(results["embedding"][case]["frozen"], table[ids], rtol=0, atol=0)
        grads = torch.cat([results["embedding"][case]["grad"] for results in per_rank])
        torch.testing.assert_close(grads, reference.weight.grad, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("name", "world_size"), CASES)
def test_training_equals_single_process(runs, single, name, world_size):
    out_dir, per_rank = runs[0], [r["train"][name] for r in runs[1][world_size]]
    expected = single[1][name]
    got_log, want_log = per_rank[0]["log"], expected["log"]
    assert [r["epoch"] for r in got_log] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in got_log] == pytest.approx([r["train_loss"] for r in want_log], abs=ATOL)
    for key in ("valid_recall@10", "valid_ndcg@10", "valid_recall@20", "valid_ndcg@20"):
        assert [r[key] for r in got_log] == pytest.approx([r[key] for r in want_log], abs=1e-12), key
    keys = per_rank[0]["sharded_keys"]
    assert keys == (("item_embedding.weight", "text_embeddings") if name == "tedrec" else ("item_embedding.weight",))
    n_items, hidden = expected["state"]["item_embedding.weight"].shape
    for rank, results in enumerate(per_rank):
        assert results["test"] == pytest.approx(expected["test"], abs=1e-12)
        assert results["tile_metrics"] == pytest.approx(expected["tile_metrics"], abs=1e-12)
        assert results["best_epoch"] == expected["best_epoch"]
        lo, hi = shard_bounds(n_items, rank, world_size)
        assert results["bounds"] == (lo, hi)
        assert results["adam_rows"] == [(hi - lo, hidden)] * 2  # optimiser state of the local rows only
        assert results["classes"] == ({"tedrec": "TedRec", "sasrec": "SASRec", "fmlprec": "FMLPRec"}[name],
                                      "ShardedEmbedding")  # no class swap: the item table is swapped
        replicated = {k: v for k, v in results["state"].items() if k not in keys}
        _assert_states_equal(replicated, {k: v for k, v in expected["state"].items() if k not in keys})
    for key in keys:
        joined = torch.cat([results["state"][key] for results in per_rank])
        torch.testing.assert_close(joined, expected["state"][key], rtol=0, atol=ATOL, msg=key)
    # the per-process checkpoint files merge into the single-process best.pt
    run_dir = out_dir / f"{name}-w{world_size}"
    assert sorted(p.name for p in run_dir.glob("*.pt")) == sorted(
        shard_file_name(f, r, world_size) for f in (BEST_NAME, CHECKPOINT_NAME) for r in range(world_size))
    merged = load_run_checkpoint(run_dir / BEST_NAME)
    reference = load_checkpoint(single[0] / name / BEST_NAME)
    assert merged["epoch"] == reference["epoch"] and "optimizer" not in merged
    _assert_states_equal(merged["model"], reference["model"])
    last = load_checkpoint(single[0] / name / CHECKPOINT_NAME)["model"]
    _assert_states_equal(load_run_checkpoint(run_dir / CHECKPOINT_NAME)["model"], last)


def test_resume_equals_uninterrupted_run(runs, single):
    expected = single[1]["tedrec"]
    per_rank = [r["resume"] for r in runs[1][2]]
    assert [r["train_loss"] for r in per_rank[0]["log"]] == pytest.approx(
        [r["train_loss"] for r in expected["log"]], abs=ATOL)
    keys = ("item_embedding.weight", "text_embeddings")
    joined = {k: torch.cat([r["state"][k] for r in per_rank]) for k in keys}
    for results in per_rank:
        assert results["test"] == pytest.approx(expected["test"], abs=1e-12)
        _assert_states_equal({**results["state"], **joined}, expected["state"])


def test_bf16_autocast_loss_equals_single_process(runs):
    for results in runs[1][2]:
        for name, (single, catalog) in results["bf16"].items():
            assert catalog == pytest.approx(single, abs=1e-5), name


def test_bad_configurations_in_processes(runs):
    for results in runs[1][2]:
        errors = results["errors"]
        assert errors["ddp"].startswith("TypeError") and "DistributedDataParallel" in errors["ddp"]
        assert errors["twice"].startswith("TypeError") and "already" in errors["twice"]
        assert errors["data_parallel_eval"].startswith("ValueError") and "catalog-parallel" in errors[
            "data_parallel_eval"]
        assert errors["whole_catalog_scores"].startswith("ValueError") and "holds items" in errors[
            "whole_catalog_scores"]
        assert errors["different_seeds"].startswith("RuntimeError") and "same seed" in errors["different_seeds"]
    for results in runs[1][4]:
        assert results["errors"]["too_few_items"].startswith("ValueError")
        assert "4 processes but only 3 item rows" in results["errors"]["too_few_items"]


def test_bad_configurations_in_one_process(tmp_path):
    data = _data()
    with pytest.raises(ValueError, match="torchrun"):
        Trainer(_model("sasrec", data.n_items), data, _config("sasrec", catalog_parallel=True))
    with pytest.raises(RuntimeError, match="process group"):
        to_catalog_parallel(_model("sasrec", data.n_items))
    with pytest.raises(TypeError, match="supports SASRec, FMLPRec, TedRec"):
        to_catalog_parallel(build_model("unisrec", data.n_items, 6, torch.zeros(data.n_items, 4), hidden_size=8))
    (tmp_path / shard_file_name(CHECKPOINT_NAME, 0, 2)).touch()  # a catalog-parallel run's file
    with pytest.raises(ValueError, match="another parallel layout"):
        Trainer(_model("sasrec", data.n_items), data, _config("sasrec"), output_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="lacks some of the 2 files"):
        load_run_checkpoint(tmp_path / CHECKPOINT_NAME)
    with pytest.raises(TypeError, match="catalog_parallel"):
        TrainConfig(catalog_parallel="yes")


def test_cli_flag_reaches_the_run():
    assert build_parser().parse_args(["train"]).catalog_parallel is None
    with pytest.raises(ValueError, match="torchrun"):  # one process: refused before any data is loaded
        main(["--debug", "train", "--catalog-parallel", "--device", "cpu"])  # --debug: raise, not exit 2
