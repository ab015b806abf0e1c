"""Status page benchmark: cold render and load against nginx serving the same bytes.

    .venv/bin/python bench/page.py [--monitors 100] [--days 90] [--no-docs] [--keep]
    .venv/bin/python bench/page.py --refresh [--monitors 10000] [--days 90] [--seconds 60]

Writes a CSV of one result a minute per monitor for the last `days` days up to now
(outages, blips, unknown stretches; one monitor down right now, one degraded), imports it
with the real `prober import-results` into a fresh database in a temporary folder, then
starts `prober run` on a free loopback port (monitors `type = "http"` to
http://127.0.0.1:9/, `interval = "1h"`, groups of 10) and measures, in one run:
- cold render: the first `GET /` once `/healthz` answers 200, and the second one;
- in-process: `statuspage.build.build_snapshot` over the same database (first call and
  best of 5), and the rendering of the index from that snapshot when a renderer exists;
- load: `wrk` on `/` (2 threads, 64 connections, `--latency`, 20 s after a 3 s warm-up)
  against the prober, then against a private nginx (one worker) serving the exact bytes
  the prober returned for `/` as a static file; `Accept-Encoding: identity` and gzip off,
  so both send the same body. Requests/s, p50/p99 latency, server CPU, ratio.
`--refresh` measures the kept snapshot (statuspage.incremental) instead: a database of
`monitors` x `days` written directly (coverage with a gap, incidents, transitions and
tracker state for the whole period, hourly rollups for the last day, raw results for the
last 3 hours at one a minute), then a writer process (the real ResultWriter) adds one
result a minute per monitor (monitors/60 a second) with 5 monitors flapping (incidents
opening and resolving) while this process refreshes every 5 s: CPU of the first build and
of each refresh (thread CPU), and the memory the kept state holds beyond the snapshot.
Only loopback. Every child runs in its own process group and is killed on exit, error,
Ctrl-C or SIGTERM; the temporary folder is removed unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gzip
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "statuspage"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
PROBER = ROOT / ".venv" / "bin" / "prober"
START_MARK, END_MARK = "<!-- statuspage:start -->", "<!-- statuspage:end -->"
SECTION = "## Status page: cold render and load"
METHOD = """\
`.venv/bin/python bench/page.py` (about 3 minutes; rewrites the block below): 100
HTTP monitors in groups of 10 with 90 days of one result a minute up to now (outages,
blips, unknown stretches, one monitor down and one degraded at the end), imported with
`prober import-results`; then `prober run` on loopback. *Cold render* is the first `GET /`
once `/healthz` answers 200 (a fresh process: nothing cached), beside the in-process cost
of `statuspage.build.build_snapshot` over the same database and of rendering the index.
*Load* is `wrk -t2 -c64 -d20s --latency` on `/` (after a 3 s warm-up) against the prober,
then, in the same run, against nginx (one worker, gzip off, access log off) serving the
exact bytes the prober returned as a static file; both with `Accept-Encoding: identity`.
The prober runs with `-v`, so its snapshot rebuilds are logged and those during the load
counted. wrk, the server and the machine's other work share its cores: compare the ratio, not the
absolute figures."""
WRK = {"threads": 2, "connections": 64, "seconds": 20, "warmup": 3}
TARGET_RATIO, TARGET_COLD_MS = 0.5, 200.0
IDENTITY = {"Accept-Encoding": "identity"}


def log(message: str) -> None:
    print(f"[statuspage {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes ---------------------------------------------------------------------------


class Children:
    """Every child in its own process group; stop() kills the whole group."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.procs = [p for p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP to the harness unwind like Ctrl-C, so `finally` kills the children."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its direct children (nginx: master + worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: ppid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def tool_version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def ensure_tools() -> None:
    missing = [t for t in ("wrk", "nginx") if not shutil.which(t)]
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)


# -- history -----------------------------------------------------------------------------


