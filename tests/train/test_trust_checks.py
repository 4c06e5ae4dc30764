"""Trustworthy runs, in process: no false result, one run per directory, checked checkpoints and text caches,
crash-safe writes and their clean-up (the SIGKILL tests are in tests/train/test_trust_faults.py)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tedrec_fast.config import RunConfig, TrainConfig
from tedrec_fast.models import build_model
from tedrec_fast.safe_files import atomic_save, atomic_write_bytes, remove_stale_temporaries
from tedrec_fast.text import cache as text_cache
from tedrec_fast.train import (
    Trainer,
    full_sort_evaluate,
    load_checkpoint,
    report,
    save_atomic,
    seed_everything,
    target_ranks,
)
from tedrec_fast.train.evaluate import streaming_target_ranks
from tedrec_fast.train.lock import LOCK_NAME, RunLock
from tedrec_fast.train.report import JsonlLog
from tedrec_fast.train.trainer import BEST_NAME, CHECKPOINT_NAME, LOG_NAME, TrainingDiverged
from tests.train.support import TinyRec, make_dataset

FIXTURE = Path(__file__).parents[1] / "fixtures" / "data" / "online_retail_iso.csv"
NEVER = torch.iinfo(torch.int64).max


def _config(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, lr=1e-2, seed=1, deterministic=True, progress=False, log_every=1,
                max_steps_per_epoch=2)
    return TrainConfig(**{**base, **kw})


def _tiny(data, hidden: int = 8) -> TinyRec:
    seed_everything(0)
    return TinyRec(data.n_items, data.max_seq_length, hidden=hidden)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------ no false result
def test_nan_or_inf_scores_are_misses():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2],
                           [float("nan"), 0.9, 0.5, 0.2],
                           [0.0, float("nan"), 0.5, 0.2],
                           [0.0, 0.1, float("inf"), 0.2],
                           [float("nan")] * 4,  # a NaN query: every score NaN
                           [0.0, 0.1, 0.3, float("-inf")]])
    target = torch.tensor([1, 1, 1, 2, 1, 3])
    # row 1: a NaN elsewhere ranks above the target; row 2: NaN target; row 3: +inf target; row 5: -inf target
    assert target_ranks(scores, target).tolist() == [0, 1, NEVER, NEVER, NEVER, NEVER]
    ranks = streaming_target_ranks(lambda a, b: scores[:, a:b], target, 4, tile_size=3)
    assert ranks.tolist() == [0, 1, NEVER, NEVER, NEVER, NEVER]


def test_nan_weights_give_zero_metrics_not_perfect_ones():
    data = make_dataset()
    model = _tiny(data)
    with torch.no_grad():
        model.proj.weight.fill_(float("nan"))  # every query NaN: formerly every target ranked first
    metrics = full_sort_evaluate(model, data.valid)
    assert metrics == {"recall@10": 0.0, "ndcg@10": 0.0, "recall@20": 0.0, "ndcg@20": 0.0}


def test_diverging_training_stops_and_saves_nothing_of_that_epoch(tmp_path):
    data = make_dataset()
    seed_everything(0)
    model = build_model("sasrec", data.n_items, data.max_seq_length, hidden_size=8, n_layers=1, n_heads=1,
                        inner_size=16)
    with pytest.raises(TrainingDiverged, match=r"epoch 1: the training loss is nan .*no epoch was saved.*lr=1e\+10"):
        Trainer(model, data, _config(lr=1e10), output_dir=tmp_path).fit()
    assert not (tmp_path / BEST_NAME).exists() and not (tmp_path / CHECKPOINT_NAME).exists()
    assert (tmp_path / LOG_NAME).read_text() == "" and not (tmp_path / LOCK_NAME).exists()


def test_non_finite_weights_after_an_epoch_stop_the_run(tmp_path, monkeypatch):
    data = make_dataset()
    trainer = Trainer(_tiny(data), data, _config(epochs=3), output_dir=tmp_path)
    original = trainer.train_epoch.__func__

    def poisoned(self, epoch):
        loss = original(self, epoch)
        if epoch == 2:
            with torch.no_grad():
                self.model.item_embedding.weight[3] = float("inf")
        return loss

    monkeypatch.setattr(Trainer, "train_epoch", poisoned)
    with pytest.raises(TrainingDiverged, match=r"epoch 2: the weights hold NaN or inf.*item_embedding\.weight.*"
                                               r"last.pt holds epoch 1"):
        trainer.fit()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 1
    assert load_checkpoint(tmp_path / BEST_NAME)["epoch"] == 1
    assert [r["epoch"] for r in JsonlLog(tmp_path / LOG_NAME).records()] == [1]


def test_empty_splits_are_errors(tmp_path):
    data = make_dataset()
    data.test.target, data.test.item_seq, data.test.item_seq_len = (t[:0] for t in (
        data.test.target, data.test.item_seq, data.test.item_seq_len))
    with pytest.raises(ValueError, match=r"dataset.test is empty"):
        Trainer(_tiny(data), data, _config())
    with pytest.raises(ValueError, match="no users"):
        full_sort_evaluate(_tiny(data), data.test)


def test_header_only_split_file_is_named(tmp_path):
    from tedrec_fast.data import prepare_dataset
    from tedrec_fast.train.run import load_data

    directory = prepare_dataset("online-retail", tmp_path / "datasets", raw=FIXTURE)
    test_file = directory / "online-retail.test.inter"
    test_file.write_text(test_file.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"online-retail\.test\.inter"):
        load_data(RunConfig(dataset=str(directory), data_dir=str(tmp_path)))


# ------------------------------------------------------------------ one run per directory
def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    data = make_dataset()
    first = Trainer(_tiny(data), data, _config(), output_dir=tmp_path)
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    with pytest.raises(ValueError, match=rf"in use by another run \(process {os.getpid()} .*{LOCK_NAME}"):
        Trainer(_tiny(data), data, _config(), output_dir=tmp_path)
    first.fit()
    assert not (tmp_path / LOCK_NAME).exists()
    Trainer(_tiny(data), data, _config(), output_dir=tmp_path).fit()  # free again


def test_a_lock_held_by_another_process_names_it(tmp_path):
    script = (f"import time; from tedrec_fast.train.lock import RunLock; lock = RunLock({str(tmp_path)!r}).acquire(); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"process {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # the kernel dropped the dead holder's lock


def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path, capsys):
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{pid} somehost\n")
    data = make_dataset()
    Trainer(_tiny(data), data, _config(epochs=1), output_dir=tmp_path).fit()
    assert f"taking over the stale lock {tmp_path / LOCK_NAME} of process {pid} (no longer running)" in \
        capsys.readouterr().err


# ------------------------------------------------------------------ checked checkpoints
def _bad_checkpoints(good: bytes) -> dict[str, tuple[bytes, str]]:
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    foreign_torch = io.BytesIO()
    torch.save({"model": {"w": torch.ones(2)}}, foreign_torch)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    header_end = good.index(b"\n") + 1
    evil = pickle.dumps(Evil())
    wrapped_evil = (f"TEDREC_FAST_CHECKPOINT 1 sha256={hashlib.sha256(evil).hexdigest()} bytes={len(evil)}\n"
                    ).encode() + evil
    return {
        "empty": (b"", "is empty"),
        "truncated": (good[: len(good) // 2], "is truncated"),
        "header cut": (good[:20], "is truncated: only the first 20 bytes"),
        "header damaged": (good[:30] + b"?" + good[31:], "damaged header"),
        "random bytes": (np.random.default_rng(0).bytes(4096), "not a tedrec_fast checkpoint"),
        "flipped byte": (bytes(flipped), "is corrupted"),
        "foreign pickle": (pickle.dumps({"model": 1}), "without tedrec_fast's checksum header"),
        "foreign torch file": (foreign_torch.getvalue(), "without tedrec_fast's checksum header"),
        "unsafe pickle": (wrapped_evil, "cannot be loaded safely"),
        "longer": (good + b"x", "longer than written"),
        "header only": (good[:header_end], "is truncated: 0 of"),
    }


def test_bad_checkpoints_give_one_line_naming_the_file(tmp_path, capsys):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 3, "model": {"w": torch.arange(1000.0)}}, path)
    assert load_checkpoint(path)["epoch"] == 3
    good = path.read_bytes()
    for case, (data, reason) in _bad_checkpoints(good).items():
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert str(path) in message and reason in message and "\n" not in message, (case, message)
        assert "weights_only=False" not in message, case
    assert "pwned" not in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"checkpoint .*missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_refuses_other_settings_naming_each(tmp_path):
    data = make_dataset()
    Trainer(_tiny(data), data, _config(), output_dir=tmp_path, metadata={"model": "tiny", "seed": 1}).fit()
    with pytest.raises(ValueError) as err:
        Trainer(_tiny(data), data, _config(lr=1e-3, seed=7, batch_size=8), output_dir=tmp_path, resume=True,
                metadata={"model": "tiny", "seed": 7})
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / CHECKPOINT_NAME) in message
    for expected in ("lr: saved 0.01, now 0.001", "seed: saved 1, now 7", "batch_size: saved 16, now 8"):
        assert expected in message
    assert not (tmp_path / LOCK_NAME).exists()  # a refused run leaves the directory free
    resumed = Trainer(_tiny(data), data, _config(epochs=3), output_dir=tmp_path, resume=True,
                      metadata={"model": "tiny", "seed": 1}).fit()  # more epochs are fine
    assert resumed.epochs_run == 3


def test_resume_with_another_model_is_one_line(tmp_path):
    data = make_dataset()
    Trainer(_tiny(data), data, _config(), output_dir=tmp_path).fit()
    with pytest.raises(ValueError) as err:
        Trainer(_tiny(data, hidden=4), data, _config(), output_dir=tmp_path, resume=True)
    assert "\n" not in str(err.value) and "another model than TinyRec" in str(err.value)


# ------------------------------------------------------------------ records and temporaries
def test_records_live_in_the_checkpoint_and_the_log_is_rebuilt_from_them(tmp_path):
    data = make_dataset()
    Trainer(_tiny(data), data, _config(), output_dir=tmp_path).fit()
    records = load_checkpoint(tmp_path / CHECKPOINT_NAME)["records"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_seconds", "valid_seconds", "seconds"} <= set(records[0])
    with open(tmp_path / LOG_NAME, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a torn append of an older version
    Trainer(_tiny(data), data, _config(epochs=3), output_dir=tmp_path, resume=True).fit()
    assert [r["epoch"] for r in JsonlLog(tmp_path / LOG_NAME).records()] == [1, 2, 3]


def test_torn_log_tail_is_skipped_but_a_bad_middle_line_is_named(tmp_path):
    log = JsonlLog(tmp_path / LOG_NAME)
    log.write([{"epoch": 1}, {"epoch": 2}])
    with open(log.path, "a") as f:
        f.write('{"epoch": 3, "tra')
    assert log.records() == [{"epoch": 1}, {"epoch": 2}]
    log.path.write_text('{"epoch": 1}\n{"ep\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=rf"{LOG_NAME}, line 2"):
        log.records()


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = [f".best.pt.tmp{dead}", f".last.pt.tmp-{dead}-00ab12cd", f".ml-100k.tmp-{dead}-0123abcd",
             ".ml-100k.tmp-a1b2c3d4", ".ml-100k.old-x_y9z8w7", ".log.jsonl.k3j4h5g6.tmp"]
    kept = [f".best.pt.tmp{alive}", f".ml-100k.tmp-{alive}-0123abcd", ".ml-100k.notes", "ml-100k"]
    for name in names + kept:
        (tmp_path / name).mkdir() if "ml-100k" in name else (tmp_path / name).write_text("x")
    for target in ("best.pt", "last.pt", "ml-100k", "log.jsonl"):
        remove_stale_temporaries(tmp_path / target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    class Boom(Exception):
        pass

    def failing(handle):
        handle.write(b"half")
        raise Boom

    with pytest.raises(Boom):
        atomic_save(path, failing, "file")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# ------------------------------------------------------------------ text-embedding caches
def _stand_in(texts, encoder, pooling="mean", **_):
    return np.array([[len(t), 1.0, 2.0] for t in texts], dtype=np.float32)


@pytest.mark.parametrize("damage", ["nan", "wrong rows", "float64", "truncated", "random bytes", "no checksum",
                                    "flipped byte"])
def test_a_bad_text_cache_is_named_and_rebuilt(tmp_path, monkeypatch, capsys, damage):
    calls = []
    monkeypatch.setattr(text_cache._encode, "encode_texts", lambda *a, **k: (calls.append(1), _stand_in(*a, **k))[1])
    texts = ["", "a red mug", "tea"]
    fresh = text_cache.encode_dataset_texts(texts, "toy", "stand-in", tmp_path)
    path = text_cache.cache_path(texts, "toy", "stand-in", tmp_path, "mean")
    checksum = path.with_name(path.name + ".sha256")

    def rewrite(table: np.ndarray) -> None:  # a sound file and checksum holding bad values
        buffer = io.BytesIO()
        np.save(buffer, table)
        path.write_bytes(buffer.getvalue())
        checksum.write_text(hashlib.sha256(buffer.getvalue()).hexdigest() + "\n")

    data = path.read_bytes()
    if damage == "nan":
        rewrite(np.where(np.arange(3)[:, None] == 2, np.nan, fresh).astype(np.float32))
    elif damage == "wrong rows":
        rewrite(fresh[:2])
    elif damage == "float64":
        rewrite(fresh.astype(np.float64))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "no checksum":
        checksum.unlink()
    else:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    again = text_cache.encode_dataset_texts(texts, "toy", "stand-in", tmp_path)
    assert np.array_equal(again, fresh) and len(calls) == 2
    assert f"text-embedding cache {path} is bad: " in capsys.readouterr().err
    assert np.array_equal(text_cache.encode_dataset_texts(texts, "toy", "stand-in", tmp_path), fresh)
    assert len(calls) == 2  # rebuilt once, then sound


def test_an_encoder_returning_nan_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(text_cache._encode, "encode_texts",
                        lambda texts, *a, **k: np.full((len(texts), 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="encoder 'stand-in' returned NaN or inf"):
        text_cache.encode_dataset_texts(["", "a"], "toy", "stand-in", tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ feedback
def test_epoch_lines_say_what_their_times_include_and_evaluation_shows_progress(tmp_path, capsys):
    data = make_dataset()
    Trainer(_tiny(data), data, _config(epochs=1, progress=True)).fit()
    out, err = capsys.readouterr()
    assert "(train " in out and " s, valid " in out
    full_sort_evaluate(_tiny(data), data.valid, batch_size=4, progress="valid users")
    assert "valid users" in capsys.readouterr().err


def test_source_commit_names_a_dirty_checkout_and_is_read_once(monkeypatch) -> None:
    answers = {"rev-parse": "abc1234\n", "status": " M tedrec_fast/config.py\n"}
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command[1])
        return subprocess.CompletedProcess(command, 0, stdout=answers[command[1]], stderr="")

    monkeypatch.setattr(report.subprocess, "run", fake_run)
    assert report.source_commit.__wrapped__() == "abc1234-dirty"
    answers["status"] = ""
    assert report.source_commit.__wrapped__() == "abc1234"
    assert calls == ["rev-parse", "status", "rev-parse", "status"]
    assert report.source_commit() == report.source_commit()  # cached: one answer per process
