"""Remediation wired into `prober run` (issue 16, items 1 to 4 and its Tests list): a
loopback HTTP service (a real subprocess) that the test kills or makes fail, a remediation
command (a script the test writes) that starts it again, fails, hangs, lies or dumps its
environment, and the alerts a webhook sink receives (escalation steps included)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from prober.alerts.message import Kind
from prober.alerts.outbox import ESCALATED, PENDING, Row
from prober.alerts.plan import Remedy, Situation, plan
from prober.results import Outcome
from prober.store.tables import OUTCOME_CODES
from tests.support.net import free_port
from tests.support.proc import ProberRun
from tests.support.proc import until_async as _until
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
def service(tmp_path: pathlib.Path, port: int, name: str = "service") -> Iterator[pathlib.Path]:
    """The service, started by the test; yields its pid file (which a restart rewrites).
    Whatever runs under that pid at the end is stopped. It serves `tmp_path`'s files."""
    pidfile = tmp_path / f"{name}.pid"
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
    """Fails; each run appends its monitor's id to `tmp_path/ran`."""
    path = tmp_path / "restart-fails"
    path.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        echo "$PROBER_MONITOR_ID" >> {tmp_path / "ran"}
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
    command: pathlib.Path | None,
    extra: str = "",
    metrics: str = "",
    *,
    spec: str = 'timeout = "10s", after = 1, verify = 2',
    url_path: str = "/",
) -> pathlib.Path:
    """Monitor `api` on the service, remediated by `command` (`spec`: the rest of its
    `remediate`; None: not remediated); `extra` goes on in its table."""
    remediate = "" if command is None else f'remediate = {{ command = ["{command}"], {spec} }}'
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
url = "http://127.0.0.1:{port}{url_path}"
interval = "1s"
timeout = "500ms"
{remediate}
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


# -- issue 16's other cases, through `prober run` ---------------------------------------


DOWN = OUTCOME_CODES[Outcome.DOWN]


