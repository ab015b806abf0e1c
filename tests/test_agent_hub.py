"""The hub's side of agents, against a real `prober run` on loopback with two [[agents]]:
batches posted as an agent posts them (aiohttp), stored once under the agent's location;
forged tokens, wrong locations, clocks off, unassigned monitors and malformed batches
refused as the protocol says; the assignment with its ETag and secrets (for the agent
only); the agents' health on /healthz, /metrics and in the log."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import re
import secrets
import sqlite3
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from prober.agent import wire
from prober.agent.assign import decode_assignment
from prober.agent.hub import AgentHealth, AgentTokens, silence_from_env
from prober.config import Config, load_config
from prober.config.monitors import HttpMonitor
from prober.results import Outcome
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target, until

FRANKFURT = secrets.token_hex(16)
VIRGINIA = secrets.token_hex(16)
API_SECRET = "s3cret-" + secrets.token_hex(12)
SILENCE = 2.0  # seconds: PROBER_AGENT_SILENCE, so silence shows within the test


class Hub:
    def __init__(self, run: ProberRun, root: pathlib.Path, listen: int, scrape: int) -> None:
        self.run = run
        self.db = root / "data" / "prober.db"
        self.url = f"http://127.0.0.1:{listen}"
        self.metrics = f"http://127.0.0.1:{scrape}/metrics"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with _running_hub(tmp_path_factory.mktemp("hub")) as running:
        yield running


@contextlib.contextmanager
def _running_hub(root: pathlib.Path) -> Iterator[Hub]:
    listen, scrape = free_port(), free_port()
    with http_target(root / "www") as target:
        (root / "monitors.toml").write_text(
            textwrap.dedent(
                f"""
                [settings]
                location = "seoul"
                listen = "127.0.0.1:{listen}"
                metrics = {{ listen = "127.0.0.1:{scrape}" }}
                database = "sqlite:///data/prober.db"

                [[agents]]
                location = "frankfurt"
                token = "${{FRANKFURT_TOKEN}}"
                [[agents]]
                location = "virginia"
                token = "${{VIRGINIA_TOKEN}}"

                [[monitors]]
                id = "api"
                type = "http"
                url = "http://127.0.0.1:{target}/ok"
                headers = {{ X-Api-Key = "${{API_SECRET}}" }}
                interval = "1h"
                locations = ["frankfurt", "virginia"]

                [[monitors]]
                id = "home"
                type = "http"
                url = "http://127.0.0.1:{target}/ok"
                interval = "1h"
                locations = ["seoul"]

                [[monitors]]
                id = "beat"
                type = "push"
                period = "1h"
                """
            )
        )
        env = {
            **os.environ,
            "FRANKFURT_TOKEN": FRANKFURT,
            "VIRGINIA_TOKEN": VIRGINIA,
            "API_SECRET": API_SECRET,
            "PROBER_AGENT_SILENCE": f"{SILENCE:g}",
        }
        run = ProberRun(["run"], root, env=env)
        try:
            run.wait_for("prober running")
            yield Hub(run, root, listen, scrape)
            if run.proc.poll() is None:
                assert run.stop() == 0, run.log
        finally:
            run.stop()
        for token in (FRANKFURT, VIRGINIA, API_SECRET):
            assert token not in run.log


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _result(monitor: str, ts_ms: int, outcome: Outcome = Outcome.UP) -> wire.WireResult:
    return wire.WireResult(monitor=monitor, ts_ms=ts_ms, outcome=outcome, latency_us=12_345)


def _batch(
    results: list[wire.WireResult],
    location: str = "frankfurt",
    sent_ms: int | None = None,
    seq: int = 1,
) -> bytes:
    sent = _now_ms() if sent_ms is None else sent_ms
    return wire.encode(wire.Batch(location, sent, seq, 0, 0, tuple(results)))


async def _post(
    hub: Hub,
    body: bytes,
    token: str | None = FRANKFURT,
    gzipped: bool = False,
    encoding: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if gzipped:
        body = gzip.compress(body)
        encoding = "gzip"
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{hub.url}/api/agent/v1/results", data=body, headers=headers) as answer,
    ):
        assert answer.headers["Cache-Control"] == "no-store"
        assert "Server" not in answer.headers
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        return answer.status, await answer.json()


def _stored(hub: Hub, monitor: str) -> list[tuple[str, int, int]]:
    """(location, ts_ms, outcome) of a monitor's stored results."""
    conn = sqlite3.connect(hub.db)
    try:
        return conn.execute(
            "SELECT l.name, r.ts_ms, r.outcome FROM result r"
            " JOIN monitor m ON m.id = r.monitor_id JOIN location l ON l.id = r.location_id"
            " WHERE m.slug = ? ORDER BY r.ts_ms",
            (monitor,),
        ).fetchall()
    finally:
        conn.close()


