"""Two result writers on one PostgreSQL database, each with its evaluation lock
(prober.store.hubs): one judges, the other hands over through the inbox; the lock's
connection lost moves the judging to the other; a stale holder is fenced off by the epoch."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest

from prober.results import CheckResult, Outcome
from prober.store.db import open_database
from prober.store.engine import Database
from prober.store.hubs import EVALUATION_LOCK, EvaluationLock, decode, encode
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from tests.support.proc import until

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HUBS = ("seoul", "tokyo")


class Hub:
    def __init__(self, url: str, location: str) -> None:
        self.lease = EvaluationLock(Database(url), location, poll_s=0.1)
        # probed from both hubs (declared by each: [[hubs]]), down at either
        spec = dataclasses.replace(TrackSpec.plain("api"), locations=HUBS, quorum=1)
        self.writer = ResultWriter(
            Database(url), location, [spec], heartbeat_every=0.2, lease=self.lease
        )
        self.lease.start()
        self.writer.start()

    def close(self) -> None:
        self.writer.close()
        self.lease.stop()


@pytest.fixture
def pair(pg_url: str) -> Iterator[tuple[str, dict[str, Hub]]]:
    open_database(Database(pg_url))
    hubs: dict[str, Hub] = {}
    try:
        hubs["seoul"] = Hub(pg_url, "seoul")
        until(lambda: hubs["seoul"].writer.leading, within=10)
        hubs["tokyo"] = Hub(pg_url, "tokyo")
        yield pg_url, hubs
    finally:
        for hub in hubs.values():
            hub.close()


def rows(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def stored(url: str) -> list[int]:
    return [int(str(ts)) for (ts,) in rows(url, "SELECT ts_ms FROM result ORDER BY ts_ms")]


def submit(hub: Hub, minute: int, outcome: Outcome = Outcome.UP) -> None:
    at = T0 + dt.timedelta(minutes=minute)
    error = "refused" if outcome is Outcome.DOWN else None
    hub.writer.submit(Observation("api", at, CheckResult(outcome, 1.5, error=error)))
    assert hub.writer.flush(10)


def test_the_other_hub_hands_over_through_the_inbox_and_one_judges(
    pair: tuple[str, dict[str, Hub]],
) -> None:
    url, hubs = pair
    seoul, tokyo = hubs["seoul"], hubs["tokyo"]
    assert seoul.writer.leading and not tokyo.writer.leading
    submit(tokyo, 0, Outcome.DOWN)  # tokyo's own check: to the inbox, judged by seoul
    submit(tokyo, 1, Outcome.DOWN)
    until(lambda: len(stored(url)) == 2, within=10)
    assert rows(url, "SELECT count(*) FROM inbox") == [(0,)]
    located = rows(url, "SELECT l.name FROM result r JOIN location l ON l.id = r.location_id")
    assert {name for (name,) in located} == {"tokyo"}
    # seoul's ledger judged them: tokyo's own transitions (unknown -> down) were derived
    transitions = rows(
        url,
        "SELECT t.new FROM transition t JOIN location l ON l.id = t.location_id"
        " WHERE l.name = 'tokyo'",
    )
    assert transitions == [("pending",)]  # a down run, not confirmed yet


def test_lost_lock_connection_moves_the_judging_and_nothing_is_lost(
    pair: tuple[str, dict[str, Hub]],
) -> None:
    url, hubs = pair
    seoul, tokyo = hubs["seoul"], hubs["tokyo"]
    submit(seoul, 0)
    # seoul's lock connection dies (its server session ended): tokyo takes over
    with psycopg.connect(url, autocommit=True) as conn:
        (ended,) = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND objid = %s AND granted",
            (EVALUATION_LOCK,),
        ).fetchone()
    assert ended
    until(lambda: tokyo.writer.leading, within=10)
    until(lambda: not seoul.writer.leading, within=10)
    submit(seoul, 1)  # now through the inbox, judged by tokyo
    submit(tokyo, 2)
    until(lambda: len(stored(url)) == 3, within=10)
    assert rows(url, "SELECT value FROM meta WHERE key = 'leader_epoch'") == [("2",)]


def test_a_stale_holder_is_fenced_off_by_the_epoch(pair: tuple[str, dict[str, Hub]]) -> None:
    url, hubs = pair
    seoul = hubs["seoul"]
    # another hub took over as far as the database knows (seoul's lock looks held still)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'leader_epoch'")
    submit(seoul, 0, Outcome.DOWN)
    until(lambda: not seoul.writer.leading, within=10)
    # its batch was not judged by it: it waits in the inbox for the holder (or is taken
    # once the lock moves); either way it is stored once
    until(lambda: len(stored(url)) == 1, within=20)
    # the lock was let go and taken again, by one of them: judging goes on
    until(lambda: hubs["tokyo"].writer.leading != seoul.writer.leading, within=20)
    assert int(str(rows(url, "SELECT value FROM meta WHERE key = 'leader_epoch'")[0][0])) == 100


def test_the_inbox_format_keeps_every_field() -> None:
    result = CheckResult(
        Outcome.DOWN, 12.5, error="status: saw 503", status_code=503, details={"push": "fail"}
    )
    body = encode([("api", T0, result, "tokyo")])
    ((monitor, at, back, location),) = decode(body)
    assert (monitor, at, location) == ("api", T0, "tokyo")
    assert back.outcome is Outcome.DOWN and back.latency_ms == 12.5
    assert (back.error, back.status_code, back.details) == (
        "status: saw 503",
        503,
        {"push": "fail"},
    )
