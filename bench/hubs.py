#!/usr/bin/env python3
"""Hubs benchmark (issue 13's targets): a hub with two real agents, on SQLite and PostgreSQL.

    .venv/bin/python bench/hubs.py [--engine sqlite|postgresql|both] [--monitors 3000]
                                   [--window 300] [--flip 100] [--part live|ingest|both]

Loopback only. Every child runs in its own process group and is killed on exit or error.

live: one `prober run` hub (location `hub`) and two `prober agent` processes (locations
  `a`, `b`) on this machine; every monitor at 60 s on all three locations, quorum 2:
  3 x monitors / 60 results/s (150/s for 3,000). The target is one aiohttp process on
  127.0.0.1 (`/m/<id>` answers 200; it counts arrivals per location from the checks'
  `User-Agent: prober/V (location=NAME)`). Measured over `--window` seconds from just after
  all three run:
  - every result stored: per location, the due times of every monitor in the window (its
    phase grid) against the rows stored for them (a row within -1 s..+5 s of the due time);
  - verdict lag: `--flip` monitors answer 500 to agents a and b (the hub still sees 200)
    from a known moment, and 200 again 70 s later, twice in a 300 s window; a thread polls
    the hub's database every 50 ms (read-only on SQLite; its own connection on PostgreSQL)
    and notes when each of those monitors' results and combined (`*`) transitions first
    became visible. A row is visible once committed, and an agent's batch is answered 200
    only once committed, so "visible" is "accepted by the hub" (to the poll's resolution).
    Lag = the combined transition's first sight minus the first sight of the last result
    it needed: at each location, the first result at or after the transition's time
    minus half an interval (quorum.Gate judges a moment only once every location still
    reporting has sent it, or can send nothing older). No hook in the prober is needed;
  - CPU of the hub's process tree (probing + web process) per result stored, its RSS; the
    agents' and PostgreSQL's CPU beside it (the poll's own backend is subtracted).
ingest: a fresh hub whose monitors are on locations a and b only (it probes nothing);
  the harness replays agents' batches (prober.agent.wire, 2,000 results, gzip, signed with
  the agents' real tokens) of rounds of results in the past, one batch at a time, a's then
  b's for the same monitors and rounds (in step: no result arrives behind a moment the gate
  let through, which would be a Rewind), as fast as the hub answers 200: results/s.

PostgreSQL: a throwaway cluster from tests/support/pg.py, with durable settings (fsync,
synchronous_commit, full_page_writes on), under /tmp; never the system cluster.
Writes bench/out/hubs/ (configs, logs, results.json) and its section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import gzip
import json
import math
import os
import pathlib
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from run import (  # noqa: E402
    Children,
    TreeSample,
    TreeSampler,
    code_fingerprint,
    free_port,
    pct,
    system_busy,
    terminate_as_interrupt,
    wait_port,
)

OUT = ROOT / "bench" / "out" / "hubs"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
SECTION = "## Hubs (issue 13)"  # the section of BENCHMARKS.md this bench writes
PROBER = str(ROOT / ".venv" / "bin" / "prober")
PYTHON = sys.executable
INTERVAL = 60
HALF_MS = INTERVAL * 1000 // 2
AGENTS = ("a", "b")
HUB = "hub"
COMBINED = "*"
TOKENS = {name: f"bench-{name}-token-{'k' * 32}" for name in AGENTS}
POLL_EVERY = 0.05  # seconds between the verdict watcher's polls
WARM = 62  # seconds after all three run before the window: every location did a round
FLIP_FIRST = 5  # seconds into the window: the first flip down
FLIP_DOWN_FOR = 65  # seconds the flipped targets answer 500 (> one interval)
FLIP_CYCLE = 135  # seconds between flips down
SENTINEL_MS = 1_111_111_111_111  # replaced by the send time in each replayed batch
TARGET_LAG_P99_S = 2.0


def say(msg: str) -> None:
    print(f"[hubs {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- target


def serve_target(port: int) -> None:
    """The monitors' target, in its own process: `/m/<id>` 200 "ok", or 500 while <id> is
    flipped down for the checking location; `/ctl` reads and sets that."""
    from aiohttp import web

    down: set[str] = set()
    down_at: set[str] = set()
    counts: Counter[str] = Counter()
    where = re.compile(r"location=([a-z0-9_-]+)")

    async def check(request: web.Request) -> web.Response:
        found = where.search(request.headers.get("User-Agent", ""))
        location = found.group(1) if found else "?"
        counts[location] += 1
        if location in down_at and request.match_info["id"] in down:
            return web.Response(status=500, text="flipped")
        return web.Response(text="ok")

    async def control(request: web.Request) -> web.Response:
        if request.method == "POST":
            doc = await request.json()
            down.clear()
            down.update(doc["down"])
            down_at.clear()
            down_at.update(doc["locations"])
        return web.json_response({"arrivals": dict(counts), "down": len(down)})

    app = web.Application()
    app.router.add_get("/m/{id}", check)
    app.router.add_route("*", "/ctl", control)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def target_control(port: int, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    import urllib.request

    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ctl", data=data, method="POST" if data else "GET"
    )
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


# --------------------------------------------------------------------------- processes


class LineLog:
    """A child's stderr kept in a file on a thread; `ready` once a line holds `ready_text`."""

    def __init__(self, proc: subprocess.Popen[bytes], path: pathlib.Path, ready_text: str) -> None:
        self.ready = threading.Event()
        self.ready_at: float | None = None
        self.errors: list[str] = []
        self.warnings = 0
        self._ready_text = ready_text
        self._thread = threading.Thread(target=self._read, args=(proc, path), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes], path: pathlib.Path) -> None:
        assert proc.stderr is not None
        with path.open("wb") as out:
            for raw in proc.stderr:
                out.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                if " ERROR " in line or " CRITICAL " in line or "Traceback" in line:
                    if len(self.errors) < 5:
                        self.errors.append(line[:300])
                elif " WARNING " in line:
                    self.warnings += 1
                if self.ready_at is None and self._ready_text in line:
                    self.ready_at = time.time()
                    self.ready.set()
        self.ready.set()

    def wait(self, proc: subprocess.Popen[bytes], what: str, timeout: float = 120.0) -> float:
        if not self.ready.wait(timeout) or self.ready_at is None:
            raise RuntimeError(f"{what} not ready (exit {proc.poll()}): {self.errors}")
        return self.ready_at


