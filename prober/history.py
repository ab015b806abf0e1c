"""History commands: importing results, pruning (monthly reports: prober.report.monthly).

These work on the database file directly (a `prober run` may be running beside
`report` and `prune`: SQLite's WAL lets them share it; `import-results` refuses to run
beside a live prober, whose in-memory incident state it would contradict).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

from prober import importcsv, timeline
from prober.config import Config
from prober.report.monthly import HistoryError, open_existing
from prober.store import upkeep
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec, rebuild
from prober.store.writer import register

log = logging.getLogger(__name__)

LIVE_WITHIN_S = 30.0  # a writer heartbeat this recent means `prober run` is on this file


class ImportFailed(Exception):
    """The file has errors: nothing was imported."""

    def __init__(self, parsed: importcsv.Parsed) -> None:
        super().__init__(f"{parsed.error_count} rows have errors")
        self.parsed = parsed


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
    """All or nothing: validated first, then inserted and derived in one transaction."""
    begun = time.monotonic()
    known = {m.id: m for m in config.monitors}
    parsed = importcsv.parse(path, known, progress)
    if parsed.errors:
        raise ImportFailed(parsed)
    open_engine(config.database_path).dispose()  # creates the folder, or says why not
    conn = connect_raw(config.database_path)
    try:
        _refuse_if_live(conn)
        _refuse_pruned_hours(conn, parsed, ZoneInfo(config.settings.timezone))
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: a big import's B-tree stays hot
        ids, location_id = register(
            conn,
            config.settings.location,
            [(m.id, str(getattr(m, "type", ""))) for m in known.values()],
        )
        tz = ZoneInfo(config.settings.timezone)
        added = 0
        touched: dict[int, tuple[int, int]] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for slug, series in parsed.rows.items():
                if not series:
                    continue
                mid = ids[slug]
                fresh = not conn.execute(
                    "SELECT 1 FROM result WHERE monitor_id = ? AND location_id = ? LIMIT 1",
                    (mid, location_id),
                ).fetchone()
                errors = list(map(series.errors.get, range(len(series))))
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO result (monitor_id, ts_ms, location_id, outcome,"
                    " latency_us, error) VALUES (?, ?, ?, ?, NULLIF(?, -1), ?)",
                    zip(
                        itertools.repeat(mid),
                        series.ts_ms,
                        itertools.repeat(location_id),
                        series.outcome,
                        series.latency_us,
                        errors,
                    ),
                )
                added += conn.total_changes - before
                if fresh:  # the file is the whole history: no need to read it back
                    samples: Sequence[tuple[int, int, str | None]] = list(
                        zip(series.ts_ms, series.outcome, errors, strict=True)
                    )
                else:
                    samples = conn.execute(
                        "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ?"
                        " AND location_id = ? ORDER BY ts_ms",
                        (mid, location_id),
                    ).fetchall()
                rebuild(conn, location_id, mid, TrackSpec.of(known[slug]), samples)
                touched[mid] = (series.ts_ms[0], series.ts_ms[-1])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _roll_up_after_import(conn, location_id, list(ids.values()), touched, tz, now)
    finally:
        conn.close()
    return ImportSummary(parsed.count, added, len(parsed.rows), time.monotonic() - begun)


def _refuse_if_live(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
    if row is None:
        return
    age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(row[0])).total_seconds()
    if 0 <= age < LIVE_WITHIN_S:
        raise HistoryError(
            f"`prober run` is writing to this database (last write {age:.0f}s ago): "
            "stop it, import, then start it again"
        )


def _refuse_pruned_hours(conn: sqlite3.Connection, parsed: importcsv.Parsed, tz: ZoneInfo) -> None:
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
    conn: sqlite3.Connection,
    location_id: int,
    monitor_ids: list[int],
    touched: dict[int, tuple[int, int]],
    tz: ZoneInfo,
    now: dt.datetime | None,
) -> None:
    """Imported hours get rollups now, so a report reads no raw rows: every monitor is
    rolled up to the last finished hour, and imported ranges already rolled are redone."""
    now_ms = timeline.to_ms(now or dt.datetime.now(dt.UTC))
    done = upkeep.rolled_until(conn)
    target = now_ms // upkeep.HOUR_MS * upkeep.HOUR_MS - upkeep.HOUR_MS
    for mid, (first, last) in touched.items():  # imported hours below the rolled line
        start = first // upkeep.HOUR_MS * upkeep.HOUR_MS
        if start < done:
            upkeep.roll_up(conn, location_id, [mid], start, min(last + upkeep.HOUR_MS, done), tz)
    if target > done:  # and everything up to the last finished hour
        start = done or upkeep.oldest_hour(conn, monitor_ids)
        upkeep.roll_up(conn, location_id, monitor_ids, start, target, tz)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (upkeep.ROLLED_UNTIL_KEY, str(target)),
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
