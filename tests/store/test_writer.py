"""The writer thread: batches, read-back, idempotency, locked database, schema version."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sqlalchemy

from prober.results import AssertionResult, Certificate, CheckResult, Outcome, Phases
from prober.store import queries
from prober.store.db import SchemaError, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _writer(path: pathlib.Path, monitors: tuple[str, ...] = ("api", "web")) -> ResultWriter:
    open_engine(path).dispose()
    writer = ResultWriter(
        path, "seoul", [TrackSpec.plain(m) for m in monitors], heartbeat_every=0.2
    )
    writer.start()
    return writer


def test_results_round_trip_with_every_field(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    writer = _writer(path)
    cert = Certificate(dt.datetime(2027, 1, 1, tzinfo=dt.UTC), "api.test", "Test CA")
    result = CheckResult(
        Outcome.DOWN,
        5003.25,
        error="status: saw 503, wanted [200]",
        status_code=503,
        phases=Phases(dns_ms=1.5, connect_ms=2.0, tls_ms=10.25, first_byte_ms=4000.0),
        assertions=(AssertionResult("status", False, "503", "[200]"),),
        certificate=cert,
    )
    writer.submit(Observation("api", T0, result))
    writer.submit(Observation("api", T0 + dt.timedelta(seconds=60), CheckResult(Outcome.UP, 12.0)))
    assert writer.flush(5)
    writer.close()

    engine = open_engine(path)
    rows = queries.results_between(engine, "api", T0, T0 + dt.timedelta(hours=1))
    assert [r.outcome for r in rows] == [Outcome.DOWN, Outcome.UP]
    first = rows[0]
    assert first.at == T0
    assert first.latency_ms == pytest.approx(5003.25)
    assert first.status_code == 503
    assert first.error == "status: saw 503, wanted [200]"
    assert first.details["failed"] == [{"name": "status", "saw": "503", "wanted": "[200]"}]
    assert queries.latest_results(engine)["api"].outcome is Outcome.UP
    with engine.connect() as conn:
        location, cert_expiry, tls_us = conn.execute(
            sqlalchemy.text(
                "SELECT l.name, r.cert_expiry, r.tls_us FROM result r JOIN location l ON l.id = r.location_id"
                " ORDER BY r.ts_ms LIMIT 1"
            )
        ).one()
    assert (location, cert_expiry, tls_us) == ("seoul", int(cert.not_after.timestamp()), 10250)
    engine.dispose()


def test_same_result_twice_is_stored_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    writer = _writer(path)
    for _ in range(2):
        writer.submit(Observation("api", T0, CheckResult(Outcome.UP, 1.0)))
    assert writer.flush(5)
    writer.close()
    engine = open_engine(path)
    assert queries.count_results(engine) == 1
    engine.dispose()


def test_large_batches_commit_off_the_calling_thread(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    writer = _writer(path, monitors=tuple(f"m{i}" for i in range(100)))
    for i in range(100):
        for k in range(200):
            writer.submit(
                Observation(
                    f"m{i}", T0 + dt.timedelta(seconds=60 * k), CheckResult(Outcome.UP, 1.0)
                )
            )
    assert writer.flush(30)
    assert writer.committed == 20_000
    assert writer._thread is not threading.current_thread()
    writer.close()


def test_locked_database_delays_but_loses_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    writer = _writer(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    writer.submit(Observation("api", T0, CheckResult(Outcome.UP, 1.0)))
    time.sleep(0.5)
    assert writer.committed == 0
    blocker.execute("COMMIT")
    blocker.close()
    assert writer.flush(15)
    assert writer.committed == 1
    assert writer.healthy()
    writer.close()


def test_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="schema version 99"):
        open_engine(path)


def test_database_is_in_wal_mode(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_kill_9_loses_no_committed_result(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    script = textwrap.dedent(
        f"""
        import datetime as dt, pathlib, sys, time
        from prober.results import CheckResult, Outcome
        from prober.store.db import open_engine
        from prober.store.ledger import TrackSpec
        from prober.store.writer import Observation, ResultWriter
        path = pathlib.Path({str(path)!r})
        open_engine(path).dispose()
        w = ResultWriter(path, "default", [TrackSpec.plain("api")])
        w.start()
        t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        for k in range(5000):
            w.submit(Observation("api", t0 + dt.timedelta(seconds=k), CheckResult(Outcome.UP, 1.0)))
        w.flush(30)
        print("flushed", flush=True)
        for k in range(5000, 10**7):  # keep writing until killed
            w.submit(Observation("api", t0 + dt.timedelta(seconds=k), CheckResult(Outcome.UP, 1.0)))
            if k % 1000 == 0:
                time.sleep(0.001)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "flushed"
    time.sleep(0.3)
    proc.kill()
    proc.wait(10)
    proc.stdout.close()
    conn = sqlite3.connect(path)
    (count,) = conn.execute("SELECT count(*) FROM result").fetchone()
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert count >= 5000
