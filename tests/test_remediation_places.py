"""Remediation of what the hub records but does not probe itself (issue 16, item 1),
through a real `prober run`: a push monitor whose pings stop (a worker or cron job that is
gone: "if the process is gone, start it"), and a monitor probed from the hub and an agent
(its results posted as an agent posts them), remediated on its combined verdict: when both
locations see it down (the quorum), never for one location alone (a regional problem)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import pathlib
import secrets
import signal
import sqlite3
import textwrap
import time
from typing import Any

import aiohttp

from prober.agent import wire
from prober.config.locations import COMBINED
from prober.config.types import DownAfter
from prober.incidents import Rule
from prober.results import CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, Recorded, ResultWriter
from prober.timeline import to_ms
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target
from tests.support.sink import Sink, running_sink
from tests.test_remediation_live import _query, _until

PUSH_TOKEN = secrets.token_hex(16)
AGENT_TOKEN = secrets.token_hex(16)


def _script(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A remediation command that appends a line to `marker` and succeeds."""
    path.write_text(f'#!/bin/sh\necho "$PROBER_MONITOR_ID" >> {marker}\necho started\n')
    path.chmod(0o700)
    return path


def _attempts(db: pathlib.Path, monitor: str) -> list[tuple[Any, ...]]:
    return _query(
        db,
        "SELECT result, exit_code, ended_ms, incident FROM remediation WHERE monitor = ?"
        " ORDER BY id",
        monitor,
    )


def _alerts(db: pathlib.Path, monitor: str) -> dict[object, object]:
    rows = _query(db, "SELECT kind, state FROM alert WHERE monitor = ?", monitor)
    return {kind: state for kind, state in rows}


def _head(tmp_path: pathlib.Path, sink: Sink, listen: int) -> str:
    return f"""
[settings]
location = "hub"
listen = "127.0.0.1:{listen}"
database = "sqlite:///{tmp_path / "prober.db"}"
alert_group_wait = "200ms"
allow_commands = true

[[notifiers]]
id = "hook"
type = "webhook"
url = "{sink.url}"
"""


async def _ping(listen: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{listen}/push/{PUSH_TOKEN}") as answer,
    ):
        assert answer.status == 200, await answer.text()


async def test_a_push_monitor_whose_pings_stop_is_remediated_and_verified_by_pings(
    tmp_path: pathlib.Path,
) -> None:
    db, listen, marker = tmp_path / "prober.db", free_port(), tmp_path / "started"
    command = _script(tmp_path / "start-worker", marker)
    async with running_sink() as sink:
        cfg = tmp_path / "monitors.toml"
        cfg.write_text(
            _head(tmp_path, sink, listen)
            + textwrap.dedent(f"""
            [[monitors]]
            id = "worker"
            type = "push"
            period = "5s"
            grace = "1s"
            token = "{PUSH_TOKEN}"
            down_after = 1
            notify = ["hook"]
            remediate = {{ command = ["{command}"], timeout = "10s", after = 1, verify = 2 }}
            """)
        )
        run = ProberRun(["run", "-c", str(cfg)], tmp_path)
        try:
            await asyncio.to_thread(run.wait_for, "prober running")
            await _ping(listen)  # the worker is alive, then it is gone: no more pings
            await _until(lambda: marker.exists(), within=60)  # its deadline passed: started
            await _until(lambda: any(a[2] is not None for a in _attempts(db, "worker")))
            # the worker started again pings (until the verification settles)
            deadline = time.monotonic() + 30
            while [a[0] for a in _attempts(db, "worker")] != ["verified"]:
                assert time.monotonic() < deadline, _attempts(db, "worker")
                await _ping(listen)
                await asyncio.sleep(0.3)
            done = ("sent", "failed", "suppressed")
            await _until(lambda: _alerts(db, "worker").get("resolved") in done)
        finally:
            run.stop()
    assert marker.read_text() == "worker\n"  # once
    [(result, code, _, incident)] = _attempts(db, "worker")
    assert (result, code) == ("verified", 0)
    assert sink.received == []  # no down alert, no resolution
    assert _alerts(db, "worker") == {"opened": "suppressed", "resolved": "suppressed"}
    [(held,)] = _query(db, "SELECT incident FROM alert WHERE kind = 'opened'")
    assert held == incident  # the opening found its attempt
    assert "remediation verified" in run.log


async def _agent_posts(listen: int, monitors: list[str], stop: asyncio.Event) -> None:
    """Agent `agent-x` reports every monitor down every half second, as an agent does."""
    url = f"http://127.0.0.1:{listen}/api/agent/v1/results"
    headers = {"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"}
    seq = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            seq += 1
            now = time.time_ns() // 1_000_000
            results = tuple(
                wire.WireResult(m, now, Outcome.DOWN, 1_000, error="connection refused")
                for m in monitors
            )
            body = wire.encode(wire.Batch("agent-x", now, seq, 0, 0, results))
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    assert answer.status in (200, 503), await answer.text()  # 503: busy
            except aiohttp.ClientError:  # the hub is restarting: an agent keeps trying
                pass
            with contextlib.suppress(TimeoutError):  # the agent's pace: a batch each 0.5 s
                await asyncio.wait_for(stop.wait(), 0.5)


