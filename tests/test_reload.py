"""Live reload of a running `prober run`: added, removed and changed monitors; state,
open incidents and sent alerts survive; an invalid config is refused and changes nothing."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from prober.cli import main
from tests.support.net import free_port
from tests.support.sink import Sink, running_sink


@asynccontextmanager
async def targets() -> AsyncIterator[str]:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def fine(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/broken", broken)
    app.router.add_get("/fine", fine)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _write(
    path: pathlib.Path, base: str, sink: Sink, listen: int, monitors: list[tuple[str, str, str]]
) -> None:
    text = f"""
[settings]
listen = "127.0.0.1:{listen}"
metrics = {{ listen = "" }}
alert_group_wait = "0s"

[defaults]
down_after = 1
notify = ["hook"]
timeout = "500ms"

[[notifiers]]
id = "hook"
type = "webhook"
url = "{sink.url}"
"""
    for mid, route, interval in monitors:
        text += f'\n[[monitors]]\nid = "{mid}"\ntype = "http"\nurl = "{base}/{route}"\ninterval = "{interval}"\n'
    path.write_text(text)


def _count(db: pathlib.Path, sql: str, *args: object) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        (n,) = conn.execute(sql, args).fetchone()
        return int(n)
    finally:
        conn.close()


def _results(db: pathlib.Path, monitor: str) -> int:
    return _count(
        db,
        "SELECT count(*) FROM result r JOIN monitor m ON m.id = r.monitor_id WHERE m.slug = ?",
        monitor,
    )


async def _until(predicate: object, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.1)


async def test_reload_adds_removes_changes_and_keeps_state(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "monitors.toml"
    db = tmp_path / "data" / "prober.db"
    log = tmp_path / "run.log"
    async with targets() as base, running_sink() as sink:
        listen = free_port()
        _write(config, base, sink, listen, [("api", "broken", "1s"), ("old", "fine", "1s")])
        with log.open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "prober", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ},
            )  # fmt: skip
        try:
            await sink.wait_for(1, within=20)  # api's incident opened and was alerted
            await _until(lambda: _results(db, "old") >= 2)
            _write(config, base, sink, listen, [("api", "broken", "2s"), ("new", "fine", "1s")])
            assert await asyncio.to_thread(main, ["reload", "-c", str(config)]) == 0
            await _until(lambda: "config reloaded" in log.read_text())
            assert "added=1 removed=1 changed=1" in log.read_text()
            await _until(lambda: _results(db, "new") >= 2)
            old_then = _results(db, "old")
            api_then = _results(db, "api")
            await asyncio.sleep(3)
            assert _results(db, "old") == old_then  # stopped; its history stays
            assert old_then >= 2
            assert 1 <= _results(db, "api") - api_then <= 3  # every 2 s now, not every 1 s

            # An invalid config: `prober reload` refuses to send it; a SIGHUP is refused too.
            good = config.read_text()
            config.write_text(
                good + '\n[[monitors]]\nid = "bad"\ntype = "http"\nurl = "x"\nintervall = "1s"\n'
            )
            assert await asyncio.to_thread(main, ["reload", "-c", str(config)]) == 1
            process.send_signal(signal.SIGHUP)
            await _until(lambda: "reload refused" in log.read_text())
            new_then = _results(db, "new")
            await _until(lambda: _results(db, "new") > new_then)  # still running the old config
            assert process.poll() is None
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
        await asyncio.sleep(0.5)
    text = log.read_text()
    assert "intervall" in text  # the refusal says what is wrong
    # The open incident survived the reload: one incident, still open, alerted once.
    assert _count(db, "SELECT count(*) FROM incident") == 1
    assert _count(db, "SELECT count(*) FROM incident WHERE end_ms IS NULL") == 1
    assert [r.json()["kind"] for r in sink.received] == ["opened"]
    assert not (tmp_path / "data" / "prober.pid").exists()  # removed at a clean stop


def test_reload_without_a_running_prober(tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "monitors.toml"
    config.write_text('[[monitors]]\nid = "a"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n')
    assert main(["reload", "-c", str(config)]) == 1
    assert "no running prober found" in capsys.readouterr().err