def start_child(
    children: Children,
    name: str,
    argv: list[str],
    folder: pathlib.Path,
    env: dict[str, str],
    ready: str,
) -> tuple[subprocess.Popen[bytes], LineLog]:
    proc: subprocess.Popen[bytes] = children.start(
        name,
        argv,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, LineLog(proc, folder / f"{name}.log", ready)


def child_env() -> dict[str, str]:
    env = {**os.environ, **{f"{n.upper()}_TOKEN": t for n, t in TOKENS.items()}}
    env.pop("PROBER_CONFIG", None)
    return env


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway cluster with durable settings (tests/support/pg.py, its SETTINGS
    overridden in this process only); a database per scenario."""

    def __init__(self) -> None:
        from tests.support import pg

        pg.SETTINGS.update(
            {
                "fsync": "on",
                "synchronous_commit": "on",
                "full_page_writes": "on",
                "max_connections": "100",
            }
        )
        self.cluster = pg.start_cluster(pathlib.Path(tempfile.mkdtemp(prefix="prober-bench-pg-")))
        assert self.cluster.process is not None
        self.pid = self.cluster.process.pid
        with self.cluster.admin() as conn:
            self.settings = {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in (
                    "fsync",
                    "synchronous_commit",
                    "full_page_writes",
                    "server_version",
                    "shared_buffers",
                )
            }

    def stop(self) -> None:
        self.cluster.stop()


# --------------------------------------------------------------------------- the database, read


class Reader:
    """Read-only access to the hub's database: sqlite3 (mode=ro) or psycopg (autocommit)."""

    def __init__(self, engine: str, where: str) -> None:
        self.engine = engine
        self.backend_pid: int | None = None
        if engine == "sqlite":
            self._sqlite = sqlite3.connect(
                f"file:{where}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        else:
            import psycopg

            self._pg = psycopg.connect(where, autocommit=True)
            row = self._pg.execute("SELECT pg_backend_pid()").fetchone()
            self.backend_pid = int(row[0]) if row else None

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.engine == "sqlite":
            return self._sqlite.execute(query).fetchall()
        return list(self._pg.execute(query).fetchall())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            (self._sqlite if self.engine == "sqlite" else self._pg).close()


def table_stats(reader: Reader) -> list[dict[str, Any]]:
    """PostgreSQL's per-table counters (scans, rows read and written) since the database was
    made, busiest first: where the hub's statements go."""
    if reader.engine != "postgresql":
        return []
    rows = reader.rows(
        "SELECT relname, seq_scan, seq_tup_read, COALESCE(idx_scan, 0), n_tup_ins, n_tup_upd,"
        " n_tup_del FROM pg_stat_user_tables ORDER BY seq_tup_read DESC"
    )
    keys = ("table", "seq_scan", "seq_tup_read", "idx_scan", "ins", "upd", "del")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def ids_of(reader: Reader, table: str, column: str, names: list[str]) -> dict[str, int]:
    quoted = ",".join("'" + n.replace("'", "''") + "'" for n in names)
    return {
        str(name): int(i)
        for i, name in reader.rows(f"SELECT id, {column} FROM {table} WHERE {column} IN ({quoted})")
    }


class Proxy:
    """The agents' way to the hub, in a thread of this process: forwards every request as
    it came (a gzipped batch is gzipped again) and notes when each result of a batch
    reached it, i.e. the hub (loopback, a millisecond before)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = f"http://127.0.0.1:{upstream}"
        self.port = free_port()
        self.arrivals: dict[tuple[str, str, int], float] = {}  # (location, monitor, ts) -> time
        self.batches = 0
        self.answers: Counter[str] = Counter()  # "location status" of each POST of results
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("proxy did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _forward(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()  # inflated by aiohttp when gzipped
        arrived = time.time()
        location = "?"
        if request.method == "POST" and request.path.endswith("/results"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(body)
                location = str(doc["location"])
                self.batches += 1
                for item in doc["results"]:
                    key = (doc["location"], item["monitor"], int(item["ts_ms"]))
                    self.arrivals.setdefault(key, arrived)
        kept = ("Authorization", "Content-Type", "If-None-Match", "User-Agent")
        headers = {k: request.headers[k] for k in kept if k in request.headers}
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as answer:
            data = await answer.read()
            if request.method == "POST":
                self.answers[f"{location} {answer.status}"] += 1
            passed = ("Content-Type", "ETag", "Content-Encoding", "Cache-Control")
            out = {k: answer.headers[k] for k in passed if k in answer.headers}
            return web.Response(status=answer.status, body=data, headers=out)

    def stop(self) -> None:
        async def close() -> None:
            await self._runner.cleanup()
            await self._session.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class VerdictWatch:
    """Polls the hub's database for the flipped monitors' results and combined transitions;
    notes when each row was first seen."""

    def __init__(self, reader: Reader, flipped: list[str]) -> None:
        self.reader = reader
        self.flipped = flipped
        # (monitor id, location id, ts) -> (first seen, outcome, latency_us)
        self.results: dict[tuple[int, int, int], tuple[float, int, int]] = {}
        # (monitor id, ts) -> (first seen, old, new)
        self.transitions: dict[tuple[int, int], tuple[float, str | None, str]] = {}
        self.monitors: dict[str, int] = {}
        self.locations: dict[str, int] = {}
        self.polls = 0
        self.poll_s: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as exc:  # a bench: note it and go on
                say(f"verdict watch: {exc}")
                self._stop.wait(1.0)
            self._stop.wait(POLL_EVERY)

    def _poll(self) -> None:
        if len(self.monitors) < len(self.flipped):
            self.monitors = ids_of(self.reader, "monitor", "slug", self.flipped)
        if COMBINED not in self.locations or len(self.locations) < 4:
            self.locations = ids_of(self.reader, "location", "name", [HUB, *AGENTS, COMBINED])
        if not self.monitors or COMBINED not in self.locations:
            return
        began = time.time()
        since = int(began * 1000) - 75_000
        wanted = ",".join(str(i) for i in self.monitors.values())
        # transitions first: a commit between the two reads then shows its results early,
        # never its verdict early
        changes = self.reader.rows(
            f"SELECT monitor_id, ts_ms, old, new FROM transition WHERE location_id ="
            f" {self.locations[COMBINED]} AND monitor_id IN ({wanted}) AND ts_ms >= {since}"
        )
        results = self.reader.rows(
            "SELECT monitor_id, location_id, ts_ms, outcome, COALESCE(latency_us, 0) FROM result"
            f" WHERE monitor_id IN ({wanted}) AND ts_ms >= {since}"
        )
        seen = time.time()
        for m, loc, ts, outcome, latency in results:
            key = (int(m), int(loc), int(ts))
            self.results.setdefault(key, (seen, int(outcome), int(latency)))
        for m, ts, old, new in changes:
            self.transitions.setdefault((int(m), int(ts)), (seen, old, str(new)))
        self.polls += 1
        self.poll_s.append(seen - began)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def lags(self, from_ms: int, arrivals: dict[tuple[str, str, int], float]) -> dict[str, Any]:
        """For each combined up->down and down->up transition at or after `from_ms`, the
        results it needed: at each location, the first at or after the transition's time
        minus half an interval (quorum.Gate judges a moment once every location still
        reporting sent it). Three figures, from the transition's first sight:
        - `received`: minus when the hub got the last of them (an agent's: its batch at the
          proxy; the hub's own: the check's end, ts + latency): the verdict lag;
        - `committed`: minus the first sight of the last of them (0: the same commit);
        - `check`: minus the check start (ts) that changed the verdict (agents' batching
          and the check itself included)."""
        names = {v: k for k, v in self.locations.items()}
        slugs = {v: k for k, v in self.monitors.items()}
        by_place: dict[tuple[int, int], list[tuple[int, float, float]]] = defaultdict(list)
        for (m, loc, ts), (seen, _outcome, latency_us) in self.results.items():
            if names.get(loc) == HUB:
                received = (ts + latency_us / 1000) / 1000
            else:
                received = arrivals.get((names.get(loc, "?"), slugs.get(m, "?"), ts), math.nan)
            by_place[(m, loc)].append((ts, seen, received))
        for series in by_place.values():
            series.sort()
        places = [self.locations[n] for n in (HUB, *AGENTS) if n in self.locations]
        samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        missing = 0
        for (m, ts), (seen, old, new) in sorted(self.transitions.items()):
            if ts < from_ms or (old, new) not in (("up", "down"), ("down", "up")):
                continue
            needed = []
            for loc in places:
                series = by_place.get((m, loc), [])
                i = bisect.bisect_left(series, (ts - HALF_MS, 0.0, 0.0))
                if i < len(series):
                    needed.append(series[i])
            if len(needed) < len(places) or any(math.isnan(n[2]) for n in needed):
                missing += 1
                continue
            for kind in ("all", new):
                samples[kind]["received"].append(seen - max(n[2] for n in needed))
                samples[kind]["committed"].append(seen - max(n[1] for n in needed))
                samples[kind]["check"].append(seen - ts / 1000)
        out: dict[str, Any] = {"missing_results": missing, "polls": self.polls}
        out["poll_ms_p99"] = _r((pct(self.poll_s, 99) or 0) * 1000)
        for kind, figures in samples.items():
            out[kind] = {
                name: {
                    "n": len(values),
                    "p50_s": _r(pct(values, 50), 3),
                    "p99_s": _r(pct(values, 99), 3),
                    "max_s": _r(max(values), 3),
                    "min_s": _r(min(values), 3),
                }
                for name, values in figures.items()
            }
        return out


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- configs


def monitor_ids(count: int) -> list[str]:
    width = len(str(count))
    return [f"m{i:0{width}d}" for i in range(1, count + 1)]


def hub_config(
    folder: pathlib.Path,
    port: int,
    database: str,
    ids: list[str],
    target: str,
    locations: list[str],
) -> pathlib.Path:
    agents = "".join(
        f'[[agents]]\nlocation = "{n}"\ntoken = "${{{n.upper()}_TOKEN}}"\n\n' for n in AGENTS
    )
    listed = ", ".join(f'"{n}"' for n in locations)
    lines = [
        "[settings]",
        f'location = "{HUB}"',
        'title = "bench hubs"',
        f'listen = "127.0.0.1:{port}"',
        'metrics = { listen = "" }',
        f'database = "{database}"',
        'timezone = "UTC"',
        "",
        agents,
        "[defaults]",
        f'interval = "{INTERVAL}s"',
        'timeout = "10s"',
        f"locations = [{listed}]",
        "quorum = 2",
        "down_after = 1",
        "up_after = 1",
        "",
    ]
    for mid in ids:
        lines += ["[[monitors]]", f'id = "{mid}"', 'type = "http"', f'url = "{target}/m/{mid}"', ""]
    path = folder / "monitors.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def agent_config(folder: pathlib.Path, name: str, hub_port: int) -> pathlib.Path:
    path = folder / f"agent-{name}.toml"
    path.write_text(
        f'[settings]\nlocation = "{name}"\ndatabase = "sqlite:///{folder / f"agent-{name}.db"}"\n\n'
        f'[hub]\nurl = "http://127.0.0.1:{hub_port}"\ntoken = "${{{name.upper()}_TOKEN}}"\n'
    )
    path.chmod(0o600)
    return path


def scenario_database(
    engine: str, folder: pathlib.Path, pg: Postgres | None, name: str
) -> tuple[str, str]:
    """(the config's `database`, what Reader opens)."""
    if engine == "sqlite":
        db = folder / "hub.db"
        return f"sqlite:///{db}", str(db)
    assert pg is not None
    url = pg.cluster.new_database(name)
    return url, url


def tree_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError):
        return TreeSample.take(pid).cpu_s
    return 0.0


def own_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- live


def due_grid(ids: list[str], t0: float, t1: float) -> dict[str, list[int]]:
    from prober.scheduler import phase_offset

    grid: dict[str, list[int]] = {}
    for mid in ids:
        phase = phase_offset(mid, INTERVAL)
        k = -(-int((t0 - phase) * 1000) // (INTERVAL * 1000))
        times = []
        while (due := phase + k * INTERVAL) < t1:
            times.append(int(due * 1000))
            k += 1
        grid[mid] = times
    return grid


def stored_in(reader: Reader, t0: float, t1: float) -> dict[str, int]:
    rows = reader.rows(
        "SELECT l.name, COUNT(*) FROM result r JOIN location l ON l.id = r.location_id"
        f" WHERE r.ts_ms >= {int(t0 * 1000)} AND r.ts_ms < {int(t1 * 1000)} GROUP BY l.name"
    )
    return {str(name): int(n) for name, n in rows}


def completeness(reader: Reader, ids: list[str], t0: float, t1: float) -> dict[str, Any]:
    """Per location: due times in [t0, t1) and how many have a stored row within -1..+5 s."""
    grid = due_grid(ids, t0, t1)
    monitors = {v: k for k, v in ids_of(reader, "monitor", "slug", ids).items()}
    locations = {v: k for k, v in ids_of(reader, "location", "name", [HUB, *AGENTS]).items()}
    have: dict[tuple[str, str], list[int]] = defaultdict(list)
    for m, loc, ts in reader.rows(
        "SELECT monitor_id, location_id, ts_ms FROM result"
        f" WHERE ts_ms >= {int(t0 * 1000) - 2000} AND ts_ms < {int(t1 * 1000) + 6000}"
    ):
        if int(m) in monitors and int(loc) in locations:
            have[(monitors[int(m)], locations[int(loc)])].append(int(ts))
    out: dict[str, Any] = {}
    for name in (HUB, *AGENTS):
        expected = found = 0
        examples: list[str] = []
        for mid, dues in grid.items():
            series = sorted(have.get((mid, name), []))
            for due in dues:
                expected += 1
                i = bisect.bisect_left(series, due - 1000)
                if i < len(series) and series[i] <= due + 5000:
                    found += 1
                elif len(examples) < 3:
                    examples.append(
                        f"{mid}@{dt.datetime.fromtimestamp(due / 1000, dt.UTC):%H:%M:%S}"
                    )
        out[name] = {
            "expected": expected,
            "stored": found,
            "missing": expected - found,
            "examples": examples,
        }
    return out


def run_live(
    engine: str, args: argparse.Namespace, pg: Postgres | None, children: Children
) -> dict[str, Any]:
    folder = OUT / f"live-{engine}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ids = monitor_ids(args.monitors)
    step = max(1, len(ids) // args.flip)
    flipped = ids[::step][: args.flip]
    env = child_env()

    tport = free_port()
    target = children.start(
        "target",
        [PYTHON, __file__, "--serve-target", str(tport)],
        stdin=subprocess.DEVNULL,
        cwd=folder,
    )
    wait_port(tport, 30, target)

    database, where = scenario_database(engine, folder, pg, f"live_{int(time.time())}")
    port = free_port()
    cfg = hub_config(folder, port, database, ids, f"http://127.0.0.1:{tport}", [HUB, *AGENTS])
    say(f"live {engine}: {len(ids)} monitors x 3 locations, hub on 127.0.0.1:{port}")
    launched = time.time()
    source = code_fingerprint()
    hub, hub_log = start_child(
        children, "hub", [PROBER, "run", "-c", str(cfg)], folder, env, "prober running"
    )
    hub_ready = hub_log.wait(hub, "hub", 180)
    sampler = TreeSampler(hub.pid)
    proxy = Proxy(port)
    agents: dict[str, tuple[subprocess.Popen[bytes], LineLog]] = {}
    for name in AGENTS:
        acfg = agent_config(folder, name, proxy.port)
        agents[name] = start_child(
            children,
            f"agent-{name}",
            [PROBER, "agent", "-c", str(acfg)],
            folder,
            env,
            "prober agent running",
        )
    ready = max([hub_ready] + [lg.wait(p, f"agent {n}", 120) for n, (p, lg) in agents.items()])
    reader = Reader(engine, where)
    watch = VerdictWatch(Reader(engine, where), flipped)
    pg_sampler = TreeSampler(pg.pid) if pg is not None else None

    t0 = ready + WARM
    t1 = t0 + args.window
    while time.time() < t0:
        time.sleep(0.05)
    busy0 = system_busy()
    cpu0 = {"hub": tree_cpu(hub.pid), "pg": tree_cpu(pg.pid if pg else None)}
    cpu0.update({f"agent-{n}": tree_cpu(p.pid) for n, (p, _) in agents.items()})
    poll0 = own_cpu(watch.reader.backend_pid)
    flips: list[dict[str, Any]] = []
    start = FLIP_FIRST
    while start + FLIP_DOWN_FOR + INTERVAL <= args.window:
        flips += [
            {"at": t0 + start, "down": True},
            {"at": t0 + start + FLIP_DOWN_FOR, "down": False},
        ]
        start += FLIP_CYCLE
    for flip in flips:
        while (left := flip["at"] - time.time()) > 0:
            if hub.poll() is not None:
                raise RuntimeError(f"hub exited with {hub.returncode}: {hub_log.errors}")
            time.sleep(min(left, 0.5))
        target_control(tport, {"down": flipped if flip["down"] else [], "locations": list(AGENTS)})
        flip["done"] = time.time()
        state = "down" if flip["down"] else "up"
        say(f"live {engine}: {len(flipped)} targets {state} for agents a, b")
    while (left := t1 - time.time()) > 0:
        if hub.poll() is not None:
            raise RuntimeError(f"hub exited with {hub.returncode}: {hub_log.errors}")
        time.sleep(min(left, 0.5))
    busy1 = system_busy()
    cpu1 = {"hub": tree_cpu(hub.pid), "pg": tree_cpu(pg.pid if pg else None)}
    cpu1.update({f"agent-{n}": tree_cpu(p.pid) for n, (p, _) in agents.items()})
    poll1 = own_cpu(watch.reader.backend_pid)

    # Drain: results of checks started before t1 still on their way.
    last: dict[str, int] = {}
    stable_since = time.time()
    while time.time() < t1 + 90:
        now = stored_in(reader, t0, t1)
        if now != last:
            last, stable_since = now, time.time()
        elif time.time() - stable_since >= 6 and time.time() > t1 + 15:
            break
        time.sleep(2)
    watch.stop()
    sampler.stop()
    if pg_sampler is not None:
        pg_sampler.stop()
    arrivals = target_control(tport)["arrivals"]
    complete = completeness(reader, ids, t0, t1)
    lags = watch.lags(int(flips[0]["at"] * 1000) if flips else 0, proxy.arrivals)
    hwm = TreeSample.take(hub.pid).hwm_kb
    tables = table_stats(reader)
    reader.close()
    watch.reader.close()
    for proc, _ in agents.values():
        children.stop(proc)
    hub_rc = children.stop(hub)
    proxy.stop()
    children.stop(target)

    stored = sum(v["stored"] for v in complete.values())
    rows = sum(last.values())
    seconds = t1 - t0
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
    cpu["pg"] -= poll1 - poll0
    result: dict[str, Any] = {
        "engine": engine,
        "monitors": len(ids),
        "window_s": args.window,
        "startup_s": round(hub_ready - launched, 1),
        "flipped": len(flipped),
        "flips": [round(f["done"] - t0, 1) for f in flips],
        "complete": complete,
        "rows_in_window": last,
        "arrivals_at_target": arrivals,
        "results_per_s": round(rows / seconds, 1),
        "lag": lags,
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "hub_cores": round(cpu["hub"] / seconds, 3),
        "hub_cpu_ms_per_result": round(cpu["hub"] * 1000 / rows, 3) if rows else None,
        "pg_cpu_ms_per_result": round(cpu["pg"] * 1000 / rows, 3) if rows and pg else None,
        "agent_cpu_ms_per_check": {
            n: round(cpu[f"agent-{n}"] * 1000 / max(1, complete[n]["expected"]), 3) for n in AGENTS
        },
        "hub_rss_mb": round(max((s.rss_kb for s in sampler.samples), default=0) / 1024, 1),
        "hub_hwm_mb": round(hwm / 1024, 1),
        "pg_rss_mb": round(max((s.rss_kb for s in pg_sampler.samples), default=0) / 1024, 1)
        if pg_sampler
        else None,
        "pg_pss_mb": round(max((s.pss_kb for s in pg_sampler.samples), default=0) / 1024, 1)
        if pg_sampler
        else None,
        "machine_busy_cores": round(
            (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * (os.cpu_count() or 1), 2
        ),
        "hub_exit": hub_rc,
        "errors": {"hub": hub_log.errors, **{n: lg.errors for n, (_, lg) in agents.items()}},
        "warnings": {"hub": hub_log.warnings, **{n: lg.warnings for n, (_, lg) in agents.items()}},
        "stored_total": stored,
        "answers_to_agents": dict(sorted(proxy.answers.items())),
        "source": [source, code_fingerprint()],
        "pg_tables": tables,
    }
    shown = ("complete", "lag", "hub_cpu_ms_per_result", "hub_rss_mb")
    say(f"live {engine}: {json.dumps({k: result[k] for k in shown})}")
    return result


# --------------------------------------------------------------------------- ingest


def replay_batches(ids: list[str], rounds: int, size: int) -> dict[str, list[tuple[bytes, int]]]:
    """Per agent location, wire-encoded batches (sent_ms = SENTINEL_MS) of `rounds` rounds of
    results in the past, in time order, as an agent's queue drains."""
    from prober.agent import wire
    from prober.results import Outcome
    from prober.scheduler import phase_offset

    now_ms = int(time.time() * 1000)
    base = (now_ms // 60_000 - rounds - 2) * 60_000
    phases = {mid: int(phase_offset(mid, INTERVAL) * 1000) for mid in ids}
    out: dict[str, list[tuple[bytes, int]]] = {}
    for n, name in enumerate(AGENTS):
        keys = sorted(
            (base + k * 60_000 + phases[mid] + n, mid) for k in range(rounds) for mid in ids
        )
        results = [
            wire.WireResult(
                mid,
                ts,
                Outcome.UP,
                1800 + ts % 700,
                status_code=200,
                connect_us=150,
                first_byte_us=1500,
            )
            for ts, mid in keys
        ]
        batches = []
        for seq, i in enumerate(range(0, len(results), size)):
            chunk = tuple(results[i : i + size])
            batch = wire.Batch(name, SENTINEL_MS, seq, len(results) - i - len(chunk), 0, chunk)
            batches.append((wire.encode(batch), len(chunk)))
        out[name] = batches
    return out


async def replay(
    port: int, batches: dict[str, list[tuple[bytes, int]]], deadline: float
) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/agent/v1/results"
    statuses: Counter[int] = Counter()
    accepted = 0
    sentinel = str(SENTINEL_MS).encode()

    async def post(session: aiohttp.ClientSession, name: str, body: bytes) -> None:
        nonlocal accepted
        headers = {
            "Authorization": f"Bearer {TOKENS[name]}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        while True:
            now = str(int(time.time() * 1000)).encode()
            data = gzip.compress(body.replace(sentinel, now, 1), compresslevel=6)
            async with session.post(url, data=data, headers=headers) as answer:
                text = await answer.read()
                statuses[answer.status] += 1
            if answer.status == 200:
                doc = json.loads(text)
                accepted += int(doc.get("accepted", 0))
                if doc.get("refused"):
                    raise RuntimeError(f"hub refused results: {doc['refused'][:2]}")
                return
            if answer.status in (429, 503):
                await asyncio.sleep(0.05)
                continue
            raise RuntimeError(f"hub answered {answer.status}: {text[:300]!r}")

    # a's batch k, then b's (the same monitors and rounds, 1 ms later), then a's k + 1: the
    # locations stay in step, so no result arrives behind a moment the gate let through
    # (a Rewind: what an agent back from an outage costs, not the steady state)
    timeout = aiohttp.ClientTimeout(total=120)
    done = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        began = time.time()
        for k in range(max(len(v) for v in batches.values())):
            if time.time() - began > deadline:
                break
            for name in AGENTS:
                if k < len(batches[name]):
                    await post(session, name, batches[name][k][0])
                    done += batches[name][k][1]
        ended = time.time()
    return {
        "began": began,
        "ended": ended,
        "accepted": accepted,
        "sent": done,
        "statuses": dict(statuses),
    }


def run_ingest(
    engine: str, args: argparse.Namespace, pg: Postgres | None, children: Children
) -> dict[str, Any]:
    folder = OUT / f"ingest-{engine}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ids = monitor_ids(args.monitors)
    rounds = max(1, -(-args.replay // (len(ids) * len(AGENTS))))
    say(f"ingest {engine}: encoding {rounds} rounds x {len(ids)} monitors x {len(AGENTS)} agents")
    batches = replay_batches(ids, rounds, args.batch)
    database, where = scenario_database(engine, folder, pg, f"ingest_{int(time.time())}")
    port = free_port()
    cfg = hub_config(folder, port, database, ids, "http://127.0.0.1:9", list(AGENTS))
    source = code_fingerprint()
    hub, hub_log = start_child(
        children, "hub", [PROBER, "run", "-c", str(cfg)], folder, child_env(), "prober running"
    )
    hub_log.wait(hub, "hub", 180)
    time.sleep(3.0)  # let start-up work (first snapshot, upkeep) pass before the clock starts
    sampler = TreeSampler(hub.pid, every=1.0)
    cpu0 = {"hub": tree_cpu(hub.pid), "pg": tree_cpu(pg.pid if pg else None)}
    busy0 = system_busy()
    said = asyncio.run(replay(port, batches, args.deadline))
    cpu1 = {"hub": tree_cpu(hub.pid), "pg": tree_cpu(pg.pid if pg else None)}
    busy1 = system_busy()
    sampler.stop()
    reader = Reader(engine, where)
    stored = int(reader.rows("SELECT COUNT(*) FROM result")[0][0])
    tables = table_stats(reader)
    combined = reader.rows(
        "SELECT COUNT(*) FROM monitor_state s JOIN location l ON l.id = s.location_id"
        f" WHERE l.name = '{COMBINED}'"
    )
    reader.close()
    children.stop(hub)
    seconds = said["ended"] - said["began"]
    total = int(said["sent"])
    result = {
        "engine": engine,
        "monitors": len(ids),
        "rounds": rounds,
        "batch": args.batch,
        "sent": total,
        "accepted": said["accepted"],
        "stored": stored,
        "combined_states": int(combined[0][0]) if combined else 0,
        "seconds": round(seconds, 2),
        "results_per_s": round(total / seconds, 0),
        "statuses": said["statuses"],
        "hub_cpu_s": round(cpu1["hub"] - cpu0["hub"], 2),
        "hub_cpu_ms_per_result": round((cpu1["hub"] - cpu0["hub"]) * 1000 / total, 3),
        "pg_cpu_ms_per_result": round((cpu1["pg"] - cpu0["pg"]) * 1000 / total, 3) if pg else None,
        "hub_rss_mb": round(max((s.rss_kb for s in sampler.samples), default=0) / 1024, 1),
        "machine_busy_cores": round(
            (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * (os.cpu_count() or 1), 2
        ),
        "errors": hub_log.errors,
        "pg_tables": tables,
        "source": [source, code_fingerprint()],
    }
    say(f"ingest {engine}: {json.dumps(result)}")
    return result


# --------------------------------------------------------------------------- report


def _f(value: Any, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


def render(results: dict[str, Any]) -> str:
    lines = [
        "## Hubs (issue 13): a hub with two agents, SQLite and PostgreSQL",
        "",
        "<!-- generated by bench/hubs.py -->",
        "",
        f"**Run:** {results['started']} UTC, `{results['command']}`; {results['machine']}."
        + (f" PostgreSQL {results['pg_settings']}." if results.get("pg_settings") else "")
        + f" Commit {results.get('commit', '?')}; prober source fingerprint at each scenario's"
        " start → end: "
        + ", ".join(
            f"{part} {r['engine']} `{r['source'][0]}`→`{r['source'][1]}`"
            for part in ("live", "ingest")
            for r in results.get(part, [])
            if r.get("source")
        )
        + ".",
        "",
    ]
    live = results.get("live", [])
    if live:
        first = live[0]
        lines += [
            f"**Live.** One `prober run` hub (location `hub`) and two `prober agent`"
            f" processes (`a`, `b`) on this machine, {first['monitors']:,} HTTP monitors at"
            " 60 s on all three locations, quorum 2, `down_after = 1`, `up_after = 1`; one"
            " aiohttp target process on 127.0.0.1; the agents reach the hub through a"
            " forwarding proxy in the harness that notes when each batch arrives. Window"
            f" {first['window_s']} s, starting {WARM} s after all three run (every location"
            f" did a round). {first['flipped']} monitors answer 500 to agents a and b (the hub"
            f" still sees 200) from the moments given, and 200 again {FLIP_DOWN_FOR} s later."
            " For each combined up→down and down→up transition, the results it needed are, at"
            " each location, the first at or after its time minus half an interval"
            " (quorum.Gate judges a moment once every location still reporting sent it)."
            " **Verdict lag** = the transition's first sight in the hub's database (a 50 ms"
            " poll) minus when the hub received the last of those results (an agent's: its"
            " batch reaching the proxy; the hub's own: the check's end). *Same commit*: minus"
            " the first sight of that last result (0 when the verdict is committed with it)."
            " *From the check*: minus the start of the check that changed the verdict (the"
            " check, the agent's queue and 250 ms batching included).",
            "",
            "| | " + " | ".join(r["engine"] for r in live) + " |",
            "|---|" + "---|" * len(live),
        ]

        def row(name: str, cell: Any) -> None:
            lines.append(f"| {name} | " + " | ".join(cell(r) for r in live) + " |")

        for loc in (HUB, *AGENTS):
            row(
                f"results stored / due, location `{loc}`",
                lambda r, loc=loc: (
                    f"{r['complete'][loc]['stored']:,} / {r['complete'][loc]['expected']:,}"
                    + (" ✅" if r["complete"][loc]["missing"] == 0 else " ❌")
                ),
            )
        row("results/s stored (all locations)", lambda r: _f(r["results_per_s"]))

        def lag(r: dict[str, Any], kind: str, name: str) -> str:
            got = r["lag"].get(kind, {}).get(name)
            if not got:
                return "–"
            cells = " / ".join(_f(got[q], ".2f") for q in ("p50_s", "p99_s", "max_s"))
            return f"{cells} s (n={got['n']})"

        row(
            f"verdict lag p99, all transitions (target < {TARGET_LAG_P99_S:.0f} s)",
            lambda r: (
                f"{_f(r['lag'].get('all', {}).get('received', {}).get('p99_s'), '.2f')} s"
                + (
                    " ✅"
                    if (r["lag"].get("all", {}).get("received", {}).get("p99_s") or 99)
                    < TARGET_LAG_P99_S
                    else " ❌"
                )
            ),
        )
        for kind in ("down", "up"):
            row(
                f"verdict lag to `{kind}`: p50 / p99 / max", lambda r, k=kind: lag(r, k, "received")
            )
        row("same commit: p50 / p99 / max", lambda r: lag(r, "all", "committed"))
        for kind in ("down", "up"):
            row(
                f"from the check to `{kind}`: p50 / p99 / max", lambda r, k=kind: lag(r, k, "check")
            )
        row(
            "transitions without all their results seen", lambda r: str(r["lag"]["missing_results"])
        )
        row(
            "hub CPU per result stored (probing + web process)",
            lambda r: f"{_f(r['hub_cpu_ms_per_result'])} ms",
        )
        row("hub CPU (cores)", lambda r: _f(r["hub_cores"]))
        row(
            "PostgreSQL CPU per result (server, all backends)",
            lambda r: f"{_f(r['pg_cpu_ms_per_result'])} ms",
        )
        row(
            "agent CPU per check due (a / b)",
            lambda r: " / ".join(_f(r["agent_cpu_ms_per_check"][n]) for n in AGENTS) + " ms",
        )
        row(
            "hub RSS: max Σ VmRSS / Σ VmHWM at end",
            lambda r: f"{r['hub_rss_mb']:.0f} / {r['hub_hwm_mb']:.0f} MB",
        )
        row(
            "PostgreSQL RSS: max Σ VmRSS (Σ PSS)",
            lambda r: f"{_f(r['pg_rss_mb'])} ({_f(r['pg_pss_mb'])}) MB",
        )
        row("hub start-up (to `prober running`)", lambda r: f"{r['startup_s']} s")
        row("flips (s into the window)", lambda r: ", ".join(str(x) for x in r["flips"]))
        row(
            "ERROR lines (hub, a, b)",
            lambda r: ", ".join(str(len(v)) for v in r["errors"].values()),
        )
        row("machine busy (cores)", lambda r: _f(r["machine_busy_cores"]))
        row(
            "hub's answers to the agents' batches",
            lambda r: ", ".join(f"{k}: {v}" for k, v in r.get("answers_to_agents", {}).items()),
        )
        lines.append("")
    ingest = results.get("ingest", [])
    if ingest:
        lines += [
            f"**Ingest capacity.** A fresh hub, {ingest[0]['monitors']:,} monitors on"
            " locations a and b only (it probes nothing); the harness replays agents' batches"
            f" (prober.agent.wire, {ingest[0]['batch']:,} results, gzip, the agents' real"
            " tokens, 429/503 retried after 50 ms) of rounds of `up` results in the past, one"
            " batch at a time, a's then b's for the same monitors and rounds (in step, so no"
            " result arrives behind a moment the gate let through: a Rewind), as fast as the"
            " hub answers 200 (answered once committed).",
            "",
            "| engine | results sent / stored | seconds | results/s | hub CPU per result"
            " | PostgreSQL CPU per result | hub max Σ VmRSS | answers | machine busy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ingest:
            cells = [
                r["engine"],
                f"{r['sent']:,} / {r['stored']:,}",
                r["seconds"],
                f"{r['results_per_s']:,.0f}",
                f"{r['hub_cpu_ms_per_result']} ms",
                f"{_f(r['pg_cpu_ms_per_result'])} ms",
                f"{r['hub_rss_mb']:.0f} MB",
                r["statuses"],
                r["machine_busy_cores"],
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    busiest = [
        (f"{part} {r['engine']}", r["pg_tables"][:4])
        for part in ("live", "ingest")
        for r in results.get(part, [])
        if r.get("pg_tables")
    ]
    if busiest:
        lines += [
            "PostgreSQL's busiest tables (pg_stat_user_tables, whole scenario: sequential scans"
            " / rows they read / index scans / rows inserted, updated, deleted):",
            "",
        ]
        for name, tables in busiest:
            shown = "; ".join(
                f"`{t['table']}` {t['seq_scan']:,} / {t['seq_tup_read']:,} / {t['idx_scan']:,}"
                f" / {t['ins']:,}, {t['upd']:,}, {t['del']:,}"
                for t in tables
            )
            lines.append(f"- {name}: {shown}")
        lines.append("")
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    load = os.getloadavg()[0]
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({model}), Python {python}, load average at start {load:.2f}"


def git_head() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "prober", "statuspage"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return f"`{head}`" + (" (prober/ with uncommitted changes)" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--part", choices=("live", "ingest", "both"), default="both")
    p.add_argument("--monitors", type=int, default=3000)
    p.add_argument("--window", type=int, default=300, help="seconds measured (live), at least 150")
    p.add_argument("--flip", type=int, default=100, help="monitors flipped down and up (live)")
    p.add_argument("--replay", type=int, default=60_000, help="results replayed (ingest)")
    p.add_argument("--batch", type=int, default=2000, help="results per replayed batch")
    p.add_argument("--deadline", type=float, default=240, help="seconds of replay at most")
    p.add_argument("--no-docs", action="store_true", help=f"do not write {BENCHMARKS.name}")
    p.add_argument("--serve-target", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_target is None and args.window < FLIP_FIRST + FLIP_DOWN_FOR + INTERVAL:
        p.error(f"--window must be at least {FLIP_FIRST + FLIP_DOWN_FOR + INTERVAL} s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_target is not None:
        serve_target(args.serve_target)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "command": "bench/hubs.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "commit": git_head(),
        "live": [],
        "ingest": [],
    }
    children = Children()
    pg: Postgres | None = None
    with terminate_as_interrupt():
        try:
            if "postgresql" in engines:
                pg = Postgres()
                results["pg_settings"] = ", ".join(f"{k}={v}" for k, v in pg.settings.items())
            for engine in engines:
                if args.part in ("live", "both"):
                    results["live"].append(
                        run_live(engine, args, pg if engine == "postgresql" else None, children)
                    )
                    _save(results)
            for engine in engines:
                if args.part in ("ingest", "both"):
                    results["ingest"].append(
                        run_ingest(engine, args, pg if engine == "postgresql" else None, children)
                    )
                    _save(results)
        finally:
            children.stop_all()
            if pg is not None:
                pg.stop()
    text = render(results)
    print(text)
    if not args.no_docs:
        write_section(BENCHMARKS, text)
    return 0


def write_section(path: pathlib.Path, text: str) -> None:
    """`text` (a section starting with SECTION) in place of the one `path` holds, or at
    its end; the hand-written notes after a run go below the generated part."""
    doc = path.read_text()
    start = doc.find(SECTION)
    if start < 0:
        path.write_text(doc.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
        return
    end = doc.find("\n## ", start + len(SECTION))
    rest = "" if end < 0 else doc[end:]
    path.write_text(doc[:start] + text.rstrip("\n") + "\n" + rest)


def _save(results: dict[str, Any]) -> None:
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
