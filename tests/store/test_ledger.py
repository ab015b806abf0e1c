"""Derived data through the real writer: transitions, incidents and coverage are committed
with their results, a restart continues where it was, and an import derives the same."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.schema import CreateTable

from prober.config.types import DownAfter
from prober.incidents import Rule, derive
from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec, rebuild
from prober.store.tables import OUTCOME_CODES
from prober.store.writer import Observation, ResultWriter
from prober.timeline import coverage

T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
MIN = 60_000
SPEC = TrackSpec("api", "http", Rule(DownAfter(seconds=120.0), up_after=2), 2 * MIN)

U, D, X = Outcome.UP, Outcome.DOWN, Outcome.UNKNOWN
# one result a minute; a gap of 10 minutes (prober stopped) after index 9
OUTCOMES = [U, U, D, U, D, D, D, D, U, D, D, U, U, U, X, X, U, D, U, U]
STOPPED_AFTER = 9


def _samples() -> list[tuple[int, Outcome, str | None]]:
    base = int(T0.timestamp() * 1000)
    out = []
    for i, outcome in enumerate(OUTCOMES):
        ts = base + i * MIN + (10 * MIN if i > STOPPED_AFTER else 0)
        out.append((ts, outcome, f"HTTP 503 #{i}" if outcome is D else None))
    return out


def _feed(path: pathlib.Path, samples: list[tuple[int, Outcome, str | None]]) -> None:
    writer = ResultWriter(path, "default", [SPEC], linger=0)
    writer.start()
    for ts, outcome, error in samples:
        at = dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
        writer.submit(Observation("api", at, CheckResult(outcome, 5.0, error=error)))
    assert writer.flush(10)
    writer.close()


def _derived(path: pathlib.Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("transition", "incident", "coverage")
        }
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    return path


def test_live_results_derive_incidents_transitions_and_coverage(db: pathlib.Path) -> None:
    samples = _samples()
    _feed(db, samples)
    derived = _derived(db)
    expected = derive(samples, SPEC.rule)
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in derived["incident"]] == [
        (i.start_ms, i.confirmed_ms, i.end_ms, i.resolved_ms, i.cause) for i in expected.incidents
    ]
    # one incident from index 4: the lone success at 8 does not end it (up_after = 2), the
    # failures at 9-10 (across the stopped prober) go on, it ends at 11; 17 is a blip
    (incident,) = expected.incidents
    assert (incident.start_ms, incident.end_ms) == (samples[4][0], samples[11][0])
    assert incident.cause == "HTTP 503 #4"
    assert [(r[2], r[3], r[4]) for r in derived["transition"]] == [
        (t.ts_ms, t.old, t.new) for t in expected.transitions
    ]
    spans = coverage(((ts, o is not X) for ts, o, _ in samples), SPEC.cover_ms)
    stored = [(r[2], r[3]) for r in derived["coverage"]]
    *closed, (last_start, last_end) = stored
    assert last_end is None  # the newest span is open
    assert [*closed, (last_start, samples[-1][0] + SPEC.cover_ms)] == list(spans)
    assert len(stored) == 3  # broken by the stopped prober and by the unknown results


def test_a_restart_continues_where_it_was(tmp_path: pathlib.Path) -> None:
    samples = _samples()
    for cut in (3, 6, 12, 15):
        path = tmp_path / f"cut{cut}.db"
        open_engine(path).dispose()
        _feed(path, samples[:cut])
        _feed(path, samples[cut:])
        assert _derived(path) == _reference(tmp_path), f"cut at {cut}"


def _reference(tmp_path: pathlib.Path) -> dict[str, list[tuple[object, ...]]]:
    """Everything fed in one go to one writer."""
    path = tmp_path / "reference.db"
    if not path.exists():
        open_engine(path).dispose()
        _feed(path, _samples())
    return _derived(path)


def test_state_saved_mid_run_is_replayed_after_a_crash(
    db: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Results committed after the last saved state (no transition since) are replayed."""
    samples = _samples()
    _feed(db, samples[:6])  # inside the first failure run: pending, not yet confirmed
    conn = connect_raw(db)
    # simulate a crash that lost nothing but left state older than the results
    conn.execute("UPDATE monitor_state SET as_of_ms = as_of_ms - 1")
    conn.close()
    _feed(db, samples[6:])
    assert _derived(db) == _reference(tmp_path)


def test_rebuild_equals_live(db: pathlib.Path, tmp_path: pathlib.Path) -> None:
    samples = _samples()
    live = tmp_path / "live.db"
    open_engine(live).dispose()
    _feed(live, samples)
    conn = connect_raw(db)
    conn.execute("INSERT INTO monitor (id, slug, type) VALUES (1, 'api', 'http')")
    conn.execute("INSERT INTO location (id, name) VALUES (1, 'default')")
    conn.execute("BEGIN IMMEDIATE")
    rebuild(conn, 1, 1, SPEC, [(ts, OUTCOME_CODES[o], e) for ts, o, e in samples])
    conn.execute("COMMIT")
    conn.close()
    assert _derived(db) == _derived(live)


