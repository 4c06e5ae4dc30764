"""Run outputs: the per-epoch JSONL log, the final metrics table and benchmark result records."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tedrec_fast.safe_files import atomic_write_bytes

__all__ = ["JsonlLog", "format_metrics_table", "append_result_record", "results_path", "source_commit",
           "processor_name"]


class JsonlLog:
    """One JSON record per line, the whole file rewritten atomically on each change (rank 0 only writes).

    The trainer keeps the records in its checkpoint and rewrites the log from them, so a kill at any
    instant leaves a log that the next ``--resume`` restores to one record per completed epoch.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def write(self, records: list[Mapping[str, Any]]) -> None:
        """Replace the log with ``records`` (atomically)."""
        text = "".join(json.dumps(dict(record)) + "\n" for record in records)
        atomic_write_bytes(self.path, text.encode("utf-8"), "log")

    def records(self) -> list[dict[str, Any]]:
        """All records of the log (a torn last line, left by an older version killed mid-append, is skipped)."""
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    break
                raise ValueError(f"{self.path}, line {number}: not a JSON record") from None
        return records


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


@functools.cache
def source_commit() -> str:
    """The short commit hash of the checkout this package runs from, ``-dirty`` appended when tracked files differ
    from it, or ``"unknown"`` outside a git checkout. Read once per process: a long run that calls it at its start
    names the code it loaded, even if the checkout moves on while it trains."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "-uno") else "")
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
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"append_result_record: {path} is not valid JSON ({err}); fix or move it") from None
        if not isinstance(records, list):
            raise ValueError(f"append_result_record: {path} must hold a JSON list")
    records.append(dict(record))
    atomic_write_bytes(path, (json.dumps(records, indent=1) + "\n").encode("utf-8"), "results")
