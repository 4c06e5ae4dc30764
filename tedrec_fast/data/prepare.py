"""``prepare_dataset`` / ``prepare_table``: raw files -> a verified prepared directory, atomically, skipping
finished work and repairing damaged outputs.

A prepared directory ``OUT/NAME/`` holds the compact sequences (:mod:`tedrec_fast.data.compact`), the item text
file ``NAME.text`` and, unless ``recbole_export=False``, the RecBole files ``NAME.inter`` and
``NAME.train/valid/test.inter``; ``manifest.json`` records the content hash (raw bytes, parameters,
:data:`PREPARATION_VERSION`), the raw files' sha256, the counts and every file's size, row count and sha256.
A second ``prepare`` with the same inputs checks every file against the manifest and rebuilds the directory
when one is missing, truncated or changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from tedrec_fast.data.compact import write_compact
from tedrec_fast.data.sequences import RawInteractions, build_sequences, write_prepared, write_text
from tedrec_fast.data.sources import SOURCES
from tedrec_fast.data.storage import (
    MANIFEST,
    atomic_directory,
    content_hash,
    file_problems,
    file_record,
    read_manifest,
    sha256_file,
    write_manifest,
)
from tedrec_fast.data.table import TableSpec, read_table, table_inputs
from tedrec_fast.paths import cache_dir
from tedrec_fast.safe_files import remove_stale_temporaries

log = logging.getLogger(__name__)

# Bump whenever a change to the preparation code changes its output: it is part of the content hash.
PREPARATION_VERSION = 2
K_CORE = 5


def check_max_seq_length(value: object) -> int:
    """``value`` if it is an int >= 1 (a shorter history cannot be trained on), else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_seq_length must be an int >= 1 (every row needs a history), got {value!r}")
    return value


def _current(directory: Path, digest: str) -> bool:
    """Whether ``directory`` holds this preparation, every file intact; logs what is wrong otherwise."""
    manifest = read_manifest(directory)
    if manifest is None:
        if directory.exists():
            log.warning("%s has no readable %s: preparing it again", directory, MANIFEST)
        return False
    if manifest.get("content_hash") != digest or not isinstance(manifest.get("files"), dict):
        return False
    problems = file_problems(directory, manifest["files"], full=True)
    for problem in problems:
        log.warning("%s: repairing (preparing again)", problem)
    return not problems


def _prepare(name: str, inputs: list[Path], read: Callable[[], RawInteractions], parameters: dict,
             out_dir: str | Path, recbole_export: bool) -> Path:
    check_max_seq_length(parameters["max_seq_length"])
    hashes = [sha256_file(path) for path in inputs]
    parameters = {**parameters, "k_core": K_CORE, "recbole_export": recbole_export,
                  "preparation_version": PREPARATION_VERSION}
    digest = content_hash(hashes, parameters)
    directory = Path(out_dir) / name
    remove_stale_temporaries(directory)  # of a killed earlier run
    if _current(directory, digest):
        log.info("%s is up to date (content hash %s)", directory, digest[:12])
        return directory
    phases = ["read", "build", "write compact"] + (["write RecBole files"] if recbole_export else []) + ["verify"]
    with tqdm(total=len(phases), desc=f"prepare {name}", unit="phase", leave=False) as bar:
        def phase(label: str) -> None:
            bar.set_postfix_str(label)

        phase("read")
        raw = read()
        bar.update()
        phase("build")
        try:
            prepared = build_sequences(raw, k=K_CORE, max_seq_length=parameters["max_seq_length"])
        except ValueError as err:  # e.g. nothing left after the k-core: say which data
            raise ValueError(f"{', '.join(str(p) for p in inputs)}: {err}") from None
        del raw
        bar.update()
        with atomic_directory(directory) as tmp:
            phase("write compact")
            files = write_compact(tmp, name, prepared)
            bar.update()
            if recbole_export:
                phase("write RecBole files")
                files += write_prepared(tmp, name, prepared)
                bar.update()
            else:
                files.append(write_text(tmp, name, prepared))
            phase("verify")
            records = {file: file_record(tmp / file) for file in files}
            write_manifest(tmp, {
                "content_hash": digest,
                "parameters": parameters,
                "raw_files": [{"name": p.name, "sha256": h, "bytes": p.stat().st_size}
                              for p, h in zip(inputs, hashes, strict=True)],
                "counts": prepared.counts(),
                "files": records,
            })
        problems = file_problems(directory, records)
        if problems:
            raise OSError(f"prepared files differ from what was written: {'; '.join(problems)}")
        bar.update()
    log.info("prepared %s: %s", directory, prepared.counts())
    return directory


def prepare_dataset(source: str, out_dir: str | Path, raw: str | Path | None = None,
                    max_seq_length: int = 50, *, recbole_export: bool = True) -> Path:
    """Prepare the preset ``source`` into ``out_dir/source`` and return that directory.

    ``raw`` is the source's raw file or directory; when ``None`` it is downloaded into ``raw/<source>`` of the cache
    (:func:`tedrec_fast.paths.cache_dir`; apart from the prepared ``<data_dir>/<source>``, whose default is the
    cache itself). See the module docstring for the directory's contents; it is
    replaced in one rename, never half-written.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)} (or prepare a table: "
                         "tedrec-fast prepare table --inter FILE ...)")
    check_max_seq_length(max_seq_length)
    spec = SOURCES[source]
    raw_path = Path(raw) if raw is not None else spec.fetch(cache_dir("raw") / source)
    inputs = spec.locate(raw_path)
    return _prepare(source, inputs, lambda: spec.read(inputs), {"source": source, "max_seq_length": max_seq_length},
                    out_dir, recbole_export)


def prepare_table(spec: TableSpec, out_dir: str | Path, name: str | None = None, max_seq_length: int = 50, *,
                  recbole_export: bool = True) -> Path:
    """Prepare any interactions table (:class:`~tedrec_fast.data.table.TableSpec`) into ``out_dir/name``.

    ``name`` defaults to the interactions file's name without its suffixes.
    """
    if not isinstance(spec, TableSpec):
        raise TypeError(f"spec must be a TableSpec, got {type(spec).__name__}")
    name = name or Path(spec.inter).name.split(".")[0]
    if not name or name.startswith(".") or "/" in name:
        raise ValueError(f"name must be a plain directory name, got {name!r}")
    inputs = table_inputs(spec)
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    parameters = {"source": "table", "table": spec.describe(), "max_seq_length": max_seq_length}
    return _prepare(name, inputs, lambda: read_table(spec), parameters, out_dir, recbole_export)


def dataset_counts(directory: str | Path) -> dict[str, int]:
    """The counts recorded in a prepared directory's manifest."""
    manifest = read_manifest(Path(directory))
    if manifest is None:
        raise FileNotFoundError(f"{Path(directory) / MANIFEST} is missing or unreadable")
    return manifest["counts"]
