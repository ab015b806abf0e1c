"""Two storage engines behind one connection: SQLite, the embedded default, and PostgreSQL,
for hubs that share one database.

The store's SQL is written once, in SQLite's dialect with `?` placeholders, and runs on a
`Connection`: sqlite3's own, or `PgConnection`, a psycopg 3 connection that speaks the same
subset of DB-API the store uses (autocommit; callers `BEGIN IMMEDIATE` ... `COMMIT`
themselves; `execute`, `executemany`, `in_transaction`, `close`). PgConnection adapts, once
per statement text (cached), the few constructs PostgreSQL spells differently:

- `?` placeholders become `%s` (a literal `%` is doubled);
- `BEGIN IMMEDIATE` becomes `BEGIN` plus a transaction-level advisory lock: like SQLite, one
  writer at a time, across every hub sharing the database, so the read-modify-write steps of
  the store (a ledger's state, the outbox's keys) need no second discipline;
- a plain `BEGIN` (a reader's: the page's snapshot, /metrics' readings) becomes `BEGIN
  ISOLATION LEVEL REPEATABLE READ`: like SQLite's read transaction, every statement in it
  sees the same snapshot, whatever commits meanwhile (PostgreSQL's default, read committed,
  would let a snapshot's later queries see results its earlier ones did not);
- `INSERT OR IGNORE` becomes `INSERT ... ON CONFLICT DO NOTHING`, and `INSERT OR REPLACE`
  an upsert on the table's primary key (taken from prober.store.tables);
- `group_concat(x)` becomes `string_agg(x::text, ',')`;
- SQLite's JSON as the store uses it: `FROM json_each(?)` over an array of names (text
  `value`), `json_each(?) AS j` over integers or arrays of integers (`j.value`,
  `j.value ->> N`, read as bigint), `json_extract(x, '$.a.b')` and `x ->> '$.a'` (text on
  PostgreSQL, where SQLite types numbers: the store reads them through int() or json.loads),
  `ifnull`; `?N` numbered parameters are bound in the order they are used.

Parameters go as untyped text (PostgreSQL infers their type from where they stand, as it
does for a literal), so the loosely typed values SQLite takes (an integer for a TEXT
column, 0/1 for a flag) mean the same on both. PostgreSQL's `sum()` of integers is a
`numeric`: it is read back as an int (a float when it has a fraction), as SQLite returns it.
psycopg's errors are raised as sqlite3's DB-API classes (OperationalError for a lost
connection or a lock timeout, IntegrityError, DatabaseError), so one `except sqlite3.Error`
serves both engines.

What only one engine has stays with it: PRAGMAs, quick_check, the online backup API and the
run lock are SQLite's (prober.store.db); the evaluation lock of several hubs is
PostgreSQL's (prober.store.hubs), and so is COPY (`PgConnection.copy`: an import's rows).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prober.config.database import Database as Database  # the store opens what config names

if TYPE_CHECKING:
    import psycopg

# pg_advisory_xact_lock keys: the store's single writer, and the hubs' evaluation lock.
WRITE_LOCK = 0x70726F62  # "prob"
CONNECT_TIMEOUT_S = 10
# A statement waiting longer than this for a lock fails (SQLite's busy_timeout).
LOCK_TIMEOUT_MS = 10_000


class Cursor(Protocol):
    """What the store reads from a statement: sqlite3.Cursor and psycopg's Cursor both."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The DB-API subset the store uses (sqlite3.Connection has it; so has PgConnection)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


def connect(target: pathlib.Path | Database) -> Connection:
    """A connection in autocommit mode to a SQLite file or to the database named."""
    from prober.store.db import connect_raw

    if isinstance(target, Database):
        return connect_raw(target.path) if target.path is not None else PgConnection(target.url)
    return connect_raw(target)


