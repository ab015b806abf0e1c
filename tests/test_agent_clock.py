"""An agent whose clock is 30 s off, end to end: a real `prober run` hub (seoul) and a real
`prober agent` (frankfurt) whose process lives 30 s in the future under Debian's
libfaketime (wall clock only: its monotonic clock, and so asyncio's timers, stay true).

The hub refuses its batches (409) and stores none of them; the agent says so naming the
offset and keeps its results queued (its queue grows); the hub reports it (log, /healthz,
/metrics). Once the clock is right again (stepped back in place, as NTP does, or the agent
restarted without the fake clock on the same queue file) every queued result arrives
once, in the order it was queued. An HTTP relay between the agent and the hub records
every batch and the hub's answer to it.

libfaketime is installed by scripts/check (`need /usr/bin/faketime faketime`); without it
these tests fail rather than skip.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prober.agent import wire
from tests.support.net import free_port
from tests.support.places import Target, running
from tests.support.proc import ProberRun, until

TOKEN = f"frankfurt-token-{'x' * 32}"
OFFSET = "+30s"
FAST = {
    "PROBER_AGENT_RETRY": "0.2s",
    "PROBER_AGENT_RETRY_MAX": "0.5s",
    "PROBER_AGENT_REFETCH": "1s",
}
Key = tuple[str, int]  # (monitor, ts_ms) of one frankfurt result


def libfaketime() -> str:
    """The preload library of Debian's libfaketime (the package `faketime` pulls it in)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    found += sorted(glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: apt-get install faketime (scripts/check does)")
    return found[0]


def fake_clock(clock_file: pathlib.Path) -> dict[str, str]:
    """The environment of a process whose wall clock is what `clock_file` says (`+30s`,
    `+0`), re-read at most once a second; its monotonic clock is left alone."""
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_clock(clock_file: pathlib.Path, spec: str) -> None:
    """Replaced whole, so the faked process never reads half a file."""
    fresh = clock_file.with_suffix(".new")
    fresh.write_text(spec + "\n")
    fresh.replace(clock_file)


class Relay:
    """HTTP between the agent and the hub: forwards every request and records each batch
    of results with the hub's answer, in the order the hub answered them."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._posts: list[tuple[int, wire.Batch]] = []
        self._lock = threading.Lock()

    def posts(self) -> list[tuple[int, wire.Batch]]:
        with self._lock:
            return list(self._posts)

    def answered(self, status: int) -> int:
        return sum(1 for got, _ in self.posts() if got == status)

    def accepted(self) -> list[Key]:
        """The results of every batch the hub answered 200, in that order."""
        return [(r.monitor, r.ts_ms) for got, b in self.posts() if got == 200 for r in b.results]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp's server undoes Content-Encoding: gzip
        keep = {"authorization", "content-type", "if-none-match", "user-agent"}
        headers = {k: v for k, v in request.headers.items() if k.lower() in keep}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"http://127.0.0.1:{self.upstream}{request.path_qs}",
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer,
        ):
            data = await answer.read()
            status = answer.status
            passed = {
                k: v for k, v in answer.headers.items() if k.lower() in {"content-type", "etag"}
            }
        if request.method == "POST" and request.path.endswith("/results"):
            with self._lock:
                self._posts.append((status, wire.parse(body)))
        return web.Response(status=status, body=data, headers=passed)


class Setup:
    def __init__(self, tmp: pathlib.Path, target: Target, relay: Relay, port: int) -> None:
        self.tmp = tmp
        self.relay = relay
        self.port = port
        self.scrape = free_port()
        self.clock = tmp / "clock"
        self.env = {**os.environ, **FAST, "FRANKFURT_TOKEN": TOKEN}
        self.config = tmp / "monitors.toml"
        self.config.write_text(
            f"""
[settings]
location = "seoul"
listen = "127.0.0.1:{port}"
metrics = {{ listen = "127.0.0.1:{self.scrape}" }}
database = "sqlite:///{tmp / "hub.db"}"

[[agents]]
location = "frankfurt"
token = "${{FRANKFURT_TOKEN}}"

