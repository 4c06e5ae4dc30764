"""``prepare_dataset``: raw source files -> a prepared directory, atomically, skipping finished work."""

from __future__ import annotations

import logging
from pathlib import Path

from tedrec_fast.data.sequences import build_sequences, write_prepared
from tedrec_fast.data.sources import SOURCES
from tedrec_fast.data.storage import (
    MANIFEST,
    atomic_directory,
    content_hash,
    read_manifest,
    sha256_file,
    write_manifest,
)
from tedrec_fast.paths import cache_dir

log = logging.getLogger(__name__)

# Bump whenever a change to the preparation code changes its output: it is part of the content hash.
PREPARATION_VERSION = 1
K_CORE = 5


def _is_current(directory: Path, digest: str) -> bool:
    manifest = read_manifest(directory)
    return (manifest is not None and manifest.get("content_hash") == digest
            and all((directory / name).is_file() for name in manifest.get("files", [])))


def prepare_dataset(source: str, out_dir: str | Path, raw: str | Path | None = None,
                    max_seq_length: int = 50) -> Path:
    """Prepare ``source`` into ``out_dir/source`` and return that directory.

    ``raw`` is the source's raw file or directory; when ``None`` it is downloaded into the cache (see
    :func:`tedrec_fast.paths.cache_dir`). The directory holds ``{source}.inter``, ``{source}.text`` and
    the pre-split ``{source}.train/valid/test.inter`` files plus ``manifest.json`` recording the content hash (of
    the raw bytes, the parameters and :data:`PREPARATION_VERSION`), the raw files' sha256 and the counts. When the
    manifest's hash matches, nothing is redone. The directory is replaced in one rename, never half-written.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    spec = SOURCES[source]
    raw_path = Path(raw) if raw is not None else spec.fetch(cache_dir() / source)
    inputs = spec.locate(raw_path)
    hashes = [sha256_file(path) for path in inputs]
    parameters = {"source": source, "k_core": K_CORE, "max_seq_length": max_seq_length,
                  "preparation_version": PREPARATION_VERSION}
    digest = content_hash(hashes, parameters)
    directory = Path(out_dir) / source
    if _is_current(directory, digest):
        log.info("%s is up to date (content hash %s)", directory, digest[:12])
        return directory
    prepared = build_sequences(spec.read(inputs), k=K_CORE, max_seq_length=max_seq_length)
    with atomic_directory(directory) as tmp:
        files = write_prepared(tmp, source, prepared)
        write_manifest(tmp, {
            "content_hash": digest,
            "parameters": parameters,
            "raw_files": [{"name": p.name, "sha256": h, "bytes": p.stat().st_size}
                          for p, h in zip(inputs, hashes, strict=True)],
            "counts": prepared.counts(),
            "files": files,
        })
    log.info("prepared %s: %s", directory, prepared.counts())
    return directory


def dataset_counts(directory: str | Path) -> dict[str, int]:
    """The counts recorded in a prepared directory's manifest."""
    manifest = read_manifest(Path(directory))
    if manifest is None:
        raise FileNotFoundError(f"{Path(directory) / MANIFEST} is missing or unreadable")
    return manifest["counts"]
