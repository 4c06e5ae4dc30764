"""Content hashing and the preparation manifest (atomic writes: :mod:`tedrec_fast.safe_files`, re-exported)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tedrec_fast.safe_files import atomic_directory, atomic_write_bytes

__all__ = ["MANIFEST", "atomic_directory", "atomic_write_bytes", "sha256_file", "content_hash", "read_manifest",
           "write_manifest"]

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