def write_csv(path: pathlib.Path, monitors: int, end: dt.datetime, days: int) -> int:
    """One result a minute per monitor, the last at `end`; m0003 down and m0007 degraded
    for the last minutes (an open incident and a pending state on the page)."""
    rng = random.Random(7)
    minutes = days * 1440
    base = int(end.timestamp()) - 60 * (minutes - 1)
    stamps = [
        dt.datetime.fromtimestamp(base + 60 * i, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for i in range(minutes)
    ]
    rows = 0
    with path.open("w") as f:
        f.write("monitor,timestamp,outcome,latency_ms,error\n")
        for m in range(monitors):
            name = f"m{m:04d}"
            bad: dict[int, str] = {}
            for _ in range(rng.randint(0, max(1, 4 * days // 30))):  # outages and blips
                at, length = rng.randrange(minutes), rng.choice((1, 2, 5, 30, 90))
                bad.update(dict.fromkeys(range(at, min(minutes, at + length)), "down"))
            at = rng.randrange(minutes)
            bad.update(dict.fromkeys(range(at, min(minutes, at + 10)), "unknown"))
            if m == 3:
                bad.update(dict.fromkeys(range(minutes - 20, minutes), "down"))
            if m == 7:
                bad.update(dict.fromkeys(range(minutes - 10, minutes), "degraded"))
            lines = []
            for i, stamp in enumerate(stamps):
                state = bad.get(i)
                if state == "down":
                    lines.append(f"{name},{stamp},down,10000,timeout after 10s\n")
                elif state == "unknown":
                    lines.append(f"{name},{stamp},unknown,,canaries failing\n")
                elif state == "degraded":
                    lines.append(f"{name},{stamp},degraded,{rng.randint(600, 900)},\n")
                else:
                    lines.append(f"{name},{stamp},up,{rng.randint(15, 250)},\n")
            f.writelines(lines)
            rows += len(lines)
    return rows


def write_config(path: pathlib.Path, monitors: int, port: int, metrics_port: int) -> None:
    parts = [
        f'[settings]\ntitle = "Bench Status"\nlisten = "127.0.0.1:{port}"\n'
        f'metrics = {{ listen = "127.0.0.1:{metrics_port}" }}\n'
        'database = "sqlite:///prober.db"\ntimezone = "UTC"\nretention_days = 120\n'
    ]
    parts += [
        f'[[monitors]]\nid = "m{m:04d}"\nname = "Service {m}"\ngroup = "Group {m // 10:02d}"\n'
        f'type = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "1h"\n'
        for m in range(monitors)
    ]
    path.write_text("\n".join(parts))


def prober_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}


def import_history(config: pathlib.Path, csv_path: pathlib.Path) -> tuple[float, str]:
    begun = time.perf_counter()
    done = subprocess.run(
        [str(PROBER), "import-results", str(csv_path), "-c", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env=prober_env(),
        check=False,
    )  # stderr (progress lines) passes through
    seconds = time.perf_counter() - begun
    if done.returncode != 0:
        raise SystemExit(f"prober import-results failed (exit {done.returncode})")
    return seconds, done.stdout.strip()


# -- HTTP --------------------------------------------------------------------------------


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes, float]:
    """One request on a new connection: status, body, seconds from connect to last byte."""
    begun = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=IDENTITY)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - begun
    finally:
        conn.close()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    begun = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prober run exited with {proc.returncode}; see {OUT / 'prober.log'}")
        with contextlib.suppress(OSError):
            status, _, _ = get(port, "/healthz", timeout=5)
            if status == 200:
                return time.perf_counter() - begun
        time.sleep(0.02)
    raise SystemExit(f"/healthz not 200 within {timeout:.0f}s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(port: int, seconds: int) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{WRK['threads']}",
        f"-c{WRK['connections']}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        "Accept-Encoding: identity",
        f"http://127.0.0.1:{port}/",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    out = done.stdout
    found: dict[str, Any] = {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "errors": 0,
        "non_2xx": 0,
    }
    for pct in ("50", "75", "90", "99"):
        value = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
        found[f"p{pct}_ms"] = _ms(value)
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        found["errors"] = sum(int(n) for n in re.findall(r"\d+", errors.group(1)))
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non:
        found["non_2xx"] = int(non.group(1))
    found["output"] = out
    return found


def load(name: str, port: int, server_pid: int) -> dict[str, Any]:
    log(f"wrk warm-up {WRK['warmup']}s on {name}")
    wrk(port, WRK["warmup"])
    log(f"wrk {WRK['seconds']}s on {name}")
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    found = wrk(port, WRK["seconds"])
    found["server_cores"] = (cpu_seconds(server_pid) - cpu0) / (time.perf_counter() - t0)
    log(
        f"{name}: {found['rps']:,.0f} req/s, p50 {found['p50_ms']:.2f} ms, "
        f"p99 {found['p99_ms']:.2f} ms, errors {found['errors']}, non-2xx {found['non_2xx']}, "
        f"server {found['server_cores']:.2f} cores"
    )
    return found


def rebuilds(prober_log: pathlib.Path) -> list[float]:
    """Seconds of each snapshot rebuild the prober has logged so far (debug lines)."""
    text = prober_log.read_text(errors="replace")
    return [float(x) for x in re.findall(r"status page snapshot built seconds=([\d.]+)", text)]


def scrape_metrics(port: int) -> dict[str, Any]:
    """One `GET /metrics` on the metrics listener, parsed as Prometheus parses it: time,
    bytes, series."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body, seconds = get(port, "/metrics")
    if status != 200:
        log(f"WARNING: GET /metrics answered {status}")
        return {"metrics_status": status}
    families = list(text_string_to_metric_families(body.decode()))
    series = sum(len(f.samples) for f in families)
    log(f"GET /metrics {seconds * 1000:.1f} ms, {len(body):,} bytes, {series:,} series")
    return {
        "metrics_status": status,
        "metrics_ms": seconds * 1000,
        "metrics_bytes": len(body),
        "metrics_series": series,
    }


# -- nginx -------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    gzip off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/www;
        location = / {{
            default_type "text/html; charset=utf-8";
            try_files /index.html =404;
        }}
    }}
}}
"""


def start_nginx(children: Children, prefix: pathlib.Path, page: bytes) -> tuple[int, int]:
    for sub in ("www", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "www" / "index.html").write_bytes(page)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port))
    argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    subprocess.run([*argv, "-t", "-q"], check=True)
    proc = children.start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError):
            status, body, _ = get(port, "/", timeout=2)
            if status == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"nginx did not start; see {prefix / 'error.log'}")
        time.sleep(0.05)
    if body != page:
        raise SystemExit("nginx does not serve the prober's bytes unchanged")
    log(f"nginx pid={proc.pid} on 127.0.0.1:{port}, serving {len(page):,} bytes")
    return proc.pid, port


