"""One data-directory convention for ``prepare``, ``encode``, ``train`` and ``evaluate``.

``tedrec-fast prepare NAME --out DATA`` writes ``DATA/NAME/``; ``--dataset NAME --data-dir DATA`` reads that same
directory. Prepared data on disk is used before anything is downloaded: :func:`find_or_prepare` looks at
``DATA/NAME`` (and at ``DATA/datasets/NAME``, where earlier versions prepared), and only when neither holds an
intact prepared dataset does it prepare the preset ``NAME`` (downloading its raw files unless ``raw`` is given).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tedrec_fast.data.download import DownloadError
from tedrec_fast.data.prepare import prepare_dataset
from tedrec_fast.data.sources import SOURCES
from tedrec_fast.data.storage import file_problems, read_manifest

LEGACY_SUBDIR = "datasets"


def candidate_directories(name: str, data_dir: str | Path) -> list[Path]:
    """Where a prepared dataset ``name`` may be under ``data_dir``, in the order they are tried."""
    root = Path(data_dir).expanduser()
    return [root / name, root / LEGACY_SUBDIR / name]


def prepared_directory(name: str, data_dir: str | Path) -> Path | None:
    """The first of :func:`candidate_directories` holding a prepared dataset whose files match its manifest's
    sizes (or, for an earlier version's manifest, exist), or ``None``."""
    for directory in candidate_directories(name, data_dir):
        files = (read_manifest(directory) or {}).get("files")
        if isinstance(files, dict) and not file_problems(directory, files, names=()):
            return directory
        if isinstance(files, list) and files and all((directory / f).is_file() for f in files):
            return directory  # prepared by an earlier version (a list of names): loaded from its RecBole files
    return None


def find_or_prepare(dataset: str, data_dir: str | Path, raw: str | Path | None = None,
                    max_seq_length: int = 50) -> Path:
    """The prepared directory of ``dataset`` (a directory path, a prepared name under ``data_dir``, or a preset
    prepared into ``data_dir/dataset`` now); prints which directory is used on stderr."""
    if Path(dataset).expanduser().is_dir():
        directory = Path(dataset).expanduser()
    elif raw is None and (found := prepared_directory(dataset, data_dir)) is not None:
        directory = found
    else:
        places = " or ".join(str(p) for p in candidate_directories(dataset, data_dir))
        if dataset not in SOURCES:
            raise ValueError(f"dataset {dataset!r}: no prepared data at {places}, and it is not a preset "
                             f"({', '.join(sorted(SOURCES))}); prepare it with `tedrec-fast prepare ... --out "
                             f"{data_dir}` or pass its directory")
        try:
            directory = prepare_dataset(dataset, Path(data_dir).expanduser(), raw=raw, max_seq_length=max_seq_length)
        except DownloadError as err:
            raise DownloadError(f"{err} (no prepared data at {places}; `tedrec-fast prepare {dataset} --raw FILE "
                                f"--out {data_dir}` prepares it from a local copy)") from None
    print(f"data: {directory}", file=sys.stderr)
    return directory
