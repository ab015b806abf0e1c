"""History commands: importing results, pruning (monthly reports: prober.report.monthly).

These work on the database directly, SQLite or PostgreSQL (a `prober run` may be running
beside `report` and `prune`: SQLite's WAL lets them share it; `import-results` refuses to
run beside a live prober, whose in-memory incident state it would contradict).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import logging
import multiprocessing
import os
import pathlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from zoneinfo import ZoneInfo

from prober import importcsv, timeline
from prober.config import Config
from prober.config.monitors import Monitor
from prober.report.monthly import HistoryError, open_existing
from prober.store import rollups, upkeep, verdicts
from prober.store.db import connect_raw, open_database
from prober.store.engine import Connection, Database, PgConnection, connect
from prober.store.ledger import TrackSpec, rebuild
from prober.store.writer import register

log = logging.getLogger(__name__)

LIVE_WITHIN_S = 30.0  # a writer heartbeat this recent means `prober run` is on this file
ROLL_UP_ASIDE_MIN_ROWS = 200_000  # smaller imports roll up in one process


class ImportFailed(Exception):
    """The file has errors: nothing was imported."""

    def __init__(self, parsed: importcsv.Parsed) -> None:
        super().__init__(f"{parsed.error_count} rows have errors")
        self.parsed = parsed


class ImportAborted(HistoryError):
    """The database failed inside the import's transaction: it rolled back (unless the
    failure came with the COMMIT itself, whose outcome is then unknown)."""

    def __init__(self, db: Database, exc: sqlite3.OperationalError, committing: bool) -> None:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        outcome = (
            "whether it committed is unknown: run it again (an import adds only what is missing)"
            if committing
            else "nothing imported"
        )
        super().__init__(f"import-results: {db.shown()}: {said}; {outcome}")


def _rollback(conn: Connection) -> None:
    """ROLLBACK, unless the connection is gone (the server rolled back for us)."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


@dataclasses.dataclass(frozen=True, slots=True)
class ImportSummary:
    rows: int
    added: int
    monitors: int
    seconds: float


def import_results(
    config: Config,
    path: pathlib.Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    now: dt.datetime | None = None,
) -> ImportSummary:
    """All or nothing: validated first, then inserted and derived in one transaction; then
    rolled up in a second one (half of a big import's monitors by a forked process)."""
    begun = time.monotonic()
    known = {m.id: m for m in config.monitors}
    hub = config.settings.location
    places = importcsv.Places(hub, config.locations, {m.id: m.locations for m in known.values()})
    parsed = importcsv.parse(path, known, progress, places)
    if parsed.errors:
        raise ImportFailed(parsed)
    open_database(config.database)  # creates the folder, or says why not
    conn = connect(config.database)
    try:
        _refuse_if_live(conn)
        _refuse_pruned_hours(conn, parsed, ZoneInfo(config.settings.timezone))
        if config.database.path is not None:  # 256 MiB: a big import's B-tree stays hot
            conn.execute("PRAGMA cache_size = -262144")
        ids, location_id = register(
            conn, hub, [(m.id, str(getattr(m, "type", ""))) for m in known.values()]
        )
        tz = ZoneInfo(config.settings.timezone)
        added = 0
        # per location id: per monitor id, the first and last ts_ms imported and the rows
        touched: dict[int, dict[int, tuple[int, int, int]]] = {location_id: {}}
        combined: set[str] = set()  # monitors with several locations whose rows came in
        committing = False
        conn.execute("BEGIN IMMEDIATE")
        try:
            place_ids = _location_ids(conn, {importcsv.located(k, hub)[1] for k in parsed.rows})
            for key, series in parsed.rows.items():
                if not series:
                    continue
                slug, place = importcsv.located(key, hub)
                mid, location_id = ids[slug], place_ids[place]
                fresh = not conn.execute(
                    "SELECT 1 FROM result WHERE monitor_id = ? AND location_id = ? LIMIT 1",
                    (mid, location_id),
                ).fetchone()
                added += _insert(conn, mid, location_id, series)
                samples: Iterable[tuple[int, int, str | None]]
                if fresh:  # the file is the whole history: no need to read it back
                    errors = map(series.errors.get, range(len(series)))
                    samples = zip(series.ts_ms, series.outcome, errors, strict=True)
                else:
                    samples = conn.execute(
                        "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                        " AND location_id = ? ORDER BY ts_ms",
                        (mid, location_id),
                    ).fetchall()
                rebuild(conn, location_id, mid, _own(known[slug]), samples)
                touched.setdefault(location_id, {})[mid] = (
                    series.ts_ms[0],
                    series.ts_ms[-1],
                    len(series),
                )
                if len(known[slug].locations) > 1:
                    combined.add(slug)
            for slug in sorted(combined):  # each location's own is rebuilt: now the verdict
                verdicts.rebuild_combined(conn, config, slug, _now_ms(now))
            committing = True
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # the connection lost, a lock waited out
            _rollback(conn)
            raise ImportAborted(config.database, exc, committing) from None
        except BaseException:
            _rollback(conn)
            raise
    finally:
        conn.close()
    for loc, spans in touched.items():  # the hub's own first: it also rolls up the rest
        _roll_up_after_import(config.database, loc, list(ids.values()), spans, tz, now)
    count = len({importcsv.located(key, hub)[0] for key in parsed.rows})
    return ImportSummary(parsed.count, added, count, time.monotonic() - begun)


