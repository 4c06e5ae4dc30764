"""Crash-safe writes: the one temp-file + fsync + rename implementation (files and directories) of the package.

Every file the package writes goes through :func:`atomic_file` (or :func:`atomic_write_bytes`): the data is
written to a hidden temporary file beside the target, ``.{name}.tmp-{pid}-{token}``, flushed to disk, renamed
onto the target and the directory entry synced. A reader sees the old file or the new one, never a partial
write. :func:`atomic_directory` does the same for a directory, swapping the new one in with one atomic
``renameat2(RENAME_EXCHANGE)`` on Linux (elsewhere two renames; a kill between them is repaired by the next
call, which puts the old copy back).

Temporaries of a killed writer carry its pid: the next write of the same target removes those whose process
is gone (:func:`remove_stale_temporaries`), and the older pid-less names of earlier versions.

**Fault injection.** ``TEDREC_FAST_FAULT=<point>[:<n>]`` makes the process SIGKILL itself the ``n``-th time
(default 1) it reaches the named :func:`fault_point`. Each write passes one just before its rename (the
temporary complete, the target untouched): ``checkpoint``, ``log``, ``results``, ``text_cache``, ``prepare``
(prepared files and manifest), ``download``, ``cache`` (compiled kernels); ``swap`` lies inside a directory swap.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["FAULT_ENV", "fault_point", "atomic_file", "atomic_write_bytes", "atomic_save", "atomic_directory",
           "remove_stale_temporaries", "pid_alive"]

#: the environment variable of the fault-injection hook
FAULT_ENV = "TEDREC_FAST_FAULT"
_hits: dict[str, int] = {}
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fault_point(point: str) -> None:
    """SIGKILL this process if ``$TEDREC_FAST_FAULT`` names ``point`` and this is its ``n``-th hit (tests only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == (int(count) if count else 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temporary_name(name: str, kind: str) -> str:
    return f".{name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of killed writes of ``target`` beside it; return what was removed.

    First, if ``target`` is missing because a two-rename directory swap was killed half way, its old copy is
    moved back. Removed: ``.{name}.tmp-{pid}-*`` and ``.{name}.old-{pid}-*`` whose process is gone, and the pid-less
    names of earlier versions (``.{name}.tmp{pid}`` with a dead pid, ``.{name}.tmp-XXXXXXXX``,
    ``.{name}.old-XXXXXXXX``, ``.{name}.XXXXXXXX.tmp``).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    _restore_interrupted_swap(target)
    name = re.escape(target.name)
    with_pid = re.compile(rf"\.{name}\.(?:tmp|old)-(\d+)-[0-9a-f]+|\.{name}\.tmp(\d+)")
    pidless = re.compile(rf"\.{name}\.(?:tmp|old)-[A-Za-z0-9_]{{8}}|\.{name}\.[A-Za-z0-9_]{{8}}\.tmp")
    removed = []
    for entry in target.parent.glob(f".{_glob_escape(target.name)}.*"):
        match = with_pid.fullmatch(entry.name)
        if match:
            pid = int(match[1] or match[2])
            if pid == os.getpid() or pid_alive(pid):
                continue
        elif not pidless.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, point: str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on a clean exit it is synced and renamed onto ``path``.

    On an exception the temporary is removed and ``path`` is untouched. ``point`` names the write for
    :func:`fault_point` (passed after the temporary is complete, before the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(_temporary_name(path.name, "tmp"))
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        fault_point(point)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def atomic_save(path: str | os.PathLike, write: Callable[[BinaryIO], None], point: str) -> None:
    """``write(handle)`` into a temporary file that then atomically replaces ``path`` (see :func:`atomic_file`)."""
    with atomic_file(path, point) as tmp, open(tmp, "wb") as handle:
        write(handle)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, point: str = "file") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    atomic_save(path, lambda handle: handle.write(data), point)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directory entries ``a`` and ``b`` in one step (Linux ``renameat2``); ``False`` if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def _restore_interrupted_swap(final: Path) -> None:
    """If ``final`` is missing but a killed two-rename swap moved it into ``.{name}.old-{pid}-*``, move it back."""
    if final.exists():
        return
    for old in sorted(final.parent.glob(f".{_glob_escape(final.name)}.old-*")):
        match = re.fullmatch(rf"\.{re.escape(final.name)}\.old-(\d+)-[0-9a-f]+", old.name)
        if match and not pid_alive(int(match[1])) and (old / final.name).exists():
            os.replace(old / final.name, final)
            print(f"restored {final} from the interrupted replacement {old.name}", file=sys.stderr)
            return


@contextmanager
def atomic_directory(final: str | os.PathLike, exchange: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``final``; on success it replaces ``final`` atomically.

    On an exception the temporary directory is removed and ``final`` (old contents, or absent) is untouched.
    A process killed at any instant leaves the old or the new ``final`` (plus hidden temporaries that the
    next call removes). ``exchange=False`` uses two renames even where an atomic exchange exists (where it
    does not, a kill between them leaves ``final`` absent until the next call restores it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = final.with_name(_temporary_name(final.name, "tmp"))
    tmp.mkdir(mode=0o755)
    try:
        yield tmp
        for entry in tmp.iterdir():
            if entry.is_file():
                with open(entry, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_directory(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not final.exists():
        os.replace(tmp, final)
    elif exchange and final.is_dir() and _exchange(tmp, final):
        fault_point("swap")
        shutil.rmtree(tmp, ignore_errors=True)  # now the old copy
    else:
        old = final.with_name(_temporary_name(final.name, "old"))
        old.mkdir()
        os.replace(final, old / final.name)
        fault_point("swap")
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_directory(final.parent)