[defaults]
interval = "1s"
timeout = "0.8s"

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:{target.port}/"
"""
        )
        self.hub = ProberRun(["run", "-c", str(self.config)], tmp, env=self.env)
        self.agents: list[ProberRun] = []
        self.folder = tmp / "frankfurt"
        self.folder.mkdir()
        (self.folder / "agent.toml").write_text(
            f"""
[settings]
location = "frankfurt"
database = "sqlite:///{self.folder / "agent.db"}"
[hub]
url = "http://127.0.0.1:{relay.port}"
token = "${{FRANKFURT_TOKEN}}"
"""
        )

    def start_agent(self, faked: bool) -> ProberRun:
        env = {**self.env, **(fake_clock(self.clock) if faked else {})}
        agent = ProberRun(["agent", "-c", str(self.folder / "agent.toml")], self.folder, env=env)
        self.agents.append(agent)
        agent.wait_for("prober agent running")
        return agent

    def close(self) -> None:
        for run in (*self.agents, self.hub):
            if run.proc.poll() is None:
                run.stop()

    def queued(self) -> list[Key]:
        """The agent's queue, oldest first (read-only, beside the running agent)."""
        path = self.folder / "agent.db"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [
                (slug, ts)
                for slug, ts in conn.execute(
                    "SELECT m.slug, q.ts_ms FROM queued q JOIN monitor m ON m.id = q.monitor_id"
                    " ORDER BY q.id"
                )
            ]
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            conn.close()

    def stored(self, location: str) -> list[Key]:
        """The hub's result rows of `location`, by time."""
        conn = sqlite3.connect(f"file:{self.tmp / 'hub.db'}?mode=ro", uri=True)
        try:
            return [
                (slug, ts)
                for slug, ts in conn.execute(
                    "SELECT m.slug, r.ts_ms FROM result r JOIN monitor m ON m.id = r.monitor_id"
                    " JOIN location l ON l.id = r.location_id WHERE l.name = ? ORDER BY r.ts_ms",
                    (location,),
                )
            ]
        finally:
            conn.close()

    def healthz(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # 503: something is wrong
            body = exc.read()
        report = json.loads(body)
        assert isinstance(report, dict)
        return report

    def metric(self, line: str) -> float | None:
        """The value of the sample `line` (name and labels as exposed) on /metrics."""
        url = f"http://127.0.0.1:{self.scrape}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else None


@pytest.fixture
def setup(tmp_path: pathlib.Path) -> Iterator[Setup]:
    port = free_port()
    target, relay = Target(), Relay(port)
    with running(target, relay):  # type: ignore[arg-type]  # any part with _handle, port
        places = Setup(tmp_path, target, relay, port)
        try:
            places.hub.wait_for("prober running")
            yield places
        finally:
            places.close()


def test_libfaketime_moves_the_wall_clock_only(tmp_path: pathlib.Path) -> None:
    """What the other test relies on: a child's time.time() is 30 s ahead while its
    monotonic clock (asyncio's timers, threads' timeouts) is the true one, and a new clock
    file moves it back. (Not time.sleep: libfaketime 0.9.10 breaks clock_nanosleep on the
    monotonic clock it leaves alone, EINVAL; the agent never calls it.)"""
    clock = tmp_path / "clock"
    set_clock(clock, OFFSET)
    script = (
        "import asyncio, sys, threading, time\n"
        "asyncio.run(asyncio.sleep(0.01))\n"  # a timer fires
        "threading.Event().wait(0.01)\n"  # a thread's timeout ends
        "print(time.monotonic(), flush=True)\n"
        "for _ in sys.stdin:\n"
        "    print(time.time(), flush=True)\n"
    )
    mono = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **fake_clock(clock)},
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        def offset() -> tuple[float, float]:
            """The child's clock less ours: the bounds it lies within."""
            before = time.time()
            stdin.write("\n")
            stdin.flush()
            theirs = float(stdout.readline())
            return theirs - time.time(), theirs - before

        try:
            assert mono <= float(stdout.readline()) <= time.monotonic()
            low, high = offset()
            assert low <= 30 <= high
            set_clock(clock, "+0")
            until(lambda: offset()[0] <= 0 <= offset()[1], within=10)  # libfaketime's cache
        finally:
            child.kill()


