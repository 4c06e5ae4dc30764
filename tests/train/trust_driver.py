"""Runs fault-injection scenarios in real child processes (no test functions here).

``python -m tests.train.trust_driver SCENARIOS.json`` imports the heavy modules once, then forks one child per
scenario (the parent runs no torch op, so forking is safe). Each child sets ``TEDREC_FAST_FAULT`` to the
scenario's ``fault`` (or unsets it), does its ``kind`` of work and writes its result as JSON to ``result``;
the parent records how each child ended (``"exit 0"``, ``"signal 9"``) in ``SCENARIOS.json.status``. A
scenario with ``kill_fraction`` is sent SIGKILL by the parent, wherever the child is, once that fraction of
the first scenario's duration has passed.

Kinds: ``train`` (the tiny trainer of :mod:`tests.train.support`, ``epochs``, ``resume``, ``out``),
``prepare`` (``online-retail`` from the fixture into ``out`` with ``max_seq_length``), ``text`` (cached text
embeddings from a stand-in encoder into ``out``), ``swap`` (``atomic_directory(out, exchange)`` writing
``content`` into ``data.txt``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tedrec_fast.config import TrainConfig
from tedrec_fast.data import prepare_dataset
from tedrec_fast.safe_files import FAULT_ENV, atomic_directory
from tedrec_fast.text import cache as text_cache
from tedrec_fast.train import Trainer, seed_everything
from tests.train.support import TinyRec, make_dataset

FIXTURE = Path(__file__).parents[1] / "fixtures" / "data" / "online_retail_iso.csv"
#: the tiny trainer's settings (1-2 steps per epoch)
TRAIN = dict(batch_size=16, lr=1e-2, seed=1, deterministic=True, progress=False, log_every=1, max_steps_per_epoch=2)


def _train(s: dict[str, Any]) -> dict[str, Any]:
    data = make_dataset()
    seed_everything(0)
    model = TinyRec(data.n_items, data.max_seq_length)
    result = Trainer(model, data, TrainConfig(epochs=s["epochs"], **TRAIN), output_dir=s["out"],
                     resume=s.get("resume", False)).fit()
    return {"test": result.test, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}


def _encode(texts: list[str], encoder: str, pooling: str = "mean", **_: Any) -> np.ndarray:
    return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


def _text(s: dict[str, Any]) -> dict[str, Any]:
    text_cache._encode.encode_texts = _encode
    table = text_cache.encode_dataset_texts(["", "a red mug", "a blue cup", "tea"], "toy", "stand-in", s["out"])
    return {"table": table.tolist()}


def _prepare(s: dict[str, Any]) -> dict[str, Any]:
    return {"dir": str(prepare_dataset("online-retail", s["out"], raw=FIXTURE, max_seq_length=s["max_seq_length"]))}


def _swap(s: dict[str, Any]) -> dict[str, Any]:
    with atomic_directory(Path(s["out"]), exchange=s["exchange"]) as tmp:
        (tmp / "data.txt").write_text(s["content"])
    return {}


KINDS = {"train": _train, "text": _text, "prepare": _prepare, "swap": _swap}


def _child(scenario: dict[str, Any]) -> None:
    if scenario.get("fault"):
        os.environ[FAULT_ENV] = scenario["fault"]
    else:
        os.environ.pop(FAULT_ENV, None)
    result = KINDS[scenario["kind"]](scenario)
    Path(scenario["result"]).write_text(json.dumps(result))


def _wait(pid: int, kill_after: float | None) -> tuple[int, int]:
    """``os.waitpid(pid)``; with ``kill_after`` the child is sent SIGKILL once that many seconds have passed."""
    if kill_after is None:
        return os.waitpid(pid, 0)
    deadline = time.monotonic() + kill_after
    while time.monotonic() < deadline:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            return done, wait_status
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)


def main(path: str) -> None:
    scenarios = json.loads(Path(path).read_text())
    status, durations = [], []
    for scenario in scenarios:
        started = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(scenario)
            except BaseException as err:  # noqa: BLE001 - reported to the parent through the exit status
                print(f"{type(err).__name__}: {err}", file=sys.stderr)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        kill_after = scenario["kill_fraction"] * durations[0] if "kill_fraction" in scenario else None
        _, wait_status = _wait(pid, kill_after)
        durations.append(time.monotonic() - started)
        if os.WIFSIGNALED(wait_status):
            status.append(f"signal {os.WTERMSIG(wait_status)}")
        else:
            status.append(f"exit {os.WEXITSTATUS(wait_status)}")
    Path(path + ".status").write_text(json.dumps(status))


if __name__ == "__main__":
    main(sys.argv[1])
