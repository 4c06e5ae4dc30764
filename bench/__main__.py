"""``python -m bench`` (or ``tedrec-fast bench``): time the benchmark tables on this GPU, write the results.

Default: the spectral-fusion table, written to ``bench/results/<date>_<gpu>.json`` (schema in the
README) with a PNG of speedup over the eager reference beside it. ``--catalog``: the large-catalog
table (bench/full_catalog_ce.py), written to ``bench/results/<date>_<gpu>_catalog.json``. Needs a CUDA device:
numbers not measured on a GPU are written nowhere. ``--data-scale``: the data path at scale on the CPU
(bench/data_scale.py), appended to ``bench/results/data_scale_<date>_cpu.json``. ``--train-step`` (CPU or
GPU): one training step of TedRec and SASRec, fast path against reference mode, and the MoE-modulation op
alone (bench/train_step.py), written to ``bench/results/<date>_<device>_train_step.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench.environment import results_path, run_header, write_json
from bench.full_catalog_ce import CATALOG_SIZES, CatalogCase, loss_record, train_step_record
from bench.spectral_fusion import GPU_CASES, Case, copy_gbps, floor_bytes, make_step, time_ms, winners
from bench.train_step import document_path, train_step_document

RESULTS = Path(__file__).parent / "results"


def measure(cases: list[Case], device: str = "cuda", budget_s: float | None = None) -> dict:
    """Time every case and its eager reference; returns the results document.

    With ``budget_s``, no case starts once that many seconds have passed; the document then says how many
    cases were measured (``"incomplete"``).
    """
    started = time.perf_counter()
    ceiling = copy_gbps(device)
    ref_cache: dict[tuple, float] = {}
    records = []
    tried = 0
    for case in cases:
        if budget_s is not None and time.perf_counter() - started > budget_s:
            print(f"time budget of {budget_s:.0f} s spent: {len(cases) - tried} cases not run", file=sys.stderr)
            break
        tried += 1
        key = (case.direction, case.dtype, case.B, case.n, case.d)
        try:
            if key not in ref_cache:
                ref_cache[key] = time_ms(make_step(case, backend="torch", device=device), device)
            ms = time_ms(make_step(case, device=device), device)
        except ValueError as exc:  # the backend cannot run here (e.g. no loader of the CUDA kernels)
            print(f"{case.id}: skipped: {exc}", file=sys.stderr)
            continue
        except torch.OutOfMemoryError:
            print(f"{case.id}: out of memory, skipped", file=sys.stderr)
            torch.cuda.empty_cache()
            continue
        except Exception as exc:  # a compile or launch failure of one case must not lose the others
            print(f"{case.id}: FAILED, skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            torch.cuda.empty_cache()
            continue
        bytes_ = floor_bytes(case)
        gbps = bytes_ / ms / 1e6
        records.append({
            "op": "spectral_fusion", "backend": case.backend, "direction": case.direction, "dtype": case.dtype,
            "B": case.B, "n": case.n, "d": case.d, "ms": round(ms, 5), "ref_ms": round(ref_cache[key], 5),
            "speedup": round(ref_cache[key] / ms, 3), "gbps": round(gbps, 1),
            "roofline_frac": round(gbps / ceiling, 3),
        })
        print(json.dumps(records[-1]), flush=True)
        torch.cuda.empty_cache()
    document = {**run_header(device), "copy_gbps": round(ceiling, 1), "records": records, "winners": winners(records)}
    if tried < len(cases):
        document["incomplete"] = {"cases_tried": tried, "cases": len(cases)}
    return document


def measure_catalog(sizes: tuple[int, ...] = CATALOG_SIZES, device: str = "cuda") -> dict:
    """The large-catalog table: the fused loss (bf16 and fp32) and TedRec training steps at each size."""
    timer = lambda step: time_ms(step, device)  # noqa: E731
    records = []
    for V in sizes:
        for dtype in ("bfloat16", "float32"):
            records.append(loss_record(CatalogCase(V, dtype=dtype), timer, device))
            print(json.dumps(records[-1]), flush=True)
            torch.cuda.empty_cache()
        records.append(train_step_record(V, timer, device))
        print(json.dumps(records[-1]), flush=True)
        torch.cuda.empty_cache()
    return {**run_header(device), "records": records}


def plot(document: dict, path: Path) -> None:
    """Bar chart of speedup over the eager reference, one bar per record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in document["records"] if r.get("speedup")]
    labels = [f"{r['op']} {r['backend']} {r['direction']} {r['dtype']}\n"
              + " ".join(f"{k}{r[k]}" for k in ("B", "n", "d", "V") if k in r) for r in records]
    fig, ax = plt.subplots(figsize=(max(8, len(records) * 0.35), 5))
    ax.bar(range(len(records)), [r["speedup"] for r in records])
    ax.set_xticks(range(len(records)), labels, rotation=90, fontsize=6)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_ylabel("speedup over eager torch.fft reference")
    ax.set_title(f"{document['device']} ({document['date']}, {document['commit']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(document: dict, out_dir: Path = RESULTS, suffix: str = "") -> Path:
    """Write the JSON (atomically) and its PNG; returns the JSON path."""
    path = write_json(document, results_path(out_dir, document, suffix))
    plot(document, path.with_suffix(".png"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default="", help="only cases whose id contains this string")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--catalog", action="store_true", help="the large-catalog table instead")
    parser.add_argument("--catalog-sizes", type=int, nargs="+", default=list(CATALOG_SIZES))
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no spectral-fusion case after this many seconds (the target shape runs first)")
    parser.add_argument("--data-scale", action="store_true",
                        help="synthetic log -> prepare, load, a few training steps (CPU; bench/data_scale.py)")
    parser.add_argument("--users", type=int, default=100_000, help="--data-scale: users generated")
    parser.add_argument("--items", type=int, default=100_000, help="--data-scale: items generated")
    parser.add_argument("--interactions", type=int, default=1_000_000, help="--data-scale: interactions generated")
    parser.add_argument("--steps", type=int, default=3, help="--data-scale: timed training steps per model")
    parser.add_argument("--models", default="sasrec,tedrec", help="--data-scale: comma-separated models")
    parser.add_argument("--train-step", action="store_true",
                        help="time one training step, fast vs reference mode (CPU or GPU), and the MoE op alone")
    parser.add_argument("--batch-size", type=int, default=None, help="--train-step: batch (default 256 CPU, 2048 GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="--train-step: timed steps per mode")
    args = parser.parse_args(argv)
    if args.data_scale:
        from bench.data_scale import append_record, run

        record = run(args.users, args.items, args.interactions, steps=args.steps, models=tuple(args.models.split(",")))
        print(json.dumps(record))
        print(f"wrote {append_record(record, args.out_dir)}")
        return 0
    if args.train_step:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        batch = args.batch_size or (2048 if device == "cuda" else 256)
        document = train_step_document(batch, repeats=args.repeats, device=device,
                                       report=lambda r: print(json.dumps(r), flush=True))
        print(f"wrote {write_json(document, document_path(args.out_dir, document))}")
        return 0
    if not torch.cuda.is_available():
        print("python -m bench needs a CUDA device (none here); `pytest bench/` runs CPU reference sizes.",
              file=sys.stderr)
        return 2
    if args.catalog:
        print(f"wrote {write(measure_catalog(tuple(args.catalog_sizes)), args.out_dir, '_catalog')}")
        return 0
    cases = [c for c in GPU_CASES if args.filter in c.id]
    print(f"wrote {write(measure(cases, budget_s=args.budget_s), args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
