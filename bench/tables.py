"""The GPU benchmark tables behind ``python -m bench``: the spectral-fusion table and the large-catalog table,
timed against their eager references, written as JSON with a PNG of speedups (see bench/__main__.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from bench.environment import results_path, run_header, write_json
from bench.full_catalog_ce import CATALOG_SIZES, CatalogCase, loss_record, train_step_record
from bench.spectral_fusion import Case, copy_gbps, floor_bytes, make_step, time_ms, winners


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


def write(document: dict, out_dir: Path, suffix: str = "") -> Path:
    """Write the JSON (atomically) and its PNG; returns the JSON path."""
    path = write_json(document, results_path(out_dir, document, suffix))
    plot(document, path.with_suffix(".png"))
    return path
