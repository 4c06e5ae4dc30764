"""One training step (forward, backward, Adam) of TedRec and SASRec, fast path against reference mode.

At the paper's settings (n = 50, hidden 300 for TedRec and 64 for SASRec, 2 layers, 8 experts, MiniLM's 384-d
text vectors, ML-100k's 1,683 items; random data of those shapes, history lengths distributed as ML-100k's):
both modes of a model are built with the same weights and timed interleaved in one run (median of ``repeats``
steps each, after a warm-up), and the MoE-modulation op alone (forward + backward) against its eager reference. Records:
``{op: "train_step" | "moe_modulation", model, path, device, dtype, B, n, ms, ref_ms, speedup}`` plus the process
CPU times ``cpu_ms``, ``ref_cpu_ms``, ``cpu_speedup`` (on a shared machine less noisy than wall time).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable

import torch

from tedrec_fast.models import build_model
from tedrec_fast.train.report import processor_name, source_commit

__all__ = ["N_ITEMS", "TEXT_DIM", "make_train_step", "time_interleaved", "measure_train_step", "train_step_document"]

N_ITEMS = 1683  # ML-100k's items + padding
TEXT_DIM = 384  # MiniLM (all-MiniLM-L6-v2)
#: model name -> constructor overrides (the paper's settings; SASRec: RecBole's defaults)
MODELS = {"tedrec": {"hidden_size": 300}, "sasrec": {}}


#: history lengths are drawn as ``min(U{1..LENGTH_DRAW}, n)``: at n = 50, 60.5 % full rows and a mean of 40.1
#: positions, like ML-100k's training rows (every prefix of every history: 60.4 % full, mean 39.1)
LENGTH_DRAW = 123


def batch(B: int, n: int, device: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random batch ``(item_seq, item_seq_len, target)``, lengths distributed as ML-100k's training rows'."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, LENGTH_DRAW + 1, (B,), generator=g).clamp(max=n)
    seq = torch.randint(1, N_ITEMS, (B, n), generator=g)
    seq[torch.arange(n) >= lengths[:, None]] = 0
    target = torch.randint(1, N_ITEMS, (B,), generator=g)
    return seq.to(device), lengths.to(device), target.to(device)


def make_train_step(model_name: str, reference: bool, B: int, n: int = 50, device: str = "cpu") -> Callable[[], None]:
    """A closure running one training step of ``model_name`` (fixed weights seed, random batch)."""
    torch.manual_seed(0)
    text = torch.randn(N_ITEMS, TEXT_DIM) * 0.05
    model = build_model(model_name, N_ITEMS, n, text, reference=reference, **MODELS[model_name]).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seq, lengths, target = batch(B, n, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.calculate_loss(seq, lengths, target).backward()
        optimizer.step()

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(fast: Callable[[], None], ref: Callable[[], None], repeats: int, device: str = "cpu"
                     ) -> tuple[float, float, float, float]:
    """Median wall-clock ms of ``fast`` and ``ref``, run alternately ``repeats`` times each after one warm-up, then
    the median process CPU ms of each (all threads; less sensitive than wall time to other jobs on the machine)."""
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    for fn in (fast, ref):
        fn()
    for _ in range(repeats):
        for which, fn in enumerate((fast, ref)):
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            wall[which].append((time.perf_counter() - start) * 1e3)
            cpu[which].append((time.process_time() - start_cpu) * 1e3)
    return (statistics.median(wall[0]), statistics.median(wall[1]), statistics.median(cpu[0]),
            statistics.median(cpu[1]))


def measure_train_step(B: int = 256, n: int = 50, repeats: int = 5, device: str = "cpu",
                       models: tuple[str, ...] = ("tedrec", "sasrec"), report: Callable[[dict], None] = print
                       ) -> list[dict]:
    """The train-step records of ``models`` and the MoE op's record, each fast against reference."""
    from bench.moe_modulation import make_moe_step  # the op's own bench module (it imports this one)

    records = []

    def record(op: str, model: str, ms: float, ref_ms: float, cpu_ms: float, ref_cpu_ms: float) -> None:
        records.append({"op": op, "model": model, "path": "fast", "device": device, "dtype": "float32", "B": B,
                        "n": n, "ms": round(ms, 2), "ref_ms": round(ref_ms, 2), "speedup": round(ref_ms / ms, 3),
                        "cpu_ms": round(cpu_ms, 2), "ref_cpu_ms": round(ref_cpu_ms, 2),
                        "cpu_speedup": round(ref_cpu_ms / cpu_ms, 3)})
        report(records[-1])

    for name in models:
        record("train_step", name, *time_interleaved(make_train_step(name, False, B, n, device),
                                                     make_train_step(name, True, B, n, device), repeats, device))
    record("moe_modulation", "tedrec", *time_interleaved(make_moe_step(False, B, n, device=device),
                                                         make_moe_step(True, B, n, device=device), repeats, device))
    return records


def train_step_document(B: int = 256, n: int = 50, repeats: int = 5, device: str = "cpu",
                        report: Callable[[dict], None] = print) -> dict:
    """The results document of :func:`measure_train_step`: device, date, commit, torch, threads, the load
    average over the run (the machine may be shared), records."""
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else processor_name()
    load_before = os.getloadavg()[0]
    records = measure_train_step(B, n, repeats, device, report=report)
    return {"device": name, "date": dt.date.today().isoformat(), "commit": source_commit(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_average_1min": [load_before, os.getloadavg()[0]],
            "records": records}
