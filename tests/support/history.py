"""Databases with results under several locations, written with the store's own functions:
rows inserted as the writer inserts them, derived data by `prober.store.ledger.rebuild`
(each location's own, and the combined verdict's under `*` from samples the test chooses),
rollups by `prober.store.upkeep.roll_up`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from prober.config import Config
from prober.config.locations import COMBINED
from prober.config.monitors import Monitor
from prober.results import CheckResult, Outcome
from prober.store import upkeep
from prober.store.ledger import Ledger, TrackSpec, rebuild
from prober.store.tables import OUTCOME_CODES
from prober.store.writer import _INSERT, Observation, register, to_row
from prober.timeline import to_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    monitor: str
    location: str
    at: dt.datetime
    outcome: Outcome
    latency_ms: float = 0.0  # stored for every outcome, as the writer does
    error: str | None = None


def every(
    monitor: str,
    location: str,
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
    *,
    down: Sequence[tuple[dt.datetime, dt.datetime]] = (),
    latency_ms: float = 40.0,
) -> list[Row]:
    """A result every `step` in [start, end): down (error "HTTP 503") inside any of `down`'s
    [from, to) spans, else up at `latency_ms`."""
    rows, at = [], start
    while at < end:
        if any(lo <= at < hi for lo, hi in down):
            rows.append(Row(monitor, location, at, Outcome.DOWN, 5.0, "HTTP 503"))
        else:
            rows.append(Row(monitor, location, at, Outcome.UP, latency_ms))
        at += step
    return rows


def location_id(conn: sqlite3.Connection, name: str) -> int:
    conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", (name,))
    (found,) = conn.execute("SELECT id FROM location WHERE name = ?", (name,)).fetchone()
    return int(found)


def write(
    conn: sqlite3.Connection,
    config: Config,
    rows: Iterable[Row],
    *,
    combined: dict[str, list[tuple[dt.datetime, Outcome]]] | None = None,
    roll_until: dt.datetime | None = None,
) -> None:
    """Store `rows`, derive each (monitor, location)'s data from its own results, and the
    combined verdict of `combined`'s monitors (under `*`) from the samples given; roll up
    every location until `roll_until` (an hour's start)."""
    monitors = {m.id: m for m in config.monitors}
    ids, _ = register(
        conn,
        config.settings.location,
        [(m.id, str(getattr(m, "type", ""))) for m in monitors.values()],
    )
    rows = list(rows)
    conn.execute("BEGIN IMMEDIATE")
    locations = {name: location_id(conn, name) for name in {r.location for r in rows}}
    conn.executemany(
        _INSERT,
        [
            to_row(
                ids[r.monitor],
                locations[r.location],
                Observation(r.monitor, r.at, CheckResult(r.outcome, r.latency_ms, error=r.error)),
            )
            for r in rows
        ],
    )
    for monitor, location in sorted({(r.monitor, r.location) for r in rows}):
        samples = conn.execute(
            "SELECT ts_ms, outcome, error FROM result WHERE monitor_id = ? AND location_id = ?"
            " ORDER BY ts_ms",
            (ids[monitor], locations[location]),
        ).fetchall()
        rebuild(conn, locations[location], ids[monitor], _own(monitors[monitor]), samples)
    if combined:
        star = location_id(conn, COMBINED)
        for monitor, verdicts in combined.items():
            samples = [
                (to_ms(at), OUTCOME_CODES[o], "HTTP 503" if o is Outcome.DOWN else None)
                for at, o in sorted(verdicts)
            ]
            rebuild(conn, star, ids[monitor], _own(monitors[monitor]), samples)
    conn.execute("COMMIT")
    if roll_until is not None:
        tz = ZoneInfo(config.settings.timezone)
        end = to_ms(roll_until)
        first = min((to_ms(r.at) for r in rows), default=end)
        for loc in locations.values():
            upkeep.roll_up(conn, loc, list(ids.values()), first - first % upkeep.HOUR_MS, end, tz)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (upkeep.ROLLED_UNTIL_KEY, str(end)),
        )


def _own(monitor: Monitor) -> TrackSpec:
    """The monitor's rules for one stream of samples (whatever its locations)."""
    spec = TrackSpec.of(monitor)
    return TrackSpec(spec.slug, spec.type, spec.rule, spec.cover_ms)


class Live:
    """Results written as the live writer writes them, batch after batch: each (monitor,
    location)'s own derived data by its own `Ledger`, and a combined verdict under `*` from
    verdicts the test gives (what the quorum would say), nothing rewritten."""

    def __init__(self, conn: sqlite3.Connection, config: Config) -> None:
        self.conn = conn
        self.monitors = {m.id: m for m in config.monitors}
        self.ids, _ = register(
            conn,
            config.settings.location,
            [(m.id, str(getattr(m, "type", ""))) for m in self.monitors.values()],
        )
        self.ledgers: dict[str, tuple[int, Ledger]] = {}

    def _ledger(self, location: str) -> tuple[int, Ledger]:
        found = self.ledgers.get(location)
        if found is None:
            loc = location_id(self.conn, location)
            ledger = Ledger(loc, self.ids, [_own(m) for m in self.monitors.values()])
            ledger.load(self.conn)
            found = self.ledgers[location] = (loc, ledger)
        return found

    def feed(
        self, rows: Iterable[Row], combined: Iterable[tuple[str, dt.datetime, Outcome]] = ()
    ) -> None:
        rows = sorted(rows, key=lambda r: r.at)
        verdicts = sorted(combined, key=lambda v: v[1])
        places = {r.location: self._ledger(r.location) for r in rows}
        star = self._ledger(COMBINED) if verdicts else None
        self.conn.execute("BEGIN IMMEDIATE")
        for r in rows:
            loc, ledger = places[r.location]
            result = CheckResult(r.outcome, r.latency_ms, error=r.error)
            self.conn.execute(
                _INSERT, to_row(self.ids[r.monitor], loc, Observation(r.monitor, r.at, result))
            )
            ledger.apply(self.conn, r.monitor, to_ms(r.at), r.outcome, r.error)
        for monitor, at, outcome in verdicts:
            assert star is not None
            error = "HTTP 503" if outcome is Outcome.DOWN else None
            star[1].apply(self.conn, monitor, to_ms(at), outcome, error)
        if star is not None:  # the combined state's shape (prober.store.ledger._save_combined)
            self.conn.execute(
                "UPDATE monitor_state SET state = json_object('tracker', json(state),"
                " 'regional', NULL) WHERE location_id = ? AND json_extract(state, '$.tracker')"
                " IS NULL",
                (star[0],),
            )
        self.conn.execute("COMMIT")