def _apply_each(samples: list[tuple[int, int, str | None]], spec: TrackSpec) -> dict[str, object]:
    """Reference: every result through Ledger.apply, as live ingestion does."""
    from prober.store.ledger import Ledger
    from prober.store.tables import OUTCOMES_BY_CODE

    conn = sqlite3.connect(":memory:", isolation_level=None)
    _schema(conn)
    ledger = Ledger(1, {"api": 1}, [spec])
    ledger.load(conn)
    conn.execute("BEGIN")
    for ts, code, error in samples:
        ledger.apply(conn, "api", ts, OUTCOMES_BY_CODE[code], error)
    # live saves the tracker at each change (and replays the rest on start); rebuild saves
    # it after the last result: save it here too, so the states compare
    ledger._save_state(conn, ledger._tracks["api"])
    conn.execute("COMMIT")
    return _tables(conn)


def _rebuilt(samples: list[tuple[int, int, str | None]], spec: TrackSpec) -> dict[str, object]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _schema(conn)
    conn.execute("BEGIN")
    rebuild(conn, 1, 1, spec, samples)
    conn.execute("COMMIT")
    return _tables(conn)


def _schema(conn: sqlite3.Connection) -> None:
    from sqlmodel import SQLModel

    from prober.store import tables

    for table in (tables.TransitionRow, tables.IncidentRow, tables.CoverageRow, tables.MetaRow):
        ddl = str(CreateTable(SQLModel.metadata.tables[table.__tablename__]))  # type: ignore[attr-defined]
        conn.execute(ddl)
    conn.execute(
        "CREATE TABLE monitor_state (monitor_id, location_id, as_of_ms, state,"
        " PRIMARY KEY (monitor_id, location_id))"
    )
    conn.execute("CREATE TABLE result (monitor_id, ts_ms, location_id, outcome, error)")


def _tables(conn: sqlite3.Connection) -> dict[str, object]:
    out: dict[str, object] = {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()
        for t in ("transition", "incident", "coverage")
    }
    state = conn.execute("SELECT state FROM monitor_state").fetchone()
    out["state"] = None if state is None else json.loads(state[0])
    return out


_outcome_codes = st.sampled_from([OUTCOME_CODES[o] for o in (U, D, X, Outcome.DEGRADED)])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 200_000), st.tuples(_outcome_codes, st.integers(1, 30))),
        max_size=25,
    ),
    st.sampled_from([DownAfter(seconds=120.0), DownAfter(count=3), DownAfter(seconds=0.0)]),
    st.integers(1, 3),
)
def test_rebuild_fast_path_equals_applying_every_result(
    segments: list[tuple[int, tuple[int, int]]], down_after: DownAfter, up_after: int
) -> None:
    """Runs of equal outcomes (what the fast path skips), with gaps that break coverage."""
    spec = TrackSpec("api", "http", Rule(down_after, up_after), 2 * MIN)
    samples: list[tuple[int, int, str | None]] = []
    ts = 1_790_000_000_000
    for gap, (code, length) in segments:
        for _ in range(length):
            ts += gap if gap > 150_000 else MIN
            samples.append((ts, code, "boom" if code == OUTCOME_CODES[D] else None))
    assert _rebuilt(samples, spec) == _apply_each(samples, spec)


def test_a_failed_transaction_does_not_leave_the_ledger_ahead(db: pathlib.Path) -> None:
    """A batch whose transaction fails after the ledger stepped (disk full, I/O error) is
    retried with the ledger restored from the database: nothing missing, nothing twice."""
    conn = connect_raw(db)
    conn.execute("CREATE TABLE fail_now (x)")
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON transition WHEN EXISTS (SELECT 1 FROM fail_now)"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )
    samples = _samples()
    writer = ResultWriter(db, "default", [SPEC], linger=0)
    writer.start()
    _submit(writer, samples[:3])
    assert writer.flush(10)
    conn.execute("INSERT INTO fail_now VALUES (1)")
    _submit(writer, samples[3:8])  # these change the status: their transaction fails
    deadline = time.monotonic() + 10
    while writer.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.last_error is not None and "simulated" in writer.last_error
    conn.execute("DELETE FROM fail_now")
    conn.close()
    _submit(writer, samples[8:])
    assert writer.flush(20)
    writer.close()
    expected = derive(samples, SPEC.rule)
    derived = _derived(db)
    assert [(r[2], r[3], r[4]) for r in derived["transition"]] == [
        (t.ts_ms, t.old, t.new) for t in expected.transitions
    ]
    assert len(derived["incident"]) == len(expected.incidents) == 1


def _submit(writer: ResultWriter, samples: list[tuple[int, Outcome, str | None]]) -> None:
    for ts, outcome, error in samples:
        at = dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
        writer.submit(Observation("api", at, CheckResult(outcome, 5.0, error=error)))
