"""Runs fault-injection scenarios in real child processes (no test functions here).

``python -m tests.train.trust_driver SCENARIOS.json`` imports the heavy modules once, then forks one child per
scenario (the parent runs no torch op, so forking is safe). Each child sets ``TEDREC_FAST_FAULT`` to the
scenario's ``fault`` (or unsets it), does its ``kind`` of work and writes its result as JSON to ``result``;
the parent records how each child ended (``"exit 0"``, ``"signal 9"``) in ``SCENARIOS.json.status``. A
scenario with ``kill_fraction`` is sent SIGKILL by the parent, wherever the child is, once it has used that
fraction of the CPU time of the cheapest earlier scenario that ran without a kill. Children compute on one
thread, so their CPU time measures their progress whatever the load on the machine.

Kinds: ``train`` (the tiny trainer of :mod:`tests.train.support`, ``epochs``, ``resume``, ``out``, optionally
``max_steps_per_epoch``), ``prepare`` (``online-retail`` from the fixture into ``out`` with ``max_seq_length``),
``text`` (cached text embeddings from a stand-in encoder into ``out``), ``swap`` (``atomic_directory(out,
exchange)`` writing ``content`` into ``data.txt``).
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
import torch

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
    settings = {**TRAIN, "max_steps_per_epoch": s.get("max_steps_per_epoch", TRAIN["max_steps_per_epoch"])}
    result = Trainer(model, data, TrainConfig(epochs=s["epochs"], **settings), output_dir=s["out"],
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
    torch.set_num_threads(1)
    if scenario.get("fault"):
        os.environ[FAULT_ENV] = scenario["fault"]
    else:
        os.environ.pop(FAULT_ENV, None)
    result = KINDS[scenario["kind"]](scenario)
    Path(scenario["result"]).write_text(json.dumps(result))


def _cpu_seconds(pid: int) -> float:
    """CPU time a running child has used so far (user + system, all threads), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(pid: int, kill_after: float | None) -> tuple[int, float]:
    """Waits for child ``pid``; returns its wait status and the CPU seconds it used. With ``kill_after`` it is
    sent SIGKILL once it has used that many CPU seconds (CPU time, not wall time: the child's progress, however
    loaded the machine is)."""
    if kill_after is not None:
        while True:
            done, wait_status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return wait_status, usage.ru_utime + usage.ru_stime
            if _cpu_seconds(pid) >= kill_after:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    _, wait_status, usage = os.wait4(pid, 0)
    return wait_status, usage.ru_utime + usage.ru_stime


def main(path: str) -> None:
    scenarios = json.loads(Path(path).read_text())
    status, unkilled = [], []
    for scenario in scenarios:
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
        kill_after = scenario["kill_fraction"] * min(unkilled) if "kill_fraction" in scenario else None
        wait_status, cpu_seconds = _wait(pid, kill_after)
        if kill_after is None:
            unkilled.append(cpu_seconds)
        if os.WIFSIGNALED(wait_status):
            status.append(f"signal {os.WTERMSIG(wait_status)}")
        else:
            status.append(f"exit {os.WEXITSTATUS(wait_status)}")
    Path(path + ".status").write_text(json.dumps(status))


if __name__ == "__main__":
    main(sys.argv[1])