@pytest.mark.parametrize("fix", ["in_place", "restart"])
def test_an_agent_30s_ahead_is_refused_queued_reported_then_delivered_once_in_order(
    setup: Setup, fix: str
) -> None:
    set_clock(setup.clock, OFFSET)
    agent = setup.start_agent(faked=True)

    # refused, with the offset named on both sides
    refused = agent.wait_for("hub refused the batch (409)")
    line = agent.log.splitlines()[refused]
    said = re.search(r"agent clock is (\d+\.\d) s ahead of the hub", line)
    assert said is not None, line
    assert 20.0 <= float(said.group(1)) <= 30.1  # 30 s less the trip to the hub
    assert "results kept queued" in line
    setup.hub.wait_for("agent location=frankfurt: agent clock is")

    # kept queued: the queue grows, retried, and the hub stores none of them
    def sizes() -> list[int]:
        return [len(batch.results) for _, batch in setup.relay.posts()]

    until(lambda: len(setup.queued()) >= 8 and len(sizes()) >= 3 and sizes()[-1] > sizes()[0])
    assert setup.relay.answered(200) == 0
    assert sizes() == sorted(sizes())  # each retry carries the whole queue, and it grows
    assert setup.stored("frankfurt") == []
    assert setup.stored("seoul") != []  # the hub itself goes on

    # reported by the hub: /healthz (unhealthy, the offset) and /metrics
    def reported() -> bool:
        report = setup.healthz()
        seen = report["agents"]["frankfurt"]
        return (
            report["status"] == "unhealthy"
            and any("agent frankfurt: agent clock is" in p for p in report["problems"])
            and -30_001 <= seen["clock_offset_ms"] <= -20_000
            # the refused batch's results wait at the agent: its queue, as the hub shows it
            and seen["queue_depth"] >= 3
        )

    until(reported)
    labels = '{location="frankfurt",result="clock"}'
    assert (setup.metric(f"prober_agent_batches_total{labels}") or 0) >= 3
    offset = setup.metric('prober_agent_clock_offset_seconds{location="frankfurt"}')
    assert offset is not None and -30.001 <= offset <= -20

    # fixed: in place (the clock stepped back, as NTP does) or a restart without the fake
    if fix == "in_place":
        queued = setup.queued()  # nothing leaves it before the hub accepts a batch
        set_clock(setup.clock, "+0")
        agent.wait_for("hub accepts this agent's clock again")
        fixed = agent
    else:
        assert agent.stop() == 0
        assert setup.relay.answered(200) == 0  # its drain at SIGTERM was refused too
        queued = setup.queued()
        assert stopped(agent) == {"sent": 0, "queued": len(queued)}
        fixed = setup.start_agent(faked=False)
        fixed.wait_for(f"queued={len(queued)}\n")
    assert len(queued) >= 8
    setup.hub.wait_for("agent location=frankfurt: clock fixed")

    # every queued result arrives once, in the order it was queued
    until(lambda: set(queued) <= set(setup.stored("frankfurt")))
    until(lambda: not any("clock" in p for p in setup.healthz()["problems"]))
    assert abs(setup.healthz()["agents"]["frankfurt"]["clock_offset_ms"]) <= 10_000
    assert fixed.stop() == 0  # what it queued since goes too: then nothing more is sent
    accepted = setup.relay.accepted()
    assert accepted[: len(queued)] == queued
    assert [ts for _, ts in queued] == sorted(ts for _, ts in queued)
    assert len(accepted) == len(set(accepted))  # nothing sent again once acknowledged
    assert set(setup.stored("frankfurt")) == set(accepted)  # only what the hub accepted


def stopped(agent: ProberRun) -> dict[str, int]:
    """`sent` and `queued` of the agent's last line, `stopped checks=N sent=N queued=N ...`."""
    last = agent.wait_for("stopped checks=")
    line = agent.log.splitlines()[last]
    counts = dict(part.split("=") for part in line.split("stopped ")[1].split())
    return {"sent": int(counts["sent"]), "queued": int(counts["queued"])}