async def _get(url: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status, answer.headers.copy(), await answer.read()


async def test_a_batch_sent_twice_is_stored_once(hub: Hub) -> None:
    base = _now_ms() - 60_000
    results = [
        _result("api", base + i * 1000, Outcome.DOWN if i == 1 else Outcome.UP) for i in range(3)
    ]
    body = _batch(results, seq=7)
    assert await _post(hub, body) == (200, {"accepted": 3, "duplicates": 0, "refused": []})
    # the agent did not hear the answer and sends the same batch again (gzipped, this time)
    assert await _post(hub, body, gzipped=True) == (
        200,
        {"accepted": 0, "duplicates": 3, "refused": []},
    )
    expected = [("frankfurt", r.ts_ms, o) for r, o in zip(results, (1, 3, 1), strict=True)]
    sent = {r.ts_ms for r in results}
    until(lambda: [row for row in _stored(hub, "api") if row[1] in sent] == expected)


async def test_a_forged_or_missing_token_is_401_and_never_logged(hub: Hub) -> None:
    forged = secrets.token_hex(16)
    body = _batch([_result("api", _now_ms())])
    assert await _post(hub, body, token=forged) == (401, {"error": "unknown agent token"})
    assert await _post(hub, body, token=None) == (401, {"error": "unknown agent token"})
    status, headers, _ = await _get(
        f"{hub.url}/api/agent/v1/monitors", Authorization=f"Bearer {forged}"
    )
    assert status == 401 and headers["Cache-Control"] == "no-store"
    hub.run.wait_for("agent API: refused an unknown token")
    assert forged not in hub.run.log


async def test_a_batch_for_another_location_is_403(hub: Hub) -> None:
    ts = _now_ms() - 5000
    body = _batch([_result("api", ts)], location="frankfurt")
    status, answer = await _post(hub, body, token=VIRGINIA)  # virginia's token
    assert status == 403, answer
    assert answer == {"error": "this token belongs to location 'virginia', not 'frankfurt'"}
    assert not [row for row in _stored(hub, "api") if row[1] == ts]


async def test_a_clock_30_s_off_is_409_then_accepted_once_fixed(hub: Hub) -> None:
    ts = _now_ms() - 2000
    mark = hub.run.lines()
    body = _batch([_result("api", ts)], sent_ms=_now_ms() + 30_000)
    status, answer = await _post(hub, body)
    assert status == 409, answer
    assert re.fullmatch(  # 30 s less the transit time
        r"agent clock is (2\d\.\d|30\.0) s ahead of the hub; refused, results kept queued;"
        r" fix the agent's clock \(NTP\)",
        answer["error"],
    )
    assert 20_000 < answer["offset_ms"] <= 30_000  # less the time it took to arrive
    hub.run.wait_for(f"agent location=frankfurt: {answer['error']}", after=mark)
    problem = f"agent frankfurt: {answer['error']}"
    until(lambda: problem in json.loads(_sync_get(f"{hub.url}/healthz"))["problems"])
    assert not [row for row in _stored(hub, "api") if row[1] == ts]
    # fixed: the same results, sent again with a true clock
    assert await _post(hub, _batch([_result("api", ts)])) == (
        200,
        {"accepted": 1, "duplicates": 0, "refused": []},
    )
    hub.run.wait_for("agent location=frankfurt: clock fixed", after=mark)
    until(lambda: [row for row in _stored(hub, "api") if row[1] == ts] == [("frankfurt", ts, 1)])


async def test_results_for_monitors_not_assigned_are_refused_the_rest_stored(hub: Hub) -> None:
    ts = _now_ms() - 3000
    results = [_result(m, ts) for m in ("home", "api", "beat", "nope")]
    status, answer = await _post(hub, _batch(results))
    assert (status, answer) == (
        200,
        {
            "accepted": 1,
            "duplicates": 0,
            "refused": [
                {
                    "index": 0,
                    "monitor": "home",
                    "error": "monitor 'home' is not assigned to location 'frankfurt'",
                },
                {
                    "index": 2,
                    "monitor": "beat",
                    "error": "monitor 'beat' is not assigned to location 'frankfurt'",
                },
                {"index": 3, "monitor": "nope", "error": "no monitor 'nope' on this hub"},
            ],
        },
    )
    until(lambda: [row for row in _stored(hub, "api") if row[1] == ts] == [("frankfurt", ts, 1)])
    assert not [row for row in _stored(hub, "home") if row[0] == "frankfurt"]
    assert not [row for row in _stored(hub, "beat") if row[0] == "frankfurt"]
    hub.run.wait_for("agent location=frankfurt: refused 3 results of a batch")


async def test_a_malformed_batch_is_400_naming_the_field(hub: Hub) -> None:
    doc = json.loads(_batch([_result("api", _now_ms())]))
    doc["results"][0]["x"] = 1
    status, answer = await _post(hub, json.dumps(doc).encode())
    assert (status, answer) == (400, {"error": "results[0]: unknown field 'x'"})
    status, answer = await _post(hub, b"{not json")
    assert status == 400 and answer["error"].startswith("body is not JSON")
    status, answer = await _post(hub, b"\x1f\x8b not gzip", encoding="gzip")
    assert (status, answer) == (400, {"error": "body is not valid gzip"})
    status, answer = await _post(hub, b"{}", encoding="compress")
    assert (status, answer) == (
        415,
        {"error": "Content-Encoding 'compress': send identity or gzip"},
    )


async def test_the_assignment_with_etag_and_its_secret_for_the_agent_only(hub: Hub) -> None:
    url = f"{hub.url}/api/agent/v1/monitors"
    status, headers, body = await _get(url, Authorization=f"Bearer {FRANKFURT}")
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store" and headers["Content-Type"].startswith(
        "application/json"
    )
    assert "Server" not in headers and headers["X-Frame-Options"] == "DENY"
    assignment = decode_assignment(body)
    assert assignment.location == "frankfurt"
    assert [m.id for m in assignment.monitors] == ["api"]  # not home (seoul), not beat (push)
    api = assignment.monitors[0]
    assert isinstance(api, HttpMonitor)
    assert api.headers["X-Api-Key"].get_secret_value() == API_SECRET
    tag = headers["ETag"]
    status, headers, again = await _get(
        url, Authorization=f"Bearer {FRANKFURT}", **{"If-None-Match": tag}
    )
    assert (status, again, headers["ETag"]) == (304, b"", tag)
    status, _, body = await _get(url)
    assert (status, json.loads(body)) == (401, {"error": "unknown agent token"})
    # the secret goes to the agent and nowhere else
    for path in (
        "/",
        "/monitors/api",
        "/api/v1/status",
        "/api/v1/incidents",
        "/api/v1/monitors/api/days",
        "/api/v2/summary.json",
        "/api/v2/components.json",
        "/feed.atom",
        "/badge/api/status.svg",
        "/healthz",
    ):
        status, _, page = await _get(hub.url + path)
        assert status in (200, 503), (path, status)
        assert API_SECRET.encode() not in page, path
    status, _, scraped = await _get(hub.metrics)
    assert status == 200 and API_SECRET.encode() not in scraped


