"""`prober run` as processes: the web process cannot delay a check, is restarted when it
dies and leaves with its parent; /metrics only on its own listener; one run per database;
SIGTERM at any moment exits 0; a busy port is one line. Every test runs the real command
and waits for what it logs."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from prober.scheduler import lateness
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target, until

INTERVAL = 1.0


@pytest.fixture
def target(tmp_path: pathlib.Path) -> Iterator[int]:
    """A healthy HTTP target on loopback, in its own process (nothing here can slow it)."""
    with http_target(tmp_path / "www") as port:
        yield port


def _config(
    tmp_path: pathlib.Path, target: int, listen: int, monitors: int = 3, metrics: int | None = None
) -> pathlib.Path:
    """`metrics`: the metrics listener's port (None: off, so tests never meet on 9108)."""
    scrape = "" if metrics is None else f"127.0.0.1:{metrics}"
    body = f"""
        [settings]
        listen = "127.0.0.1:{listen}"
        metrics = {{ listen = "{scrape}" }}
        database = "sqlite:///data/prober.db"

        [[monitors]]
        id = "beat"
        type = "push"
        period = "1h"
        token = "runtime-test-token-0123456789abcdef"
        """
    for i in range(monitors):
        body += f"""
        [[monitors]]
        id = "web-{i}"
        type = "http"
        url = "http://127.0.0.1:{target}/ok"
        interval = "{INTERVAL:g}s"
        timeout = "900ms"
        """
    path = tmp_path / "monitors.toml"
    path.write_text(textwrap.dedent(body))
    return path


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _web_pid(run: ProberRun, after: int = 0) -> int:
    line = run.wait_for("status page ready pid=", after=after)
    found = re.search(r"status page ready pid=(\d+)", run.log.splitlines()[line])
    assert found is not None
    return int(found.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own zombie
            return False
    return True


def _results(db: pathlib.Path) -> list[tuple[str, int, int, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT m.slug, r.ts_ms, r.outcome, r.error FROM result r"
            " JOIN monitor m ON m.id = r.monitor_id ORDER BY r.ts_ms"
        ).fetchall()
    finally:
        conn.close()


def test_a_slow_page_build_never_makes_a_check_late(tmp_path: pathlib.Path, target: int) -> None:
    """Every page render burns a second of CPU holding the GIL (patched in through
    sitecustomize, in whichever process renders), and visitors ask for fresh renders all
    the time. The checks stay on their grid and up: the page is another process."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    calls = tmp_path / "renders.txt"
    (hooks / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import os, time
            import statuspage.pages as pages

            real = pages.render_index

            def slow(*args, **kwargs):
                with open({str(calls)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                end = time.process_time() + 1.0
                while time.process_time() < end:  # pure Python: holds the GIL
                    pass
                return real(*args, **kwargs)

            pages.render_index = slow
            """
        )
    )
    listen = free_port()
    _config(tmp_path, target, listen)
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = ProberRun(["run"], tmp_path, env=env)
    try:
        web = _web_pid(run)
        run.wait_for("prober running")
        db = tmp_path / "data" / "prober.db"
        until(lambda: len(_results(db)) >= 3 * 8, within=60)  # ~8 s of checks
        visits = 0

        def visit() -> bool:
            """Visitors (each language a render of its own), until renders of at least two
            snapshots were seen (refreshes are spaced by 10x their render cost)."""
            nonlocal visits
            visits += 1
            _get(f"http://127.0.0.1:{listen}/?lang={'ko' if visits % 2 else 'en'}", timeout=30)
            return calls.exists() and len(calls.read_text().split()) >= 3

        until(visit, within=120, every=0.5)
        until(lambda: len(_results(db)) >= 3 * 16, within=60)
        assert run.stop() == 0, run.log
    finally:
        run.stop()
    renders = [int(line) for line in calls.read_text().split()]
    assert len(renders) >= 3 and set(renders) == {web}  # slow, and only in the web process
    rows = [r for r in _results(db) if r[0] != "beat"]
    assert {outcome for _, _, outcome, _ in rows} == {1}, rows  # all up
    late = [lateness(mid, INTERVAL, _at(ts)) for mid, ts, _, _ in rows]
    assert max(late) < 0.25, sorted(late)[-5:]


