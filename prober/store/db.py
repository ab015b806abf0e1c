"""Open the SQLite database: WAL, busy_timeout, the schema upgraded or refused, and the
file checked and copied with SQLite's own tools (quick_check, the online backup API)."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import sqlite3
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlmodel import create_engine

from prober.errors import UserError
from prober.filemodes import create_private
from prober.store.engine import Connection, Database, PgConnection, connect

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL + NORMAL: no committed row lost on kill -9
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA temp_store=MEMORY",
)
RESTORE_HINT = "restore from a backup: see docs/DEPLOY.md"


class SchemaError(UserError):
    """The file's schema is not one this prober can use (newer, or an upgrade failed)."""


class DatabaseCorrupt(SchemaError):
    """The file failed SQLite's integrity check, or is not a database SQLite can read."""


class DatabaseUnavailable(UserError):
    """The file cannot be opened or created: a path, a permission, a full disk."""


def connect_raw(path: pathlib.Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode; callers BEGIN IMMEDIATE themselves."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def open_database(target: pathlib.Path | Database, *, check: bool = False) -> None:
    """The database ready for use: a SQLite file as open_engine makes it (created 0600,
    checked when `check`, upgraded or refused); a PostgreSQL database reached, its schema
    created or upgraded (prober.store.migrations.upgrade_postgresql). Raises
    DatabaseUnavailable naming the database (never its password) and why."""
    if not isinstance(target, Database):
        open_engine(target, check=check).dispose()
    elif target.path is not None:
        open_engine(target.path, check=check).dispose()
    else:
        from prober.store import migrations

        try:
            migrations.upgrade_postgresql(target)
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot open the database {target.shown()}: {_first_line(exc)}"
            ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_engine(path: pathlib.Path, *, check: bool = False) -> sqlalchemy.Engine:
    """The SQLAlchemy engine for reads. Creates the file (0600) and schema if new,
    upgrades an older schema (after a backup), refuses a newer one. A file or folder that
    cannot be opened or created is a DatabaseUnavailable naming the path and why.

    `check=True` first runs check_integrity (PRAGMA quick_check). `prober run` asks for it,
    so a damaged file stops the prober at start with a clear message instead of failing
    later mid-write; the short commands skip it, since it reads the whole file. It also
    logs a warning when other users can read a file that holds push tokens.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)  # 0600 from the first byte: push tokens live here
        if check:
            check_integrity(path)
        migrate(path)
        if check:
            _warn_if_readable(path)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, sqlite3.Error) and not _cannot_open(exc):
            raise
        raise unavailable(path, exc) from None
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    return engine


def unavailable(
    path: pathlib.Path, exc: OSError | sqlite3.Error, file: pathlib.Path | None = None
) -> DatabaseUnavailable:
    """`cannot open the database PATH: why`, for the person at the terminal. `file` is
    the file that failed when it is not the database itself (the run lock beside it)."""
    return DatabaseUnavailable(f"cannot open the database {path}: {_reason(path, exc, file)}")


# SQLite's answers about the file rather than about a statement (primary result codes).
_OPEN_FAILURES = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)


def _cannot_open(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _OPEN_FAILURES


def _reason(path: pathlib.Path, exc: OSError | sqlite3.Error, file: pathlib.Path | None) -> str:
    """Why, in the words of the fix: SQLite says only "unable to open database file"."""
    folder = path.parent
    # os.path, not Path: it answers False, never raises, behind a folder we may not enter.
    existing = next(p for p in (folder, *folder.parents) if os.path.exists(p))
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    if existing != folder:
        return f"cannot create the folder {folder}: {_said(exc)}"
    if os.path.isdir(path):
        return f"{path} is a folder, not a file"
    user = f"this user (uid {os.geteuid()})"
    for target in (file or path, path):
        if os.path.exists(target) and not os.access(target, os.R_OK | os.W_OK):
            st = os.stat(target)
            return (
                f"{target} (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}) is not "
                f"readable and writable by {user}"
            )
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the folder {folder} is not writable by {user}; the database, its -wal and -shm "
            "files and the lock file are created there"
        )
    said = _said(exc)
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        said += f" ({RESTORE_HINT})"
    return said


def _said(exc: OSError | sqlite3.Error) -> str:
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower()
    return str(exc)


def _warn_if_readable(path: pathlib.Path) -> None:
    """An older prober created the file 0644; anyone who reads its push tokens can report
    a job done. Said once at start; the mode is the owner's to change."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o044:
        return
    conn = connect_existing(path)
    try:
        tokens = conn.execute("SELECT 1 FROM push_token LIMIT 1").fetchone() is not None
    finally:
        conn.close()
    if tokens:
        log.warning(
            "the database holds push tokens and other users can read it: chmod 600 %s* "
            "path=%s mode=%04o",
            path,
            path,
            mode,
        )


def migrate(path: pathlib.Path) -> None:
    """Bring the file to SCHEMA_VERSION: prober.store.migrations.upgrade."""
    from prober.store import migrations  # it builds on connect_raw and the errors above

    migrations.upgrade(path)


def connect_existing(path: pathlib.Path) -> sqlite3.Connection:
    """A connection to a file that must exist (never creates one), with no pragma that
    writes: for checking and copying a file without changing it."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's `PRAGMA quick_check`: [] when the file is sound, else what it found.

    quick_check verifies every page, record and b-tree of the file; integrity_check also
    matches every index entry to its row, which is much slower on a large file and finds
    no damage quick_check would miss in a file SQLite itself wrote.

    SQLite 3.40.0 to 3.41.0 (Debian 12 ships 3.40.1) reports "NULL value in T.C" for every
    row of a WITHOUT ROWID table whose key columns follow other NOT NULL columns, as
    version 1's rollup tables do (version 2 reorders them). Such a line counts only when a
    scan finds a NULL there. Page and b-tree findings come before these row-level lines,
    so the 100-line limit does not hide them.
    """
    try:
        found = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:
        raise  # locked, unreadable: not a verdict on the file's content
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", ...
        return [str(exc)]
    if found == ["ok"]:
        return []
    problems: list[str] = []
    real: dict[tuple[str, str], bool] = {}
    for line in found:
        match = _NULL_VALUE.fullmatch(line)
        if match is None:
            problems.append(line)
            continue
        table, column = match.group(1), match.group(2)
        if (table, column) not in real:
            real[table, column] = _holds_null(conn, table, column, problems)
        if real[table, column]:
            problems.append(line)
    return problems


_NULL_VALUE = re.compile(r"NULL value in (\w+)\.(\w+)")


def _holds_null(conn: sqlite3.Connection, table: str, column: str, problems: list[str]) -> bool:
    # typeof(): the planner may answer `IS NULL` on a NOT NULL column without reading rows.
    query = f'SELECT 1 FROM "{table}" WHERE typeof("{column}") = \'null\' LIMIT 1'  # noqa: S608
    try:
        return conn.execute(query).fetchone() is not None
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        problems.append(str(exc))
        return True


def check_integrity(path: pathlib.Path) -> None:
    """Raise DatabaseCorrupt when the file fails quick_check (a missing file passes)."""
    if not path.exists():
        return
    try:
        conn = connect_existing(path)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    else:
        try:
            problems = quick_check(conn)
        finally:
            conn.close()
    if problems:
        raise DatabaseCorrupt(corrupt_message(path, problems))


def corrupt_message(path: pathlib.Path, problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return (
        f"{path}: the database is damaged: SQLite's integrity check (PRAGMA quick_check) "
        f"found: {shown}{more}. The prober will not use it: {RESTORE_HINT}"
    )


def copy_database(
    source: pathlib.Path, dest: pathlib.Path, *, overwrite: bool = False, pages: int = 1024
) -> None:
    """A consistent copy of `source` at `dest`, safe while other connections write to it.

    SQLite's online backup API copies `pages` pages a step, all from one read transaction
    held for the whole copy: in WAL mode that pins one snapshot and blocks no writer (the
    WAL cannot be checkpointed past the snapshot until the copy ends). Without the held
    transaction, each step starts a new one, and any commit by another connection restarts
    the copy from page 1: a busy prober could keep a large copy restarting indefinitely.

    The copy is written as `dest.partial` (created 0600), switched to a rollback journal
    (one file, no -wal beside it), checked with quick_check through a new connection, and
    only then renamed to `dest`; on any failure the partial file is removed. Raises FileExistsError
    (dest exists, not overwrite), DatabaseCorrupt (the copy failed quick_check), OSError
    or sqlite3.Error.
    """
    partial = dest.with_name(dest.name + ".partial")
    _remove(partial)  # left by an interrupted earlier copy
    try:
        create_private(partial)  # a copy holds the push tokens too
        src = connect_existing(source)
        try:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot
            out = sqlite3.connect(partial, isolation_level=None)
            try:
                src.backup(out, pages=pages, sleep=0)
                out.execute("PRAGMA journal_mode=DELETE")
            finally:
                out.close()
        finally:
            src.close()
        check = connect_existing(partial)
        try:
            problems = quick_check(check)
        finally:
            check.close()
        if problems:
            raise DatabaseCorrupt(
                f"the copy of {source} failed SQLite's integrity check (PRAGMA quick_check): "
                f"{'; '.join(problems[:3])}: the database itself is probably damaged"
            )
        if not overwrite and dest.exists():
            raise FileExistsError(f"{dest} exists")
        os.replace(partial, dest)
    except BaseException:
        _remove(partial)
        raise
    _sync_dir(dest.parent)


def _remove(path: pathlib.Path) -> None:
    for leftover in (path, path.with_name(path.name + "-journal")):
        leftover.unlink(missing_ok=True)


def _sync_dir(folder: pathlib.Path) -> None:
    """The rename itself survives a power cut (POSIX; a no-op where dirs cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ReadConnection:
    """A read connection opened on first use, by the one thread that reads through it (the
    page's snapshot thread, the metrics keeper's), with a `data_version` that moves when
    another connection commits: SQLite's `PRAGMA data_version`; PostgreSQL's write-ahead
    log position (it moves on any write to the server: at worst a read that finds nothing
    new)."""

    def __init__(self, target: pathlib.Path | Database) -> None:
        self._target = target
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None:
            self._conn = connect(self._target)
        return self._conn

    def data_version(self) -> int | str:
        conn = self.get()
        if isinstance(conn, PgConnection):
            (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            return str(lsn)
        (value,) = conn.execute("PRAGMA data_version").fetchone()
        return int(value)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
