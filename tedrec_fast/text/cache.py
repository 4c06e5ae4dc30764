"""``encode_dataset_texts``: a dataset's item text vectors, computed once and cached on disk."""

from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tedrec_fast import paths
from tedrec_fast.safe_files import atomic_write_bytes, remove_stale_temporaries
from tedrec_fast.text import encode as _encode

__all__ = ["encode_dataset_texts", "cache_path"]


def cache_path(item_text: list[str], dataset_name: str, encoder: str, cache_dir: str | Path, pooling: str) -> Path:
    """``{cache_dir}/{dataset}.{encoder}.{pooling}.{hash}.npy``; the hash covers the texts and their order."""
    digest = hashlib.sha256()
    for text in item_text[1:]:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.strip("/"))[-80:]
    return Path(cache_dir) / f"{dataset_name}.{slug}.{pooling}.{digest.hexdigest()[:16]}.npy"


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_checked(path: Path, rows: int) -> tuple[np.ndarray | None, str]:
    """The cached table at ``path`` if it is sound, else ``(None, what is wrong)``."""
    try:
        data = path.read_bytes()
        recorded = _checksum_path(path).read_text(encoding="utf-8").split()
    except FileNotFoundError as err:
        return None, f"{Path(err.filename).name} is missing (an interrupted write)"
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    if not recorded or hashlib.sha256(data).hexdigest() != recorded[0]:
        return None, "its content hash differs from the one recorded when it was written (corrupted or truncated)"
    try:
        table = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        return None, f"not a readable .npy file ({err})"
    if table.dtype != np.float32 or table.ndim != 2 or table.shape[0] != rows:
        return None, f"holds {table.dtype} {table.shape}, expected float32 ({rows}, dim)"
    if not np.isfinite(table).all():
        return None, "holds NaN or inf values"
    if np.any(table[0]):
        return None, "row 0 (the padding item) is not zero"
    return table, ""


def encode_dataset_texts(
    item_text: list[str],
    dataset_name: str,
    encoder: str = "minilm",
    cache_dir: str | Path | None = None,
    pooling: str = "mean",
    **encode_kwargs: Any,
) -> np.ndarray:
    """Text embeddings ``(len(item_text), dim)`` float32 in item-index order, with row 0 (padding) = 0.

    ``item_text[i]`` is the text of item ``i``; ``item_text[0]`` (the padding item) is ignored. The result
    is cached as ``.npy`` (see :func:`cache_path`) under ``cache_dir`` (default: ``text/`` in
    :func:`tedrec_fast.paths.cache_dir`) by dataset, encoder, pooling and a hash of the texts, with
    the file's sha256 beside it (``.npy.sha256``); a later call with the same inputs loads it without encoding
    after checking the hash, dtype, shape and that every value is finite. A cache failing a check is named on
    stderr and rebuilt. Files are written atomically (:mod:`tedrec_fast.safe_files`). ``encode_kwargs`` go to
    :func:`~tedrec_fast.text.encode.encode_texts` (``batch_size``, ``device``, ``progress``, ...).

    Raises:
        ValueError: fewer than two texts, or the encoder returned NaN or inf values.
    """
    if len(item_text) < 2:
        raise ValueError("item_text must hold the padding item 0 and at least one item")
    path = cache_path(item_text, dataset_name, encoder, paths.cache_dir("text") if cache_dir is None else cache_dir,
                      pooling)
    for target in (path, _checksum_path(path)):
        remove_stale_temporaries(target)  # of a killed earlier write
    if path.is_file():
        table, problem = _load_checked(path, len(item_text))
        if table is not None:
            return table
        print(f"text-embedding cache {path} is bad: {problem}; rebuilding it", file=sys.stderr)
    vectors = _encode.encode_texts(list(item_text[1:]), encoder, pooling=pooling, **encode_kwargs)
    table = np.concatenate([np.zeros((1, vectors.shape[1]), dtype=np.float32), vectors]).astype(np.float32)
    if not np.isfinite(table).all():
        raise ValueError(f"encoder {encoder!r} returned NaN or inf embeddings for dataset {dataset_name!r}")
    buffer = io.BytesIO()
    np.save(buffer, table)
    data = buffer.getvalue()
    atomic_write_bytes(path, data, "text_cache")
    atomic_write_bytes(_checksum_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode(),
                       "text_cache")
    return table