class PgConnection:
    """A psycopg 3 connection that runs the store's SQLite-dialect statements."""

    def __init__(self, url: str) -> None:
        import psycopg

        with _errors():
            self._conn: psycopg.Connection[Any] = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c lock_timeout={LOCK_TIMEOUT_MS} -c TimeZone=UTC",
            )
        _adapt(self._conn)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection, for what only PostgreSQL has (advisory locks)."""
        return self._conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        with _errors():
            if sql == "BEGIN IMMEDIATE":
                self._conn.execute("BEGIN")
                try:
                    return self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                except BaseException:  # lock_timeout: no transaction left behind, as SQLite's
                    self._conn.execute("ROLLBACK")
                    raise
            if sql == "BEGIN":
                return self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            found = statement(sql)
            return self._conn.execute(found.sql, tuple(found.bind(parameters)), prepare=False)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any:
        with _errors():
            found = statement(sql)
            cursor = self._conn.cursor()
            cursor.executemany(found.sql, [found.bind(p) for p in seq_of_parameters])
            return cursor

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """COPY rows into `table`: PostgreSQL's bulk load, one stream instead of a statement
        per row (an import's results)."""
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with _errors(), self._conn.cursor() as cursor, cursor.copy(sql) as stream:
            for row in rows:
                stream.write_row(row)

    def close(self) -> None:
        self._conn.close()


# --- the dialect ---------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?[0-9]*|%")
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s", re.IGNORECASE)
_OR_REPLACE = re.compile(
    r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE | re.DOTALL
)
_OR_REPLACE_HEAD = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
_GROUP_CONCAT = re.compile(r"group_concat\(", re.IGNORECASE)
# json_each(?) of a JSON array: `FROM json_each(?)` its elements as text `value` (slugs);
# `json_each(?) AS j` its elements as json, read as integers (`j.value`, `j.value ->> N`)
_EACH_SCALAR = re.compile(r"FROM\s+json_each\((%s)\)(?!\s+AS\s)", re.IGNORECASE)
_EACH = re.compile(r"json_each\((%s)\)\s+AS\s+(\w+)", re.IGNORECASE)
_EXTRACT_KEY = re.compile(r"json_extract\(([\w.]+),\s*'\$\.'\s*\|\|\s*(%s)\)", re.IGNORECASE)
_EXTRACT = re.compile(r"json_extract\(([\w.]+),\s*'\$((?:\.\w+)+)'\)", re.IGNORECASE)
_ARROW_PATH = re.compile(r"([\w.]+)\s*->>\s*'\$((?:\.\w+)+)'")
_IFNULL = re.compile(r"\bifnull\(", re.IGNORECASE)
_IFNULL_EMPTY = re.compile(r"ifnull\(([\w.]+),\s*''\)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Statement:
    """A statement as PostgreSQL takes it, and where each `%s` takes its value from (the
    index into the SQLite statement's parameters: `?N` may use one twice)."""

    sql: str
    order: tuple[int, ...] | None  # None: the parameters in order, as given

    def bind(self, parameters: Sequence[Any]) -> Sequence[Any]:
        return parameters if self.order is None else [parameters[i] for i in self.order]


def translate(sql: str) -> str:
    """`sql` in SQLite's dialect, as PostgreSQL takes it (see the module's docstring)."""
    return statement(sql).sql


@functools.lru_cache(maxsize=1024)
def statement(sql: str) -> Statement:
    sql, order = _placeholders(sql)
    if _OR_IGNORE.match(sql):
        sql = _OR_IGNORE.sub("INSERT INTO ", sql, count=1)
        sql = _on_conflict(sql, "ON CONFLICT DO NOTHING")
    elif match := _OR_REPLACE.match(sql):
        table, columns = match.group(1), [c.strip().strip('"') for c in match.group(2).split(",")]
        key = primary_key(table)
        rest = [c for c in columns if c not in key]
        action = (
            "DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in rest)
            if rest
            else "DO NOTHING"
        )
        sql = _OR_REPLACE_HEAD.sub("INSERT INTO ", sql, count=1)
        sql = _on_conflict(sql, f"ON CONFLICT ({', '.join(key)}) {action}")
    if "group_concat" in sql.lower():
        sql = _group_concat(sql)
    if "json" in sql or "->>" in sql or "ifnull" in sql.lower():
        sql = _json(sql)
    return Statement(sql, order)


def _json(sql: str) -> str:
    """SQLite's JSON functions as PostgreSQL's: json_each over an array of integers (or of
    arrays of integers, read with `->> N`), json_extract and `->> '$.path'` (text)."""
    sql = _EACH_SCALAR.sub(r"FROM json_array_elements_text(\1::json) AS each(value)", sql)
    for alias in {m.group(2) for m in _EACH.finditer(sql)}:
        sql = re.sub(rf"\b{alias}\.value\s*->>\s*([0-9]+)", rf"({alias}.value ->> \1)::bigint", sql)
        sql = re.sub(rf"\b{alias}\.value\b(?!\s*->>)", rf"({alias}.value #>> '{{}}')::bigint", sql)
    sql = _EACH.sub(r"json_array_elements(\1::json) AS \2(value)", sql)
    sql = _EXTRACT_KEY.sub(r"(\1::json ->> \2)", sql)
    sql = _EXTRACT.sub(lambda m: f"({m.group(1)}::json #>> '{{{_path(m.group(2))}}}')", sql)
    sql = _ARROW_PATH.sub(lambda m: f"({m.group(1)}::json #>> '{{{_path(m.group(2))}}}')", sql)
    sql = _IFNULL_EMPTY.sub(r"coalesce((\1)::text, '')", sql)
    return _IFNULL.sub("coalesce(", sql)


def _path(dotted: str) -> str:
    return ",".join(dotted.strip(".").split("."))


def _placeholders(sql: str) -> tuple[str, tuple[int, ...] | None]:
    order: list[int] = []
    numbered = False

    def swap(match: re.Match[str]) -> str:
        nonlocal numbered
        said = match.group(0)
        if said.startswith("?"):
            if len(said) > 1:
                numbered = True
                order.append(int(said[1:]) - 1)
            else:
                order.append(len(order))
            return "%s"
        return said.replace("%", "%%")

    return _TOKENS.sub(swap, sql), tuple(order) if numbered else None


def _on_conflict(sql: str, clause: str) -> str:
    sql = sql.rstrip().removesuffix(";")
    found = _RETURNING.search(sql)
    if found is None:
        return f"{sql} {clause}"
    return f"{sql[: found.start()]} {clause}{sql[found.start() :]}"


def _group_concat(sql: str) -> str:
    """group_concat(EXPR) -> string_agg((EXPR)::text, ','), EXPR with balanced brackets."""
    out, at = [], 0
    for match in _GROUP_CONCAT.finditer(sql):
        if match.start() < at:
            continue
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        out.append(sql[at : match.start()])
        out.append(f"string_agg(({sql[match.end() : end - 1]})::text, ',')")
        at = end
    out.append(sql[at:])
    return "".join(out)


@functools.cache
def primary_key(table: str) -> tuple[str, ...]:
    from prober.store.tables import TABLES

    for model in TABLES:
        found = model.__table__  # type: ignore[attr-defined]
        if found.name == table:
            return tuple(column.name for column in found.primary_key.columns)
    raise KeyError(f"INSERT OR REPLACE INTO {table}: not a table of prober.store.tables")


def _adapt(conn: psycopg.Connection[Any]) -> None:
    """Integers and flags sent as untyped text; numeric sums read back as int or float."""
    from psycopg.adapt import Dumper, Loader

    class Untyped(Dumper):
        oid = 0  # "unknown": the server infers the type from the statement

        def dump(self, obj: Any) -> bytes:
            return str(int(obj)).encode()

    class Number(Loader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            if text.lstrip("-").isdigit():
                return int(text)
            return float(text)

    conn.adapters.register_dumper(int, Untyped)
    conn.adapters.register_dumper(bool, Untyped)
    conn.adapters.register_loader("numeric", Number)


class _errors:
    """psycopg's errors raised as sqlite3's DB-API classes (see the module's docstring)."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None:
            return
        import psycopg

        if not isinstance(exc, psycopg.Error):
            return
        said = str(exc).strip() or type(exc).__name__
        if isinstance(exc, psycopg.IntegrityError):
            raise sqlite3.IntegrityError(said) from exc
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            raise sqlite3.OperationalError(said) from exc
        raise sqlite3.DatabaseError(said) from exc
