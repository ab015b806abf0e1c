"""Alert benchmark: how soon an alert leaves, and how fast the dispatcher drains a storm.

    .venv/bin/python bench/alerts.py [--rounds 200] [--storm 1000] [--no-docs]

Runs the real result writer (production linger, 100 ms) and the real dispatcher on a
SQLite file; the webhook sink is a separate process on 127.0.0.1 that stamps each request
with the wall clock as it arrives. Measures:
- latency: from handing the confirming `down` result to the writer until the sink has
  the opened message (and the same for the resolving `up`), `rounds` incidents one after
  another, with `alert_group_wait = "0s"` (with the default 30 s wait, add 30 s: the wait
  is deliberate, so incidents opening together make one message);
- storm: `storm` monitors confirmed down in one batch: the time until the sink has every
  event, (a) through a webhook (one grouped message) and (b) through PagerDuty's
  Events API shape (one request per incident, at most 32 in flight).
Only loopback: the monitors are never probed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import pathlib
import platform
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs" / "BENCHMARKS.md"
START_MARK, END_MARK = "<!-- alerts:start -->", "<!-- alerts:end -->"


def log(message: str) -> None:
    print(f"[alerts {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the sink, in its own process -------------------------------------------------------


def run_sink(port: int, out: pathlib.Path) -> None:
    from aiohttp import web

    stream = out.open("a", buffering=1)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        payload = json.loads(body)
        if "events" in payload:  # webhook
            keys = [e["incident"] + "/" + payload["kind"] for e in payload["events"]]
        else:  # PagerDuty Events v2
            keys = [payload["dedup_key"] + "/" + payload["event_action"]]
        stream.write(json.dumps({"at": arrived, "keys": keys}) + "\n")
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SinkLog:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.offset = 0
        self.arrivals: dict[str, float] = {}

    def read(self) -> None:
        with self.path.open() as f:
            f.seek(self.offset)
            for line in f:
                if not line.endswith("\n"):
                    break
                self.offset += len(line.encode())
                entry = json.loads(line)
                for key in entry["keys"]:
                    self.arrivals.setdefault(key, entry["at"])

    async def wait(self, count: int, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while True:
            self.read()
            if len(self.arrivals) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink has {len(self.arrivals)} of {count} alerts")
            await asyncio.sleep(0.002)


# -- the prober side -------------------------------------------------------------------


def config_text(db: pathlib.Path, url: str, monitors: int, kind: str) -> str:
    notifier = (
        f'type = "webhook"\nurl = "{url}"'
        if kind == "webhook"
        else f'type = "pagerduty"\nrouting_key = "bench-routing-key"\napi_url = "{url}"'
    )
    parts = [
        f'[settings]\ndatabase = "sqlite:///{db}"\nalert_group_wait = "0s"\n',
        '[defaults]\ndown_after = 1\nnotify = ["hook"]\n',
        f'[[notifiers]]\nid = "hook"\n{notifier}\n',
    ]
    parts += [
        f'[[monitors]]\nid = "m{i:04d}"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
        for i in range(monitors)
    ]
    return "\n".join(parts)


class Prober:
    """The writer and the dispatcher, wired as `prober run` wires them."""

    def __init__(self, directory: pathlib.Path, url: str, monitors: int, kind: str) -> None:
        from prober.config.load import load_config

        path = directory / f"{kind}-{monitors}.toml"
        self.db = directory / f"{kind}-{monitors}.db"
        path.write_text(config_text(self.db, url, monitors, kind))
        self.config = load_config(path)

    async def __aenter__(self) -> Prober:
        import aiohttp

        from prober.alerts.dispatcher import Dispatcher
        from prober.alerts.outbox import Outbox, Routes
        from prober.store.db import open_engine
        from prober.store.ledger import TrackSpec
        from prober.store.writer import ResultWriter

        config = self.config
        open_engine(config.database_path).dispose()
        self.writer = ResultWriter(
            config.database_path,
            config.settings.location,
            [TrackSpec.of(m) for m in config.monitors],
            outbox=Outbox(config.settings.location, Routes.of(config)),
        )
        self.writer.start()
        self.session = aiohttp.ClientSession()
        self.dispatcher = Dispatcher(config, config.database_path, self.session)
        self.writer.on_alert = self.dispatcher.wake
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.dispatcher.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await self.task
        await asyncio.to_thread(self.writer.close)
        await self.session.close()

    def submit(self, monitors: list[str], outcome: str) -> float:
        from prober.results import CheckResult, Outcome
        from prober.store.writer import Observation

        at = dt.datetime.now(dt.UTC)
        handed = time.time()
        result = CheckResult(Outcome(outcome), 5.0, error="status: saw 503, wanted [200]")
        for monitor in monitors:
            self.writer.submit(Observation(monitor, at, result))
        return handed

    def incident_key(self, monitor: str) -> str:
        conn = sqlite3.connect(self.db)
        try:
            (start,) = conn.execute(
                "SELECT max(i.start_ms) FROM incident i JOIN monitor m ON m.id = i.monitor_id"
                " WHERE m.slug = ?",
                (monitor,),
            ).fetchone()
        finally:
            conn.close()
        return f"{self.config.settings.location}/{monitor}/{start}"


async def latency(
    directory: pathlib.Path, sink: SinkLog, url: str, rounds: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"opened": [], "resolved": []}
    async with Prober(directory, url, 1, "webhook") as prober:
        for n in range(rounds):
            for outcome, kind in (("down", "opened"), ("up", "resolved")):
                handed = prober.submit(["m0000"], outcome)
                await sink.wait(2 * n + (1 if kind == "opened" else 2))
                key = prober.incident_key("m0000") + "/" + kind
                found[kind].append(sink.arrivals[key] - handed)
                await asyncio.sleep(0.02)
    return found


async def storm(
    directory: pathlib.Path, sink: SinkLog, url: str, monitors: int, kind: str
) -> float:
    async with Prober(directory, url, monitors, kind) as prober:
        before = len(sink.arrivals)
        names = [f"m{i:04d}" for i in range(monitors)]
        handed = prober.submit(names, "down")
        await sink.wait(before + monitors, within=300)
        last = max(sorted(sink.arrivals.values())[before:])
        return last - handed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def publish(text: str) -> None:
    """Rewrite the block between the markers in docs/BENCHMARKS.md."""
    docs = DOCS.read_text()
    note = "<!-- generated by bench/alerts.py; edits between these markers are overwritten -->"
    block = f"{START_MARK}\n{note}\n\n{text}\n{END_MARK}"
    pattern = re.escape(START_MARK) + ".*?" + re.escape(END_MARK)
    if not re.search(pattern, docs, flags=re.S):
        raise SystemExit(f"{DOCS}: the {START_MARK} ... {END_MARK} markers are missing")
    DOCS.write_text(re.sub(pattern, lambda _: block, docs, flags=re.S))


async def main_async(args: argparse.Namespace) -> str:
    directory = pathlib.Path(tempfile.mkdtemp(prefix="prober-alerts-bench-"))
    port = free_port()
    out = directory / "sink.jsonl"
    out.touch()
    sink_process = subprocess.Popen(  # noqa: ASYNC220 (before any work: nothing to block)
        [sys.executable, __file__, "--sink", str(port), str(out)]
    )
    try:
        url = f"http://127.0.0.1:{port}/hook"
        sink = SinkLog(out)
        for _ in range(200):  # wait for the sink to listen
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        log(f"latency: {args.rounds} incidents, opened and resolved, one after another")
        lat = await latency(directory, sink, url, args.rounds)
        log(f"storm: {args.storm} monitors down at once, webhook (grouped)")
        grouped = await storm(directory, sink, url, args.storm, "webhook")
        log(f"storm: {args.storm} monitors down at once, PagerDuty (one request per incident)")
        single = await storm(directory, sink, url, args.storm, "pagerduty")
    finally:
        sink_process.terminate()
        sink_process.wait(10)
    rows = []
    for kind in ("opened", "resolved"):
        ms = [v * 1000 for v in lat[kind]]
        rows.append(
            f"| {kind}: confirming result → sink | {statistics.median(ms):.0f} ms | "
            f"{percentile(ms, 99):.0f} ms | {max(ms):.0f} ms | p99 < 1,000 ms |"
        )
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"**Run:** {when}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f'SQLite {sqlite3.sqlite_version}; `alert_group_wait = "0s"`, writer linger 100 ms.',
            "",
            "| measure | median | p99 | max | target |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "| storm | time to the last event at the sink | events/s |",
            "|---|---|---|",
            f"| {args.storm} incidents at once, webhook (one grouped message) "
            f"| {grouped:.2f} s | {args.storm / grouped:,.0f} |",
            f"| {args.storm} incidents at once, PagerDuty shape ({args.storm} requests, "
            f"≤ 32 in flight) | {single:.2f} s | {args.storm / single:,.0f} |",
        ]
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--sink":
        run_sink(int(sys.argv[2]), pathlib.Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--storm", type=int, default=1000)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not a line per incident of the storm
    text = asyncio.run(main_async(args))
    print(text)
    if not args.no_docs:
        publish(text)
        log(f"written to {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
