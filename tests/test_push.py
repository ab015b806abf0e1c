"""Push monitors: pings, deadlines, cron, start/end, exit codes, floods, tokens, restarts.

The hub is driven with a clock of the test's own (`now_ms` arguments); the routes and the
whole `prober run` are tested at the end over loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from yarl import URL

from prober import push
from prober.config import load_config
from prober.config.monitors import PushMonitor
from prober.push import BURST, PushHub
from prober.results import CheckResult
from prober.runtime import control
from prober.runtime.web import PushGate
from prober.store.db import open_engine
from prober.timeline import to_ms
from statuspage.app import create_app
from statuspage.health import Health
from tests.support.net import free_port

SEOUL = ZoneInfo("Asia/Seoul")
T0 = to_ms(dt.datetime(2026, 11, 23, 1, 0, tzinfo=SEOUL))
S = 1000
TOKEN = "t" * 32
Recorded = list[tuple[str, int, CheckResult]]


def monitor(**fields: object) -> PushMonitor:
    return PushMonitor.model_validate({"id": "job", "type": "push", **fields})


def hub(m: PushMonitor, now: int = T0, last: int | None = None) -> tuple[PushHub, Recorded]:
    got: Recorded = []
    h = PushHub(
        [m], {m.id: TOKEN}, "Asia/Seoul", lambda mid, at, r: got.append((mid, to_ms(at), r))
    )
    h.restore({} if last is None else {m.id: last}, now)
    return h, got


def outcomes(got: Recorded) -> list[tuple[int, str]]:
    return [(at - T0, r.outcome.value) for _, at, r in got]


def test_period_on_time_late_within_grace_and_missed() -> None:
    h, got = hub(monitor(period="1m", grace="30s"))
    assert h.receive(TOKEN, "", {}, T0 + 50 * S).status == 200
    assert h.receive(TOKEN, "", {}, T0 + 50 * S + 89 * S).status == 200  # 89 s later: in grace
    last = T0 + 139 * S
    assert h.overdue(last + 90 * S - 1) == []
    assert h.overdue(last + 90 * S) == ["job"]  # period + grace after the last ping
    assert h.overdue(last + 90 * S + 59 * S) == []
    assert h.overdue(last + 150 * S) == ["job"]  # still silent: down again a period later
    assert outcomes(got) == [(50 * S, "up"), (139 * S, "up"), (229 * S, "down"), (289 * S, "down")]
    assert got[2][2].error == "no ping within 1m + 30s grace"


def test_cron_expected_at_each_fire_time() -> None:
    h, got = hub(monitor(cron="0 3 * * *", grace="2m"))  # T0 is 01:00 in Seoul
    three = to_ms(dt.datetime(2026, 11, 23, 3, 0, tzinfo=SEOUL))
    assert h.overdue(three + 2 * 60 * S - 1) == []
    assert h.overdue(three + 2 * 60 * S) == ["job"]
    assert (
        got[0][2].error == "no ping for the 2026-11-23 03:00 KST run (cron '0 3 * * *', grace 2m)"
    )
    day = 86_400 * S
    assert h.receive(TOKEN, "", {}, three + day - 30 * S).status == 200  # a little early: counts
    assert h.overdue(three + day + 3 * 60 * S) == []
    assert h.overdue(three + 2 * day + 2 * 60 * S) == ["job"]  # the next night is missed


def test_start_without_end_and_a_run_with_its_duration() -> None:
    h, got = hub(monitor(period="1h", grace="5m"))
    assert h.receive(TOKEN, "start", {"rid": "a"}, T0).status == 200
    assert h.receive(TOKEN, "", {"rid": "a"}, T0 + 42 * S).status == 200
    assert got[-1][2].latency_ms == 42_000
    assert h.receive(TOKEN, "start", {}, T0 + 100 * S).status == 200
    assert h.overdue(T0 + 100 * S + 5 * 60 * S) == ["job"]  # started, never finished
    assert got[-1][2].error == "started, not finished within the 5m grace"
    assert got[-1][1] == T0 + 100 * S + 5 * 60 * S


def test_exit_codes_fail_status_and_messages() -> None:
    h, got = hub(monitor(period="1h"))
    assert h.receive(TOKEN, "0", {"msg": "backup ok"}, T0 + 1).status == 200
    assert h.receive(TOKEN, "3", {"msg": "disk\nfull"}, T0 + 2).status == 200
    assert h.receive(TOKEN, "fail", {}, T0 + 3).status == 200
    assert h.receive(TOKEN, "", {"status": "degraded", "latency_ms": "12.5"}, T0 + 4).status == 200
    assert h.receive(TOKEN, "", {"msg": "x" * 5000, "status": "down"}, T0 + 5).status == 200
    results = [r for _, _, r in got]
    assert [r.outcome.value for r in results] == ["up", "down", "down", "degraded", "down"]
    assert results[0].details == {"push": "0", "msg": "backup ok"}
    assert results[1].error == "exit code 3: disk full"
    assert results[2].error == "reported down"
    assert results[3].latency_ms == 12.5
    assert results[4].error == "x" * push.MSG_LIMIT


def test_bad_requests() -> None:
    h, got = hub(monitor(period="1h"))
    assert h.receive("u" * 32, "", {}, T0).status == 404  # unknown token
    assert h.receive("", "", {}, T0).status == 404
    assert h.receive(TOKEN + "x", "", {}, T0).status == 404
    assert h.receive(TOKEN, "reboot", {}, T0).status == 404
    assert h.receive(TOKEN, "1234", {}, T0).status == 404  # exit codes have at most 3 digits
    assert h.receive(TOKEN, "", {"status": "sideways"}, T0).status == 400
    assert h.receive(TOKEN, "", {"latency_ms": "soon"}, T0).status == 400
    assert h.receive(TOKEN, "", {"latency_ms": "-5"}, T0).status == 400
    assert got == []


NOT_EXIT_CODES = ["²", "٣", "３", "1234", "-1", "+1", " 1", "1\n", "0x1", "1_0"]


@pytest.mark.parametrize("action", NOT_EXIT_CODES)
def test_exit_codes_are_one_to_three_ascii_digits(action: str) -> None:
    h, got = hub(monitor(period="1h"))
    assert h.receive(TOKEN, action, {}, T0).status == 404  # str.isdigit takes "²", "٣", "３"
    assert got == []
    assert h.receive(TOKEN, "007", {}, T0).status == 200
    assert got[0][2].error == "exit code 7"


def test_a_flood_is_refused_and_stores_nothing_more() -> None:
    h, got = hub(monitor(period="1h"))
    answers = [h.receive(TOKEN, "", {}, T0 + i).status for i in range(100)]
    assert answers.count(200) == BURST
    assert answers.count(429) == 100 - BURST
    assert len(got) == BURST
    assert h.receive(TOKEN, "", {}, T0 + 2 * S).status == 200  # the bucket refills, 1 a second


def test_restart_across_a_deadline_is_judged_at_start() -> None:
    m = monitor(period="1m", grace="30s")
    last = T0 - 10 * 60 * S  # the last ping, 10 minutes before the prober came back
    h, got = hub(m, now=T0, last=last)
    assert h.overdue(T0) == ["job"]
    assert outcomes(got) == [(0, "down")]  # at start, not at the deadline: stopped time is unknown
    assert "passed while the prober was stopped" in (got[0][2].error or "")
    assert h.overdue(T0 + 59 * S) == []
    assert h.overdue(T0 + 60 * S) == ["job"]


def test_restart_before_the_deadline_keeps_it() -> None:
    h, _ = hub(monitor(period="1m", grace="30s"), now=T0, last=T0 - 30 * S)
    assert h.overdue(T0 + 59 * S) == []
    assert h.overdue(T0 + 60 * S) == ["job"]


def test_tokens_generated_once_kept_and_config_wins(tmp_path: pathlib.Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE push_token (monitor TEXT PRIMARY KEY, token TEXT)")
    made = push.ensure_tokens(conn, [monitor(period="1h")])
    assert len(made["job"]) >= 32  # 24 random bytes, URL-safe
    assert push.ensure_tokens(conn, [monitor(period="1h")]) == made
    chosen = monitor(period="1h", token="my-own-token-of-32-characters-xx")
    assert push.ensure_tokens(conn, [chosen]) == {"job": "my-own-token-of-32-characters-xx"}
    assert push.urls("https://status.example.com/", made) == {
        "job": f"https://status.example.com/push/{made['job']}"
    }


# -- the routes and the whole process ---------------------------------------------------


async def test_push_gate_refuses_what_is_no_exit_code_before_forwarding(
    tmp_path: pathlib.Path, aiohttp_client: AiohttpClient
) -> None:
    h, got = hub(monitor(period="1h"))
    forwarded: list[str] = []

    def receive(token: str, action: str, query: Mapping[str, str]) -> tuple[int, str]:
        forwarded.append(action)
        return tuple(h.receive(token, action, query, T0))  # type: ignore[return-value]

    handlers = control.Handlers(
        state=lambda: pytest.fail("not asked"),
        push=receive,
        health=dict,
        metrics=bytes,
        ready=lambda pid: None,
    )
    with tempfile.TemporaryDirectory(prefix="prober-") as private:  # short: a socket path
        path = pathlib.Path(private) / "control.sock"
        runner = web.AppRunner(control.server(handlers))
        await runner.setup()
        await web.UnixSite(runner, str(path)).start()
        channel = control.Client(path)
        gate = PushGate(channel, frozenset({push.digest(TOKEN)}))
        (tmp_path / "monitors.toml").write_text("[settings]\n")
        config = load_config(tmp_path / "monitors.toml")
        open_engine(config.database_path).dispose()  # the page's (empty) database
        client = await aiohttp_client(
            create_app(config, Health(lambda: True, lambda: True), push_receiver=gate.receive)
        )
        try:
            for action in ("%C2%B2", "%D9%A3", "%EF%BC%93", "1234", "-1", "1%0A"):
                url = URL(f"/push/{TOKEN}/{action}", encoded=True)
                async with client.get(url) as response:
                    assert response.status == 404, action
            assert forwarded == []  # refused in the web process: the probing loop never asked
            async with client.get(f"/push/{TOKEN}/3") as response:
                assert response.status == 200
            assert forwarded == ["3"]
            assert got[0][2].error == "exit code 3"
        finally:
            await client.close()
            await channel.close()
            await runner.cleanup()


async def test_prober_run_receives_pings_and_records_silence(tmp_path: pathlib.Path) -> None:
    port = free_port()
    config = tmp_path / "monitors.toml"
    config.write_text(f"""
