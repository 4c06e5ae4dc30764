"""``encode_dataset_texts``: a dataset's item text vectors, computed once and cached on disk."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tedrec_fast import paths
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
    :func:`tedrec_fast.paths.cache_dir`) by dataset, encoder, pooling and a hash of the texts;
    a later call with the same inputs loads it without encoding. The file is written to a temporary name
    and renamed, so readers never see a partial file. ``encode_kwargs`` go to
    :func:`~tedrec_fast.text.encode.encode_texts` (``batch_size``, ``device``, ``progress``, ...).
    """
    if len(item_text) < 2:
        raise ValueError("item_text must hold the padding item 0 and at least one item")
    path = cache_path(item_text, dataset_name, encoder, paths.cache_dir("text") if cache_dir is None else cache_dir,
                      pooling)
    if path.is_file():
        return np.load(path)
    vectors = _encode.encode_texts(list(item_text[1:]), encoder, pooling=pooling, **encode_kwargs)
    table = np.concatenate([np.zeros((1, vectors.shape[1]), dtype=np.float32), vectors]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return table
