"""`prober agent` as a user runs it: a real subprocess against a small hub written here (it
speaks the agent protocol of docs/REFERENCE.md and records what it receives) and a
loopback target. Every wait is on something observable (the hub's records, the agent's
log, its queue file), never a fixed time."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from aiohttp import web

from prober import __version__
from prober.agent import wire
from prober.agent.assign import encode_assignment
from prober.agent.queue import DiskQueue
from prober.config import load_config
from prober.results import Outcome
from tests.support.net import free_port
from tests.support.proc import ProberRun, http_target, until

T = TypeVar("T")
TOKEN = "3f9c2a7e5b1d4c8f0a6e2b9d7c4f1a3e"
FAST = {
    "PROBER_AGENT_REFETCH": "300ms",
    "PROBER_AGENT_RETRY": "100ms",
    "PROBER_AGENT_RETRY_MAX": "400ms",
}


class Loop:
    """An event loop in a thread of its own, for servers the test drives from outside."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


class Hub:
    """The hub's side of the protocol in a thread of its own: assignment by ETag, batches
    parsed with the wire format, results kept by key (monitor, location, ts_ms) in the
    order they first arrived. `answer` is what POST /results says: "ok", "clock" (409), "busy" (503), or "token"
    (401, to every request)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.port = free_port()
        self.answer = "ok"
        self.stored: list[tuple[str, str, int]] = []
        self.duplicates = 0
        self.batches: list[wire.Batch] = []
        self.posts: list[int] = []  # each POST's status
        self.encodings: list[str] = []  # each POST's Content-Encoding
        self.fetches: list[tuple[str | None, int]] = []  # (If-None-Match, status)
        self._keys: set[tuple[str, str, int]] = set()
        self._lock = threading.Lock()
        self._body = b""
        self._runner: web.AppRunner | None = None
        self._loop = Loop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def assign(self, monitors: str) -> None:
        """The hub's monitors (TOML), all probed from frankfurt."""
        path = self.root / "hub.toml"
        path.write_text(
            '[settings]\nlocation = "seoul"\n\n[[agents]]\nlocation = "frankfurt"\n'
            f'token = "{TOKEN}"\n\n[defaults]\nlocations = ["frankfurt"]\n\n{monitors}'
        )
        path.chmod(0o600)
        body = encode_assignment(load_config(path), "frankfurt")
        with self._lock:
            self._body = body

    def start(self) -> None:
        self._loop.call(self._start())

    def stop(self) -> None:
        if self._runner is not None:
            self._loop.call(self._runner.cleanup())
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.close()

    def of(self, monitor: str) -> list[int]:
        with self._lock:
            return [ts for m, _, ts in self.stored if m == monitor]

    def count(self) -> int:
        with self._lock:
            return len(self.stored)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/agent/v1/monitors", self._monitors)
        app.router.add_post("/api/agent/v1/results", self._results)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _authorised(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        return token and self.answer != "token"  # "token": as after a rotation on the hub

    async def _monitors(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unknown agent token"}, status=401)
        with self._lock:
            body = self._body
        tag = f'"{hashlib.sha256(body).hexdigest()}"'
        seen = request.headers.get("If-None-Match")
        status = 304 if seen == tag else 200
        with self._lock:
            self.fetches.append((seen, status))
        if status == 304:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": tag})

    async def _results(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._posted(401, {"error": "unknown agent token"})
        hub_ms = int(time.time() * 1000)
        body = await request.read()  # aiohttp's server undoes Content-Encoding: gzip itself
        with self._lock:
            self.encodings.append(request.headers.get("Content-Encoding", ""))
        try:
            batch = wire.parse(body)
        except wire.WireError as exc:
            return self._posted(400, {"error": str(exc)})
        if batch.location != "frankfurt":
            return self._posted(403, {"error": "not this token's location"})
        if self.answer == "busy":
            return self._posted(503, {"error": "probing process busy"})
        clock = wire.check_clock(batch.sent_ms, hub_ms + (60_000 if self.answer == "clock" else 0))
        if not clock.ok:
            return self._posted(409, {"error": clock.refusal, "offset_ms": clock.offset_ms})
        accepted = duplicates = 0
        with self._lock:
            self.batches.append(batch)
            for result in batch.results:
                key = (result.monitor, batch.location, result.ts_ms)
                if key in self._keys:
                    duplicates += 1
                else:
                    self._keys.add(key)
                    self.stored.append(key)
                    accepted += 1
            self.duplicates += duplicates
        return self._posted(200, {"accepted": accepted, "duplicates": duplicates, "refused": []})

    def _posted(self, status: int, doc: dict[str, object]) -> web.Response:
        with self._lock:
            self.posts.append(status)
        return web.json_response(doc, status=status)


class Target:
    """A loopback HTTP target recording each request's User-Agent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.agents: list[str] = []
        self._loop = Loop()
        self._runner = self._loop.call(self._start())

    async def _start(self) -> web.AppRunner:
        async def ok(request: web.Request) -> web.Response:
            self.agents.append(request.headers.get("User-Agent", ""))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/{name}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def close(self) -> None:
        self._loop.call(self._runner.cleanup())
        self._loop.close()

    def monitor(self, ident: str, interval: str = "1s") -> str:
        return (
            f'[[monitors]]\nid = "{ident}"\ntype = "http"\n'
            f'url = "http://127.0.0.1:{self.port}/{ident}"\ninterval = "{interval}"\n'
            'timeout = "800ms"\n\n'
        )


@pytest.fixture
def target() -> Iterator[Target]:
    serving = Target()
    yield serving
    serving.close()


@pytest.fixture
def hub(tmp_path: pathlib.Path, target: Target) -> Iterator[Hub]:
    serving = Hub(tmp_path)
    serving.assign(target.monitor("api") + target.monitor("web"))
    yield serving
    serving.close()


def agent_config(tmp_path: pathlib.Path, hub: Hub, token: str = TOKEN) -> pathlib.Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[settings]\nlocation = "frankfurt"\ndatabase = "sqlite:///data/agent.db"\n\n'
        f'[hub]\nurl = "{hub.url}"\ntoken = "{token}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def agents(tmp_path: pathlib.Path) -> Iterator[list[ProberRun]]:
    started: list[ProberRun] = []
    yield started
    for run in started:
        run.stop()


def start_agent(
    tmp_path: pathlib.Path, hub: Hub, started: list[ProberRun], token: str = TOKEN
) -> ProberRun:
    config = agent_config(tmp_path, hub, token)
    run = ProberRun(["agent", "-c", str(config)], tmp_path, env={**os.environ, **FAST})
    started.append(run)
    return run


def queued(tmp_path: pathlib.Path) -> int:
    path = tmp_path / "data" / "agent.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT count(*) FROM queued").fetchone()
        return int(count)
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def stopped_counts(run: ProberRun) -> dict[str, int]:
    """The agent's last line: `stopped checks=N sent=N queued=N dropped=N`."""
    line = run.log.splitlines()[run.wait_for("stopped checks=")]
    return {k: int(v) for k, v in (p.split("=") for p in line.split("stopped ")[1].split())}


def assert_in_order_once(hub: Hub) -> None:
    with hub._lock:
        stored = list(hub.stored)
    assert len(stored) == len(set(stored))
    for monitor in {m for m, _, _ in stored}:
        times = [ts for m, _, ts in stored if m == monitor]
        assert times == sorted(times), monitor
        assert len(set(times)) == len(times)


def test_results_arrive_keyed_in_order_and_the_target_sees_the_location(
    tmp_path: pathlib.Path, hub: Hub, target: Target, agents: list[ProberRun]
) -> None:
    hub.start()
    agent = start_agent(tmp_path, hub, agents)
    agent.wait_for("prober agent running location=frankfurt hub=" + hub.url)
    until(lambda: len(hub.of("api")) >= 3 and len(hub.of("web")) >= 3)
    until(lambda: any(status == 304 for _, status in hub.fetches))  # refetched, unchanged
    assert {loc for _, loc, _ in hub.stored} == {"frankfurt"}
    assert_in_order_once(hub)
    assert hub.duplicates == 0
    assert set(target.agents) == {f"prober/{__version__} (location=frankfurt)"}
    assert agent.stop() == 0
    counts = stopped_counts(agent)
    assert counts["queued"] == 0
    assert counts["checks"] == counts["sent"] == hub.count()


def test_hub_down_for_a_while_results_wait_on_disk_then_arrive_once_in_order(
    tmp_path: pathlib.Path, hub: Hub, target: Target, agents: list[ProberRun]
) -> None:
    hub.assign("".join(target.monitor(f"m{i}") for i in range(12)))
    hub.start()
    agent = start_agent(tmp_path, hub, agents)
    until(lambda: len(hub.of("m0")) >= 2)
    hub.stop()
    at = agent.wait_for("hub unreachable hub=" + hub.url)
    until(lambda: queued(tmp_path) >= 60)  # on disk, not in memory
    before = hub.count()
    hub.start()
    agent.wait_for("hub answers again", after=at)
    until(lambda: queued(tmp_path) == 0 and hub.count() >= before + 60)
    assert "gzip" in hub.encodings  # the backlog went compressed
    assert "" in hub.encodings  # a single result did not
    assert agent.log.count("hub unreachable") == 1  # once per change, not per retry
    assert agent.stop() == 0
    counts = stopped_counts(agent)
    assert counts["checks"] == hub.count(), agent.log  # every result, once
    assert_in_order_once(hub)


@pytest.mark.parametrize(
    ("answer", "said", "over"),
    [
        ("clock", "hub refused the batch (409): agent clock is 60.", "accepts this agent's clock"),
        ("busy", "hub cannot take results now (503): probing process busy", "answers again"),
        ("token", "hub refused this agent's token (401 unknown agent token)", "answers again"),
    ],
    ids=["clock", "busy", "token"],
)
def test_a_refusing_hub_keeps_results_queued_until_it_accepts(
    tmp_path: pathlib.Path, hub: Hub, agents: list[ProberRun], answer: str, said: str, over: str
) -> None:
    hub.start()
    agent = start_agent(tmp_path, hub, agents)
    until(lambda: hub.count() >= 2)
    hub.answer = answer
    at = agent.wait_for(said)
    status = {"clock": 409, "busy": 503, "token": 401}[answer]
    until(lambda: hub.posts.count(status) >= 3 and queued(tmp_path) >= 4)
    refused_at = hub.count()
    hub.answer = "ok"
    agent.wait_for(f"hub {over}", after=at)
    until(lambda: queued(tmp_path) == 0 and hub.count() >= refused_at + 4)
    assert agent.log.count(said) == 1, agent.log  # once per change, not per retry
    assert agent.stop() == 0
    assert stopped_counts(agent)["checks"] == hub.count()
    assert_in_order_once(hub)


def test_a_changed_assignment_adds_and_removes_monitors(
    tmp_path: pathlib.Path, hub: Hub, target: Target, agents: list[ProberRun]
) -> None:
    hub.start()
    agent = start_agent(tmp_path, hub, agents)
    agent.wait_for("assignment monitors=2 added=2 removed=0 changed=0")
    until(lambda: len(hub.of("api")) >= 2)
    hub.assign(target.monitor("web") + target.monitor("new"))
    agent.wait_for("assignment monitors=2 added=1 removed=1 changed=0")
    until(lambda: len(hub.of("new")) >= 2)
    api_after = len(hub.of("api"))  # a check in flight at the change may finish after it
    until(lambda: len(hub.of("new")) >= 4)
    assert len(hub.of("api")) == api_after
    hub.assign(target.monitor("web", interval="2s") + target.monitor("new"))
    agent.wait_for("assignment monitors=2 added=0 removed=0 changed=1")
    assert agent.stop() == 0


def test_sigterm_exits_0_and_what_is_queued_goes_with_the_next_start(
    tmp_path: pathlib.Path, hub: Hub, agents: list[ProberRun]
) -> None:
    hub.start()
    first = start_agent(tmp_path, hub, agents)
    until(lambda: hub.count() >= 2)
    hub.stop()
    first.wait_for("hub unreachable")
    until(lambda: queued(tmp_path) >= 3)
    assert first.stop() == 0
    left = stopped_counts(first)
    assert left["queued"] == queued(tmp_path) >= 3
    assert left["checks"] == hub.count() + left["queued"]
    hub.start()
    second = start_agent(tmp_path, hub, agents)
    second.wait_for(f"queued={left['queued']}")
    until(lambda: queued(tmp_path) == 0)
    assert second.stop() == 0
    assert hub.count() == left["checks"] + stopped_counts(second)["checks"]
    assert_in_order_once(hub)


def test_an_unreachable_hub_at_start_is_waited_for(
    tmp_path: pathlib.Path, hub: Hub, agents: list[ProberRun]
) -> None:
    agent = start_agent(tmp_path, hub, agents)
    agent.wait_for("hub unreachable hub=")
    hub.start()
    until(lambda: hub.count() >= 2)
    assert agent.stop() == 0


def test_a_token_the_hub_refuses_at_start_is_one_line_and_exit_1(
    tmp_path: pathlib.Path, hub: Hub, agents: list[ProberRun]
) -> None:
    hub.start()
    agent = start_agent(tmp_path, hub, agents, token="Qm7_xK2pL9vR4tZ8wN3y-A")
    assert agent.proc.wait(60) == 1
    assert agent.stop() == 1
    (line,) = [line for line in agent.log.splitlines() if line.startswith("prober: ")]
    assert line.startswith(
        "prober: hub refused this agent's token (401 unknown agent token): hub.token is not"
        " the token of the [[agents]] entry for location 'frankfurt' on the hub at "
    )
    assert "Qm7_xK2pL9vR4tZ8wN3y-A" not in agent.log


def test_a_refused_config_is_exit_1(tmp_path: pathlib.Path, agents: list[ProberRun]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[settings]\nlocation = "frankfurt"\n')
    run = ProberRun(["agent", "-c", str(path)], tmp_path)
    agents.append(run)
    assert run.proc.wait(60) == 1
    assert "hub: [hub] is required" in run.log


def hub_results(db: pathlib.Path, monitor: str) -> list[tuple[str, int, int]]:
    """(location, ts_ms, outcome) of a monitor's results in a hub's database."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT l.name, r.ts_ms, r.outcome FROM result r"
            " JOIN monitor m ON m.id = r.monitor_id JOIN location l ON l.id = r.location_id"
            " WHERE m.slug = ? ORDER BY r.ts_ms",
            (monitor,),
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


def test_a_real_hub_stores_a_real_agents_results_under_its_location(
    tmp_path: pathlib.Path, agents: list[ProberRun]
) -> None:
    listen = free_port()
    with http_target(tmp_path / "www") as port:
        (tmp_path / "monitors.toml").write_text(
            f'[settings]\nlocation = "seoul"\nlisten = "127.0.0.1:{listen}"\n'
            'metrics = { listen = "" }\ndatabase = "sqlite:///data/prober.db"\n\n'
            f'[[agents]]\nlocation = "frankfurt"\ntoken = "${{FRANKFURT_TOKEN}}"\n\n'
            f'[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:{port}/ok"\n'
            'interval = "1s"\ntimeout = "800ms"\nlocations = ["frankfurt"]\n'
        )
        hub = ProberRun(["run"], tmp_path, env={**os.environ, "FRANKFURT_TOKEN": TOKEN})
        agents.append(hub)
        hub.wait_for("prober running")
        (tmp_path / "agent").mkdir()
        # What an agent queued before (the hub away): 200 results, one gzipped batch (14 KiB).
        disk = DiskQueue(tmp_path / "agent" / "agent.db", "frankfurt", 1000)
        past = int(time.time() * 1000) - 300_000
        disk.put([wire.WireResult("api", past + i * 1000, Outcome.UP, 1000) for i in range(200)])
        disk.close()
        config = tmp_path / "agent" / "agent.toml"
        config.write_text(
            '[settings]\nlocation = "frankfurt"\ndatabase = "sqlite:///agent.db"\n\n'
            f'[hub]\nurl = "http://127.0.0.1:{listen}"\ntoken = "${{FRANKFURT_TOKEN}}"\n'
        )
        agent = ProberRun(
            ["agent", "-c", str(config)],
            tmp_path / "agent",
            env={**os.environ, **FAST, "FRANKFURT_TOKEN": TOKEN},
        )
        agents.append(agent)
        agent.wait_for("assignment monitors=1 added=1")
        db = tmp_path / "data" / "prober.db"
        until(lambda: len(hub_results(db, "api")) >= 203)
        assert agent.stop() == 0
        assert hub.stop() == 0, hub.log
    rows = hub_results(db, "api")
    assert {location for location, _, _ in rows} == {"frankfurt"}
    assert len(rows) == 200 + stopped_counts(agent)["checks"]  # each once
    assert [ts for _, ts, _ in rows[:200]] == [past + i * 1000 for i in range(200)]
    assert TOKEN not in hub.log + agent.log