async def test_healthz_and_the_log_say_when_an_agent_falls_silent(hub: Hub) -> None:
    mark = hub.run.lines()
    assert (await _post(hub, _batch([])))[0] == 200

    def silent() -> bool:
        report = json.loads(_sync_get(f"{hub.url}/healthz"))
        return any(p.startswith("agent frankfurt: no contact for ") for p in report["problems"])

    until(silent, within=30 + SILENCE)
    hub.run.wait_for("agent location=frankfurt: contact lost", after=mark)
    report = json.loads(_sync_get(f"{hub.url}/healthz"))
    assert report["status"] == "unhealthy"
    assert report["agents"]["frankfurt"]["last_contact_age_s"] > SILENCE
    mark = hub.run.lines()
    assert (await _post(hub, _batch([])))[0] == 200
    hub.run.wait_for("agent location=frankfurt: contact regained", after=mark)


async def test_metrics_carry_the_agent_families(hub: Hub) -> None:
    ts = _now_ms() - 1000
    assert (await _post(hub, _batch([_result("api", ts)], seq=99)))[0] == 200

    def scraped() -> str:
        return _sync_get(hub.metrics).decode()

    until(lambda: 'prober_agent_queue_depth{location="frankfurt"} 0.0' in scraped())
    text = scraped()
    for family in (
        'prober_agent_last_contact_timestamp_seconds{location="frankfurt"} ',
        'prober_agent_last_contact_timestamp_seconds{location="virginia"} ',
        'prober_agent_dropped_results_total{location="frankfurt"} 0.0',
        'prober_agent_clock_offset_seconds{location="frankfurt"} ',
        'prober_agent_batches_total{location="frankfurt",result="accepted"} ',
        'prober_agent_batches_total{location="frankfurt",result="duplicate"} ',
        'prober_agent_batches_total{location="frankfurt",result="refused"} ',
        'prober_agent_batches_total{location="frankfurt",result="clock"} ',
    ):
        assert family in text, family