# -- in-process --------------------------------------------------------------------------


def index_renderer() -> Callable[[Any], object] | None:
    """Snapshot -> the index page's HTML, as the app renders it (None if the app has no
    renderer yet). The template environment is made once, as the app makes it once."""
    from statuspage import pages

    env = pages.make_environment()
    return lambda snapshot: pages.render_index(snapshot, snapshot.language, env)


def in_process(config_path: pathlib.Path, rounds: int = 5) -> dict[str, Any]:
    from prober.config import load_config
    from prober.store.db import connect_raw
    from statuspage.build import build_snapshot

    config = load_config(config_path)
    conn = connect_raw(config.database_path)
    render = index_renderer()
    found: dict[str, Any] = {}
    snapshot = None
    try:
        builds, renders = [], []
        for _ in range(rounds):
            begun = time.perf_counter()
            snapshot = build_snapshot(conn, config, dt.datetime.now(dt.UTC))
            builds.append(time.perf_counter() - begun)
            if render is not None:
                begun = time.perf_counter()
                render(snapshot)
                renders.append(time.perf_counter() - begun)
        found |= {
            "build_first_ms": builds[0] * 1000,
            "build_best_ms": min(builds) * 1000,
            "monitors": len(snapshot.monitors) if snapshot else 0,
            "overall": snapshot.overall.value if snapshot else None,
        }
        if renders:
            found |= {"render_first_ms": renders[0] * 1000, "render_best_ms": min(renders) * 1000}
    finally:
        conn.close()
    log(
        f"in-process: build_snapshot first {found['build_first_ms']:.0f} ms, "
        f"best {found['build_best_ms']:.0f} ms"
        + (
            f"; render first {found['render_first_ms']:.1f} ms, best {found['render_best_ms']:.1f}"
            " ms"
            if renders
            else "; no index renderer found"
        )
    )
    return found


# -- the run -----------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    work: pathlib.Path
    monitors: int
    days: int
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


