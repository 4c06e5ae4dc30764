"""Data path at scale (``python -m bench --data-scale``): a synthetic interaction log through prepare, load and a
few training steps with the full-catalog loss.

The log (Parquet: ``user``, ``item``, ``timestamp`` int64) has users drawn uniformly and items with power-law
popularity ``p(rank r) ∝ r^-exponent``. Each phase runs in its own process so that its peak resident memory
(``ru_maxrss``) is its own:

* ``prepare``: :func:`tedrec_fast.data.prepare_table` (5-core, leave-one-out, compact files; the RecBole
  ``.inter`` export is skipped: ``recbole_export: false`` in the record);
* ``load``: :func:`tedrec_fast.data.load_dataset` (the compact training set), then ``steps`` training steps of
  each model through :meth:`tedrec_fast.train.Trainer.train_epoch` (rows gathered on the device, full-catalog
  cross-entropy over every item), after one warm-up step.

The record: ``{"op": "data_scale", interactions, users, items, prepare_s, load_s, peak_rss_gb,
bytes_per_interaction, step_ms}`` (``interactions``/``users``/``items`` after the 5-core; the generated sizes are
under ``generated``; ``bytes_per_interaction`` = bytes of the in-memory training set / interactions;
``step_ms`` per model), with the date, device, commit and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).parent / "results"
CHUNK = 5_000_000


def synthetic_log(path: Path, users: int, items: int, interactions: int, exponent: float = 0.8,
                  seed: int = 0) -> Path:
    """Write a Parquet log of ``interactions`` rows (uniform users, power-law items), in chunks."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, items + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights / weights.sum())
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, interactions, CHUNK):
            n = min(CHUNK, interactions - start)
            item = np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)
            writer.write_table(pa.table({"user": rng.integers(0, users, n), "item": item,
                                         "timestamp": rng.integers(1_000_000_000, 1_700_000_000, n)}, schema=schema))
    return path


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _phase_prepare(log: Path, out: Path) -> dict:
    from tedrec_fast.data import TableSpec, prepare_table
    from tedrec_fast.data.prepare import dataset_counts

    start = time.perf_counter()
    directory = prepare_table(TableSpec(inter=str(log), user="user", item="item", timestamp="timestamp"), out,
                              name="synthetic", recbole_export=False)
    seconds = time.perf_counter() - start
    return {"prepare_s": seconds, "directory": str(directory), "counts": dataset_counts(directory),
            "prepare_peak_rss_gb": _peak_rss_gb()}


def _phase_load_and_train(directory: Path, models: list[str], steps: int, batch_size: int) -> dict:
    import torch

    from tedrec_fast.config import TrainConfig
    from tedrec_fast.data import load_dataset
    from tedrec_fast.models import build_model, needs_text_embeddings
    from tedrec_fast.train import Trainer

    start = time.perf_counter()
    data = load_dataset(directory, max_seq_length=50)
    load_s = time.perf_counter() - start
    interactions = len(data.train.store.items)
    result = {"load_s": load_s, "bytes_per_interaction": data.train.nbytes / interactions,
              "load_peak_rss_gb": _peak_rss_gb(), "step_ms": {}}
    for name in models:
        torch.manual_seed(0)
        text = torch.randn(data.n_items, 64) if needs_text_embeddings(name) else None
        model = build_model(name, data.n_items, 50, text, hidden_size=64, n_layers=2, n_heads=2, inner_size=128)
        config = TrainConfig(epochs=1, batch_size=batch_size, max_steps_per_epoch=1, progress=False)
        trainer = Trainer(model, data, config, device="cpu")
        trainer.train_epoch(1)  # warm-up
        trainer.config.max_steps_per_epoch = steps
        start = time.perf_counter()
        trainer.train_epoch(2)
        result["step_ms"][name] = (time.perf_counter() - start) / steps * 1000
        del trainer, model, text
    result["train_peak_rss_gb"] = _peak_rss_gb()
    return result


def _child(args: list[str]) -> dict:
    """Run one phase in a fresh process; its JSON result is the last line it prints."""
    done = subprocess.run([sys.executable, "-m", "bench.data_scale", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"phase {args[:2]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _processor() -> str:
    from tedrec_fast.train.report import processor_name

    return processor_name()


def _commit() -> str:
    from tedrec_fast.train.report import source_commit

    return source_commit()


def run(users: int, items: int, interactions: int, steps: int = 3, batch_size: int = 256,
        models: tuple[str, ...] = ("sasrec", "tedrec"), work_dir: Path | None = None, exponent: float = 0.8) -> dict:
    """Generate, prepare, load and train; return the ``data_scale`` record."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="data-scale-") as tmp:
        log = synthetic_log(Path(tmp) / "log.parquet", users, items, interactions, exponent)
        prepared = _child(["--phase", "prepare", "--log", str(log), "--out", str(Path(tmp) / "out")])
        trained = _child(["--phase", "load", "--dir", prepared["directory"], "--models", ",".join(models),
                          "--steps", str(steps), "--batch-size", str(batch_size)])
    counts = prepared["counts"]
    return {
        "op": "data_scale",
        "interactions": counts["interactions"], "users": counts["users"], "items": counts["items"],
        "prepare_s": round(prepared["prepare_s"], 2), "load_s": round(trained["load_s"], 2),
        "peak_rss_gb": round(max(prepared["prepare_peak_rss_gb"], trained["load_peak_rss_gb"]), 3),
        "train_peak_rss_gb": round(trained["train_peak_rss_gb"], 3),
        "bytes_per_interaction": round(trained["bytes_per_interaction"], 3),
        "step_ms": {k: round(v, 1) for k, v in trained["step_ms"].items()},
        "generated": {"users": users, "items": items, "interactions": interactions, "item_exponent": exponent},
        "train_rows": counts["train"], "batch_size": batch_size, "steps": steps, "hidden_size": 64,
        "recbole_export": False,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": f"{_processor()}, {os.cpu_count()} cores (CPU)",
        "commit": _commit(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def append_record(record: dict, out_dir: Path = RESULTS) -> Path:
    """Append ``record`` to ``out_dir/data_scale_<date>_cpu.json`` (a JSON list), atomically."""
    from bench.environment import write_json

    path = Path(out_dir) / f"data_scale_{record['date'][:10]}_cpu.json"
    records = json.loads(path.read_text()) if path.is_file() else []
    return write_json([*records, record], path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["prepare", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="sasrec,tedrec")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.phase == "prepare":
        print(json.dumps(_phase_prepare(Path(args.log), Path(args.out))))
    else:
        print(json.dumps(_phase_load_and_train(Path(args.dir), args.models.split(","), args.steps, args.batch_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
