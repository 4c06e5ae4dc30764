"""UniSRec/TedRec text-embedding files ``{ds}.feat1CLS``: raw little-endian float32, no header, ``(n_items, dim)``
row-major in item-index order (row 0 is the padding item)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tedrec_fast.data.storage import atomic_write_bytes


def read_feat1cls(path: str | Path, dim: int = 768) -> np.ndarray:
    """Read a ``.feat1CLS`` file as a float32 array of shape ``(n_items, dim)``.

    Raises ``ValueError`` naming the file when its size is not a multiple of ``4 * dim`` bytes.
    """
    path = Path(path)
    size = path.stat().st_size
    if dim <= 0 or size % (4 * dim):
        raise ValueError(
            f"{path}: size {size} bytes is not a multiple of 4 * dim = {4 * dim} (float32 rows of dim {dim})"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, dim)


def write_feat1cls(path: str | Path, array: np.ndarray) -> None:
    """Write a 2-D array as a ``.feat1CLS`` file (float32, row-major), atomically."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D (n_items, dim) array, got shape {array.shape}")
    atomic_write_bytes(path, np.ascontiguousarray(array, dtype="<f4").tobytes(), "prepare")
