"""One `prober run` per database: an exclusive lock on the pid file beside it.

Two probers on one SQLite file would both record results and both send every alert. (Hubs
sharing a PostgreSQL database are several `prober run` on several machines, with a lock
of the database's own: prober.store.hubs; this one then guards the config's pid file.) The
lock is `flock` on `<database>.pid`, which also holds the running pid (`prober reload`
reads it). The kernel drops the lock when its process dies, however it dies, so a stale
file left by kill -9 is simply taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib

from prober.errors import UserError
from prober.filemodes import PRIVATE
from prober.store.db import unavailable


class RunLock:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, database: pathlib.Path, shown: str | None = None) -> None:
        """Take the lock and write our pid, or raise UserError naming the holder (or why
        the file beside the database cannot be created)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        except OSError as exc:
            raise unavailable(database, exc, file=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"another prober run (pid {holder}) is using {shown or database}; stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the flock
        self._fd = None