def run(children: Children, r: Run) -> None:
    config = r.work / "monitors.toml"
    port, metrics_port = free_port(), free_port()
    write_config(config, r.monitors, port, metrics_port)
    csv_path = r.work / "history.csv"
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    log(f"writing {r.monitors} monitors x {r.days} days up to {end:%Y-%m-%d %H:%M}Z")
    begun = time.perf_counter()
    rows = write_csv(csv_path, r.monitors, end, r.days)
    size_mb = csv_path.stat().st_size / 1e6
    log(f"{rows:,} rows, {size_mb:.0f} MB in {time.perf_counter() - begun:.0f}s")
    import_s, summary = import_history(config, csv_path)
    log(summary)
    csv_path.unlink()
    r.results |= {"rows": rows, "import_seconds": import_s, "import_summary": summary}

    log(f"starting prober run on 127.0.0.1:{port}")
    prober_log = (r.work / "prober.log").open("wb")
    proc = children.start(
        [str(PROBER), "run", "-v", "-c", str(config)],  # -v: snapshot rebuilds are logged
        stdout=prober_log,
        stderr=subprocess.STDOUT,
        env=prober_env(),
        cwd=r.work,
    )
    healthy_s = wait_healthy(port, proc)
    status, page, cold_s = get(port, "/")
    if status != 200:  # measured anyway (the table says so); the log has the cause
        log(f"WARNING: GET / answered {status}; see {OUT / 'prober.log'}")
    _, _, warm_s = get(port, "/")
    log(
        f"healthz 200 after {healthy_s:.2f}s; cold GET / {cold_s * 1000:.1f} ms "
        f"({len(page):,} bytes), second {warm_s * 1000:.1f} ms"
    )
    (r.work / "index.html").write_bytes(page)
    r.results |= scrape_metrics(metrics_port)
    r.results |= {
        "startup_to_healthy_seconds": healthy_s,
        "cold_get_ms": cold_s * 1000,
        "second_get_ms": warm_s * 1000,
        "page_bytes": len(page),
        "page_gzip_bytes": len(gzip.compress(page, 6)),  # what a browser would fetch
        "page_status": status,
    }
    nginx_pid, nginx_port = start_nginx(children, r.work / "nginx", page)
    before = rebuilds(r.work / "prober.log")
    r.results["prober_load"] = load("prober", port, proc.pid)
    during = rebuilds(r.work / "prober.log")[len(before) :]
    r.results["prober_load"]["snapshot_rebuilds"] = during
    if during:
        log(f"snapshot rebuilt {len(during)} times during the load, {max(during):.3f}s at most")
    r.results["nginx_load"] = load("nginx", nginx_port, nginx_pid)
    r.results["ratio"] = r.results["prober_load"]["rps"] / r.results["nginx_load"]["rps"]
    children.stop_all()
    prober_log.close()
    r.results["in_process"] = in_process(config)


# -- the kept snapshot (--refresh) -------------------------------------------------------

FLAPPING = 5  # monitors m0011.. alternate 4 minutes down, 4 minutes up


def refresh_config(path: pathlib.Path, monitors: int, days: int) -> None:
    parts = [
        '[settings]\ntitle = "Bench Status"\ndatabase = "sqlite:///prober.db"\n'
        f'timezone = "Asia/Seoul"\nretention_days = 120\nhistory_days = {days}\n'
    ]
    parts += [
        f'[[monitors]]\nid = "m{m:04d}"\nname = "Service {m}"\ngroup = "Group {m // 10:03d}"\n'
        'type = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "60s"\n'
        for m in range(monitors)
    ]
    path.write_text("\n".join(parts))


