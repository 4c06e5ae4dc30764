"""Content hashing and the preparation manifest (atomic writes: :mod:`tedrec_fast.safe_files`, re-exported)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tedrec_fast.safe_files import atomic_directory, atomic_file, atomic_write_bytes

__all__ = ["MANIFEST", "atomic_directory", "atomic_write_bytes", "atomic_write_via", "content_hash", "count_rows",
           "file_problems", "file_record", "read_manifest", "sha256_file", "write_manifest"]

MANIFEST = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(file_hashes: Iterable[str], parameters: dict) -> str:
    """Hash of the raw inputs' sha256s and the preparation parameters (which include the code version)."""
    payload = json.dumps({"inputs": list(file_hashes), "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a prepared directory, or ``None`` if it has none or it is unreadable."""
    try:
        return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write ``manifest.json`` into ``directory`` atomically."""
    atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
                       point="prepare")


def atomic_write_via(path: str | Path, writer: Callable[[str], object]) -> None:
    """Let ``writer(tmp_path)`` write a prepared file through :func:`~tedrec_fast.safe_files.atomic_file`."""
    with atomic_file(path, "prepare") as tmp:
        writer(str(tmp))


def count_rows(path: str | Path) -> int:
    """Data rows of a prepared file: a Parquet file's row count, else the lines after the header of a text file
    (a last line without its newline is not counted, so a file cut inside its last field counts one row less)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


def file_record(path: str | Path) -> dict[str, int | str]:
    """``{"bytes", "rows", "sha256"}`` of a prepared file, for the manifest."""
    path = Path(path)
    return {"bytes": path.stat().st_size, "rows": count_rows(path), "sha256": sha256_file(path)}


def file_problems(directory: Path, records: dict, names: Iterable[str] | None = None, full: bool = False) -> list[str]:
    """What is wrong with the files of ``directory`` against the manifest's ``records`` (``{name: file_record}``).

    Checks existence and size of every recorded file, the row count of ``names`` (default: all) and, when
    ``full``, every file's sha256. An empty list means all checks hold.
    """
    problems = []
    for name, record in records.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (size := path.stat().st_size) != record["bytes"]:
            problems.append(f"{path} has {size} bytes, the manifest records {record['bytes']} (truncated or changed)")
        elif names is None or name in names or full:
            try:
                rows = count_rows(path)
            except Exception as err:  # a damaged Parquet footer: pyarrow's errors have no common base with OSError
                problems.append(f"{path} is unreadable ({err})")
                continue
            if rows != record["rows"]:
                problems.append(f"{path} has {rows} rows, the manifest records {record['rows']} (truncated or changed)")
            elif full and sha256_file(path) != record["sha256"]:
                problems.append(f"{path}: sha256 differs from the manifest's (the file was changed)")
    return problems
