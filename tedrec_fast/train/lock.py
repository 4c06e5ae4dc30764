"""One run per output directory: an exclusive ``run.lock`` holding the owner's pid."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from tedrec_fast.safe_files import pid_alive

__all__ = ["LOCK_NAME", "RunLock"]

#: the lock file in a run directory
LOCK_NAME = "run.lock"


class RunLock:
    """An exclusive, non-blocking lock on ``directory/run.lock`` (``fcntl.flock``; the kernel drops it when the
    process dies, however it dies).

    The file names the owner (``pid host``). A second process refuses with a ``ValueError`` naming that pid;
    a lock file left by a dead process is taken over with a notice on stderr.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock (idempotent); raises ``ValueError`` if another live process holds it."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 200).decode("utf-8", "replace").split()
                os.close(fd)
                who = f"process {owner[0]}" + (f" on {owner[1]}" if len(owner) > 1 else "") if owner else "a process"
                raise ValueError(f"{self.path.parent} is in use by another run ({who} holds {self.path}); wait for "
                                 "it to finish or choose another output directory") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        previous = os.read(fd, 200).decode("utf-8", "replace").split()
        if previous and previous[0].isdigit():
            state = "no longer running" if not pid_alive(int(previous[0])) else "it no longer holds it"
            print(f"taking over the stale lock {self.path} of process {previous[0]} ({state})", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        self.release()