def synthesize(config_path: pathlib.Path, monitors: int, days: int, now_ms: int) -> None:
    """Derived tables for `days`, rollups for a day, raw results for 3 hours."""
    from prober.config import load_config
    from prober.incidents import Tracker
    from prober.results import Outcome
    from prober.store import rollups
    from prober.store.db import connect_raw, open_engine
    from prober.store.ledger import TrackSpec
    from prober.store.writer import register

    hour, minute = 3_600_000, 60_000
    config = load_config(config_path)
    open_engine(config.database_path).dispose()
    conn = connect_raw(config.database_path)
    ids, loc = register(conn, config.settings.location, [(m.id, "http") for m in config.monitors])
    rng = random.Random(7)
    begin = now_ms - days * 86_400_000
    raw_from = (now_ms - 3 * hour) // hour * hour
    rolled = raw_from  # hours before are rolled up (synthetic), after are raw
    conn.execute("BEGIN")
    for m in config.monitors:
        mid, spec = ids[m.id], TrackSpec.of(m)
        phase = rng.randrange(minute)
        last = (now_ms - phase) // minute * minute + phase - minute
        gap = begin + rng.randrange(days * 86_400_000 - 6 * hour)
        conn.execute("INSERT INTO coverage VALUES (?, ?, ?, ?)", (mid, loc, begin, gap))
        conn.execute("INSERT INTO coverage VALUES (?, ?, ?, NULL)", (mid, loc, gap + 10 * minute))
        conn.executemany(
            "INSERT INTO transition VALUES (?, ?, ?, ?, ?)",
            [(mid, loc, gap, "up", "unknown"), (mid, loc, gap + 10 * minute, "unknown", "up")],
        )
        for _ in range(rng.randint(0, 6)):
            start = begin + rng.randrange(days * 86_400_000 - 6 * hour)
            end = start + rng.choice((3, 5, 30, 90)) * minute
            conn.execute(
                "INSERT OR IGNORE INTO incident VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mid, loc, start, start + 2 * minute, end, end, "timeout after 10s"),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO transition VALUES (?, ?, ?, ?, ?)",
                [(mid, loc, start, "up", "down"), (mid, loc, end, "down", "up")],
            )
        tracker = Tracker(spec.rule)
        tracker.step(last, Outcome.UP, None)
        conn.execute(
            "INSERT INTO monitor_state VALUES (?, ?, ?, ?)",
            (mid, loc, last, json.dumps(tracker.to_dict())),
        )
        first_raw = last - (last - raw_from) // minute * minute
        conn.executemany(
            "INSERT INTO result (monitor_id, ts_ms, location_id, outcome, latency_us)"
            " VALUES (?, ?, ?, 1, ?)",
            [
                (mid, ts, loc, rng.randint(15_000, 250_000))
                for ts in range(first_raw, last + 1, minute)
            ],
        )
        for h in range(rolled - 26 * hour, rolled, hour):
            hist = rollups.Histogram(
                {
                    rollups.bucket(rng.randint(15_000, 99_999)): 30,
                    rollups.bucket(rng.randint(100_000, 250_000)): 30,
                }
            )
            conn.execute(
                "INSERT INTO rollup_hour (monitor_id, location_id, hour_ms, up, degraded, down,"
                " unknown, lat_count, lat_sum_us, lat_min_us, lat_max_us, hist)"
                " VALUES (?, ?, ?, 60, 0, 0, 0, 60, 6000000, 15000, 250000, ?)",
                (mid, loc, h, hist.to_json()),
            )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('rollup_until_ms', ?)", (str(rolled),)
    )
    conn.execute("COMMIT")
    conn.close()


