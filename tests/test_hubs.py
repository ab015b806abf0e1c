"""Two hubs on one PostgreSQL: real `prober run` processes (seoul, tokyo) sharing a
throwaway database, a real `prober agent` (frankfurt) sending to tokyo, one target whose
answer depends on the asking location (tests.support.places), alerts to a loopback webhook.

What the issue asks of several hubs: both take results and serve the page; one at a time
derives verdicts and sends alerts; kill -9 of the one holding the evaluation lock during an
outage, and the other takes over within 15 s and sends exactly one down and one up.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from prober.config.locations import COMBINED
from tests.support.net import free_port
from tests.support.places import Hook, Target, running
from tests.support.proc import ProberRun, until

HUBS = ("seoul", "tokyo")
TOKEN = f"frankfurt-token-{'x' * 32}"
DOWN = 3


class Hubs:
    def __init__(self, tmp: pathlib.Path, url: str, target: Target, hook: Hook) -> None:
        self.tmp = tmp
        self.url = url
        self.target = target
        self.hook = hook
        self.ports = {name: free_port() for name in HUBS}
        self.env = {
            **os.environ,
            "FRANKFURT_TOKEN": TOKEN,
            "PROBER_TAKEOVER_POLL": "0.5",
            "PROBER_AGENT_SILENCE": "4",
            "PROBER_AGENT_RETRY": "0.2s",
            "PROBER_AGENT_RETRY_MAX": "0.5s",
            "PROBER_AGENT_REFETCH": "1s",
        }
        self.hubs: dict[str, ProberRun] = {}
        for name in HUBS:  # seoul first: it takes the evaluation lock
            self.start_hub(name)
        folder = tmp / "frankfurt"
        folder.mkdir()
        (folder / "agent.toml").write_text(
            f"""
[settings]
location = "frankfurt"
database = "sqlite:///{folder / "agent.db"}"
[hub]
url = "http://127.0.0.1:{self.ports["tokyo"]}"
token = "${{FRANKFURT_TOKEN}}"
"""
        )
        self.agent = ProberRun(["agent", "-c", str(folder / "agent.toml")], folder, env=self.env)
        self.agent.wait_for("prober agent running")

    def start_hub(self, name: str) -> None:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        other = next(h for h in HUBS if h != name)
        config = folder / "monitors.toml"
        config.write_text(
            f"""
[settings]
location = "{name}"
listen = "127.0.0.1:{self.ports[name]}"
database = "{self.url}"
alert_group_wait = "0s"
metrics = {{ listen = "" }}

[[hubs]]
location = "{other}"

[[agents]]
location = "frankfurt"
token = "${{FRANKFURT_TOKEN}}"

[defaults]
interval = "1s"
timeout = "0.8s"
down_after = "3s"
notify = ["hook"]

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:{self.target.port}/"

