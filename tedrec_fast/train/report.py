"""Run outputs: the per-epoch JSONL log, the final metrics table and benchmark result records."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["JsonlLog", "format_metrics_table", "append_result_record", "results_path", "source_commit",
           "processor_name"]


class JsonlLog:
    """One JSON record per line, appended and flushed per record (rank 0 only writes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(record)) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """All records written so far."""
        if not self.path.is_file():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Drop the records of epochs after ``epoch`` (a resumed run re-runs them)."""
        kept = [r for r in self.records() if r.get("epoch", 0) <= epoch]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)


def format_metrics_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table: one row per split (e.g. ``valid``, ``test``), one column per metric."""
    if not rows:
        return ""
    columns = list(next(iter(rows.values())))
    width = max(8, *(len(c) for c in columns))
    label = max(5, *(len(r) for r in rows))
    lines = [f"{'split':<{label}}  " + "  ".join(f"{c:>{width}}" for c in columns)]
    lines.append("-" * len(lines[0]))
    for name, metrics in rows.items():
        lines.append(f"{name:<{label}}  " + "  ".join(f"{metrics[c]:>{width}.4f}" for c in columns))
    return "\n".join(lines)


def source_commit() -> str:
    """The short commit hash of the checkout this package runs from, or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def processor_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), or ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_path(results_dir: str | os.PathLike, device_name: str, date: _dt.date | None = None) -> Path:
    """``<results_dir>/train_<YYYY-mm-dd>_<device>.json`` with the device name slugged (``nvidia-h100-...``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "device"
    return Path(results_dir) / f"train_{(date or _dt.date.today()).isoformat()}_{slug}.json"


def append_result_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append ``record`` to the JSON list in ``path`` (created if missing), replacing the file atomically."""
    path = Path(path)
    records: list[Any] = []
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise ValueError(f"append_result_record: {path} must hold a JSON list")
    records.append(dict(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