def _at(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


def test_web_process_is_restarted_and_leaves_with_its_parent(
    tmp_path: pathlib.Path, target: int
) -> None:
    listen, scrape = free_port(), free_port()
    _config(tmp_path, target, listen, monitors=1, metrics=scrape)
    run = ProberRun(["run"], tmp_path)
    try:
        first = _web_pid(run)
        line = run.wait_for("prober running")
        assert f"metrics=http://127.0.0.1:{scrape}/metrics " in run.log.splitlines()[line]
        mark = run.lines()
        os.kill(first, signal.SIGKILL)
        run.wait_for(f"status page process pid={first} exited", after=mark)
        second = _web_pid(run, after=mark)
        assert second != first
        status, body = _get(f"http://127.0.0.1:{listen}/")
        assert status == 200 and b"web-0" in body
        status, _ = _get(f"http://127.0.0.1:{listen}/push/runtime-test-token-0123456789abcdef")
        assert status == 200  # heartbeats go through the new web process
        db = tmp_path / "data" / "prober.db"
        until(lambda: any(slug == "beat" for slug, *_ in _results(db)))
        status, _ = _get(f"http://127.0.0.1:{listen}/push/not-a-token")
        assert status == 404
        status, health = _get(f"http://127.0.0.1:{listen}/healthz")
        assert status == 200 and b'"scheduler_running":true' in health
        status, _ = _get(f"http://127.0.0.1:{listen}/metrics")
        assert status == 404  # never on the public listener
        status, scraped = _get(f"http://127.0.0.1:{scrape}/metrics")
        assert status == 200
        assert b"prober_checks_overloaded_total 0.0" in scraped  # the probing process's
        assert b"probe_success{" in scraped  # and the page's own
        # kill -9 of the parent: the web process goes too, and frees the port.
        run.stop(signal.SIGKILL)
        until(lambda: not _alive(second), within=15)
    finally:
        run.stop()
    again = ProberRun(["run"], tmp_path)  # the stale pid file is taken over
    try:
        again.wait_for("prober running")
        status, body = _get(f"http://127.0.0.1:{listen}/healthz")
        assert status == 200, body
    finally:
        assert again.stop() == 0, again.log


def _refused(where: pathlib.Path) -> list[str]:
    """`prober run` that must not start: exit 1, and its lines other than config warnings."""
    done = subprocess.run(
        [sys.executable, "-m", "prober", "run"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    return [line for line in done.stderr.splitlines() if not line.startswith("warning:")]


def test_one_run_per_database(tmp_path: pathlib.Path, target: int) -> None:
    _config(tmp_path, target, free_port(), monitors=1)
    first = ProberRun(["run"], tmp_path)
    try:
        line = first.wait_for("prober running")
        assert " metrics=off " in first.log.splitlines()[line]  # `listen = ""`: no listener
        assert _refused(tmp_path) == [
            f"prober: another prober run (pid {first.proc.pid}) is using data/prober.db;"
            " stop it first"
        ]
    finally:
        assert first.stop() == 0, first.log


def test_a_busy_port_is_one_line(tmp_path: pathlib.Path, target: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _config(tmp_path, target, port, monitors=1)
        refusal = _refused(tmp_path)
    assert refusal == [f"prober: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert not (tmp_path / "data" / "prober.pid").exists()


def test_a_busy_metrics_port_is_one_line(tmp_path: pathlib.Path, target: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _config(tmp_path, target, free_port(), monitors=1, metrics=port)
        refusal = _refused(tmp_path)
    assert refusal == [
        f"prober: cannot listen on 127.0.0.1:{port} (metrics): address already in use"
    ]
    assert not (tmp_path / "data" / "prober.pid").exists()


@pytest.mark.parametrize(
    "moment",
    [
        "warning:",  # config loaded, logging not set up yet
        "scheduler started",  # the web process may not be up
        "prober running",
        "status page ready",
    ],
)
def test_sigterm_at_any_moment_exits_0(tmp_path: pathlib.Path, target: int, moment: str) -> None:
    _config(tmp_path, target, free_port(), monitors=2)
    run = ProberRun(["run"], tmp_path)
    try:
        run.wait_for(moment)
    finally:
        code = run.stop()
    assert code == 0, run.log
    assert "Traceback" not in run.log, run.log
    assert not (tmp_path / "data" / "prober.pid").exists()
