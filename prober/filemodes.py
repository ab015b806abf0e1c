"""Files only their owner may read: created 0600 from the first byte.

The database holds push tokens and private monitors' history; a backup holds the same; a
report may name private monitors. Each is created with its mode in the `open` call
itself, never chmod'ed after, so no other user can open it in between. An existing file
keeps the mode its owner gave it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib

PRIVATE = 0o600
USUAL = 0o666  # then the umask: 0644 under the common 022


def create_private(path: pathlib.Path) -> None:
    """An empty 0600 file at `path` unless one is there (SQLite reads an empty file as a
    new database, and gives its -wal and -shm files the database file's mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))


def write_text(path: pathlib.Path, text: str, *, private: bool) -> None:
    """Write `text` to `path`; a new file is 0600 when `private`, else as the umask says."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE if private else USUAL)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)


def replace_text(path: pathlib.Path, text: str, *, private: bool) -> None:
    """Write `text` beside `path` and rename it over `path`: never a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover would keep its own mode
    write_text(tmp, text, private=private)
    tmp.replace(path)
