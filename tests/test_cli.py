"""The `prober` command line, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.net import free_port
from tests.support.proc import until

ROOT = pathlib.Path(__file__).resolve().parent.parent


def prober(
    *args: str, cwd: pathlib.Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prober", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def http_target() -> Iterator[int]:
    """A real HTTP server in another process: /ok answers 200, anything else 404."""
    port = free_port()
    code = textwrap.dedent(
        f"""
        from aiohttp import web
        async def ok(request):
            return web.json_response({{"status": "healthy"}})
        app = web.Application()
        app.router.add_get("/ok", ok)
        web.run_app(app, host="127.0.0.1", port={port}, print=None)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def write_config(tmp_path: pathlib.Path, body: str) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_validate_ok_and_errors(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path, '[[monitors]]\nid = "a"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 1\n')
    ok = prober("validate", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ok (1 monitor, 0 notifiers, 0 maintenance windows)" in ok.stdout
    assert "canaries is empty" in ok.stderr

    write_config(
        tmp_path,
        '[[monitors]]\nid = "a"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 0\ntimout = "1s"\n',
    )
    bad = prober("validate", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "monitors.toml:5: monitors[0].port: 0 is not a port (1-65535)",
        "monitors.toml:6: monitors[0].timout: unknown key (did you mean 'timeout'?)",
    ]


def test_counts_agree_with_their_nouns(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prober.cli import counted, main

    assert [counted(n, "monitor") for n in (0, 1, 2, 1000)] == [
        "0 monitors",
        "1 monitor",
        "2 monitors",
        "1,000 monitors",
    ]
    path = write_config(
        tmp_path,
        """
        [[monitors]]
        id = "a"
        type = "tcp"
        host = "127.0.0.1"
        port = 1

        [[monitors]]
        id = "b"
        type = "tcp"
        host = "127.0.0.1"
        port = 2

        [[notifiers]]
        id = "ops"
        type = "webhook"
        url = "http://127.0.0.1:9/hook"

        [[maintenance]]
        title = "DB upgrade"
        monitors = ["a"]
        start = "2026-12-01T02:00:00+09:00"
        end = "2026-12-01T03:00:00+09:00"
        """,
    )
    assert main(["validate", "-c", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}: ok (2 monitors, 1 notifier, 1 maintenance window)\n"
    )


def test_config_from_env_and_missing_file(tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[settings]\ntitle = "x"\n')
    assert prober("validate", cwd=tmp_path, env={"PROBER_CONFIG": str(other)}).returncode == 0
    missing = prober("validate", "-c", "nope.toml", cwd=tmp_path)
    assert missing.returncode == 1
    assert "nope.toml: no such file" in missing.stderr


def test_check_json_and_exit_codes(tmp_path: pathlib.Path, http_target: int) -> None:
    closed = free_port()
    write_config(
        tmp_path,
        f"""
        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:{http_target}/ok"
        json = ['status == "healthy"']

        [[monitors]]
        id = "gone"
        type = "tcp"
        host = "127.0.0.1"
        port = {closed}
        """,
    )
    up = prober("check", "api", "--json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    line = json.loads(up.stdout)
    assert set(line) == {"id", "outcome", "latency_ms", "error", "details"}
    assert line["id"] == "api" and line["outcome"] == "up" and line["error"] is None
    assert line["details"]["status_code"] == 200
    assert "connect_ms" in line["details"]["phases"]

    both = prober("check", "--all", "--json", cwd=tmp_path)
    assert both.returncode == 1
    outcomes = {o["id"]: o["outcome"] for o in map(json.loads, both.stdout.splitlines())}
    assert outcomes == {"api": "up", "gone": "down"}

    text = prober("check", "gone", cwd=tmp_path)
    assert text.returncode == 1
    assert "connection refused" in text.stdout


PUSH_LISTED = "push monitor: it reports in to /push/TOKEN, so it cannot be checked from here"


def test_check_all_lists_push_monitors_as_unknown(tmp_path: pathlib.Path, http_target: int) -> None:
    write_config(
        tmp_path,
        f"""
        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:{http_target}/ok"

        [[monitors]]
        id = "nightly"
        type = "push"
        period = "1d"
        """,
    )
    as_json = prober("check", "--all", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr  # an unknown push monitor fails nothing
    api, nightly = map(json.loads, as_json.stdout.splitlines())
    assert (api["id"], api["outcome"]) == ("api", "up")
    assert nightly == {
        "id": "nightly",
        "outcome": "unknown",
        "latency_ms": None,
        "error": PUSH_LISTED,
        "details": {},
    }

    as_text = prober("check", "--all", cwd=tmp_path)
    assert as_text.returncode == 0, as_text.stderr
    first, second = as_text.stdout.splitlines()[0], as_text.stdout.splitlines()[-1]
    assert first.split()[:2] == ["api", "up"]
    assert second.split()[:3] == ["nightly", "unknown", "-"]
    assert second.endswith(PUSH_LISTED)


def test_check_all_on_a_hub_with_agents_says_where_it_runs(
    tmp_path: pathlib.Path, http_target: int
) -> None:
    write_config(
        tmp_path,
        f"""
        [settings]
        location = "seoul"

        [[agents]]
        location = "frankfurt"
        token = "9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:{http_target}/ok"
        """,
    )
    said = "checking 1 monitors from seoul (this hub; agents' locations are not probed by check)"
    as_text = prober("check", "--all", cwd=tmp_path)
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stdout.splitlines()[0] == said
    assert as_text.stdout.splitlines()[1].split()[:2] == ["api", "up"]
    as_json = prober("check", "--all", "--json", cwd=tmp_path)
    assert [json.loads(line)["id"] for line in as_json.stdout.splitlines()] == ["api"]
    assert said in as_json.stderr


def test_check_json_of_a_timeout_has_no_first_byte(tmp_path: pathlib.Path) -> None:
    with socket.socket() as stuck:  # the kernel accepts connections; nobody ever answers
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(8)
        port = stuck.getsockname()[1]
        write_config(
            tmp_path,
            f"""
            [[monitors]]
            id = "stuck"
            type = "http"
            url = "http://127.0.0.1:{port}/"
            interval = "10s"
            timeout = "1s"
            """,
        )
        out = prober("check", "--all", "--json", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    line = json.loads(out.stdout)
    assert line["error"] == "timed out after 1s waiting for the response"
    assert list(line["details"]["phases"]) == ["connect_ms"]


def test_usage_errors_exit_2(tmp_path: pathlib.Path) -> None:
    write_config(tmp_path, '[[monitors]]\nid = "api"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 1\n')
    assert prober("check", cwd=tmp_path).returncode == 2
    unknown = prober("check", "apj", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "did you mean 'api'" in unknown.stderr
    assert prober("frobnicate", cwd=tmp_path).returncode == 2


def test_run_serves_healthz_records_results_and_stops_on_sigterm(
    tmp_path: pathlib.Path, http_target: int
) -> None:
    port = free_port()
    write_config(
        tmp_path,
        f"""
        [settings]
        listen = "127.0.0.1:{port}"
        metrics = {{ listen = "" }}
        database = "sqlite:///db/prober.db"
        location = "test-box"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:{http_target}/ok"
        interval = "1s"
        timeout = "500ms"
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "prober", "run"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    body = resp.read().decode()
                    headers = resp.headers
                break
            except OSError:
                time.sleep(0.1)
        health = json.loads(body)
        assert (health["status"], health["problems"]) == ("ok", [])
        assert health["scheduler_running"] and health["database_writable"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        until(lambda: _count_results(tmp_path / "db" / "prober.db") >= 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "stopped results_committed=" in stderr
    conn = sqlite3.connect(tmp_path / "db" / "prober.db")
    rows = conn.execute(
        "SELECT r.outcome, l.name FROM result r JOIN location l ON l.id = r.location_id"
    ).fetchall()
    conn.close()
    assert len(rows) >= 2
    assert {name for _, name in rows} == {"test-box"}
    assert {outcome for outcome, _ in rows} == {1}  # up


def _count_results(db: pathlib.Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM result").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def test_shipped_example_config_is_valid_and_loopback_only() -> None:
    from prober.config import load_config
    from prober.config.monitors import HttpMonitor, TcpMonitor

    config = load_config(ROOT / "monitors.toml")
    assert config.monitors
    for m in config.monitors:
        if isinstance(m, HttpMonitor):
            assert m.url.startswith("http://127.0.0.1:")
        elif isinstance(m, TcpMonitor):
            assert m.host == "127.0.0.1"
    assert config.settings.listen == "127.0.0.1:8080"


def test_statuspage_never_imports_the_engine() -> None:
    import ast

    for path in (ROOT / "statuspage").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(
                    ("prober.checks", "prober.scheduler", "prober.service")
                ), f"{path.name} imports {name}"