def _gone(pid: int) -> bool:
    """No such process, or a zombie (killed, not reaped yet by whoever inherited it)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _revive(tmp_path: pathlib.Path, port: int) -> None:
    """Start the service again as its restart script would (the pid file follows)."""
    subprocess.run([restart_script(tmp_path, port)], check=True, stdout=subprocess.DEVNULL)


def _sent(db: pathlib.Path, kind: str, monitor: str = "api") -> list[tuple[Any, ...]]:
    """(incident, sent_ms) of the alerts of `kind` that went out, oldest first."""
    return _query(
        db,
        "SELECT incident, sent_ms FROM alert WHERE monitor = ? AND kind = ? AND state = 'sent'"
        " ORDER BY sent_ms",
        monitor,
        kind,
    )


def _downs(db: pathlib.Path, monitor: str = "api") -> int:
    [(count,)] = _query(
        db,
        "SELECT count(*) FROM result r JOIN monitor m ON m.id = r.monitor_id"
        " WHERE m.slug = ? AND r.outcome = ?",
        monitor,
        DOWN,
    ) or [(0,)]
    return int(count)


async def test_a_command_past_its_timeout_dies_with_its_children(tmp_path: pathlib.Path) -> None:
    """Its child ignores SIGTERM: the group's SIGKILL after the grace ends it too."""
    db, port = tmp_path / "prober.db", free_port()
    leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
    hang = tmp_path / "restart-hangs"
    hang.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        echo $$ > {leader}
        (trap '' TERM; exec sleep 300) &
        echo $! > {child}
        echo "waiting for the unit"
        wait
        """)
    )
    hang.chmod(0o700)
    pids: list[int] = []
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, hang, spec='timeout = "1s", after = 1, verify = 2')
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await _until(lambda: _pid(leader) is not None and _pid(child) is not None)
                pids = [p for p in (_pid(leader), _pid(child)) if p is not None]
                await _until(lambda: [r[0] for r in _attempts(db)] == ["timed_out"])
                await _until(lambda: all(_gone(p) for p in pids))
                await sink.wait_for(1, within=30)
                [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, start) >= 3)
            finally:
                run.stop()
                for pid in pids:  # a broken build leaves them: not past the test
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    [(result, _, tail)] = _attempts(db)
    assert (result, tail) == ("timed_out", "waiting for the unit\n")
    [received] = sink.received
    body = received.json()
    assert body["kind"] == "opened"
    assert "timed out" in str(body["text"])
    assert "remediation ended monitor=api outcome='timed out" in run.log


async def test_exit_0_while_it_stays_down_sends_one_opening_after_the_checks(
    tmp_path: pathlib.Path,
) -> None:
    db, port = tmp_path / "prober.db", free_port()
    lies = tmp_path / "restart-lies"
    lies.write_text('#!/bin/sh\necho "api restarted"\nexit 0\n')
    lies.chmod(0o700)
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, lies, spec='timeout = "2s", after = 1, verify = 2')
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await sink.wait_for(1, within=30)
                await _until(lambda: _sent(db, "opened"))  # recorded once answered
                [(ended,)] = _query(db, "SELECT ended_ms FROM remediation")
                [(_, sent)] = _sent(db, "opened")
                # a check after the command's end said down before the opening went out
                [(judged,)] = _query(
                    db,
                    "SELECT count(*) FROM result WHERE outcome = ? AND ts_ms > ? AND ts_ms < ?",
                    DOWN,
                    ended,
                    sent,
                )
                assert judged >= 1
                _revive(tmp_path, port)
                await sink.wait_for(2, within=30)
                [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, start) >= 2)
            finally:
                run.stop()
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved"]
    assert _attempts(db) == [("failed", 0, "api restarted\n")]
    text = str(sink.received[0].json()["text"])
    assert "exited with code 0, but the checks after it still failed" in text
    assert "remediation did not bring it back monitor=api" in run.log


async def test_the_attempts_budget_spent_a_second_incident_is_not_remediated(
    tmp_path: pathlib.Path,
) -> None:
    db, port = tmp_path / "prober.db", free_port()
    ran = tmp_path / "ran"
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            spec = 'timeout = "2s", after = 1, verify = 2, attempts = 1, within = "1h"'
            cfg = config(tmp_path, sink, port, failing_script(tmp_path), spec=spec)
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await sink.wait_for(1, within=30)  # the failed attempt's opening
                _revive(tmp_path, port)
                await sink.wait_for(2, within=30)
                kill(pidfile)  # a second incident
                await sink.wait_for(3, within=30)
                await _until(lambda: len(_sent(db, "opened")) == 2)
                [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                await _until(lambda: _results_after(db, start) >= 3)
            finally:
                run.stop()
    assert ran.read_text() == "api\n"  # one run, for the first incident
    assert [r[0] for r in _attempts(db)] == ["failed"]
    assert [r.json()["kind"] for r in sink.received] == ["opened", "resolved", "opened"]
    assert "remediation skipped monitor=api attempts=1 within=3600s: budget used" in run.log
    assert "Automatic remediation" not in str(sink.received[2].json()["text"])


async def test_a_parent_down_skips_the_childs_command_not_its_own(tmp_path: pathlib.Path) -> None:
    """`api` depends on `db` (its own service, remediated by the same script): with both
    down, only db's command runs."""
    db, port, parent_port = tmp_path / "prober.db", free_port(), free_port()
    ran, command = tmp_path / "ran", failing_script(tmp_path)
    parent = f"""depends_on = ["db"]

[[monitors]]
id = "db"
type = "http"
url = "http://127.0.0.1:{parent_port}/"
interval = "1s"
timeout = "500ms"
remediate = {{ command = ["{command}"], timeout = "10s", after = 1, verify = 2 }}
"""
    with service(tmp_path, port) as pidfile, service(tmp_path, parent_port, "db") as dbfile:
        await _until(lambda: _serving_sync(port) and _serving_sync(parent_port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, command, parent)
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 2)
                kill(dbfile)
                await _until(lambda: ran.exists() and _query(db, "SELECT * FROM incident"))
                kill(pidfile)
                await _until(lambda: _downs(db, "api") >= 4)  # `after = 1`: due long since
            finally:
                run.stop()
    assert ran.read_text() == "db\n"
    assert [r[0] for r in _attempts(db)] == ["failed"]
    assert _query(db, "SELECT DISTINCT monitor FROM remediation") == [("db",)]
    assert "remediation not run monitor=api reason=parent_down" in run.log


async def test_a_hostile_name_and_cause_reach_the_command_verbatim(
    tmp_path: pathlib.Path,
) -> None:
    """The name and the cause (an excerpt of the page's body) are shell code: they arrive
    as environment values, never run."""
    db, port = tmp_path / "prober.db", free_port()
    name = "x\"; touch /tmp/PWNED_$$ #$(touch PWNED_1)`touch PWNED_2`'; touch PWNED_3 #"
    body = '$(touch PWNED_4)BOOM"; touch PWNED_5 #'  # not_contains shows 20 chars each side
    page, dump = tmp_path / "page.html", tmp_path / "env.dump"
    page.write_text("fine\n")
    dumper = tmp_path / "dump-env"
    dumper.write_text(f"#!/bin/sh\nexec /usr/bin/env -0 > {dump}\n")
    dumper.chmod(0o700)
    extra = f'name = {json.dumps(name)}\nnot_contains = ["BOOM"]\n'
    before = set(pathlib.Path("/tmp").glob("PWNED_*"))
    with service(tmp_path, port):
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, dumper, extra, url_path="/page.html")
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                page.write_text(f"<p>{body}</p>\n")
                await _until(lambda: [r[0] for r in _attempts(db)] in (["running"], ["failed"]))
                await _until(lambda: dump.exists() and dump.read_bytes().endswith(b"\0"))
            finally:
                run.stop()
    env = dict(item.split("=", 1) for item in dump.read_text().split("\0") if item)
    [(cause,)] = _query(
        db, "SELECT error FROM result WHERE outcome = ? ORDER BY ts_ms LIMIT 1", DOWN
    )
    assert body in cause
    assert env["PROBER_MONITOR_ID"] == "api"
    assert env["PROBER_MONITOR_NAME"] == name
    assert env["PROBER_CAUSE"] == cause
    shell = {"PWD", "OLDPWD", "SHLVL", "_"}  # what /bin/sh itself adds
    assert set(env) - shell <= {"PATH", "HOME", "LANG", *(k for k in env if "PROBER_" in k)}
    assert sorted(p.name for p in tmp_path.glob("PWNED_*")) == []
    assert set(pathlib.Path("/tmp").glob("PWNED_*")) == before


