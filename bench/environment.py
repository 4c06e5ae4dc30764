"""What every results document starts with: the device, date, commit and software versions of the run."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import torch

from tedrec_fast.safe_files import atomic_write_bytes
from tedrec_fast.train.report import source_commit

__all__ = ["run_header", "results_path", "write_json", "describe"]


def run_header(device: str = "cuda") -> dict:
    """``device`` (the GPU's name), ``date``, ``commit``, ``torch``, ``triton`` and the CUDA loaders' state."""
    import triton

    from tedrec_fast.cuda.loaders import loaders_report

    return {
        "cuda_loaders": {row["name"]: row["reason"] or "available" for row in loaders_report()},
        "device": torch.cuda.get_device_name(device),
        "date": dt.date.today().isoformat(),
        "commit": source_commit(),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }


def write_json(document: dict, path: Path) -> Path:
    """Write ``document`` to ``path`` atomically (a crash leaves the old file or the new one, never half)."""
    atomic_write_bytes(path, (json.dumps(document, indent=1) + "\n").encode("utf-8"), "results")
    return path


def results_path(out_dir: Path, header: dict, suffix: str = "") -> Path:
    """``<out_dir>/<date>_<device><suffix>.json`` for a document with ``header`` (the device's name slugged), or
    ``..._2.json``, ``..._3.json``, ... when that file exists: a second run on the same day keeps the first's."""
    device = re.sub(r"[^A-Za-z0-9]+", "-", header["device"]).strip("-").lower()
    stem = Path(out_dir) / f"{header['date']}_{device}{suffix}"
    path, number = stem.with_name(stem.name + ".json"), 1
    while path.exists():
        number += 1
        path = stem.with_name(f"{stem.name}_{number}.json")
    return path


def describe(exc: BaseException, limit: int = 600) -> str:
    """An exception in one record field: its type and message, cut at ``limit`` characters."""
    return f"{type(exc).__name__}: {exc}"[:limit]