def _own(monitor: Monitor) -> TrackSpec:
    """The monitor's rules for one location's results (a combined verdict is
    prober.store.verdicts')."""
    spec = TrackSpec.of(monitor)
    return TrackSpec(spec.slug, spec.type, spec.rule, spec.cover_ms)


def _location_ids(conn: Connection, names: set[str]) -> dict[str, int]:
    """Ids of the locations rows are imported at, creating rows for new ones."""
    for name in sorted(names):
        conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (name,))
    return {name: lid for lid, name in conn.execute("SELECT id, name FROM location")}


def _now_ms(now: dt.datetime | None) -> int:
    return timeline.to_ms(now or dt.datetime.now(dt.UTC))


def _insert(conn: Connection, monitor_id: int, location_id: int, series: importcsv.Series) -> int:
    """Store one monitor's rows (a time already stored keeps its row); returns rows added.

    The statement binds integers only: the monitor and location are written into it, and
    rows with an error text go in a second statement. Binding None (no error) costs the
    sqlite3 module a failed adapter lookup: measured with callgrind, as many instructions
    as binding the rest of the row, and a fifth of the whole insert.
    """
    if isinstance(conn, PgConnection):
        return _copy_in(conn, monitor_id, location_id, series)
    columns = "monitor_id, ts_ms, location_id, outcome, latency_us"
    values = f"{int(monitor_id)}, ?, {int(location_id)}, ?, NULLIF(?, -1)"
    rows: Iterable[tuple[int, int, int]] = zip(
        series.ts_ms, series.outcome, series.latency_us, strict=True
    )
    if series.errors:
        without_error = bytearray(b"\x01") * len(series)
        for index in series.errors:
            without_error[index] = 0
        rows = itertools.compress(rows, without_error)
    plain = conn.executemany(f"INSERT OR IGNORE INTO result ({columns}) VALUES ({values})", rows)  # noqa: S608  (integers only)
    inserted = plain.rowcount
    with_error = conn.executemany(
        f"INSERT OR IGNORE INTO result ({columns}, error) VALUES ({values}, ?)",  # noqa: S608
        [
            (series.ts_ms[i], series.outcome[i], series.latency_us[i], text)
            for i, text in series.errors.items()
        ],
    )
    return inserted + max(with_error.rowcount, 0)