def _results_at(db: pathlib.Path, monitor: str, location: str, after_ms: int = -1) -> int:
    [(count,)] = _query(
        db,
        "SELECT count(*) FROM result r JOIN monitor m ON m.id = r.monitor_id"
        " JOIN location l ON l.id = r.location_id WHERE m.slug = ? AND l.name = ?"
        " AND r.ts_ms > ?",
        monitor,
        location,
        after_ms,
    ) or [(0,)]
    return int(count)


def _agents_config(tmp_path: pathlib.Path, sink: Sink, listen: int, monitors: str) -> pathlib.Path:
    """The hub `hub` and the agent `agent-x`, with these monitors."""
    path = tmp_path / "monitors.toml"
    path.write_text(
        _head(tmp_path, sink, listen)
        + textwrap.dedent("""
        [[agents]]
        location = "agent-x"
        token = "${AGENT_TOKEN}"

        [defaults]
        down_after = 1
        notify = ["hook"]
        """)
        + textwrap.dedent(monitors)
    )
    return path


async def test_a_monitor_of_several_locations_is_remediated_on_its_quorum_only(
    tmp_path: pathlib.Path,
) -> None:
    db, listen = tmp_path / "prober.db", free_port()
    both, regional = tmp_path / "both-ran", tmp_path / "regional-ran"
    dead = free_port()  # nothing listens: the hub sees "both" down
    fix_both = _script(tmp_path / "fix-both", both)
    fix_regional = _script(tmp_path / "fix-regional", regional)
    with http_target(tmp_path / "www") as alive:
        async with running_sink() as sink:
            cfg = _agents_config(
                tmp_path,
                sink,
                listen,
                f"""
                [[monitors]]
                id = "both"
                type = "http"
                url = "http://127.0.0.1:{dead}/"
                interval = "2s"
                timeout = "1s"
                locations = ["hub", "agent-x"]
                quorum = 2
                remediate = {{ command = ["{fix_both}"], timeout = "10s", after = 2, verify = 2 }}

                [[monitors]]
                id = "regional"
                type = "http"
                url = "http://127.0.0.1:{alive}/ok"
                interval = "2s"
                timeout = "1s"
                locations = ["hub", "agent-x"]
                quorum = 2
                remediate = {{ command = ["{fix_regional}"], timeout = "10s", after = 1, verify = 2 }}
                """,
            )
            env = {**os.environ, "AGENT_TOKEN": AGENT_TOKEN}
            run = ProberRun(["run", "-c", str(cfg)], tmp_path, env=env)
            stop = asyncio.Event()
            agent: asyncio.Task[None] | None = None
            try:
                await asyncio.to_thread(run.wait_for, "prober running")
                agent = asyncio.create_task(_agent_posts(listen, ["both", "regional"], stop))
                # both locations down: remediated once, and not again for that incident
                await _until(lambda: [a[0] for a in _attempts(db, "both")] == ["failed"], 60)
                [(_, _, ended, _)] = _attempts(db, "both")
                await _until(lambda: _results_at(db, "both", "hub", ended) >= 3, 60)
                # only the agent sees "regional" down, for longer than down_after: regional
                await asyncio.to_thread(run.wait_for, "regional problem monitor=regional")
                [(seen,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_at(db, "regional", "agent-x", seen) >= 3, 60)
                await _until(lambda: _results_at(db, "regional", "hub", seen) >= 2, 60)
                await _until(lambda: _alerts(db, "both").get("opened") == "sent", 60)
            finally:
                stop.set()
                if agent is not None:
                    await agent
                run.stop()
    assert both.read_text() == "both\n"  # once
    assert not regional.exists()
    assert _attempts(db, "regional") == []
    [(result, code, _, incident)] = _attempts(db, "both")
    assert (result, code) == ("failed", 0)  # it ran, and the checks after it still failed
    [(opened,)] = _query(
        db, "SELECT incident FROM alert WHERE monitor = 'both' AND kind = 'opened'"
    )
    assert opened == incident  # the combined incident's opening waited for this attempt
    assert incident.startswith("hub/both/")
    [sent] = [r.json() for r in sink.received if r.json().get("kind") == "opened"]
    assert "Automatic remediation" in str(sent["text"])


# -- the writer's side: what it tells after a commit ---------------------------------------

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MIN = 60_000


def _spec(slug: str, locations: tuple[str, ...], quorum: int = 1) -> TrackSpec:
    rule = Rule(DownAfter(count=1), up_after=1)
    return TrackSpec(slug, "http", rule, 2 * MIN, locations, quorum)


def test_the_writer_tells_what_it_committed_for_watched_monitors(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.db"
    open_engine(path).dispose()
    specs = [
        _spec("single", ("hub",)),
        _spec("away", ("agent-x",)),  # probed by the agent alone: its verdict is there
        _spec("multi", ("hub", "agent-x"), quorum=2),
        _spec("quiet", ("hub",)),  # no remediate: not watched
    ]
    writer = ResultWriter(path, "hub", specs, heartbeat_every=0.2)
    writer.start()
    told: list[Recorded] = []
    writer.watch({"single", "away", "multi"}, told.extend)
    down = CheckResult(Outcome.DOWN, 1.0, error="connection refused")
    t1, t2 = T0, T0 + dt.timedelta(minutes=1)
    for slug, where in [("single", None), ("single", "agent-x"), ("away", "agent-x"),
                        ("multi", None), ("multi", "agent-x"), ("quiet", None)]:  # fmt: skip
        writer.submit(Observation(slug, t1, down, location=where))
    # a minute later the hub sees "multi" up, the agent still down: regional
    writer.submit(Observation("multi", t2, CheckResult(Outcome.UP, 1.0)))
    writer.submit(Observation("multi", t2, down, location="agent-x"))
    assert writer.flush(10)
    writer.watch((), None)  # nothing told from now on
    writer.submit(Observation("single", t2, down))
    assert writer.flush(10)
    writer.close()
    ms = to_ms(t1)
    results = [r for r in told if not r.combined]
    assert results == [
        Recorded("single", ms, Outcome.DOWN, "connection refused"),
        Recorded("away", ms, Outcome.DOWN, "connection refused"),
    ]
    verdicts = [r for r in told if r.combined and not r.lapsed]
    assert [(v.monitor, v.ts_ms, v.outcome, v.regional) for v in verdicts] == [
        ("multi", ms, Outcome.DOWN, False),
        ("multi", ms + MIN, Outcome.UP, True),
    ]
    assert (verdicts[0].run_checks, verdicts[0].start_ms) == (1, ms)
    conn = sqlite3.connect(path)
    try:
        [(start,)] = conn.execute(
            "SELECT i.start_ms FROM incident i JOIN location l ON l.id = i.location_id"
            " WHERE l.name = ?",
            (COMBINED,),
        ).fetchall()
    finally:
        conn.close()
    assert start == verdicts[0].start_ms  # the key the combined incident's alerts carry


async def test_kill_9_during_a_quorum_remediation_does_not_run_it_again(
    tmp_path: pathlib.Path,
) -> None:
    """The combined verdict's run and incident come back with the ledger's state: the
    restarted hub finds the incident's attempt (interrupted) and does not run it again."""
    db, listen, runs = tmp_path / "prober.db", free_port(), tmp_path / "runs"
    hang = tmp_path / "fix-hangs"
    hang.write_text(f"#!/bin/sh\necho $$ >> {runs}\nexec sleep 60\n")
    hang.chmod(0o700)
    dead = free_port()
    env = {**os.environ, "AGENT_TOKEN": AGENT_TOKEN}
    async with running_sink() as sink:
        cfg = _agents_config(
            tmp_path,
            sink,
            listen,
            f"""
            [[monitors]]
            id = "both"
            type = "http"
            url = "http://127.0.0.1:{dead}/"
            interval = "2s"
            timeout = "1s"
            locations = ["hub", "agent-x"]
            quorum = 2
            remediate = {{ command = ["{hang}"], timeout = "20s", after = 1, verify = 2 }}
            """,
        )
        stop = asyncio.Event()
        agent = asyncio.create_task(_agent_posts(listen, ["both"], stop))
        run = ProberRun(["run", "-c", str(cfg)], tmp_path, env=env)
        try:
            try:
                await _until(lambda: runs.exists() and _attempts(db, "both"), 60)
                assert [a[:2] for a in _attempts(db, "both")] == [("running", None)]
            finally:
                run.stop(signal.SIGKILL)
                for pid in runs.read_text().split() if runs.exists() else ():
                    with contextlib.suppress(ProcessLookupError):  # its group outlives -9
                        os.kill(int(pid), signal.SIGKILL)
            assert sink.received == []  # the opening was waiting for the remediation
            run = ProberRun(["run", "-c", str(cfg)], tmp_path, env=env)
            try:
                await asyncio.to_thread(run.wait_for, "prober running")
                [(restarted,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_at(db, "both", "hub", restarted) >= 3, 60)
                await _until(lambda: _alerts(db, "both").get("opened") == "sent", 60)
            finally:
                run.stop()
        finally:
            stop.set()
            await agent
    assert len(runs.read_text().split()) == 1  # not run again for the same incident
    [(result, _, _, incident)] = _attempts(db, "both")
    assert result == "interrupted"
    [(opened,)] = _query(
        db, "SELECT incident FROM alert WHERE monitor = 'both' AND kind = 'opened'"
    )
    assert opened == incident