[[notifiers]]
id = "hook"
type = "webhook"
url = "{self.hook.url()}"
"""
        )
        hub = ProberRun(["run", "-c", str(config)], folder, env=self.env)
        hub.wait_for("prober running")
        self.hubs[name] = hub

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.agent.stop()
        for hub in self.hubs.values():
            with contextlib.suppress(Exception):
                hub.stop()

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, args).fetchall()

    def results(self, where: str, since_ms: int = 0) -> list[tuple[int, int]]:
        return [
            (int(ts), int(outcome))
            for ts, outcome in self.query(
                "SELECT ts_ms, outcome FROM result r JOIN location l ON l.id = r.location_id"
                " WHERE l.name = %s AND ts_ms >= %s ORDER BY ts_ms",
                where,
                since_ms,
            )
        ]

    def incidents(self) -> list[tuple[int, int | None]]:
        return [
            (int(start), None if end is None else int(end))
            for start, end in self.query(
                "SELECT start_ms, end_ms FROM incident i JOIN location l ON l.id = i.location_id"
                " WHERE l.name = %s ORDER BY start_ms",
                COMBINED,
            )
        ]

    def healthz(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.ports[name]}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:  # 503 carries the report too
            body = exc.read()
        report = json.loads(body)
        assert isinstance(report, dict)
        return report

    def state(self, name: str) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports[name]}/api/v1/status", timeout=5
        ) as r:
            (monitor,) = json.loads(r.read())["monitors"]
        return str(monitor["state"])


@pytest.fixture
def hubs(tmp_path: pathlib.Path, pg_url: str) -> Iterator[Hubs]:
    target, hook = Target(), Hook()
    with running(target, hook):
        setup = Hubs(tmp_path, pg_url, target, hook)
        try:
            until(lambda: target.seen >= {"seoul", "tokyo", "frankfurt"}, within=30)
            until(lambda: all(setup.results(n) for n in (*HUBS, "frankfurt")), within=30)
            yield setup
        finally:
            setup.close()


def now_ms() -> int:
    return round(time.time() * 1000)


def test_both_hubs_serve_the_page_and_one_evaluates(hubs: Hubs) -> None:
    assert "this hub evaluates now" in hubs.hubs["seoul"].log
    assert "another hub evaluates" in hubs.hubs["tokyo"].log
    assert "this hub evaluates now" not in hubs.hubs["tokyo"].log
    # tokyo's own results and the agent's reached the database through seoul's judgement
    until(lambda: hubs.state("seoul") == "up" and hubs.state("tokyo") == "up", within=30)
    assert hubs.query("SELECT count(*) FROM inbox")[0][0] < 20  # drained as it fills
    # the agent sends to tokyo only; seoul knows of its contact through the database, so
    # neither hub calls it silent (its limit is 4 s here)
    seen = len(hubs.results("frankfurt"))
    until(lambda: len(hubs.results("frankfurt")) >= seen + 6, within=30)  # past the limit
    for name in HUBS:
        report = hubs.healthz(name)
        assert report["status"] == "ok", (name, report)
        assert report["agents"]["frankfurt"]["last_contact_age_s"] < 6


def test_kill_9_of_the_evaluating_hub_during_an_outage_one_down_and_one_up(hubs: Hubs) -> None:
    t0 = now_ms()
    hubs.target.break_for(*HUBS, "frankfurt")
    # seoul sees the first failures, and dies before the run is confirmed (down_after 3s)
    until(lambda: any(o == DOWN for _, o in hubs.results("seoul", t0)), within=20)
    killed_at = time.monotonic()
    hubs.hubs["seoul"].stop(signal.SIGKILL)
    tokyo = hubs.hubs["tokyo"]
    tokyo.wait_for("this hub evaluates now", within=20)
    assert time.monotonic() - killed_at < 15
    until(lambda: hubs.hook.kinds() == ["opened"], within=30)
    ((start, end),) = hubs.incidents()
    assert end is None
    # back-dated to the run's first failure, at least down_after (3 s) before its opening
    assert t0 <= start <= now_ms() - 3_000
    until(lambda: hubs.state("tokyo") == "down", within=30)
    hubs.target.mend()
    until(lambda: hubs.hook.kinds() == ["opened", "resolved"], within=30)
    opened, resolved = hubs.hook.alerts()
    assert opened["events"][0]["incident"] == resolved["events"][0]["incident"]
    # nothing more comes: not a second opening, not a repeat of either
    seen = len(hubs.results("tokyo"))
    until(lambda: len(hubs.results("tokyo")) >= seen + 3, within=30)
    assert hubs.hook.kinds() == ["opened", "resolved"]
    assert hubs.incidents()[0][1] is not None


def test_kill_9_after_the_opening_was_sent_the_other_sends_only_the_recovery(hubs: Hubs) -> None:
    hubs.target.break_for(*HUBS, "frankfurt")
    until(lambda: hubs.hook.kinds() == ["opened"], within=30)
    hubs.hubs["seoul"].stop(signal.SIGKILL)
    hubs.hubs["tokyo"].wait_for("this hub evaluates now", within=20)
    hubs.target.mend()
    until(lambda: hubs.hook.kinds() == ["opened", "resolved"], within=30)
    seen = len(hubs.results("tokyo"))
    until(lambda: len(hubs.results("tokyo")) >= seen + 3, within=30)
    assert hubs.hook.kinds() == ["opened", "resolved"]


def test_a_frozen_holder_is_taken_over_and_steps_down_when_it_wakes(hubs: Hubs) -> None:
    """SIGSTOP: the holder's machine still answers TCP, its process says nothing; its
    session ends after idle_session_timeout (10 s), the other hub takes over. Woken, the
    old holder finds its lock gone (or another epoch) and hands over: no alert twice."""
    hubs.target.break_for(*HUBS, "frankfurt")
    until(lambda: hubs.hook.kinds() == ["opened"], within=30)
    seoul = hubs.hubs["seoul"]
    frozen_at = time.monotonic()
    seoul.proc.send_signal(signal.SIGSTOP)
    try:
        hubs.hubs["tokyo"].wait_for("this hub evaluates now", within=30)
        assert time.monotonic() - frozen_at < 15
        hubs.target.mend()
        until(lambda: hubs.hook.kinds() == ["opened", "resolved"], within=30)
    finally:
        seoul.proc.send_signal(signal.SIGCONT)
    woke = seoul.lines()
    until(
        lambda: "lost the evaluation lock" in seoul.log or "stepping down" in seoul.log,
        within=30,
    )
    assert "this hub evaluates now" not in "\n".join(seoul.log.splitlines()[woke:])
    seen = len(hubs.results("seoul"))
    until(lambda: len(hubs.results("seoul")) >= seen + 3, within=30)  # its checks go on
    assert hubs.hook.kinds() == ["opened", "resolved"]
