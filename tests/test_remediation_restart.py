"""Remediation across a restart of the prober (issue 16 item 4): a verification a stop cut
is resumed by the next run, and a command a kill -9 orphaned is killed by it, only if that
very process (pid and start time) still runs. Real processes, real SQLite files, real
`prober run`s (their helpers are tests/test_remediation_live.py's)."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from prober.remediation import process_start
from prober.results import Outcome
from prober.runtime.remedy import Remedies
from prober.store import remediations as rows
from prober.store.db import open_engine
from prober.store.migrations import schema_problems, step_4_to_5
from prober.store.tables import OUTCOME_CODES, SCHEMA_VERSION
from prober.store.writer import Recorded
from tests.support.net import free_port
from tests.support.proc import ProberRun
from tests.support.sink import running_sink
from tests.test_remediation import gone, sample, script, started, write_config
from tests.test_remediation_live import (
    _alerts,
    _attempts,
    _query,
    _results_after,
    _serving_sync,
    _until,
    _up_results,
    config,
    kill,
    restart_script,
    service,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# -- schema 6: the command's process ---------------------------------------------------


def test_a_schema_5_file_is_upgraded_keeping_its_attempts(tmp_path: pathlib.Path) -> None:
    path, fresh = tmp_path / "prober.db", tmp_path / "fresh.db"
    open_engine(fresh).dispose()
    # version 5 as it was: the remediation table of step_4_to_5, holding an attempt
    open_engine(path).dispose()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE remediation")
    step_4_to_5(conn)
    conn.execute(
        "INSERT INTO remediation VALUES (7, 'api', 'default/api/1', 100, 200, 'failed', 3, 0,"
        " 'systemctl: no such unit\n')"
    )
    conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    open_engine(path).dispose()

    assert SCHEMA_VERSION == 7
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("7",)
    assert rows.for_incident(conn, "api", "default/api/1") == [
        rows.Attempt(7, "api", "default/api/1", 100, 200, "failed", 3, False,
                     "systemctl: no such unit\n", None, None, None)
    ]  # fmt: skip
    assert schema_problems(conn) == []  # what a new file gets, whitespace aside
    names = "SELECT type, name FROM sqlite_master ORDER BY name"
    assert conn.execute(names).fetchall() == sqlite3.connect(fresh).execute(names).fetchall()
    conn.close()
    (backup,) = tmp_path.glob("prober.db.v5-*.bak")
    assert backup.exists()


# -- a command orphaned by kill -9: killed at the next start, if it is still itself ----------


@contextlib.contextmanager
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, as a remediation command runs."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_an_orphan_is_killed_only_if_its_start_time_matches(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_config(
        tmp_path,
        """\
        [settings]
        allow_commands = true
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = { command = ["/bin/true"] }
        """,
    )
    started(cfg).close()  # the schema
    with sleeper() as reused, sleeper() as orphan:
        identity, other = process_start(orphan.pid), process_start(reused.pid)
        assert identity is not None
        assert other is not None
        conn = sqlite3.connect(cfg.database_path)
        # `reused` stands for a pid the system gave to someone else since the row was
        # written: a process with that pid runs, but it started at another time
        for incident, proc, start in (
            ("default/api/1", reused, other + 1),
            ("default/api/2", orphan, identity),
        ):
            attempt = rows.start(conn, "api", incident, 100)
            rows.record_process(conn, attempt, proc.pid, start)
        conn.commit()
        conn.close()

        remediator = started(cfg)
        try:
            with caplog.at_level(logging.WARNING, logger="prober.remediation"):
                found = await remediator.recover()
        finally:
            remediator.close()
        assert [a.result for a in found] == ["interrupted", "interrupted"]
        assert orphan.wait(30) == -signal.SIGTERM
        assert reused.poll() is None  # not ours any more: left alone
    killed = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert killed == [
        "remediation command still running after a restart monitor=api incident=default/api/2"
        f" pid={orphan.pid}: its process group killed"
    ]
    conn = sqlite3.connect(cfg.database_path)
    [(one,)] = conn.execute("SELECT output_tail FROM remediation WHERE incident LIKE '%/1'")
    [(two,)] = conn.execute("SELECT output_tail FROM remediation WHERE incident LIKE '%/2'")
    assert one == ""
    assert two == "[prober] still running at the prober's restart: its process group was killed\n"
    assert sample(remediator, "api", "interrupted") == 2.0


async def test_kill_9_then_restart_kills_the_orphaned_command(tmp_path: pathlib.Path) -> None:
    db, port = tmp_path / "prober.db", free_port()
    runs, children = tmp_path / "runs", tmp_path / "children"
    # the command's shell and the sleep it waits for: one process group
    hang = script(tmp_path, "restart-hangs", f"echo $$ >> {runs}\nsleep 300 &\necho $! > "
                  f"{children}\nwait\n")  # fmt: skip
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, pathlib.Path(hang))
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                await _until(
                    lambda: (
                        children.exists()
                        and children.read_text().strip()
                        and _query(db, "SELECT count(*) FROM remediation WHERE pid > 0") == [(1,)]
                    )
                )
            finally:
                run.stop(signal.SIGKILL)
            command, child = int(runs.read_text()), int(children.read_text())
            try:
                [(pid, pid_start)] = _query(db, "SELECT pid, pid_start FROM remediation")
                assert (pid, pid_start) == (command, process_start(command))
                assert not gone(command)
                assert not gone(child)  # the prober's death did not end them
                run = ProberRun(["run", "-c", str(cfg)], tmp_path)
                try:
                    await _until(lambda: gone(command) and gone(child))
                    run.wait_for("its process group killed")
                    [(start,)] = _query(db, "SELECT max(ts_ms) FROM result")
                    await _until(lambda: _results_after(db, start) >= 3)
                finally:
                    run.stop()
            finally:
                for leftover in (command, child):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leftover, signal.SIGKILL)
    assert len(runs.read_text().split()) == 1  # not run again for the same incident
    [(result, _, tail)] = _attempts(db)
    assert result == "interrupted"
    assert "its process group was killed" in tail
    assert "remediation command still running after a restart monitor=api" in run.log


# -- a verification cut by a stop: resumed by the next run ----------------------------------


async def test_resumed_verifications_are_judged_by_the_results_stored_then_by_new_ones(
    tmp_path: pathlib.Path,
) -> None:
    monitors = "".join(
        f"""
        [[monitors]]
        id = "{slug}"
        type = "http"
        url = "http://127.0.0.1:9/"
        interval = "1s"
        remediate = {{ command = ["/bin/true"], timeout = "10s", verify = 2 }}
        """
        for slug in "abcd"
    )
    cfg = write_config(
        tmp_path,
        '[settings]\nallow_commands = true\ndatabase = "sqlite:///prober.db"\n' + monitors,
    )
    started(cfg).close()  # the schema
    now = round(time.time() * 1000)
    conn = sqlite3.connect(cfg.database_path)
    conn.execute("INSERT INTO location (id, name) VALUES (1, 'default')")
    up, down = OUTCOME_CODES[Outcome.UP], OUTCOME_CODES[Outcome.DOWN]
    stored = {
        "a": (now - 8_000, [up, up]),  # verified before the stop: settled so
        "b": (now - 8_000, [up, down]),  # a down after the command: failed
        "c": (now - 60_000, []),  # longer ago than timeout + verify intervals: failed
        "d": (now - 2_000, [up]),  # one up of two: the next result decides
        "gone": (now - 2_000, []),  # no longer in the config: failed
    }
    for i, (slug, (ended, outcomes)) in enumerate(stored.items(), start=1):
        conn.execute("INSERT INTO monitor (id, slug, type) VALUES (?, ?, 'http')", (i, slug))
        attempt = rows.start(conn, slug, f"default/{slug}/1", ended - 500)
        rows.finish(conn, attempt, ended, result=rows.RUNNING, exit_code=0, timed_out=False,
                    output_tail="")  # fmt: skip
        for k, code in enumerate(outcomes, start=1):
            conn.execute(
                "INSERT INTO result (monitor_id, ts_ms, location_id, outcome) VALUES (?, ?, 1, ?)",
                (i, ended + 300 * k, code),
            )
    conn.commit()
    conn.close()

    def results() -> dict[str, str]:
        with contextlib.closing(sqlite3.connect(cfg.database_path)) as c:
            return dict(c.execute("SELECT monitor, result FROM remediation").fetchall())

    remediator = started(cfg)
    wakes: list[None] = []
    remedies = Remedies(cfg, remediator, lambda: wakes.append(None))
    try:
        await remediator.recover()
        remedies.start()
        await _until(lambda: results()["gone"] == "failed")
        assert results() == {
            "a": "verified",
            "b": "failed",
            "c": "failed",
            "d": "running",
            "gone": "failed",
        }
        remedies.recorded([Recorded("d", round(time.time() * 1000) + 1, Outcome.UP, None)])
        await _until(lambda: results()["d"] == "verified")
    finally:
        await remedies.stop()
        remediator.close()
    assert len(wakes) == 5
    assert sample(remediator, "a", "verified") == 1.0
    assert sample(remediator, "c", "failed") == 1.0


async def test_a_verification_cut_by_a_restart_is_resumed(tmp_path: pathlib.Path) -> None:
    db, port = tmp_path / "prober.db", free_port()
    with service(tmp_path, port) as pidfile:
        await _until(lambda: _serving_sync(port))
        async with running_sink() as sink:
            cfg = config(tmp_path, sink, port, restart_script(tmp_path, port))
            # four ups after the command: time enough to stop the prober before them
            cfg.write_text(cfg.read_text().replace("verify = 2", "verify = 4"))
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: _up_results(db) >= 1)
                kill(pidfile)
                ended = "SELECT count(*) FROM remediation WHERE ended_ms > 0"
                await _until(lambda: _query(db, ended) == [(1,)])
            finally:
                run.stop()  # SIGTERM
            assert [r[0] for r in _attempts(db)] == ["running"], "stopped too late"
            assert sink.received == []
            run = ProberRun(["run", "-c", str(cfg)], tmp_path)
            try:
                await _until(lambda: [r[0] for r in _attempts(db)] == ["verified"])
                done = ("sent", "failed", "suppressed")
                await _until(lambda: _alerts(db).get("resolved") in done)
            finally:
                run.stop()
    assert sink.received == []  # the opening was dropped: no alert, no resolution
    assert _alerts(db) == {"opened": "suppressed", "resolved": "suppressed"}
    [(resumed,)] = _query(db, "SELECT resumed_ms FROM remediation")
    assert resumed is not None
    assert "remediation verified: the checks after it succeed monitor=api" in run.log
