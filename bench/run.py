#!/usr/bin/env python3
"""prober benchmark: one command, loopback only, bounded in time, cleans up after itself.

    .venv/bin/python bench/run.py            # full run (~45 min), writes docs/BENCHMARKS.md
    .venv/bin/python bench/run.py --quick    # smoke run (~2 min), bench/out/ only

The product as deployed: every scenario is one `prober run` (status page on) measured from
its launch, no warm-up excluded (see bench/README.md and docs/BENCHMARKS.md):
  1. starts nginx on 127.0.0.1 (one worker, http + https with a trustme CA, /m/ -> 200 "ok",
     access log `$msec $request_uri $request_time`, everything under bench/out/nginx/);
  2. drives prometheus-blackbox-exporter's /probe open-loop at fixed rates (http and https,
     right before the first scenario of that protocol) and reads its CPU time from /proc;
  3. runs one `prober run` per scenario (default h1k, h5k, h10k HTTP, s10k HTTPS, h10k-wrk:
     10k HTTP with `wrk` on the page's `/`, and f200: the 200-monitor footprint), 60 s
     interval, for a 300 s window from launch, and measures: arrivals at nginx and their
     offsets, the prober's own stats lines (start lag p99 / max per minute and over the
     run), every result in its SQLite database (outcomes, recorded latency vs nginx's
     $request_time), CPU and RSS of the whole process tree of `prober run`;
  4. optionally profiles the 10k http scenario with py-spy after its window;
  5. writes bench/out/results.json, bench/out/table.md, the table between the bench
     markers in docs/BENCHMARKS.md and the first performance table of README.md.

Nothing here talks to anything but 127.0.0.1. Every child runs in its own process group
and is killed (TERM, then KILL) on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "BENCHMARKS.md"
README = ROOT / "README.md"
MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"
README_START = "<!-- bench-probe:start -->"
README_END = "<!-- bench-probe:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL = 60.0
TIMEOUT = "10s"
SAMPLE_EVERY = 2.0  # seconds between samples of the prober's process tree (CPU, VmRSS)

# `stats checks=... rate=.../s lag_p50_ms=... lag_p99_ms=... lag_max_ms=... committed=...`:
# read as key=value pairs, so fields added later do not break the harness.
STATS_RE = re.compile(r"\bstats (checks=\S.*)$")
KV_RE = re.compile(r"(\w+)=(-?\d+(?:\.\d+)?)")

GC_RE = re.compile(r"gctrace gen=(\d) ms=([\d.]+) collected=(\d+) at=([\d.]+)")

OUTCOME_NAMES = {0: "unknown", 1: "up", 2: "degraded", 3: "down"}  # result.outcome codes

# Targets from issue 12: 10,000 HTTP monitors at 60 s, page on, `wrk` on `/`, on 2 cores,
# measured from the launch of `prober run`; and the 200-monitor footprint.
TARGET_NOT_UP = 0
TARGET_LAG_P99_MS = 50.0
TARGET_LAG_MAX_MS = 250.0
TARGET_LATENCY_OVER_MS = 20.0  # recorded latency p99 minus nginx's own ($request_time) p99
TARGET_RATIO = 1.0
TARGET_RSS_MB = 300.0
TARGET_DELIVERED = 0.99
TARGET_SMALL_MONITORS = 200
TARGET_SMALL_CORES = 0.02
TARGET_SMALL_RSS_MB = 120.0

DEFAULT_SCENARIOS = (
    "h1k=1000:http,h5k=5000:http,h10k=10000:http,s10k=10000:https,"
    "h10k-wrk=10000:http+wrk,f200=200:http"
)
QUICK_SCENARIOS = "h1k-wrk=1000:http+wrk"


def rel(path: Path) -> str:
    """A path relative to the project when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Children:
    """Every child in its own session/process group; stop() kills the whole group."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[Any]]] = []

    def start(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 30.0) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log(f"pid {proc.pid} ignored SIGTERM for {grace:.0f}s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]
        return proc.returncode

    def stop_all(self) -> None:
        for _name, proc in reversed(list(self.procs)):
            self.stop(proc, grace=10.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread (tid -> utime + stime) of a process."""
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def process_tree(root: int) -> list[int]:
    """The root pid and all its live descendants (one scan of /proc), root first."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    if not os.path.exists(f"/proc/{root}"):
        return []
    tree = [root]
    i = 0
    while i < len(tree):
        tree += kids.get(tree[i], [])
        i += 1
    return tree


@dataclasses.dataclass
class TreeSample:
    """CPU and memory of a process tree at one moment."""

    at: float
    pids: list[int]
    cpu_s: float  # utime + stime + cutime + cstime summed over the tree
    rss_kb: int  # sum of VmRSS
    hwm_kb: int  # sum of VmHWM (each process's own peak; peaks need not coincide)
    pss_kb: int  # sum of Pss (shared pages split between the processes sharing them)
    per_process: dict[int, dict[str, Any]]

    @classmethod
    def take(cls, root: int) -> TreeSample:
        """Children that exited and were reaped by a process of the tree count through
        their parent's cutime/cstime; live ones through their own utime/stime."""
        now = time.time()
        pids = process_tree(root)
        cpu = 0.0
        rss = hwm = pss = 0
        per: dict[int, dict[str, Any]] = {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, _, tail = f.read().rpartition(")")
                fields = tail.split()
                own = sum(int(x) for x in fields[11:15]) / CLK_TCK
                vm = {"VmRSS": 0, "VmHWM": 0}
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        key = line.split(":", 1)[0]
                        if key in vm:
                            vm[key] = int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
            cpu += own
            rss += vm["VmRSS"]
            hwm += vm["VmHWM"]
            per[pid] = {
                "comm": head.partition("(")[2],
                "cpu_s": round(own, 2),
                "rss_mb": round(vm["VmRSS"] / 1024, 1),
                "hwm_mb": round(vm["VmHWM"] / 1024, 1),
            }
        return cls(now, list(per), cpu, rss, hwm, pss, per)


class TreeSampler:
    """Samples a process tree every `every` seconds on a thread (CPU, VmRSS, VmHWM)."""

    def __init__(self, root: int, every: float = SAMPLE_EVERY) -> None:
        self.root = root
        self.every = every
        self.samples: list[TreeSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                sample = TreeSample.take(self.root)
                if sample.pids:
                    self.samples.append(sample)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclasses.dataclass
class CpuMark:
    wall: float
    cpu: dict[int, float]
    sys_busy: float
    sys_total: float

    @classmethod
    def take(cls, pids: list[int]) -> CpuMark:
        busy, total = system_busy()
        cpu = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                cpu[pid] = cpu_seconds(pid)
        return cls(time.time(), cpu, busy, total)


def cpu_delta(a: CpuMark, b: CpuMark, pids: list[int]) -> float:
    return sum(b.cpu.get(p, 0.0) - a.cpu.get(p, 0.0) for p in pids)


def machine_busy_cores(a: CpuMark, b: CpuMark) -> float:
    ncpu = os.cpu_count() or 1
    total = b.sys_total - a.sys_total
    return (b.sys_busy - a.sys_busy) / total * ncpu if total > 0 else 0.0


# --------------------------------------------------------------------------- setup


def ensure_tools(skip_install: bool) -> dict[str, str | None]:
    need = [t for t in ("nginx", "prometheus-blackbox-exporter", "wrk") if not shutil.which(t)]
    if need and not skip_install:
        log(f"installing {' '.join(need)} (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *need],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None and not skip_install:
        log("installing py-spy (pip, optional)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False)
        pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
    try:
        import trustme  # noqa: F401
    except ImportError:
        log("installing trustme (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "trustme"], check=True)
    for tool in ("nginx", "prometheus-blackbox-exporter", "wrk"):
        if not shutil.which(tool):
            raise SystemExit(
                f"{tool} is missing (apt-get install -y nginx prometheus-blackbox-exporter wrk)"
            )
    return {
        "nginx": shutil.which("nginx"),
        "blackbox": shutil.which("prometheus-blackbox-exporter"),
        "wrk": shutil.which("wrk"),
        "py-spy": pyspy,
    }


def make_certs(where: Path) -> tuple[Path, Path, Path]:
    import trustme

    where.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert_pem, key_pem = where / "ca.pem", where / "server.pem", where / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf.private_key_pem.write_to_path(str(key_pem))
    with cert_pem.open("wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    return ca_pem, cert_pem, key_pem


NGINX_CONF = """\
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    log_format arrivals '$msec $request_uri $request_time';
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        listen 127.0.0.1:{https_port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /m/ {{
            access_log {prefix}/access.log arrivals buffer=64k flush=1s;
            default_type text/plain;
            return 200 "ok";
        }}
    }}
}}
"""


@dataclasses.dataclass
class Nginx:
    proc: subprocess.Popen[Any]
    http_port: int
    https_port: int
    access_log: Path

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)


def start_nginx(children: Children, tools: dict[str, str | None], cert: Path, key: Path) -> Nginx:
    prefix = OUT / "nginx"
    shutil.rmtree(prefix, ignore_errors=True)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    http_port, https_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            prefix=prefix, http_port=http_port, https_port=https_port, cert=cert, key=key
        )
    )
    argv = [
        str(tools["nginx"]),
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        str(prefix / "error.log"),
    ]
    subprocess.run([*argv, "-t", "-q"], check=True)
    proc = children.start("nginx", argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(http_port, 10, proc)
    wait_port(https_port, 10, proc)
    log(f"nginx pid={proc.pid} http=127.0.0.1:{http_port} https=127.0.0.1:{https_port}")
    return Nginx(proc, http_port, https_port, prefix / "access.log")


def read_arrivals(
    path: Path, prefix: str, t0: float, t1: float, numbered: bool = True
) -> list[tuple[float, str, float]]:
    """(time, monitor id, nginx's $request_time in s) for /m/<prefix>... logged in [t0, t1).

    numbered: the id is the prefix plus digits only (so `h10k-` does not match `h10k-wrk-`).
    """
    out: list[tuple[float, str, float]] = []
    want = "/m/" + prefix
    if not path.exists():
        return out
    with path.open() as f:
        for line in f:
            ts, _, rest = line.rstrip("\n").partition(" ")
            uri, _, took = rest.partition(" ")
            if not uri.startswith(want):
                continue
            if numbered and not uri[len(want) :].isdigit():
                continue
            t = float(ts)
            if t0 <= t < t1:
                out.append((t, uri[3:], float(took or 0)))
    return out


def pct(values: list[float], p: float) -> float | None:
    """Nearest rank, like the prober's own LagStats."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


# --------------------------------------------------------------------------- blackbox


BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
  https_ca:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
      fail_if_not_ssl: true
      tls_config:
        ca_file: {ca}
"""


async def drive(
    base: str, rate: float, warm: float, measure: float, max_inflight: int, pid: int
) -> dict[str, Any]:
    """Open-loop: one /probe request every 1/rate s; if max_inflight are pending, skip (count)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_inflight, force_close=False)
    counts: Counter[str] = Counter()
    inflight: set[asyncio.Task[None]] = set()
    measured: set[asyncio.Task[None]] = set()

    async def one(counted: bool) -> None:
        try:
            async with session.get(base, timeout=aiohttp.ClientTimeout(total=15)) as resp:
                text = await resp.text()
            ok = resp.status == 200 and "\nprobe_success 1" in text
            if counted:
                counts["ok" if ok else "failed"] += 1
        except Exception:
            if counted:
                counts["error"] += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = int((warm + measure) * rate)
        n_warm = int(warm * rate)
        mark0 = None
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            counted = i >= n_warm
            if i == n_warm:
                mark0 = CpuMark.take([pid])
            if len(inflight) >= max_inflight:
                if counted:
                    counts["skipped"] += 1
                continue
            task = asyncio.create_task(one(counted))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            if counted:
                measured.add(task)
        issue_end = loop.time()
        if measured:
            await asyncio.wait(measured, timeout=15)
        mark1 = CpuMark.take([pid])
        assert mark0 is not None
        elapsed = mark1.wall - mark0.wall
        done = counts["ok"] + counts["failed"]
        cpu = cpu_delta(mark0, mark1, [pid])
        return {
            "target_rate": rate,
            "window_s": round(elapsed, 3),
            "issue_s": round(issue_end - (start + warm), 3),
            "completed": done,
            "ok": counts["ok"],
            "failed": counts["failed"],
            "errors": counts["error"],
            "skipped": counts["skipped"],
            "achieved_rate": round(done / elapsed, 2) if elapsed > 0 else None,
            "cpu_s": round(cpu, 3),
            "cpu_ms_per_probe": round(cpu * 1000 / done, 4) if done else None,
            "cores": round(cpu / elapsed, 4) if elapsed > 0 else None,
            "machine_busy_cores": round(machine_busy_cores(mark0, mark1), 3),
        }


def run_blackbox(
    children: Children,
    tools: dict[str, str | None],
    nginx: Nginx,
    ca: Path,
    rates: list[float],
    warm: float,
    measure: float,
    protocols: tuple[str, ...] = ("http", "https"),
) -> dict[str, Any]:
    where = OUT / f"blackbox-{'-'.join(protocols)}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    conf = where / "blackbox.yml"
    conf.write_text(BLACKBOX_CONF.format(ca=ca))
    port = free_port()
    logf = (where / "blackbox.log").open("wb")
    proc = children.start(
        "blackbox",
        [
            str(tools["blackbox"]),
            f"--web.listen-address=127.0.0.1:{port}",
            f"--config.file={conf}",
            "--log.level=warn",
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
    )
    results: dict[str, Any] = {"pid": proc.pid, "runs": []}
    try:
        wait_port(port, 15, proc)
        for proto, module, target in (
            ("http", "http_2xx", f"http://127.0.0.1:{nginx.http_port}/m/bbh"),
            ("https", "https_ca", f"https://127.0.0.1:{nginx.https_port}/m/bbs"),
        ):
            if proto not in protocols:
                continue
            url = f"http://127.0.0.1:{port}/probe?module={module}&target={quote(target, safe='')}"
            for rate in rates:
                log(f"blackbox {proto} at {rate:g}/s for {measure:g}s (+{warm:g}s warm-up)")
                yardstick = calibrate()
                run = asyncio.run(drive(url, rate, warm, measure, max_inflight=512, pid=proc.pid))
                run["yardstick_ms"] = yardstick
                t0 = time.time() - run["window_s"] - 20
                run["protocol"] = proto
                run["nginx_arrivals"] = len(
                    read_arrivals(
                        nginx.access_log,
                        target.rsplit("/", 1)[1],
                        t0,
                        time.time(),
                        numbered=False,
                    )
                )
                results["runs"].append(run)
                log(
                    f"  -> {run['completed']} probes ok={run['ok']} {run['achieved_rate']}/s "
                    f"cpu={run['cpu_ms_per_probe']} ms/probe cores={run['cores']}"
                )
                time.sleep(2)
        results["peak_rss_mb"] = round(status_kb(proc.pid, "VmHWM") / 1024, 1)
        results["version"] = subprocess.run(
            [str(tools["blackbox"]), "--version"], capture_output=True, text=True, check=False
        ).stderr.splitlines()[0:1]
    finally:
        children.stop(proc, grace=10)
        logf.close()
    return results


def calibrate() -> float:
    """CPU-ms of a fixed workload (pure Python + hashing), median of three.

    A yardstick of how fast a core is right now: on a shared VM it drifts by tens of
    percent within minutes, and every CPU-per-check figure drifts with it.
    """
    times = []
    for _ in range(3):
        start = time.process_time()
        x = 0
        for i in range(800_000):
            x += i * i % 7
        hashlib.sha256(b"y" * 16_000_000).digest()
        times.append((time.process_time() - start) * 1000)
    return round(sorted(times)[1], 1)


# --------------------------------------------------------------------------- prober scenarios


@dataclasses.dataclass
class Scenario:
    name: str
    protocol: str  # http | https
    monitors: int
    wrk: bool = False  # `wrk` on the status page's `/` for the scenario's window

    @property
    def prefix(self) -> str:  # monitor id prefix, unique per scenario, matched in the access log
        return f"{self.name}-"


def monitor_ids(sc: Scenario) -> list[str]:
    width = len(str(sc.monitors))
    return [f"{sc.prefix}{i:0{width}d}" for i in range(1, sc.monitors + 1)]


def write_config(sc: Scenario, where: Path, nginx: Nginx, ca: Path, port: int) -> tuple[Path, Path]:
    db = where / "prober.db"
    lines = [
        "[settings]",
        f'title = "bench {sc.name}"',
        f'listen = "127.0.0.1:{port}"',
        'metrics = { listen = "" }',  # nothing scrapes here; never meet another run on 9108
        f'database = "sqlite:///{db}"',
        'timezone = "UTC"',
        "",
        "[defaults]",
        f'interval = "{int(INTERVAL)}s"',
        f'timeout = "{TIMEOUT}"',
        "",
    ]
    base = (
        f"http://127.0.0.1:{nginx.http_port}/m/"
        if sc.protocol == "http"
        else f"https://127.0.0.1:{nginx.https_port}/m/"
    )
    for mid in monitor_ids(sc):
        lines += ["[[monitors]]", f'id = "{mid}"', 'type = "http"', f'url = "{base}{mid}"']
        if sc.protocol == "https":
            lines.append(f'ca_file = "{ca}"')
        lines.append("")
    cfg = where / "monitors.toml"
    cfg.write_text("\n".join(lines))
    return cfg, db


class ProberLog:
    """Reads the prober's stderr on a thread: keeps it in a file, notes key lines with times."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path) -> None:
        self.running_at: float | None = None
        self.scheduler_at: float | None = None  # `scheduler started`: the first due times
        self.running = threading.Event()
        self.stats: list[dict[str, float]] = []
        self.errors = 0
        self.warnings = 0
        self.error_lines: list[str] = []
        self.gc: list[dict[str, float]] = []
        self._thread = threading.Thread(target=self._read, args=(proc, path), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes], path: Path) -> None:
        assert proc.stderr is not None
        with path.open("wb") as out:
            for raw in proc.stderr:
                now = time.time()
                out.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                if " ERROR " in line or " CRITICAL " in line:
                    self.errors += 1
                    if len(self.error_lines) < 5:
                        self.error_lines.append(line[:300])
                elif " WARNING " in line:
                    self.warnings += 1
                if "scheduler started" in line and self.scheduler_at is None:
                    self.scheduler_at = now
                if "prober running" in line and self.running_at is None:
                    self.running_at = now
                    self.running.set()
                elif (g := GC_RE.search(line)) is not None:
                    self.gc.append(
                        {"at": float(g.group(4)), "gen": int(g.group(1)), "ms": float(g.group(2))}
                    )
                elif (m := STATS_RE.search(line)) is not None:
                    stat: dict[str, float] = {"at": now}
                    stat.update((k, float(v)) for k, v in KV_RE.findall(m.group(1)))
                    self.stats.append(stat)
            out.flush()
        self.running.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def sleep_watching(seconds: float, proc: subprocess.Popen[Any], what: str) -> None:
    end = time.time() + seconds
    while (left := end - time.time()) > 0:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with {proc.returncode}")
        time.sleep(min(1.0, left))


def arrival_offsets(arrivals: list[tuple[float, str, float]], interval: float) -> list[float]:
    from prober.scheduler import phase_offset

    phases: dict[str, float] = {}
    offsets = []
    for t, mid, _took in arrivals:
        phase = phases.get(mid)
        if phase is None:
            phase = phases[mid] = phase_offset(mid, interval)
        rest = (t - phase) % interval
        offsets.append(rest - interval if rest > interval - 0.5 else rest)
    return offsets


def expected_due(ids: list[str], interval: float, t0: float, t1: float) -> dict[str, int]:
    from prober.scheduler import phase_offset

    due = {}
    for mid in ids:
        phase = phase_offset(mid, interval)
        first = math.ceil((t0 - phase) / interval)
        last = math.ceil((t1 - phase) / interval)  # due times in [t0, t1)
        due[mid] = max(0, last - first)
    return due


def db_run(db: Path) -> dict[str, Any]:
    """Every result of the run (the database is new per scenario): outcomes, examples of
    results not `up`, and the recorded latency of `up` results."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT outcome, COUNT(*) FROM result GROUP BY outcome").fetchall()
        lat = sorted(
            r[0] / 1000
            for r in conn.execute(
                "SELECT latency_us FROM result WHERE outcome = 1 AND latency_us IS NOT NULL"
            )
        )
        examples = conn.execute(
            "SELECT m.slug, r.ts_ms, r.outcome, r.status_code, r.latency_us, r.error"
            " FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " WHERE r.outcome != 1 ORDER BY r.ts_ms LIMIT 5"
        ).fetchall()
        errors = conn.execute(
            "SELECT outcome, COALESCE(error, ''), COUNT(*) FROM result WHERE outcome != 1"
            " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5"
        ).fetchall()
        span = conn.execute("SELECT MIN(ts_ms), MAX(ts_ms) FROM result").fetchone()
    finally:
        conn.close()
    outcomes = {OUTCOME_NAMES.get(code, str(code)): n for code, n in rows}
    total = sum(outcomes.values())
    return {
        "results": total,
        "outcomes": outcomes,
        "not_up": total - outcomes.get("up", 0),
        "first_ts": span[0] / 1000 if span and span[0] else None,
        "last_ts": span[1] / 1000 if span and span[1] else None,
        "not_up_examples": [
            {
                "monitor": slug,
                "at": dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%H:%M:%S.%f")[:-3],
                "outcome": OUTCOME_NAMES.get(outcome, str(outcome)),
                "status": status,
                "latency_ms": None if lat_us is None else round(lat_us / 1000, 1),
                "error": error,
            }
            for slug, ts, outcome, status, lat_us, error in examples
        ],
        "top_not_up": [
            {"outcome": OUTCOME_NAMES.get(o, str(o)), "error": e, "count": n} for o, e, n in errors
        ],
        "up_latency_ms": {
            "p50": _r(pct(lat, 50), 2),
            "p99": _r(pct(lat, 99), 2),
            "max": _r(lat[-1] if lat else None, 2),
            "count": len(lat),
        },
    }


def _r(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def parse_wrk(out: str) -> dict[str, Any]:
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

    def ms(text: str) -> float | None:
        m = re.fullmatch(r"([\d.]+)([a-z]+)", text)
        return float(m.group(1)) * units[m.group(2)] if m and m.group(2) in units else None

    found: dict[str, Any] = {"requests": None, "rps": None, "socket_errors": 0, "non_2xx": 0}
    if re.search(r"^\s*0 requests in", out, re.M):
        found.update(requests=0, rps=0.0)
        return found  # no latency to report
    if m := re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out):
        found["requests"] = int(m.group(1))
        found["duration"] = m.group(2)
        found["read"] = m.group(3)
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        found["rps"] = float(m.group(1))
    for p in ("50", "75", "90", "99"):
        if m := re.search(rf"^\s+{p}%\s+(\S+)", out, re.M):
            found[f"p{p}_ms"] = ms(m.group(1))
    if m := re.search(r"Socket errors: (.*)", out):
        found["socket_errors_detail"] = m.group(1).strip()
        found["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", m.group(1)))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        found["non_2xx"] = int(m.group(1))
    return found


class WrkRun:
    """`wrk` on the page's `/`: started once the port opens (retrying from launch), bounded."""

    def __init__(
        self,
        children: Children,
        port: int,
        until: float,
        seconds: float | None,
        where: Path,
        proc: subprocess.Popen[Any],
    ) -> None:
        self.result: dict[str, Any] = {"port": port}
        self._thread = threading.Thread(
            target=self._run, args=(children, port, until, seconds, where, proc), daemon=True
        )
        self._thread.start()

    def _run(
        self,
        children: Children,
        port: int,
        until: float,
        seconds: float | None,
        where: Path,
        proc: subprocess.Popen[Any],
    ) -> None:
        try:
            wait_port(port, max(1.0, until - time.time() - 1), proc)
        except RuntimeError as exc:
            self.result["error"] = str(exc)
            return
        started = time.time()
        duration = int(until - started)
        if seconds is not None:
            duration = min(duration, int(seconds))
        if duration < 1:
            self.result["error"] = "the page opened too late for wrk"
            return
        argv = [
            "wrk",
            "-t1",
            "-c16",
            f"-d{duration}s",
            "--timeout",
            "5s",
            "--latency",
            # as every browser asks: at 10,000 monitors the page is ~100 MB plain, a few MB
            # gzipped, and 16 connections reading it plain measure the loopback's copying
            "-H",
            "Accept-Encoding: gzip",
            f"http://127.0.0.1:{port}/",
        ]
        self.result.update({"argv": " ".join(argv), "started": started})
        out_path = where / "wrk.txt"
        with out_path.open("w") as out:
            wrk = children.start("wrk", argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                wrk.wait(duration + 30)
            except subprocess.TimeoutExpired:
                self.result["error"] = "wrk overran its duration"
            finally:
                children.stop(wrk, grace=5)
        self.result["ended"] = time.time()
        self.result["exit_code"] = wrk.returncode
        self.result.update(parse_wrk(out_path.read_text()))
        self.result["output"] = rel(out_path)

    def join(self, timeout: float) -> dict[str, Any]:
        self._thread.join(timeout)
        return self.result


def per_minute(
    launched: float,
    t1: float,
    arrivals: list[tuple[float, str, float]],
    offsets: list[float],
    samples: list[TreeSample],
) -> list[dict[str, Any]]:
    """Minute by minute from launch: arrivals and their offsets at nginx, the tree's CPU and
    RSS (from the samples); the prober's own stats lines are added by the caller."""
    minutes = max(1, math.ceil((t1 - launched) / 60 - 1e-6))
    out = []
    for k in range(minutes):
        a, b = launched + 60 * k, min(t1, launched + 60 * (k + 1))
        offs = [o for (t, _, _), o in zip(arrivals, offsets, strict=True) if a <= t < b]
        inside = [s for s in samples if a <= s.at <= b]
        before = [s for s in samples if s.at <= a]
        cores = None
        if inside:
            first = before[-1] if before else None
            c0, w0 = (first.cpu_s, first.at) if first else (0.0, launched)
            last = inside[-1]
            if last.at > w0:
                cores = round((last.cpu_s - c0) / (last.at - w0), 4)
        out.append(
            {
                "minute": k + 1,
                "arrivals": len(offs),
                "offset_p99_ms": _ms(pct(offs, 99)),
                "offset_max_ms": _ms(max(offs) if offs else None),
                "cores": cores,
                "rss_max_mb": round(max(s.rss_kb for s in inside) / 1024, 1) if inside else None,
            }
        )
    return out


def run_scenario(
    children: Children,
    sc: Scenario,
    nginx: Nginx,
    ca: Path,
    args: argparse.Namespace,
    profile: Callable[[int, Path], dict[str, Any]] | None,
) -> dict[str, Any]:
    where = OUT / sc.name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    port = free_port()
    cfg, db = write_config(sc, where, nginx, ca, port)
    drop = ("PROBER_DATABASE", "PROBER_CONFIG", "PROBER_LISTEN")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONUNBUFFERED"] = "1"
    launcher = [str(ROOT / "bench" / "gctrace.py")] if args.gc_trace else ["-m", "prober"]
    yardstick = calibrate()
    nginx_pids = nginx.worker_pids()
    log(
        f"scenario {sc.name}: {sc.monitors} {sc.protocol} monitors"
        f"{' + wrk on /' if sc.wrk else ''}, starting prober; measuring from launch"
        f" + {args.warmup:g}s for {args.window:g}s"
    )
    start_mark = CpuMark.take(nginx_pids)
    launched = time.time()
    proc = children.start(
        f"prober-{sc.name}",
        [sys.executable, *launcher, "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(where),
    )
    sampler = TreeSampler(proc.pid)
    plog = ProberLog(proc, where / "prober.log")
    t0 = launched + args.warmup
    t1 = t0 + args.window
    result: dict[str, Any] = {
        "name": sc.name,
        "protocol": sc.protocol,
        "monitors": sc.monitors,
        "wrk": sc.wrk,
        "interval_s": INTERVAL,
        "pid": proc.pid,
        "page_port": port,
        "code_fingerprint": code_fingerprint(),
        "yardstick_ms": yardstick,
    }
    wrk: WrkRun | None = None
    end: TreeSample | None = None
    try:
        if sc.wrk:
            wrk = WrkRun(children, port, t1, args.wrk_seconds, where, proc)
        if not plog.running.wait(args.startup_timeout) or plog.running_at is None:
            raise RuntimeError(f"prober did not start (see {where / 'prober.log'})")
        result["startup_s"] = round(plog.running_at - launched, 2)
        log(f"  running after {result['startup_s']}s")
        mark0: TreeSample | None = None
        if args.warmup > 0:
            sleep_watching(t0 - time.time(), proc, "prober")
            mark0 = TreeSample.take(proc.pid)
        threads0 = thread_cpu(proc.pid)
        sleep_watching(t1 - time.time(), proc, "prober")
        end = TreeSample.take(proc.pid)
        end_mark = CpuMark.take(nginx_pids)
        sampler.stop()
        threads1 = thread_cpu(proc.pid)
        span = end.at - (mark0.at if mark0 is not None else launched)
        result["cpu_s"] = round(end.cpu_s - (mark0.cpu_s if mark0 is not None else 0.0), 3)
        result["thread_cores_main"] = {
            ("main" if tid == proc.pid else str(tid)): round(
                (cpu - threads0.get(tid, 0.0)) / span, 4
            )
            for tid, cpu in sorted(threads1.items())
        }
        result["processes"] = end.per_process
        result["threads"] = status_kb(proc.pid, "Threads")
        if profile is not None:
            result["profile"] = profile(proc.pid, where)
        # The stats line due just after the window (at running + k*60 s) covers its last
        # minute: wait for it when it is close (it is startup_s after the window's end).
        want = [s for s in plog.stats if s["at"] >= t1]
        due_next = plog.running_at + 60 * math.ceil((t1 - plog.running_at) / 60)
        if not want and due_next - t1 < 20:
            deadline = due_next + 5
            while time.time() < deadline and not [s for s in plog.stats if s["at"] >= t1]:
                sleep_watching(0.5, proc, "prober")
        if wrk is not None:
            result["wrk_result"] = wrk.join(60)
    finally:
        sampler.stop()
        stopped = time.time()
        code = children.stop(proc, grace=30)
        plog.join(10)
        if wrk is not None:
            result["wrk_result"] = wrk.join(10)
    result["exit_code"] = code
    result["stop_s"] = round(time.time() - stopped, 2)
    assert end is not None
    window = end.at - t0
    time.sleep(1.5)  # nginx flushes its access-log buffer every second
    ids = monitor_ids(sc)
    arrivals_all = read_arrivals(nginx.access_log, sc.prefix, launched, time.time())
    arrivals = [a for a in arrivals_all if t0 <= a[0] < t1]
    running_at = plog.running_at or launched
    # nothing runs before the scheduler starts (logged just before `prober running`): the
    # first run of each monitor is its first due time after that
    scheduled_at = min(plog.scheduler_at or running_at, running_at)
    due = expected_due(ids, INTERVAL, max(t0, scheduled_at), t1)
    per_monitor = Counter(mid for _, mid, _ in arrivals)
    offsets = arrival_offsets(arrivals, INTERVAL)
    expected = sum(due.values())
    missing = sum(max(0, n - per_monitor.get(mid, 0)) for mid, n in due.items())
    stats = plog.stats
    # The stats line's lag figures cover the prober's last 100,000 check starts: in a
    # 5-minute run of up to 10,000 monitors that is every start since launch.
    run_stats = next((s for s in stats if s["at"] >= t1), stats[-1] if stats else None)
    stats_by_minute = [
        {
            "minute": round((s["at"] - launched) / 60, 2),
            "checks": int(s.get("checks", 0)),
            "lag_p50_ms": s.get("lag_p50_ms"),
            "lag_p99_ms": s.get("lag_p99_ms"),
            "lag_max_ms": s.get("lag_max_ms"),
        }
        for s in stats
        if s["at"] <= (run_stats or {"at": t1})["at"]
    ]
    dbr = db_run(db) if db.exists() else {}
    nginx_took = sorted(took * 1000 for _, _, took in arrivals_all)
    nginx_p99 = pct(nginx_took, 99)
    prober_p99 = (dbr.get("up_latency_ms") or {}).get("p99")
    samples = [*sampler.samples, end]
    rss_sampled_max = max(s.rss_kb for s in samples) / 1024
    minutes = per_minute(launched, t1, arrivals, offsets, samples)
    n = len(arrivals)
    cpu = result["cpu_s"]
    # after the first minute: steady state, for comparison with the whole-run figure
    after = [s for s in samples if s.at >= launched + 60]
    steady = None
    if args.warmup < 60 and len(after) >= 2 and after[-1].at > after[0].at:
        a, b = after[0], after[-1]
        k = sum(1 for t, _, _ in arrivals if a.at <= t < b.at)
        steady = {
            "from_s": round(a.at - launched, 1),
            "cores": round((b.cpu_s - a.cpu_s) / (b.at - a.at), 4),
            "cpu_ms_per_check": round((b.cpu_s - a.cpu_s) / k * 1000, 4) if k else None,
        }
    result.update(
        {
            "launched": launched,
            "running_at": running_at,
            "scheduler_started_at": scheduled_at,
            "window_start": t0,
            "window_end": end.at,
            "window_s": round(window, 3),
            "warmup_s": args.warmup,
            "expected_checks": expected,
            "due_rate": round(sc.monitors / INTERVAL, 2),
            "arrivals": n,
            "arrival_rate": round(n / window, 2),
            "delivered_ratio": round(n / expected, 4) if expected else None,
            "missing_checks": missing,
            "monitors_without_arrival": sum(
                1 for mid, k in due.items() if k and not per_monitor.get(mid)
            ),
            "db": dbr,
            "not_up": dbr.get("not_up"),
            "stats_lines": stats,
            "stats_by_minute": stats_by_minute,
            "lag_p50_ms": run_stats.get("lag_p50_ms") if run_stats else None,
            "lag_p99_ms": run_stats.get("lag_p99_ms") if run_stats else None,
            "lag_max_ms": run_stats.get("lag_max_ms") if run_stats else None,
            "lag_covers_s": round(run_stats["at"] - launched, 1) if run_stats else None,
            "arrival_offset_ms": {
                "p50": _ms(pct(offsets, 50)),
                "p90": _ms(pct(offsets, 90)),
                "p99": _ms(pct(offsets, 99)),
                "max": _ms(max(offsets) if offsets else None),
                "min": _ms(min(offsets) if offsets else None),
            },
            "late_arrivals": {
                "over_50ms": sum(1 for o in offsets if o > 0.05),
                "over_100ms": sum(1 for o in offsets if o > 0.1),
                "over_250ms": sum(1 for o in offsets if o > 0.25),
                "over_1s": sum(1 for o in offsets if o > 1.0),
            },
            "per_minute": minutes,
            "latency_ms": {
                "prober_p99": prober_p99,
                "nginx_p99": _r(nginx_p99, 3),
                "nginx_max": _r(nginx_took[-1] if nginx_took else None, 3),
                "nginx_requests": len(nginx_took),
                "over_nginx_p99": _r(prober_p99 - nginx_p99, 2)
                if prober_p99 is not None and nginx_p99 is not None
                else None,
            },
            "gc_pauses_in_window": gc_summary(plog.gc, t0, t1) if args.gc_trace else None,
            "cores": round(cpu / window, 4),
            "cpu_s_per_1000_checks": round(cpu / n * 1000, 4) if n else None,
            "cpu_ms_per_check": round(cpu / n * 1000, 4) if n else None,
            "after_first_minute": steady,
            "process_count_end": len(end.pids),
            "process_count_max": max(len(s.pids) for s in samples),
            "pids_seen": sorted({p for s in samples for p in s.pids}),
            "peak_rss_mb": round(max(end.hwm_kb / 1024, rss_sampled_max), 1),
            "hwm_sum_mb": round(end.hwm_kb / 1024, 1),
            "rss_sampled_max_mb": round(rss_sampled_max, 1),
            "pss_sampled_max_mb": round(max(s.pss_kb for s in samples) / 1024, 1),
            "rss_end_mb": round(end.rss_kb / 1024, 1),
            "rss_samples": [[round(s.at - launched, 1), s.rss_kb // 1024] for s in samples],
            "nginx_cores": round(cpu_delta(start_mark, end_mark, nginx_pids) / window, 4),
            "machine_busy_cores": round(machine_busy_cores(start_mark, end_mark), 3),
            "prober_log_errors": plog.errors,
            "prober_log_error_lines": plog.error_lines,
            "prober_log_warnings": plog.warnings,
        }
    )
    w = result.get("wrk_result") or {}
    log(
        f"  -> {n} arrivals ({result['arrival_rate']}/s, {result['delivered_ratio']} of due), "
        f"not up {result['not_up']} of {dbr.get('results')}, "
        f"cores={result['cores']} ({len(end.pids)} processes), "
        f"{result['cpu_ms_per_check']} CPU-ms/check, lag p99/max={result['lag_p99_ms']}/"
        f"{result['lag_max_ms']} ms (arrival p99 {result['arrival_offset_ms']['p99']} ms), "
        f"latency p99 {prober_p99} ms vs nginx {result['latency_ms']['nginx_p99']} ms, "
        f"RSS peak {result['peak_rss_mb']} MB"
        + (f", wrk {w.get('rps')} req/s p99 {w.get('p99_ms')} ms" if sc.wrk else "")
    )
    return result


def gc_summary(pauses: list[dict[str, float]], t0: float, t1: float) -> dict[str, Any]:
    inside = [p for p in pauses if t0 <= p["at"] < t1]
    return {
        "count_over_10ms": len(inside),
        "by_gen": dict(Counter(str(int(p["gen"])) for p in inside)),
        "max_ms": max((p["ms"] for p in inside), default=None),
        "total_ms": round(sum(p["ms"] for p in inside), 1),
        "over_50ms": [p for p in inside if p["ms"] >= 50],
    }


def code_fingerprint() -> str:
    """A short hash of the prober's source, to tell whether the code moved during a run."""
    digest = hashlib.sha256()
    for folder in ("prober", "statuspage"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def make_profiler(pyspy: str, duration: int) -> Callable[[int, Path], dict[str, Any]]:
    def profile(pid: int, where: Path) -> dict[str, Any]:
        raw = where / "profile.txt"
        svg = OUT / "profile.svg"
        out: dict[str, Any] = {"duration_s": duration}
        log(f"  py-spy: {duration}s raw profile, then {duration}s flame graph ({svg})")
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            cmd = [
                pyspy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration),
                "--rate",
                "100",
                "--format",
                fmt,
                "--output",
                str(path),
                "--nonblocking",
            ]
            if fmt == "raw":
                cmd.append("--threads")
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration + 60, check=False
            )
            if proc.returncode != 0:
                out[f"{fmt}_error"] = (proc.stderr or proc.stdout)[-500:]
                log(f"  py-spy {fmt} failed: {out[f'{fmt}_error']}")
        if raw.exists():
            out.update(summarize_profile(raw))
            out["raw"] = rel(raw)
        if svg.exists():
            out["svg"] = rel(svg)
        return out

    return profile


_FRAME_LINE = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME_LINE.match(frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = "stdlib/" + path.split("/", 1)[1]
            break
    else:
        with contextlib.suppress(ValueError):
            path = str(Path(path).relative_to(ROOT))
    return f"{func} ({path})"


def summarize_profile(raw: Path) -> dict[str, Any]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames and frames[0].startswith("thread ("):
            threads[frames[0]] += n
            frames = frames[1:]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        samples += n
        own[_short(frames[-1])] += n
        for f in {_short(f) for f in frames}:
            total[f] += n
    return {
        "samples": samples,
        "threads": {k: v for k, v in threads.most_common()},
        "top_own": [
            {"function": f, "own_pct": round(100 * n / samples, 1)} for f, n in own.most_common(15)
        ],
        "top_total": [
            {"function": f, "total_pct": round(100 * n / samples, 1)}
            for f, n in total.most_common(25)
        ],
    }


# --------------------------------------------------------------------------- report


def machine_info(tools: dict[str, str | None]) -> dict[str, Any]:
    def sh(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            return (p.stdout or p.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiohttp

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh(["nproc"]),
        "cpu_model": model,
        "memory": [f"{sh(['free', '-m']).splitlines()[1].split()[1]} MB RAM"],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "openssl": __import__("ssl").OPENSSL_VERSION,
        "nginx": sh([str(tools["nginx"]), "-v"]),
        "blackbox": sh([str(tools["blackbox"]), "--version"]).splitlines()[0:1],
        "wrk": sh([str(tools["wrk"]), "-v"]).split(" Copyright")[0].strip(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def bb_for(results: dict[str, Any], proto: str) -> list[dict[str, Any]]:
    runs = (results.get("blackbox") or {}).get("runs", [])
    return [r for r in runs if r["protocol"] == proto and r.get("cpu_ms_per_probe")]


def compare(results: dict[str, Any]) -> None:
    """Our CPU per check vs blackbox's per probe, same protocol; every rate, closest marked."""
    for sc in results["scenarios"]:
        ours = sc.get("cpu_ms_per_check")
        bbs = bb_for(results, sc["protocol"])
        if not ours or not bbs:
            continue
        rate = sc["arrival_rate"]
        closest = min(bbs, key=lambda r: abs(math.log(r["target_rate"] / max(rate, 0.1))))
        sc["vs_blackbox"] = {
            f"{r['target_rate']:g}/s": round(ours / r["cpu_ms_per_probe"], 3) for r in bbs
        }
        sc["vs_blackbox_closest"] = f"{closest['target_rate']:g}/s"
        sc["ratio_vs_blackbox"] = round(ours / closest["cpu_ms_per_probe"], 3)


def label(sc: dict[str, Any]) -> str:
    return f"{sc['monitors']:,} {sc['protocol'].upper()}" + (
        " + `wrk` on `/`" if sc.get("wrk") else ""
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (scenario, target): the 10,000-monitor targets for every 10k scenario,
    the footprint targets for the 200-monitor one."""
    rows: list[dict[str, Any]] = []

    def add(sc: dict[str, Any], key: str, text: str, measured: str, ok: bool | None) -> None:
        rows.append(
            {"scenario": sc["name"], "key": key, "target": text, "measured": measured, "pass": ok}
        )

    for sc in results["scenarios"]:
        if sc["monitors"] >= 10_000:
            not_up = sc.get("not_up")
            total = (sc.get("db") or {}).get("results")
            add(
                sc,
                "not_up",
                f"results not `up` against the healthy target, whole run: {TARGET_NOT_UP}",
                f"{not_up:,} of {total:,}" if not_up is not None and total else "n/a",
                None if not_up is None or not total else not_up <= TARGET_NOT_UP,
            )
            ratio = sc.get("delivered_ratio")
            add(
                sc,
                "delivered",
                f"checks arriving at nginx ≥ {TARGET_DELIVERED:.0%} of those due",
                f"{ratio:.1%}" if ratio is not None else "n/a",
                None if ratio is None else ratio >= TARGET_DELIVERED,
            )
            p99, worst = sc.get("lag_p99_ms"), sc.get("lag_max_ms")
            add(
                sc,
                "lag_p99",
                f"start lag p99 < {TARGET_LAG_P99_MS:g} ms (stats line, from the first minute)",
                f"{p99:.1f} ms" if p99 is not None else "n/a",
                None if p99 is None else p99 < TARGET_LAG_P99_MS,
            )
            add(
                sc,
                "lag_max",
                f"start lag max < {TARGET_LAG_MAX_MS:g} ms (same)",
                f"{worst:.1f} ms" if worst is not None else "n/a",
                None if worst is None else worst < TARGET_LAG_MAX_MS,
            )
            lat = sc.get("latency_ms") or {}
            over = lat.get("over_nginx_p99")
            add(
                sc,
                "latency",
                f"recorded latency p99 over nginx's own p99 < {TARGET_LATENCY_OVER_MS:g} ms",
                f"{over:+.1f} ms ({lat['prober_p99']:.1f} vs {lat['nginx_p99']:.1f})"
                if over is not None
                else "n/a",
                None if over is None else over < TARGET_LATENCY_OVER_MS,
            )
            r = sc.get("ratio_vs_blackbox")
            if sc.get("wrk"):
                # all processes, so the CPU of serving wrk's requests is in it: shown, not judged
                add(
                    sc,
                    "ratio",
                    f"CPU per check ≤ {TARGET_RATIO:g}× blackbox_exporter (same run)",
                    f"{r:.2f}× incl. serving `/`" if r is not None else "n/a",
                    None,
                )
            else:
                add(
                    sc,
                    "ratio",
                    f"CPU per check ≤ {TARGET_RATIO:g}× blackbox_exporter (same run)",
                    f"{r:.2f}× @{sc.get('vs_blackbox_closest')}" if r is not None else "n/a",
                    None if r is None else r <= TARGET_RATIO,
                )
            add(
                sc,
                "rss",
                f"peak RSS, all prober processes < {TARGET_RSS_MB:g} MB",
                f"{sc['peak_rss_mb']:.0f} MB",
                sc["peak_rss_mb"] < TARGET_RSS_MB,
            )
        elif sc["monitors"] == TARGET_SMALL_MONITORS:
            add(
                sc,
                "small_cpu",
                f"{TARGET_SMALL_MONITORS} monitors: CPU, all prober processes, from launch"
                f" < {TARGET_SMALL_CORES:g} core",
                f"{sc['cores']:.4f} core",
                sc["cores"] < TARGET_SMALL_CORES,
            )
            add(
                sc,
                "small_rss",
                f"{TARGET_SMALL_MONITORS} monitors: peak RSS, all prober processes"
                f" < {TARGET_SMALL_RSS_MB:g} MB",
                f"{sc['peak_rss_mb']:.0f} MB",
                sc["peak_rss_mb"] < TARGET_SMALL_RSS_MB,
            )
    return rows


def git_info() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            p = subprocess.run(
                ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return p.stdout.strip() if p.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=normal")
    changed = [line[3:] for line in status.splitlines()]
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "?",
        "dirty": bool(changed),
        "dirty_code": sorted(
            p for p in changed if p.startswith(("prober/", "statuspage/", "static/"))
        ),
        "dirty_count": len(changed),
    }


def fingerprints(results: dict[str, Any]) -> str:
    prints = [sc.get("code_fingerprint", "?") for sc in results["scenarios"]]
    if len(set(prints)) <= 1:
        return f"`{prints[0] if prints else '?'}` (unchanged during the run)"
    return (
        ", ".join(
            f"{sc['name']} `{sc.get('code_fingerprint', '?')}`" for sc in results["scenarios"]
        )
        + " (**the code changed during the run**: rerun before comparing scenarios)"
    )


def commit_text(results: dict[str, Any]) -> str:
    g = results.get("git") or {}
    text = f"commit `{g.get('commit', '?')}`"
    if g.get("dirty_code"):
        shown = ", ".join(f"`{p}`" for p in g["dirty_code"][:6])
        more = len(g["dirty_code"]) - 6
        text += (
            f" **plus uncommitted changes to the code** ({shown}{f', +{more}' if more > 0 else ''})"
        )
    elif g.get("dirty"):
        text += " (clean code; uncommitted changes outside prober/, statuspage/, static/)"
    else:
        text += " (clean tree)"
    end = results.get("git_end") or {}
    if end and end.get("commit") != g.get("commit"):
        text += f"; HEAD moved to `{end.get('commit')}` during the run"
    return text


PASS = {True: "✅ pass", False: "❌ fail", None: "– not measured"}
MARK = {True: "✅", False: "❌", None: "–"}


def fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "–"
    return format(v, spec) if spec else str(v)


def _series(values: list[Any], spec: str = ".0f") -> str:
    return " · ".join(fmt(v, spec) for v in values) or "–"


def run_kind(results: dict[str, Any]) -> str:
    if results["quick"]:
        return "quick smoke run"
    default = (
        results.get("scenarios_spec") == DEFAULT_SCENARIOS
        and results["window_s"] == 300
        and results["warmup_s"] == 0
    )
    return "full run" if default else f"custom run (`{results.get('scenarios_spec')}`)"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    scs = results["scenarios"]
    lines = [
        MARK_START,
        "<!-- generated by bench/run.py; edits between these markers are overwritten -->",
        "",
        f"**Run:** {m['date']}, {run_kind(results)} "
        f"({results.get('duration_s', 0) / 60:.0f} min); every scenario measured from the "
        f"launch of `prober run` (warm-up {results['warmup_s']:g} s), window "
        f"{results['window_s']:g} s, status page on; blackbox {results['bb_window_s']:g} s per "
        f"rate. Measured: {commit_text(results)}; prober source fingerprint per scenario: "
        f"{fingerprints(results)}. "
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {' '.join(m['memory'])}; "
        f"kernel {m['kernel']}; Python {m['python']}, aiohttp {m['aiohttp']}, {m['openssl']}; "
        f"{m['nginx']}; {' '.join(m['blackbox'])}; {m.get('wrk', 'wrk ?')}. "
        f"Load average at start: {' '.join(m['loadavg_start'])}.",
        "",
    ]
    for f in results.get("failed", []):
        lines += [
            f"**Scenario {f['name']} ({label(f)}) did not complete: {f['error']}** "
            f"(log: `{f['log']}`); its targets are failed.",
            "",
        ]
    rows = results["targets"]
    big = [sc for sc in scs if any(r["scenario"] == sc["name"] for r in rows)]
    big = [sc for sc in big if sc["monitors"] >= 10_000]
    lines += ["### Targets (10,000 monitors at 60 s, from launch)", ""]
    if big:
        lines += [
            "| target | " + " | ".join(label(sc) for sc in big) + " |",
            "|---|" + "---|" * len(big),
        ]
        keys = list(
            dict.fromkeys(r["key"] for r in rows if r["scenario"] in {s["name"] for s in big})
        )
        for key in keys:
            cells = []
            text = next(r["target"] for r in rows if r["key"] == key)
            for sc in big:
                r = next((r for r in rows if r["key"] == key and r["scenario"] == sc["name"]), None)
                cells.append("–" if r is None else f"{r['measured']} {MARK[r['pass']]}")
            lines.append(f"| {text} | " + " | ".join(cells) + " |")
        if any(sc.get("wrk") for sc in big):
            lines += [
                "",
                "With `wrk` on `/` the CPU of all processes includes serving the page as fast "
                "as wrk asks, so its CPU per check is shown, not judged.",
            ]
    else:
        lines.append("(no 10,000-monitor scenario in this run)")
    small = [r for r in rows if r["key"].startswith("small_")]
    if small:
        lines += ["", "| footprint target | measured | pass |", "|---|---|---|"]
        lines += [f"| {r['target']} | {r['measured']} | {PASS[r['pass']]} |" for r in small]
    lines += [
        "",
        "### prober scenarios (whole tree of `prober run`, from launch)",
        "",
        "| scenario | processes at end (max at once, pids seen) | ERROR log lines | startup "
        "| due checks/s | arrivals/s at nginx (delivered) "
        "| results not `up` / all (whole run) | start lag p50 / p99 / max (stats line) "
        "| arrival offset p50 / p99 / max (nginx) | arrivals > 100 ms late "
        "| recorded latency p99: prober / nginx's own / difference "
        "| CPU (cores) | CPU-ms per check: whole run / after minute 1 "
        "| CPU per check vs blackbox (bold: closest rate) "
        "| peak RSS: Σ VmHWM / max Σ VmRSS (max Σ PSS) | machine busy (cores) | yardstick |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in scs:
        off = sc["arrival_offset_ms"]
        vs = sc.get("vs_blackbox") or {}
        vs_txt = (
            " · ".join(
                (f"**{v:.2f}× @{k}**" if k == sc.get("vs_blackbox_closest") else f"{v:.2f}× @{k}")
                for k, v in vs.items()
            )
            or "–"
        )
        db = sc.get("db") or {}
        lat = sc.get("latency_ms") or {}
        steady = sc.get("after_first_minute") or {}
        procs = sc.get("process_count_end")
        procs_txt = f"{procs} ({sc.get('process_count_max')}, {len(sc.get('pids_seen', []))})"
        lines.append(
            f"| {label(sc)} "
            f"| {procs_txt} "
            f"| {sc.get('prober_log_errors', '–')} "
            f"| {sc.get('startup_s', 0):.1f} s "
            f"| {sc['due_rate']:.1f} "
            f"| {sc['arrival_rate']:.1f} ({fmt(sc['delivered_ratio'], '.1%')}) "
            f"| {fmt(db.get('not_up'), ',')} / {fmt(db.get('results'), ',')} "
            f"| {fmt(sc['lag_p50_ms'], '.1f')} / {fmt(sc['lag_p99_ms'], '.1f')} / "
            f"{fmt(sc.get('lag_max_ms'), '.1f')} ms "
            f"| {fmt(off['p50'], '.0f')} / {fmt(off['p99'], '.0f')} / {fmt(off['max'], '.0f')} ms "
            f"| {(sc.get('late_arrivals') or {}).get('over_100ms', '–')} "
            f"| {fmt(lat.get('prober_p99'), '.1f')} / {fmt(lat.get('nginx_p99'), '.1f')} / "
            f"{fmt(lat.get('over_nginx_p99'), '+.1f')} ms "
            f"| {sc['cores']:.3f} "
            f"| {fmt(sc['cpu_ms_per_check'], '.2f')} / "
            f"{fmt(steady.get('cpu_ms_per_check'), '.2f')} "
            f"| {vs_txt} "
            f"| {sc['hwm_sum_mb']:.0f} / {sc['rss_sampled_max_mb']:.0f} MB "
            f"({fmt(sc.get('pss_sampled_max_mb'), '.0f')} MB) "
            f"| {sc['machine_busy_cores']:.2f} "
            f"| {fmt(sc.get('yardstick_ms'), '.0f')} ms |"
        )
    lines += [
        "",
        "### Minute by minute (from launch)",
        "",
        "Start lag from the prober's `stats` line at the end of each minute (its figures cover "
        "its last 100,000 check starts: every start since launch here); arrival offsets at "
        "nginx within each minute; CPU of all prober processes within each minute.",
        "",
        "| scenario | start lag p99 (ms) | start lag max (ms) | arrival offset p99 (ms) "
        "| arrival offset max (ms) | CPU (cores) | max Σ VmRSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for sc in scs:
        st = sc.get("stats_by_minute") or []
        pm = sc.get("per_minute") or []
        lines.append(
            f"| {label(sc)} "
            f"| {_series([s.get('lag_p99_ms') for s in st], '.1f')} "
            f"| {_series([s.get('lag_max_ms') for s in st], '.1f')} "
            f"| {_series([x['offset_p99_ms'] for x in pm])} "
            f"| {_series([x['offset_max_ms'] for x in pm])} "
            f"| {_series([x['cores'] for x in pm], '.3f')} "
            f"| {_series([x['rss_max_mb'] for x in pm])} |"
        )
    wrks = [sc for sc in scs if sc.get("wrk")]
    if wrks:
        lines += [
            "",
            "### `wrk` on the status page's `/` (during the scenario)",
            "",
            "| scenario | command | requests/s | latency p50 / p99 | non-2xx / socket errors |",
            "|---|---|---|---|---|",
        ]
        for sc in wrks:
            w = sc.get("wrk_result") or {}
            lines.append(
                f"| {label(sc)} | `{w.get('argv', w.get('error', '–'))}` "
                f"| {fmt(w.get('rps'), ',.0f')} "
                f"| {fmt(w.get('p50_ms'), '.1f')} / {fmt(w.get('p99_ms'), '.1f')} ms "
                f"| {fmt(w.get('non_2xx'))} / {fmt(w.get('socket_errors'))}"
                + (f" ({w['socket_errors_detail']})" if w.get("socket_errors") else "")
                + " |"
            )
    bad = [sc for sc in scs if (sc.get("db") or {}).get("not_up")]
    if bad:
        lines += ["", "### Results not `up` (first examples per scenario)", ""]
        for sc in bad:
            db = sc["db"]
            lines.append(f"- **{label(sc)}**: {db['not_up']:,} of {db['results']:,}:")
            for e in db["top_not_up"]:
                lines.append(f"  - {e['count']:,} × {e['outcome']}: `{e['error'] or '(no error)'}`")
            for e in db["not_up_examples"][:3]:
                lines.append(
                    f"  - e.g. `{e['monitor']}` at {e['at']} UTC: {e['outcome']}, "
                    f"status {fmt(e['status'])}, {fmt(e['latency_ms'])} ms, "
                    f"`{e['error'] or ''}`"
                )
    bb = results.get("blackbox") or {}
    if bb.get("runs"):
        lines += [
            "",
            f"### blackbox_exporter (peak RSS {fmt(bb.get('peak_rss_mb'))} MB)",
            "",
            "| protocol | target rate | achieved/s | probes ok / failed / errors / skipped "
            "| CPU (cores) "
            "| CPU-ms per probe (= CPU-s per 1,000) | machine busy (cores) | yardstick |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in bb["runs"]:
            lines.append(
                f"| {r['protocol'].upper()} | {r['target_rate']:g}/s "
                f"| {fmt(r['achieved_rate'], '.1f')} "
                f"| {r['ok']} / {r['failed']} / {r['errors']} / {r['skipped']} "
                f"| {fmt(r['cores'], '.3f')} "
                f"| {fmt(r['cpu_ms_per_probe'], '.3f')} | {r['machine_busy_cores']:.2f} "
                f"| {fmt(r.get('yardstick_ms'), '.0f')} ms |"
            )
    prof = next((sc.get("profile") for sc in scs if sc.get("profile")), None)
    if prof and prof.get("top_own"):
        lines += [
            "",
            f"### Where the time goes (py-spy, {prof['duration_s']} s on the "
            f"{next(sc['name'] for sc in scs if sc.get('profile'))} scenario's main process, "
            f"{prof['samples']} samples; flame graph: `{prof.get('svg', 'n/a')}`)",
            "",
            "| function (own time) | % of samples |",
            "|---|---|",
        ]
        for row in prof["top_own"][:10]:
            lines.append(f"| `{row['function']}` | {row['own_pct']:.1f} |")
    lines += ["", f"Raw numbers: `{rel(OUT / 'results.json')}`.", "", MARK_END]
    return "\n".join(lines)


def render_readme(results: dict[str, Any]) -> str | None:
    """README.md's first performance table, from a run that has the three 10k scenarios."""
    scs = results["scenarios"]

    def find(proto: str, wrk: bool) -> dict[str, Any] | None:
        return next(
            (
                sc
                for sc in scs
                if sc["monitors"] == 10_000 and sc["protocol"] == proto and sc["wrk"] == wrk
            ),
            None,
        )

    cols = [find("http", False), find("http", True), find("https", False)]
    if run_kind(results) != "full run" or any(c is None for c in cols) or results.get("failed"):
        return None
    cs = [c for c in cols if c is not None]
    small = next((sc for sc in scs if sc["monitors"] == TARGET_SMALL_MONITORS), None)

    def lag(sc: dict[str, Any]) -> str:
        return f"{fmt(sc['lag_p99_ms'], '.0f')} / {fmt(sc['lag_max_ms'], '.0f')} ms"

    def over(sc: dict[str, Any]) -> str:
        return f"{fmt((sc.get('latency_ms') or {}).get('over_nginx_p99'), '+.1f')} ms"

    def ratio(sc: dict[str, Any]) -> str:
        r = sc.get("ratio_vs_blackbox")
        text = f"{r:.2f}×" if r is not None else "–"
        return f"({text} incl. the page)" if sc.get("wrk") else text

    w = cols[1].get("wrk_result") or {} if cols[1] else {}
    g = results.get("git") or {}
    out = [
        README_START,
        f"| 10,000 monitors at 60 s, page on, 5 min from launch (bench/run.py, "
        f"{results['machine']['date'][:10]}, `{g.get('commit', '?')}`"
        f"{'+dirty' if g.get('dirty_code') else ''}) | HTTP | HTTP + `wrk` on `/` | HTTPS "
        f"| target |",
        "|---|---|---|---|---|",
        "| results not `up` against a healthy target | "
        + " | ".join(f"{fmt(sc.get('not_up'), ',')}" for sc in cs)
        + " | 0 |",
        "| start lag p99 / max | " + " | ".join(lag(sc) for sc in cs) + " | < 50 / < 250 ms |",
        "| recorded latency p99 over nginx's own | "
        + " | ".join(over(sc) for sc in cs)
        + f" | < {TARGET_LATENCY_OVER_MS:g} ms |",
        "| CPU per check vs blackbox_exporter (same run) | "
        + " | ".join(ratio(sc) for sc in cs)
        + f" | ≤ {TARGET_RATIO:g}× |",
        "| CPU, all processes | " + " | ".join(f"{sc['cores']:.2f} core" for sc in cs) + " | |",
        "| peak RSS, all processes | "
        + " | ".join(f"{sc['peak_rss_mb']:.0f} MB" for sc in cs)
        + f" | < {TARGET_RSS_MB:g} MB |",
        f"| `/` under `wrk -t1 -c16` | | {fmt(w.get('rps'), ',.0f')} req/s, p99 "
        f"{fmt(w.get('p99_ms'), '.0f')} ms, {fmt(w.get('non_2xx'))} non-2xx | | |",
    ]
    if small is not None:
        out.append(
            f"| {TARGET_SMALL_MONITORS} HTTP monitors: CPU / peak RSS, all processes "
            f"| {small['cores']:.3f} core / {small['peak_rss_mb']:.0f} MB | | "
            f"| < {TARGET_SMALL_CORES:g} core / < {TARGET_SMALL_RSS_MB:g} MB |"
        )
    out.append(README_END)
    return "\n".join(out)


DOC_INTRO = """\
# Benchmarks

See the top of this file's generated section for the machine and date of the last run.
"""


def write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = (
        DOC.read_text() if DOC.exists() else DOC_INTRO + "\n" + MARK_START + "\n" + MARK_END + "\n"
    )
    if MARK_START not in text or MARK_END not in text:
        text = text.rstrip("\n") + "\n\n" + MARK_START + "\n" + MARK_END + "\n"
    head, _, rest = text.partition(MARK_START)
    _, _, tail = rest.partition(MARK_END)
    DOC.write_text(head + section + tail)


def write_readme(table: str) -> bool:
    """Replace README.md's block between the bench-probe markers; False when they are gone."""
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    README.write_text(head + table + tail)
    return True


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_SCENARIOS} for 60 s with wrk for 30 s, 5 s per blackbox rate;"
        " does not touch docs/BENCHMARKS.md or README.md unless --docs",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds after the launch of `prober run` before measuring (0: from launch)",
    )
    p.add_argument("--window", type=float, default=None, help="measured seconds per scenario (300)")
    p.add_argument(
        "--bb-window", type=float, default=None, help="measured seconds per blackbox rate (30)"
    )
    p.add_argument(
        "--bb-rates",
        default="17,100,500",
        help="blackbox /probe rates per second (17,100,500: 17/s is the 1k scenario's rate)",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help="comma list of NAME=COUNT:PROTO[+wrk], e.g. h1k=1000:http,h1k-wrk=1000:http+wrk"
        f" (default: {DEFAULT_SCENARIOS})",
    )
    p.add_argument(
        "--wrk-seconds",
        type=float,
        default=None,
        help="cap wrk's duration (default: from the page's port opening to the window's end)",
    )
    p.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    p.add_argument(
        "--gc-trace",
        action="store_true",
        help="run the prober through bench/gctrace.py and report garbage-collector pauses",
    )
    p.add_argument(
        "--profile",
        default="h10k",
        help="scenario to profile with py-spy after its window ('' = none)",
    )
    p.add_argument("--profile-seconds", type=int, default=30)
    p.add_argument(
        "--docs",
        action="store_true",
        help="update docs/BENCHMARKS.md even with --quick (README.md only from a full set)",
    )
    p.add_argument(
        "--no-docs", action="store_true", help="never update docs/BENCHMARKS.md or README.md"
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get/pip install")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument(
        "--out", default=str(OUT), help="directory for results, logs and the profile (bench/out)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.window = 60.0 if args.window is None else args.window
        args.bb_window = 5.0 if args.bb_window is None else args.bb_window
        args.wrk_seconds = 30.0 if args.wrk_seconds is None else args.wrk_seconds
        args.scenarios = args.scenarios or QUICK_SCENARIOS
        if args.profile == "h10k":
            args.profile = ""
    args.warmup = 0.0 if args.warmup is None else args.warmup
    args.window = 300.0 if args.window is None else args.window
    args.bb_window = 30.0 if args.bb_window is None else args.bb_window
    args.scenarios = args.scenarios or DEFAULT_SCENARIOS
    return args


def parse_scenarios(spec: str) -> list[Scenario]:
    out = []
    for item in spec.split(","):
        name, _, rest = item.strip().partition("=")
        count, _, kind = rest.partition(":")
        proto, plus, extra = kind.partition("+")
        if (
            not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)
            or proto not in ("http", "https")
            or not count.isdigit()
            or (plus and extra != "wrk")
        ):
            raise SystemExit(f"bad scenario {item!r}: use NAME=COUNT:http|https[+wrk]")
        out.append(Scenario(name, proto, int(count), wrk=bool(plus)))
    if len({sc.name for sc in out}) != len(out):
        raise SystemExit("scenario names must be unique")
    return out


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


def main(argv: list[str] | None = None) -> int:
    global OUT
    args = parse_args(argv)
    scenarios = parse_scenarios(args.scenarios)
    OUT = Path(args.out).resolve()
    sys.path.insert(0, str(ROOT))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    OUT.mkdir(parents=True, exist_ok=True)
    tools = ensure_tools(args.no_install)
    started = time.time()
    results: dict[str, Any] = {
        "quick": args.quick,
        "warmup_s": args.warmup,
        "window_s": args.window,
        "bb_window_s": args.bb_window,
        "machine": machine_info(tools),
        "git": git_info(),
        "scenarios_spec": args.scenarios,
        "scenarios": [],
    }
    children = Children()
    try:
        with terminate_as_interrupt():
            ca, cert, key = make_certs(OUT / "certs")
            nginx = start_nginx(children, tools, cert, key)
            rates = [float(r) for r in args.bb_rates.split(",") if r]
            for sc in scenarios:
                # blackbox at a protocol's rates right before that protocol's first scenario,
                # so the two sides of each ratio are measured minutes apart, not a quarter hour
                done = {r["protocol"] for r in results.get("blackbox", {}).get("runs", [])}
                if not args.no_blackbox and sc.protocol not in done:
                    bb = run_blackbox(
                        children,
                        tools,
                        nginx,
                        ca,
                        rates,
                        warm=min(3.0, args.bb_window),
                        measure=args.bb_window,
                        protocols=(sc.protocol,),
                    )
                    merged = results.setdefault("blackbox", {"runs": []})
                    merged["runs"] += bb["runs"]
                    merged["peak_rss_mb"] = max(merged.get("peak_rss_mb", 0), bb["peak_rss_mb"])
                    merged["version"] = bb["version"]
                profiler = None
                if sc.name == args.profile:
                    if tools["py-spy"]:
                        profiler = make_profiler(str(tools["py-spy"]), args.profile_seconds)
                    else:
                        log("py-spy not available: no profile")
                try:
                    results["scenarios"].append(
                        run_scenario(children, sc, nginx, ca, args, profiler)
                    )
                except (RuntimeError, OSError, sqlite3.Error) as exc:
                    # one broken scenario must not cost the rest of an hour's run
                    log(f"  scenario {sc.name} FAILED: {exc}")
                    results.setdefault("failed", []).append(
                        {
                            "name": sc.name,
                            "monitors": sc.monitors,
                            "protocol": sc.protocol,
                            "wrk": sc.wrk,
                            "error": str(exc),
                            "log": rel(OUT / sc.name / "prober.log"),
                        }
                    )
                _save(results)
                time.sleep(3)
            results["nginx_peak_rss_mb"] = [
                round(status_kb(p, "VmHWM") / 1024, 1) for p in nginx.worker_pids()
            ]
    except KeyboardInterrupt:
        log("interrupted: stopping children")
        children.stop_all()
        _save(results)
        return 130
    finally:
        children.stop_all()
    results["duration_s"] = round(time.time() - started, 1)
    results["git_end"] = git_info()
    compare(results)
    results["targets"] = targets(results)
    _save(results)
    section = render(results)
    (OUT / "table.md").write_text(section + "\n")
    if not args.no_docs and (args.docs or not args.quick):
        write_doc(section)
        log(f"wrote {DOC.relative_to(ROOT)}")
        table = render_readme(results)
        if table is not None and write_readme(table):
            log(f"wrote the performance table of {README.relative_to(ROOT)}")
    print(section)
    log(f"done in {results['duration_s']:.0f}s; raw results in {rel(OUT / 'results.json')}")
    return 0


def _save(results: dict[str, Any]) -> None:
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
