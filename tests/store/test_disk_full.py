"""A full disk: SQLite answers SQLITE_FULL ("database or disk is full"). The writer keeps
what it was given in memory, says why once, reports itself unhealthy, and writes it all
when space returns. The space is SQLite's own limit (`PRAGMA max_page_count`) set on every
connection the writer opens: the same error SQLite gives for a full filesystem."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import pathlib
import sqlite3
import time

import pytest

from prober.results import CheckResult, Outcome
from prober.store.db import connect_raw, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter

T0 = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


class Disk:
    """How many pages the database may have, on every connection the writer opened."""

    def __init__(self) -> None:
        self._pages = 1_000_000
        self._conns: list[sqlite3.Connection] = []

    @property
    def pages(self) -> int:
        return self._pages

    @pages.setter
    def pages(self, value: int) -> None:
        self._pages = value
        for conn in self._conns:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed by the writer since
                conn.execute(f"PRAGMA max_page_count = {value}")

    def connect(self, path: pathlib.Path) -> sqlite3.Connection:
        conn = connect_raw(path)
        conn.execute(f"PRAGMA max_page_count = {self._pages}")
        self._conns.append(conn)
        return conn


def _count(path: pathlib.Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (n,) = conn.execute("SELECT count(*) FROM result").fetchone()
        return int(n)
    finally:
        conn.close()


def _wait(predicate: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_full_disk_loses_nothing_and_recovers(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    disk = Disk()
    writer = ResultWriter(
        path, "default", [TrackSpec.plain("api")], heartbeat_every=0.2, linger=0.0,
        connect=disk.connect,
    )  # fmt: skip
    writer.start()
    at = T0
    submitted = 0

    def submit(n: int, outcome: Outcome = Outcome.UP) -> None:
        nonlocal at, submitted
        for _ in range(n):
            at += dt.timedelta(seconds=60)
            writer.submit(Observation("api", at, CheckResult(outcome, 12.0, error="x" * 400)))
            submitted += 1

    with caplog.at_level(logging.INFO, logger="prober.store.writer"):
        submit(50)
        assert writer.flush(10)
        assert _count(path) == 50 and writer.healthy()
        pages = int(sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0])
        disk.pages = pages  # the disk is now full: not one more page
        submit(2000)  # more than fits in the pages left
        _wait(lambda: writer.last_error is not None)
        assert not writer.healthy()
        submit(300, Outcome.DOWN)  # probing goes on: results wait in memory
        time.sleep(1.0)
        assert writer.queue_depth() > 0
        assert "database or disk is full" in (writer.last_error or "")
        disk.pages = 1_000_000  # space returns
        assert writer.flush(60)
        assert writer.healthy()
    writer.close()
    assert _count(path) == submitted == 2350  # nothing lost
    failing = [r for r in caplog.records if "database writes failing" in r.getMessage()]
    assert len(failing) == 1  # said once, with why
    assert "the disk is full" in failing[0].getMessage()
    assert "probing goes on" in failing[0].getMessage()
    assert any("database writes recovered" in r.getMessage() for r in caplog.records)
    conn = sqlite3.connect(path)
    (incidents,) = conn.execute("SELECT count(*) FROM incident").fetchone()
    conn.close()
    assert incidents == 1  # the down run while the disk was full was derived after all


def test_memory_is_bounded_while_the_database_is_down(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    disk = Disk()
    disk.pages = 1  # nothing fits
    writer = ResultWriter(
        path, "default", [TrackSpec.plain("api")], linger=0.0, connect=disk.connect, max_waiting=100
    )
    writer.start()
    for i in range(500):
        writer.submit(
            Observation("api", T0 + dt.timedelta(minutes=i), CheckResult(Outcome.UP, 1.0))
        )
    # held in memory: at most max_waiting queued, plus the batch the writer took from the
    # queue before the disk refused it (at most what the queue held then); the rest dropped
    assert writer.queue_depth() <= 101
    assert 500 - writer.dropped <= 2 * 100 + 1
    disk.pages = 1_000_000
    assert writer.flush(30)
    writer.close()