def _copy_in(
    conn: PgConnection, monitor_id: int, location_id: int, series: importcsv.Series
) -> int:
    """_insert on PostgreSQL: the rows COPYed into a temporary table, then inserted from it
    in one statement. Row by row, each is a round trip to the server: at 100,000 rows the
    import took 5 times as long as into SQLite."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS import_rows (ts_ms BIGINT, outcome SMALLINT,"
        " latency_us BIGINT, error TEXT) ON COMMIT DROP"
    )
    error = series.errors.get
    conn.copy(
        "import_rows",
        ("ts_ms", "outcome", "latency_us", "error"),
        (
            (series.ts_ms[i], series.outcome[i], series.latency_us[i], error(i))
            for i in range(len(series))
        ),
    )
    added = conn.execute(
        "INSERT INTO result (monitor_id, ts_ms, location_id, outcome, latency_us, error)"  # noqa: S608  (integers only)
        f" SELECT {int(monitor_id)}, ts_ms, {int(location_id)}, outcome,"
        " NULLIF(latency_us, -1), error FROM import_rows ORDER BY ts_ms ON CONFLICT DO NOTHING"
    ).rowcount
    conn.execute("TRUNCATE import_rows")
    return int(added)


def _refuse_if_live(conn: Connection) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
    if row is None:
        return
    age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(row[0])).total_seconds()
    if 0 <= age < LIVE_WITHIN_S:
        raise HistoryError(
            f"`prober run` is writing to this database (last write {age:.0f}s ago): "
            "stop it, import, then start it again"
        )


def _refuse_pruned_hours(conn: Connection, parsed: importcsv.Parsed, tz: ZoneInfo) -> None:
    """Hours already pruned exist only as rollups: rows imported into them would replace
    those rollups with the imported rows alone."""
    line = upkeep.pruned_before(conn)
    early = [slug for slug, series in parsed.rows.items() if series and series.ts_ms[0] < line]
    if early:
        raise HistoryError(
            f"{len(early)} monitors ({', '.join(sorted(early)[:3])}...) have rows before "
            f"{timeline.from_ms(line, tz).isoformat()}, where this database's raw results "
            "were pruned (retention_days): import older history into a new database, or "
            "only rows after that time"
        )


def _roll_up_after_import(
    path: Database,
    location_id: int,
    monitor_ids: list[int],
    touched: dict[int, tuple[int, int, int]],
    tz: ZoneInfo,
    now: dt.datetime | None,
) -> None:
    """Imported hours get rollups now, so a report reads no raw rows: every monitor is
    rolled up to the last finished hour, and imported ranges already rolled are redone, in
    one transaction. A big import shares the work with a forked process (_roll_up_aside)."""
    conn = connect(path)
    try:
        now_ms = timeline.to_ms(now or dt.datetime.now(dt.UTC))
        done = upkeep.rolled_until(conn)
        target = now_ms // upkeep.HOUR_MS * upkeep.HOUR_MS - upkeep.HOUR_MS
        spans: dict[int, list[tuple[int, int]]] = {}  # per monitor, in the order to roll up
        for mid, (first, last, _) in touched.items():  # imported hours below the rolled line
            start = first // upkeep.HOUR_MS * upkeep.HOUR_MS
            if start < done:
                spans[mid] = [(start, min(last + upkeep.HOUR_MS, done))]
        if target > done:  # and everything up to the last finished hour
            start = done or upkeep.oldest_hour(conn, monitor_ids)
            for mid in monitor_ids:
                spans.setdefault(mid, []).append((start, target))
    finally:
        conn.close()  # no SQLite connection may be open across the fork below
    # the process aside rolls up into SQLite TEMP copies: with PostgreSQL, all of it here
    rows = {mid: rows for mid, (_, _, rows) in touched.items()}
    theirs = _aside_share(spans, rows) if path.path is not None else {}
    with contextlib.ExitStack() as stack:
        aside = None
        if theirs and path.path is not None:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            stack.callback(pool.shutdown, cancel_futures=True)
            aside = pool.submit(_roll_up_aside, path.path, location_id, theirs, tz)
        conn = connect(path)
        stack.callback(conn.close)
        if path.path is not None:
            conn.execute("PRAGMA cache_size = -262144")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for mid, ranges in spans.items():
                if mid not in theirs:
                    _roll_up(conn, location_id, mid, ranges, tz)
            copies = _aside_result(aside)
            if copies is None:  # no process aside, or it failed: its share is done here
                for mid, ranges in theirs.items():
                    _roll_up(conn, location_id, mid, ranges, tz)
            else:
                _put_copies(conn, location_id, list(theirs), copies)
            if target > done:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (upkeep.ROLLED_UNTIL_KEY, str(target)),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _roll_up(
    conn: Connection,
    location_id: int,
    monitor_id: int,
    ranges: list[tuple[int, int]],
    tz: ZoneInfo,
) -> None:
    for start, end in ranges:
        rollups.rollup_span(conn, monitor_id, location_id, start, end, tz)


def _aside_share(
    spans: dict[int, list[tuple[int, int]]], rows: dict[int, int]
) -> dict[int, list[tuple[int, int]]]:
    """The monitors a forked process rolls up: about half of the imported rows (none for a
    small import, on one core, or where fork() is not there)."""
    if sum(rows.values()) < ROLL_UP_ASIDE_MIN_ROWS or _cores() < 2:
        return {}
    theirs: dict[int, list[tuple[int, int]]] = {}
    weights = [0, 0]  # rows rolled up here, there
    for mid in sorted(spans, key=lambda mid: -rows.get(mid, 0)):
        side = int(weights[1] < weights[0])
        weights[side] += rows.get(mid, 0)
        if side:
            theirs[mid] = spans[mid]
    return theirs


def _cores() -> int:
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1  # a spawned process would import everything again: not worth it
    return os.cpu_count() or 1


_Copies = dict[str, tuple[list[str], list[tuple[object, ...]]]]  # table -> columns, rows
_ROLLUP_TABLES = ("rollup_hour", "rollup_day")
_CREATE_TABLE = re.compile(r"\s*CREATE\s+TABLE\s+", re.IGNORECASE)
_OF_MONITORS = "location_id = ? AND monitor_id IN (SELECT value FROM json_each(?))"


def _roll_up_aside(
    path: pathlib.Path, location_id: int, spans: dict[int, list[tuple[int, int]]], tz: ZoneInfo
) -> _Copies:
    """In the forked process: the monitors' rollups, by the very code upkeep runs, written
    nowhere. Its connection gets TEMP copies of the rollup tables holding these monitors'
    rows (SQLite looks a table name without schema up in temp first), rolls up into them,
    reading the results committed before the fork (one snapshot), and returns the copies'
    rows, which the importer puts in place of the monitors' rows."""
    conn = connect_raw(path)
    try:
        conn.execute("BEGIN")
        monitors = json.dumps(list(spans))
        for table in _ROLLUP_TABLES:
            (create,) = conn.execute(
                "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            conn.execute(_CREATE_TABLE.sub("CREATE TEMP TABLE ", create, count=1))
            conn.execute(
                f"INSERT INTO temp.{table} SELECT * FROM main.{table} WHERE {_OF_MONITORS}",  # noqa: S608
                (location_id, monitors),
            )
        for mid, ranges in spans.items():
            _roll_up(conn, location_id, mid, ranges, tz)
        copies: _Copies = {}
        for table in _ROLLUP_TABLES:
            cursor = conn.execute(f"SELECT * FROM temp.{table}")  # noqa: S608
            copies[table] = ([column[0] for column in cursor.description], cursor.fetchall())
        conn.execute("ROLLBACK")
        return copies
    finally:
        conn.close()


def _aside_result(aside: Future[_Copies] | None) -> _Copies | None:
    if aside is None:
        return None
    try:
        return aside.result()
    except Exception:  # the process died or its rows could not travel: never a wrong answer
        log.warning("rolling up beside the import failed; rolling up in one process", exc_info=True)
        return None


def _put_copies(
    conn: Connection, location_id: int, monitor_ids: list[int], copies: _Copies
) -> None:
    for table, (columns, rows) in copies.items():
        conn.execute(
            f"DELETE FROM {table} WHERE {_OF_MONITORS}",  # noqa: S608
            (location_id, json.dumps(monitor_ids)),
        )
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
            rows,
        )


def prune(config: Config, now: dt.datetime | None = None) -> int:
    conn = open_existing(config)
    try:
        ids, location_id = register(conn, config.settings.location, [])
        now_ms = timeline.to_ms(now or dt.datetime.now(dt.UTC))
        job = upkeep.Upkeep(
            location_id,
            list(ids.values()),
            ZoneInfo(config.settings.timezone),
            grace_s=0,
            retention_days=config.settings.retention_days,
        )
        return job.prune(conn, now_ms)
    finally:
        conn.close()
