"""Helpers shared by the source readers."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tedrec_fast.data.sequences import RawInteractions


@dataclass(frozen=True)
class Source:
    """A public source: where its raw files are, how to read them, how to download them.

    ``locate`` maps the user's raw path (a file or a directory) to the list of input files (raising
    ``FileNotFoundError`` when they are missing); ``read`` turns those files into interactions and item texts;
    ``fetch`` downloads the raw data into a cache directory and returns a path ``locate`` accepts.
    """

    name: str
    description: str
    locate: Callable[[Path], list[Path]]
    read: Callable[[list[Path]], RawInteractions]
    fetch: Callable[[Path], Path]


def find_file(raw: Path, candidates: list[str]) -> Path:
    """``raw`` itself if it is a file, else the first of ``candidates`` found in ``raw`` or one level below."""
    if raw.is_file():
        return raw
    for name in candidates:
        for path in (raw / name, *sorted(raw.glob(f"*/{name}"))):
            if path.is_file():
                return path
    raise FileNotFoundError(f"none of {candidates} found in {raw}")


def read_member(path: Path, name: str) -> bytes:
    """The bytes of ``path``, or of the member ending in ``/name`` (or equal to ``name``) when it is a zip."""
    if path.suffix != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if member == name or member.endswith("/" + name):
                return archive.read(member)
    raise FileNotFoundError(f"{path} has no member {name}")

