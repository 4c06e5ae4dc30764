"""The package's one cache directory (downloads, prepared data, text embeddings, compiled kernels).

``$TEDREC_FAST_CACHE_DIR``, else ``~/.cache/tedrec_fast``. The old variable ``TEDREC_FAST_CACHE`` is still
read, with a :class:`DeprecationWarning`, when the new one is not set. Imports nothing heavy (the CLI
prints the directory before torch is loaded).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["cache_dir", "CACHE_ENV", "DEPRECATED_CACHE_ENV"]

#: the environment variable that moves the cache
CACHE_ENV = "TEDREC_FAST_CACHE_DIR"
#: its former name, accepted with a DeprecationWarning
DEPRECATED_CACHE_ENV = "TEDREC_FAST_CACHE"


def cache_dir(kind: str | None = None) -> Path:
    """The cache root (not created), or its subdirectory ``kind`` (created if missing).

    The root is ``$TEDREC_FAST_CACHE_DIR`` if set and non-empty, else ``$TEDREC_FAST_CACHE`` (deprecated,
    with a warning), else ``~/.cache/tedrec_fast``; ``~`` is expanded and the path made absolute.
    """
    root = os.environ.get(CACHE_ENV)
    if not root and os.environ.get(DEPRECATED_CACHE_ENV):
        root = os.environ[DEPRECATED_CACHE_ENV]
        warnings.warn(f"{DEPRECATED_CACHE_ENV} is deprecated; set {CACHE_ENV} instead", DeprecationWarning,
                      stacklevel=2)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "tedrec_fast"
    path = path.absolute()
    if kind is None:
        return path
    if not kind or Path(kind).is_absolute() or ".." in Path(kind).parts:
        raise ValueError(f"kind must be a plain subdirectory name, got {kind!r}")
    path = path / kind
    path.mkdir(parents=True, exist_ok=True)
    return path