async def test_escalation_after_its_delay_and_cancelled_by_recovery(
    tmp_path: pathlib.Path,
) -> None:
    """`api` (not remediated) goes down for good: the pager hears 2 s after the first
    opening; a second incident ends before its step is due: the pager hears nothing."""
    db, port = tmp_path / "prober.db", free_port()
    health = tmp_path / "health"
    health.write_text("ok\n")
    with service(tmp_path, port):
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            extra = f"""escalate = [{{ after = "2s", notify = ["pager"] }}]

[[notifiers]]
id = "pager"
type = "webhook"
url = "{sink.url}-pager"
"""
            cfg = config(tmp_path, sink, port, None, extra, url_path="/health")

            def openings(notifier: str) -> list[tuple[Any, ...]]:
                return _query(
                    db,
                    "SELECT incident, sent_ms FROM alert WHERE notifier = ? AND kind = 'opened'"
                    " AND state = 'sent' ORDER BY id",
                    notifier,
                )

            def told(path: str, kind: str) -> int:
                return sum(1 for r in sink.received if r.path == path and r.json()["kind"] == kind)

            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                health.unlink()  # 404: down
                await _until(lambda: told("/hook-pager", "opened") == 1)
                health.write_text("ok\n")
                await _until(
                    lambda: told("/hook", "resolved") + told("/hook-pager", "resolved") == 2
                )
                health.unlink()  # the second incident
                await _until(lambda: told("/hook", "opened") == 2)
                health.write_text("ok\n")
                await _until(lambda: told("/hook", "resolved") == 2)
                await _until(lambda: len(openings("hook")) == 2)
                (_, first), (second, sent) = openings("hook")
                await _until(lambda: _results_after(db, sent + 3000) >= 1)  # past its step
            finally:
                run.stop()
    (_, escalated), *_ = openings("pager")
    assert escalated - first >= 2000
    [(ended,)] = _query(db, "SELECT resolved_ms FROM incident ORDER BY start_ms DESC LIMIT 1")
    if ended >= sent + 2000:
        pytest.skip("the machine too slow: the second incident outlived its step")
    pager = [
        (r.json()["kind"], r.json()["title"]) for r in sink.received if r.path == "/hook-pager"
    ]
    assert [kind for kind, _ in pager] == ["opened", "resolved"]
    assert "ESCALATED" in str(pager[0][1])
    assert _query(db, "SELECT count(*) FROM alert WHERE incident = ?", second) == [(2,)]


async def test_an_opening_held_for_a_running_attempt_goes_out_when_it_fails(
    tmp_path: pathlib.Path,
) -> None:
    """The command fails once the test sees the opening held for it (timeout 20 s): the
    opening goes out then, not at the end of the hold a running attempt had."""
    db, port = tmp_path / "prober.db", free_port()
    go = tmp_path / "go"
    slow = tmp_path / "restart-slow-fail"
    slow.write_text(
        f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho 'unit failed'\nexit 3\n"
    )
    slow.chmod(0o700)
    spec = 'timeout = "20s", after = 1, verify = 2'
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, slow, spec=spec)
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                started = 0

                def held_for_the_run() -> bool:
                    nonlocal started
                    rows = _query(db, "SELECT started_ms FROM remediation")
                    due = _query(db, "SELECT due_ms FROM alert WHERE kind = 'opened'")
                    started = rows[0][0] if rows else 0
                    return bool(rows and due and due[0][0] >= started + 20_000)

                await _until(held_for_the_run)
                go.touch()
                await _until(lambda: [r[0] for r in _attempts(db)] == ["failed"])
                [(ended,)] = _query(db, "SELECT ended_ms FROM remediation")
                with contextlib.suppress(TimeoutError):
                    await sink.wait_for(1, within=15)
            finally:
                run.stop()
    assert sink.received, f"not sent within 15 s of the failure at {ended} (began {started})"
    assert "failed with exit code 3" in str(sink.received[0].json()["text"])
