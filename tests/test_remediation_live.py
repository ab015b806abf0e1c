"""Remediation wired into `prober run` (issue 16, items 1, 2 and 4): a loopback HTTP
service (a real subprocess) that the test kills, a remediation command (a script the test
writes) that starts it again or fails, and the alerts a webhook sink receives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from prober.alerts.message import Kind
from prober.alerts.outbox import ESCALATED, PENDING, Row
from prober.alerts.plan import Remedy, Situation, plan
from tests.support.net import free_port
from tests.support.proc import ProberRun
from tests.support.sink import Sink, running_sink

# -- the plan's rule: an opening waits for its incident's remediation ------------------

NOW = 10_000_000
KEY = "here/api/100"


def _row(id_: int, kind: Kind, data: dict[str, object] | None = None) -> Row:
    return Row(id_, f"{KEY}/{kind}/hook", "hook", kind, "api", KEY, 100, NOW - 1, PENDING,
               0, None, None, False, None, {"since_ms": 100, **(data or {})})  # fmt: skip


def _decide(remedy: Remedy | None, *rows: Row) -> tuple[list[int], list[int], list[int]]:
    s = Situation(
        now_ms=NOW,
        open_incidents={"api": KEY},
        parents={},
        in_maintenance=lambda _monitor, _at: None,
        openings={},
        remedies={} if remedy is None else {KEY: remedy},
    )
    got = plan(list(rows) or [_row(1, Kind.OPENED)], s)
    return (
        [r.id for batch in got.send for r in batch],
        [until for _, until in got.hold],
        [r.id for r, _ in got.drop],
    )


def test_an_opening_waits_for_its_remediation_until_the_deadline() -> None:
    assert _decide(Remedy("", NOW + 3000)) == ([], [NOW + 3000], [])  # none started yet
    assert _decide(Remedy("running", NOW + 5000)) == ([], [NOW + 5000], [])
    assert _decide(Remedy("running", NOW)) == ([1], [], [])  # past it: sent all the same


def test_verified_drops_the_opening_and_its_resolution() -> None:
    opened, resolved = _row(1, Kind.OPENED), _row(2, Kind.RESOLVED, {"until_ms": NOW - 10})
    assert _decide(Remedy("verified", NOW + 5000), opened, resolved) == ([], [], [1, 2])


def test_a_remediation_that_did_not_work_sends_the_opening() -> None:
    for result in ("failed", "timed_out", "interrupted"):
        assert _decide(Remedy(result, NOW + 5000)) == ([1], [], [])


def test_an_escalation_or_a_monitor_without_remediate_is_not_held() -> None:
    assert _decide(None) == ([1], [], [])
    step = _row(1, Kind.OPENED, {ESCALATED: 60_000})
    assert step.escalated_after_ms == 60_000
    assert _decide(Remedy("running", NOW + 5000), step) == ([1], [], [])


# -- `prober run` ----------------------------------------------------------------------

SERVE = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]


async def _until(predicate: Callable[[], object], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


def _query(db: pathlib.Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def _pid(path: pathlib.Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(path.read_text())
    return None


@contextlib.contextmanager
def service(tmp_path: pathlib.Path, port: int) -> Iterator[pathlib.Path]:
    """The service, started by the test; yields its pid file (which a restart rewrites).
    Whatever runs under that pid at the end is stopped."""
    pidfile = tmp_path / "service.pid"
    proc = subprocess.Popen(
        [*SERVE, str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pidfile.write_text(str(proc.pid))
    try:
        yield pidfile
    finally:
        pid = _pid(pidfile)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def kill(pidfile: pathlib.Path) -> None:
    pid = _pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def restart_script(tmp_path: pathlib.Path, port: int) -> pathlib.Path:
    """Starts the service again, in the background, and records its pid."""
    path = tmp_path / "restart-service"
    serve = " ".join(SERVE)
    path.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        cd {tmp_path}
        echo "restarting $PROBER_MONITOR_ID"
        {serve} {port} </dev/null >/dev/null 2>&1 &
        echo $! > {tmp_path / "service.pid"}
        """)
    )
    path.chmod(0o700)
    return path


