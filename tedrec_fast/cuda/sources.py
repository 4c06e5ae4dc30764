"""The CUDA C++ sources: where they are, one self-contained text for NVRTC, and compile-cache keys."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

__all__ = ["csrc_dir", "assemble", "source_files", "cache_key"]

_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.M)


def csrc_dir() -> Path:
    """The folder holding the CUDA C++ sources (``csrc/`` of the checkout or the install)."""
    return Path(str(resources.files("tedrec_fast.csrc")))


def source_files(directory: Path | None = None) -> list[Path]:
    """Every CUDA source and header under ``directory`` (default :func:`csrc_dir`), sorted."""
    root = directory or csrc_dir()
    return sorted(p for p in root.rglob("*") if p.suffix in (".cu", ".cuh", ".h", ".cpp") and p.is_file())


def assemble(entry: str = "kernels.cu", directory: Path | None = None) -> str:
    """``entry`` with every quoted ``#include`` inlined (each file once), for compilers given one text.

    NVRTC compiles a single string and cannot reach the package's headers, so they are pasted in; a
    ``#line`` directive before each file keeps compiler messages pointing at the original file and line.
    Raises ``FileNotFoundError`` naming the including file and line for a missing header.
    """
    root = directory or csrc_dir()
    seen: set[Path] = set()

    def expand(path: Path) -> str:
        path = path.resolve()
        if path in seen:
            return ""
        seen.add(path)
        text = _PRAGMA_ONCE.sub("", path.read_text(encoding="utf-8"))
        out: list[str] = [f'#line 1 "{path.name}"\n']
        last = 0
        for match in _QUOTED_INCLUDE.finditer(text):
            out.append(text[last:match.start()])
            header = path.parent / match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            if not header.is_file():
                raise FileNotFoundError(
                    f"{path.name}:{line}: included file {match.group(1)!r} not found in {path.parent}"
                )
            out.append(expand(header))
            out.append(f'#line {line + 1} "{path.name}"')
            last = match.end()
        out.append(text[last:])
        return "".join(out)

    return expand(root / entry)


def cache_key(source: str, options: tuple[str, ...], arch: str, compiler_version: str) -> str:
    """A hex digest naming one compiled module: any change of source, options, target or compiler changes it."""
    digest = hashlib.sha256()
    for part in (source, "\0".join(options), arch, compiler_version):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]