[settings]
listen = "127.0.0.1:{port}"
metrics = {{ listen = "" }}
public_url = "http://127.0.0.1:{port}"

[[monitors]]
id = "nightly"
type = "push"
period = "2s"
grace = "1s"
down_after = 1
""")
    urls = subprocess.run(
        [sys.executable, "-m", "prober", "push-urls", "-c", str(config)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    monitor_id, url = urls.split()
    assert monitor_id == "nightly" and url.startswith(f"http://127.0.0.1:{port}/push/")
    process = subprocess.Popen(
        [sys.executable, "-m", "prober", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with session.get(url + "/start?rid=r1") as r:
                assert (r.status, await r.text()) == (200, "OK\n")
            async with session.post(url + "?rid=r1&msg=done", data=b"x" * 100_000) as r:
                assert r.status == 200
            async with session.get(url.rsplit("/", 1)[0] + "/" + "n" * 32) as r:
                assert r.status == 404
            await asyncio.sleep(4.5)  # silence: 2 s + 1 s grace, then every 2 s
            for _ in range(100):  # the page catches up within its rebuild spacing (5 s)
                async with session.get(f"http://127.0.0.1:{port}/api/v1/status") as r:
                    status = await r.json()
                if status["monitors"][0]["state"] == "down":
                    break
                await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    db = sqlite3.connect(tmp_path / "data" / "prober.db")
    rows = db.execute("SELECT outcome, error FROM result ORDER BY ts_ms").fetchall()
    db.close()
    assert rows[0] == (1, None)  # the ping
    assert [o for o, _ in rows[1:]] == [3] * (len(rows) - 1) and len(rows) >= 2
    assert rows[1][1] == "no ping within 2s + 1s grace"
    [nightly] = status["monitors"]
    assert nightly["state"] == "down"
    assert url.rsplit("/", 1)[1] not in str(status)  # the token is never on a public route


@pytest.mark.parametrize("action", ["", "/start", "/fail", "/0", "/1"])
def test_every_route_form_is_known(action: str) -> None:
    h, _ = hub(monitor(period="1h"))
    assert h.receive(TOKEN, action.lstrip("/"), {}, T0).status == 200
