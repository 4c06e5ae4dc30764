"""Trainer: training on a tiny model, early stopping, checkpoints, bit-identical resume."""

import json

import pytest
import torch

from tedrec_fast.config import TrainConfig
from tedrec_fast.train import Trainer, load_checkpoint, seed_everything
from tedrec_fast.train.trainer import BEST_NAME, CHECKPOINT_NAME, LOG_NAME
from tests.train.support import TinyRec, make_dataset


def _model(dataset, seed=0):
    seed_everything(seed)
    return TinyRec(dataset.n_items, dataset.max_seq_length)


def _config(**kw):
    base = dict(epochs=4, batch_size=16, lr=1e-2, seed=1, deterministic=True, progress=False, log_every=2)
    return TrainConfig(**{**base, **kw})


def test_fit_writes_log_and_checkpoints(tmp_path):
    data = make_dataset()
    result = Trainer(_model(data), data, _config(epochs=3, grad_clip=1.0), output_dir=tmp_path).fit()
    assert result.epochs_run == 3 and 1 <= result.best_epoch <= 3
    assert set(result.test) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    assert 0 <= result.test["ndcg@10"] <= result.test["recall@10"] <= result.test["recall@20"] <= 1
    records = [json.loads(line) for line in (tmp_path / LOG_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"train_loss", "valid_ndcg@10", "valid_recall@20", "seconds"} <= set(records[0])
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    last = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert last["epoch"] == 3 and {"model", "optimizer", "rng", "best_model", "bad_epochs"} <= set(last)
    best = load_checkpoint(tmp_path / BEST_NAME)
    assert best["epoch"] == result.best_epoch
    assert not list(tmp_path.glob(".*tmp*"))


def test_resume_is_bit_identical(tmp_path):
    data = make_dataset()
    straight = _model(data)
    full = Trainer(straight, data, _config(), output_dir=tmp_path / "a").fit()

    Trainer(_model(data), data, _config(epochs=2), output_dir=tmp_path / "b").fit()  # "crashes" after epoch 2
    resumed_model = _model(data, seed=123)  # different init: everything must come from the checkpoint
    resumed = Trainer(resumed_model, data, _config(), output_dir=tmp_path / "b", resume=True).fit()

    assert resumed.test == full.test
    assert resumed.best_valid == full.best_valid and resumed.best_epoch == full.best_epoch
    for (name, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    last_a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)["model"]
    last_b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    log_a = [json.loads(x) for x in (tmp_path / "a" / LOG_NAME).read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / LOG_NAME).read_text().splitlines()]
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]


def test_early_stopping_restores_best(monkeypatch):
    data = make_dataset()
    trainer = Trainer(_model(data), data, _config(epochs=50, patience=2))
    scores = iter([0.1, 0.3, 0.2, 0.2] + [0.5] * 10)
    snapshots = {}

    def fake_evaluate(split):
        if split == "test":
            return {"ndcg@10": -1.0}
        snapshots[trainer.epoch + 1] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return {"ndcg@10": next(scores)}

    monkeypatch.setattr(trainer, "evaluate", fake_evaluate)
    result = trainer.fit()
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (4, 2, True)
    assert result.stop_reason == "patience"
    assert all(torch.equal(v, snapshots[2][k]) for k, v in trainer.model.state_dict().items())


def test_time_budget_stops_after_the_running_epoch(monkeypatch):
    data = make_dataset()
    clock = iter(range(0, 10_000, 50))  # every perf_counter() call advances 50 s
    monkeypatch.setattr("tedrec_fast.train.trainer.time.perf_counter", lambda: float(next(clock)))
    result = Trainer(_model(data), data, _config(epochs=20, max_minutes=4.0)).fit()
    assert result.stop_reason == "time budget" and not result.stopped_early
    assert 1 <= result.epochs_run < 20 and set(result.test) >= {"ndcg@10"}
    full = Trainer(_model(data), data, _config(epochs=2)).fit()
    assert (full.stop_reason, full.epochs_run) == ("epochs", 2)


def test_max_steps_per_epoch_caps_steps(monkeypatch):
    data = make_dataset()
    trainer = Trainer(_model(data), data, _config(epochs=1, max_steps_per_epoch=3))
    calls = []
    original = trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (calls.append(1), original(*a, **k)))
    trainer.train_epoch(1)
    assert len(calls) == 3


def test_bf16_autocast_trains():
    data = make_dataset()
    result = Trainer(_model(data), data, _config(epochs=1, bf16=True, deterministic=False)).fit()
    assert result.test["recall@20"] >= 0


def test_bad_arguments(tmp_path):
    data = make_dataset()
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=0)
    with pytest.raises(TypeError, match="max_minutes"):
        TrainConfig(max_minutes="5")
    with pytest.raises(TypeError, match="bf16"):
        TrainConfig(bf16="yes")
    with pytest.raises(TypeError, match="model"):
        Trainer("model", data)
    with pytest.raises(ValueError, match="output_dir"):
        Trainer(_model(data), data, _config(), resume=True)
    data.valid.target = data.valid.target[:-1]
    with pytest.raises(ValueError, match="dataset.valid"):
        Trainer(_model(data), data, _config())