def _sync_get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        return exc.read()


# The parts, without a process: tokens and the silence rule.


def _config(tmp_path: pathlib.Path) -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [settings]
            location = "seoul"
            [[agents]]
            location = "frankfurt"
            token = "{FRANKFURT}"
            [[agents]]
            location = "virginia"
            token = "{VIRGINIA}"

            [[monitors]]
            id = "slow"
            type = "tcp"
            host = "127.0.0.1"
            port = 9
            interval = "10m"
            locations = ["seoul", "frankfurt"]
            """
        )
    )
    return load_config(path)


def test_a_token_is_known_by_its_digest(tmp_path: pathlib.Path) -> None:
    tokens = AgentTokens(_config(tmp_path).agents)
    assert tokens.location(f"Bearer {FRANKFURT}") == "frankfurt"
    assert tokens.location(f"  bearer   {VIRGINIA} ") == "virginia"
    for refused in ("", "Bearer", "Bearer ", f"Basic {FRANKFURT}", f"Bearer {FRANKFURT}x"):
        assert tokens.location(refused) is None, refused


def test_an_agent_is_silent_after_3_intervals_and_at_least_5_minutes(
    tmp_path: pathlib.Path,
) -> None:
    now = 1_796_212_800.0
    health = AgentHealth(_config(tmp_path), clock=lambda: now)
    assert health.problems(now + 299) == []
    # virginia probes nothing: 5 minutes; frankfurt's shortest interval is 10 minutes
    assert health.problems(now + 301) == ["agent virginia: no contact since the hub started for 5m"]
    health.contact("virginia", int((now + 301) * 1000))
    assert health.problems(now + 1801) == [
        "agent frankfurt: no contact since the hub started for 30m",
        "agent virginia: no contact for 25m",
    ]
    assert silence_from_env({"PROBER_AGENT_SILENCE": "2.5"}) == 2.5
    assert silence_from_env({"PROBER_AGENT_SILENCE": "soon"}) is None
    assert silence_from_env({}) is None


async def test_a_batch_answered_200_survives_kill_9_of_the_hub(tmp_path: pathlib.Path) -> None:
    """The agent forgets a batch once the hub says 200: by then every result of it must be
    committed, so kill -9 of the hub right after the answer loses none of them."""
    with _running_hub(tmp_path) as hub:
        base = _now_ms() - 3_600_000
        results = [_result("api", base + i) for i in range(wire.MAX_RESULTS)]
        status, answer = await _post(hub, _batch(results))
        hub.run.proc.kill()  # at once: no flush, no shutdown
        hub.run.proc.wait(10)
        assert (status, answer["accepted"]) == (200, wire.MAX_RESULTS)
        assert len(_stored(hub, "api")) == wire.MAX_RESULTS
