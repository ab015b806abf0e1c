"""`prober backup FILE`: a consistent copy of the database, safe while `prober run` writes.

The copy is SQLite's online backup API from one read snapshot (prober.store.db
.copy_database): the writer is never blocked, and the file holds exactly what was
committed when the copy began. It is written as FILE.partial, checked with quick_check
and only then renamed, so FILE is always a whole, verified database. Restore: stop the
prober, put the copy in place of the database (removing the old -wal and -shm files), start.
A PostgreSQL database is refused: pg_dump (or the provider's snapshots) backs it up.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import time

from prober.config import Config
from prober.errors import UserError
from prober.store.db import RESTORE_HINT, DatabaseCorrupt, connect_existing, copy_database


class BackupError(UserError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class BackupStats:
    dest: pathlib.Path
    results: int
    size_bytes: int
    seconds: float

    def summary(self) -> str:
        return (
            f"backed up {self.results:,} results ({self.size_bytes / 1e6:.1f} MB) "
            f"to {self.dest} in {self.seconds:.1f} s"
        )


def backup(config: Config, dest: pathlib.Path, *, force: bool = False) -> BackupStats:
    """Copy the config's database to `dest`; BackupError says why not."""
    if config.database.path is None:
        raise BackupError(
            f"{config.database.shown()} is a PostgreSQL database: back it up with pg_dump "
            f"(pg_dump --format=custom --file={dest} '{config.database.shown()}') or your "
            "provider's snapshots; `prober backup` copies SQLite files"
        )
    source = config.database_path
    _refuse(source, dest, force)
    started = time.monotonic()
    try:
        copy_database(source, dest, overwrite=force)
    except FileExistsError:
        raise BackupError(f"{dest} exists: pass --force to overwrite it") from None
    except DatabaseCorrupt as exc:
        raise BackupError(f"{exc} ({RESTORE_HINT}); nothing was written to {dest}") from None
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"could not back up {source} to {dest}: {exc}") from None
    results = _count_results(dest)
    return BackupStats(dest, results, dest.stat().st_size, time.monotonic() - started)


def _refuse(source: pathlib.Path, dest: pathlib.Path, force: bool) -> None:
    if not source.is_file():
        raise BackupError(
            f"{source}: no database there to back up (settings.database, or $PROBER_DATABASE)"
        )
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder: name the file to write, e.g. {dest / source.name}")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest}: the folder {dest.parent} does not exist")
    live = {source.resolve(), *(source.resolve().with_name(source.name + s) for s in _SIDE)}
    if dest.resolve() in live:
        raise BackupError(f"{dest} is the live database: back up to another file")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists: pass --force to overwrite it")


_SIDE = ("-wal", "-shm", "-journal")


def _count_results(path: pathlib.Path) -> int:
    conn = connect_existing(path)
    try:
        row = conn.execute("SELECT count(*) FROM result").fetchone()
    except sqlite3.OperationalError:  # a database without our tables yet
        return 0
    finally:
        conn.close()
    return int(row[0])