def writer_process(config_path: pathlib.Path) -> None:
    """One result a minute per monitor, on its own phase, until killed."""
    from prober.config import load_config
    from prober.results import CheckResult, Outcome
    from prober.store.ledger import TrackSpec
    from prober.store.writer import Observation, ResultWriter

    config = load_config(config_path)
    writer = ResultWriter(
        config.database_path, config.settings.location, [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    ids = [m.id for m in config.monitors]
    flapping = set(ids[11 : 11 + FLAPPING])
    per_tick = max(1, len(ids) // 600)  # 600 ticks of 0.1 s a minute
    at = 0
    tick = time.monotonic()
    print("ready", flush=True)
    while True:
        now = dt.datetime.now(dt.UTC)
        for m in ids[at : at + per_tick]:
            down = m in flapping and (now.minute // 4) % 2 == 0
            result = (
                CheckResult(Outcome.DOWN, 10.0, error="timeout")
                if down
                else CheckResult(Outcome.UP, float(random.randint(15, 250)))
            )
            writer.submit(Observation(m, now, result))
        at = (at + per_tick) % len(ids)
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))


def refresh_bench(monitors: int, days: int, seconds: int, keep: bool) -> None:
    import threading
    import tracemalloc
    from concurrent.futures import ThreadPoolExecutor

    from prober.config import load_config
    from prober.store.db import connect_raw
    from statuspage.incremental import Incremental

    work = pathlib.Path(tempfile.mkdtemp(prefix="prober-refresh-"))
    config_path = work / "monitors.toml"
    refresh_config(config_path, monitors, days)
    log(f"synthesizing {monitors} monitors x {days} days in {work}")
    begun = time.perf_counter()
    synthesize(config_path, monitors, days, int(time.time() * 1000))
    log(f"database in {time.perf_counter() - begun:.0f}s")
    config = load_config(config_path)
    children = Children()
    pool = ThreadPoolExecutor(1)  # the snapshot thread, as in the Publisher

    def timed(state: Incremental, conn: sqlite3.Connection) -> tuple[float, float, bool]:
        t0, w0 = time.thread_time(), time.perf_counter()
        state.refresh(conn, config, dt.datetime.now(dt.UTC))
        return time.thread_time() - t0, time.perf_counter() - w0, state.full

    try:
        with terminate_as_interrupt():
            proc = children.start(
                [sys.executable, __file__, "--writer", str(config_path)],
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None
            proc.stdout.readline()  # "ready": its ledger has loaded
            time.sleep(2)  # wait for the first batches (results flowing)
            conn = connect_raw(config.database_path)
            state = Incremental()
            cpu, wall, full = pool.submit(timed, state, conn).result()
            log(f"first build: {cpu * 1000:.0f} ms CPU ({wall * 1000:.0f} ms wall), full={full}")
            steady: list[float] = []
            fulls = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(5)
                c, w, f = pool.submit(timed, state, conn).result()
                fulls += f
                steady.append(c)
                log(f"refresh: {c * 1000:.1f} ms CPU ({w * 1000:.1f} ms wall) full={f}")
            children.stop_all()
            # memory: the kept state and its snapshot, then the snapshot alone
            tracemalloc.start()
            fresh = Incremental()
            snap = pool.submit(fresh.refresh, conn, config, dt.datetime.now(dt.UTC)).result()
            both = tracemalloc.get_traced_memory()[0]
            del fresh
            alone = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            conn.close()
            steady.sort()
            log(
                f"RESULT monitors={monitors} days={days} first_build_cpu_ms={cpu * 1000:.0f} "
                f"refresh_cpu_ms median={steady[len(steady) // 2] * 1000:.1f} "
                f"max={steady[-1] * 1000:.1f} n={len(steady)} full_refreshes={fulls} "
                f"snapshot_mb={alone / 1e6:.1f} kept_state_mb={(both - alone) / 1e6:.1f} "
                f"monitors_shown={len(snap.monitors)} threads={threading.active_count()}"
            )
    finally:
        children.stop_all()
        pool.shutdown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--writer":
        writer_process(pathlib.Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--monitors", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--no-docs", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--wrk-seconds", type=int, default=WRK["seconds"], help=argparse.SUPPRESS)
    parser.add_argument("--refresh", action="store_true", help="the kept snapshot's cost")
    parser.add_argument("--seconds", type=int, default=60, help="--refresh: steady state")
    args = parser.parse_args()
    WRK["seconds"] = args.wrk_seconds
    if args.refresh:
        refresh_bench(args.monitors, args.days, args.seconds, args.keep)
        return

    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="prober-statuspage-"))
    work.chmod(0o755)  # nginx's worker (user nobody when run as root) reads www/ inside
    r = Run(work, args.monitors, args.days)
    r.results |= {
        "monitors": args.monitors,
        "days": args.days,
        "load_average": os.getloadavg(),
        "wrk": tool_version(["wrk", "-v"]),
        "nginx": tool_version(["nginx", "-v"]),
    }
    children = Children()
    try:
        with terminate_as_interrupt():
            run(children, r)
    finally:
        children.stop_all()
        for name in ("prober.log", "nginx/error.log"):
            with contextlib.suppress(OSError):
                shutil.copy(work / name, OUT / name.replace("/", "-"))
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for side in ("prober_load", "nginx_load"):
        (OUT / f"wrk-{side.split('_')[0]}.txt").write_text(r.results[side].pop("output"))
    (OUT / "results.json").write_text(json.dumps(r.results, indent=2) + "\n")
    table = render(r.results)
    print(table)
    if not args.no_docs:
        publish(table)
        log(f"updated {DOCS.relative_to(ROOT)}")


def publish(table: str) -> None:
    text = DOCS.read_text()
    block = f"{START_MARK}\n{table}\n{END_MARK}"
    if START_MARK in text:
        head, rest = text.split(START_MARK, 1)
        text = head + block + rest.split(END_MARK, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{SECTION}\n\n{METHOD}\n\n{block}\n"
    DOCS.write_text(text)


def metrics_row(r: dict[str, Any]) -> str:
    if r.get("metrics_status") != 200:
        return f"| `GET /metrics` | answered {r.get('metrics_status')} | |"
    return (
        f"| `GET /metrics` (parsed back: {r['metrics_series']:,} series) | "
        f"{r['metrics_ms']:.1f} ms, {r['metrics_bytes']:,} bytes | |"
    )


def render(r: dict[str, Any]) -> str:
    p, n, inproc = r["prober_load"], r["nginx_load"], r.get("in_process", {})

    def mark(ok: bool) -> str:
        return "✅ pass" if ok else "❌ fail"

    def first_best(key: str) -> str:
        if f"{key}_first_ms" not in inproc:
            return "not measured (no function yet)"
        return f"{inproc[f'{key}_first_ms']:.1f} ms first, {inproc[f'{key}_best_ms']:.1f} ms best"

    def row(name: str, w: dict[str, Any]) -> str:
        return (
            f"| {name} | {w['rps']:,.0f} | {w['p50_ms']:.2f} ms | {w['p99_ms']:.2f} ms | "
            f"{w['errors']} / {w['non_2xx']} | {w['server_cores']:.2f} |"
        )

    load_avg = " ".join(f"{x:.2f}" for x in r["load_average"])
    warning = (
        []
        if r["page_status"] == 200
        else [
            f"**`GET /` answered {r['page_status']}, not 200: the figures below measure an "
            "error page, not the status page.**",
            "",
        ]
    )
    return "\n".join(
        [
            "<!-- generated by bench/page.py; edits between these markers are overwritten -->",
            "",
            f"**Run:** {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {r['monitors']} monitors x "
            f"{r['days']} days x 1 result/min = {r['rows']:,} rows (imported in "
            f"{r['import_seconds']:.0f} s); page `/` = {r['page_bytes']:,} bytes "
            f"({r['page_gzip_bytes']:,} gzipped, not used here); "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, SQLite "
            f"{sqlite3.sqlite_version}, {r['wrk'].split(' Copyright')[0]}, {r['nginx']}. "
            f"Load average at start: {load_avg}.",
            "",
            *warning,
            "| measure | figure | target |",
            "|---|---|---|",
            f"| start-up: `prober run` to `/healthz` 200 | {r['startup_to_healthy_seconds']:.2f} s "
            "| |",
            f"| cold render: first `GET /` after `/healthz` 200 | **{r['cold_get_ms']:.1f} ms** | "
            f"< {TARGET_COLD_MS:.0f} ms {mark(r['cold_get_ms'] < TARGET_COLD_MS)} |",
            f"| second `GET /` | {r['second_get_ms']:.1f} ms | |",
            metrics_row(r),
            f"| in-process `build_snapshot` (first of 5, best of 5) | {first_best('build')} | |",
            f"| in-process index render from the snapshot | {first_best('render')} | |",
            "",
            f"| `wrk -t{WRK['threads']} -c{WRK['connections']} -d{WRK['seconds']}s` on `/` | "
            "requests/s | p50 | p99 | socket errors / non-2xx | server CPU (cores) |",
            "|---|---|---|---|---|---|",
            row("prober (`prober run`)", p),
            row("nginx, 1 worker, the same bytes as a static file", n),
            f"| **prober ÷ nginx** | **{r['ratio']:.2f}×** "
            f"(target ≥ {TARGET_RATIO} {mark(r['ratio'] >= TARGET_RATIO)}) | "
            f"{p['p50_ms'] / n['p50_ms']:.1f}× | {p['p99_ms'] / n['p99_ms']:.1f}× | | |",
            "",
            f"During the prober's {WRK['seconds']} s the snapshot was rebuilt "
            f"{len(p['snapshot_rebuilds'])} time{'' if len(p['snapshot_rebuilds']) == 1 else 's'}"
            + (
                f" ({', '.join(f'{x * 1000:.0f}' for x in p['snapshot_rebuilds'])} ms)."
                if p["snapshot_rebuilds"]
                else "."
            ),
        ]
    )


if __name__ == "__main__":
    main()