def failing_script(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "restart-fails"
    path.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        touch {tmp_path / "ran"}
        echo "systemctl: unit api.service not found"
        exit 3
        """)
    )
    path.chmod(0o700)
    return path


def config(
    tmp_path: pathlib.Path,
    sink: Sink,
    port: int,
    command: pathlib.Path,
    extra: str = "",
    metrics: str = "",
) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(f"""
[settings]
listen = "127.0.0.1:{free_port()}"
metrics = {{ listen = "{metrics}" }}
database = "sqlite:///{tmp_path / "prober.db"}"
alert_group_wait = "200ms"
allow_commands = true

[defaults]
down_after = 1
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{sink.url}"

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "1s"
timeout = "500ms"
remediate = {{ command = ["{command}"], timeout = "10s", after = 1, verify = 2 }}
{extra}""")
    return path


def _attempts(db: pathlib.Path) -> list[tuple[Any, ...]]:
    return _query(db, "SELECT result, exit_code, output_tail FROM remediation ORDER BY id")


def _alerts(db: pathlib.Path) -> dict[object, object]:
    return {k: v for k, v in _query(db, "SELECT kind, state FROM alert WHERE monitor = 'api'")}


async def _serving(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/", timeout=aiohttp.ClientTimeout(total=1)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def _results_after(db: pathlib.Path, ts_ms: object) -> int:
    [(count,)] = _query(db, "SELECT count(*) FROM result WHERE ts_ms > ?", ts_ms) or [(0,)]
    return int(count)


def _up_results(db: pathlib.Path) -> int:
    [(count,)] = _query(db, "SELECT count(*) FROM result WHERE outcome = 1") or [(0,)]
    return int(count)


async def test_a_restart_that_brings_it_back_sends_no_alert(tmp_path: pathlib.Path) -> None:
    db, port = tmp_path / "prober.db", free_port()
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            scrape = free_port()
            cfg = config(
                tmp_path, sink, port, restart_script(tmp_path, port), metrics=f"127.0.0.1:{scrape}"
            )
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await _until(lambda: [r[0] for r in _attempts(db)] == ["verified"])
                done = ("sent", "failed", "suppressed")
                await _until(lambda: _alerts(db).get("resolved") in done)
                assert await _serving(port)
                counted = 'prober_remediations_total{monitor="api",result="verified"} 1.0'
                async with aiohttp.ClientSession() as session:
                    for _ in range(100):  # the metrics are at most a second or two old
                        async with session.get(f"http://127.0.0.1:{scrape}/metrics") as r:
                            if counted in await r.text():
                                break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError("prober_remediations_total not counted")
            finally:
                run.stop()
    assert sink.received == []  # no down alert, no resolution
    assert _alerts(db) == {"opened": "suppressed", "resolved": "suppressed"}
    [(result, code, tail)] = _attempts(db)
    assert (result, code) == ("verified", 0)
    assert tail == "restarting api\n"
    [(end,)] = _query(db, "SELECT end_ms FROM incident")
    assert end is not None  # the incident and its downtime are recorded
    [(why,)] = _query(db, "SELECT last_error FROM alert WHERE kind = 'opened'")
    # dropped when the verification settled, or when the incident ended, whichever the
    # dispatcher saw first
    assert why in ("remediated automatically", "the incident ended while its alert was held")


async def test_a_command_that_fails_sends_one_alert_with_its_exit_and_output(
    tmp_path: pathlib.Path,
) -> None:
    db, port = tmp_path / "prober.db", free_port()
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, failing_script(tmp_path))
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await sink.wait_for(1, within=30)
                assert _attempts(db) == [("failed", 3, "systemctl: unit api.service not found\n")]
                # still down a while later: the opening went out once, nothing more
                [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, start) >= 3)
            finally:
                run.stop()
    [received] = sink.received
    body = received.json()
    assert body["kind"] == "opened"
    assert "Automatic remediation failed with exit code 3" in str(body["text"])
    assert "its last output: systemctl: unit api.service not found" in str(body["text"])


async def test_maintenance_skips_the_remediation(tmp_path: pathlib.Path) -> None:
    db, port = tmp_path / "prober.db", free_port()
    window = """
[[maintenance]]
title = "upgrade"
monitors = ["api"]
start = "2026-01-01T00:00:00Z"
end = "2099-01-01T00:00:00Z"
"""
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, failing_script(tmp_path), window)
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await _until(lambda: _query(db, "SELECT count(*) FROM incident") == [(1,)])
                [(opened,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, opened) >= 3)
            finally:
                run.stop()
    assert _attempts(db) == []
    assert not (tmp_path / "ran").exists()
    assert "remediation not run monitor=api reason=maintenance" in run.log


def _serving_sync(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_kill_9_during_a_remediation_does_not_run_it_again(tmp_path: pathlib.Path) -> None:
    db, port = tmp_path / "prober.db", free_port()
    hang = tmp_path / "restart-hangs"
    runs = tmp_path / "runs"
    hang.write_text(f"#!/bin/sh\necho $$ >> {runs}\nexec sleep 60\n")
    hang.chmod(0o700)
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, hang)
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await _until(lambda: runs.exists() and _alerts(db).get("opened") == "pending")
                assert _attempts(db) == [("running", None, "")]
            finally:
                run.stop(signal.SIGKILL)
                for pid in runs.read_text().split():  # its group outlives a prober killed -9
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            assert sink.received == []  # the opening was waiting for the remediation
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await sink.wait_for(1, within=30)
                [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, start) >= 3)
            finally:
                run.stop()
    assert len(runs.read_text().split()) == 1  # not run again for the same incident
    [(result, _, _)] = _attempts(db)
    assert result == "interrupted"
    [received] = sink.received
    assert "Automatic remediation was interrupted by a restart of the prober" in str(
        received.json()["text"]
    )
    assert "remediation interrupted by a restart monitor=api" in run.log
