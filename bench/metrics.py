"""/metrics benchmark: what a scrape costs, and what scrapers cost everyone else.

    .venv/bin/python bench/metrics.py [--monitors 1000 10000] [--seconds 120] [--scrapers 8]
                                      [--source DIR]

For each monitor count: a fresh database, `prober run` on free loopback ports (monitors
`type = "http"` to the closed port 127.0.0.1:9, `interval = "60s"`, so every monitor has
a result within a minute and the probing process keeps working: a sixtieth of them a
second), then, once every monitor was checked:
- single scrapes: the first `GET /metrics` (a render), one right after it (kept, when
  the code keeps bodies), body bytes, gzip bytes (as served with `Accept-Encoding: gzip`, or
  compressed here when the prober does not), series parsed back;
- a quiet window of `--seconds`, then the same window with `--scrapers` threads scraping
  /metrics in a loop (each `Accept-Encoding: gzip`, as Prometheus asks): scrapes done, CPU
  of the web process and of the probing process, the probing process's loop lag (its
  /healthz `loop_lag_ms`, the worst stall of the last minute) and check start lag (its
  stats line for a minute inside the window), and `GET /healthz` latency at the public
  listener sampled 10 times a second (a visitor's wait while scrapers run).
`--source DIR` runs the prober from another checkout (PYTHONPATH=DIR), for a before/after:
the script scrapes the metrics listener, or the public one when nothing listens there
(code from before /metrics had a listener of its own). Only loopback. Children run in
their own process groups and are killed on exit, error or signal. Leaves
bench/out/metrics/<label>/results.json and each run's log.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from page import Children, cpu_seconds, free_port, terminate_as_interrupt  # noqa: E402

OUT = ROOT / "bench" / "out" / "metrics"
PYTHON = ROOT / ".venv" / "bin" / "python"
INTERVAL = 60


def log(message: str) -> None:
    print(f"[metrics {time.strftime('%H:%M:%S')}] {message}", flush=True)


def get(
    port: int, path: str, gzipped: bool = False, timeout: float = 120.0
) -> tuple[int, bytes, float, bool]:
    """One request on a new connection: status, body as sent, seconds, whether gzipped."""
    begun = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip" if gzipped else "identity"})
        response = conn.getresponse()
        body = response.read()
        zipped = response.getheader("Content-Encoding") == "gzip"
        return response.status, body, time.perf_counter() - begun, zipped
    finally:
        conn.close()


def healthz(port: int) -> dict[str, Any]:
    """The probing process's report through the page; {} when it does not come in 120 s."""
    try:
        status, body, _, _ = get(port, "/healthz", timeout=120)
    except (OSError, http.client.HTTPException):
        return {}
    return dict(json.loads(body)) if status in (200, 503) else {}


def write_config(path: pathlib.Path, monitors: int, port: int, metrics_port: int) -> None:
    parts = [
        f'[settings]\nlisten = "127.0.0.1:{port}"\n'
        f'metrics = {{ listen = "127.0.0.1:{metrics_port}" }}\n'
        f'database = "sqlite:///{path.parent / "prober.db"}"\n'
    ]
    parts += [
        f'[[monitors]]\nid = "m{m:05d}"\nname = "Service {m}"\ngroup = "Group {m // 10:04d}"\n'
        f'type = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "{INTERVAL}s"\ntimeout = "2s"\n'
        for m in range(monitors)
    ]
    path.write_text("\n".join(parts))


def wait_for(predicate: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            found = predicate()
            if found:
                return found
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def stats_lines(text: str) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in re.findall(r"(lag_\w+_ms|rate)=([\d.]+)", line)}
        for line in text.splitlines()
        if " stats checks=" in line
    ]


def window(
    seconds: float,
    public: int,
    scrape_port: int,
    scrapers: int,
    pids: tuple[int, int],
    prober_log: pathlib.Path,
) -> dict[str, Any]:
    """`seconds` of `scrapers` threads scraping in a loop (0: a quiet window)."""
    stop = threading.Event()
    scrapes: list[float] = []
    errors: list[str] = []
    visits: list[float] = []

    def scraper() -> None:
        while not stop.is_set():
            try:
                status, _, took, _ = get(scrape_port, "/metrics", gzipped=True)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(str(exc))
                stop.wait(0.1)
                continue
            if status == 200:
                scrapes.append(took)
            else:
                errors.append(f"status {status}")

    def visitor() -> None:
        while not stop.is_set():
            begun = time.perf_counter()
            try:
                get(public, "/healthz", timeout=60)
            except (OSError, http.client.HTTPException):
                errors.append("visitor")  # counted as waiting the whole timeout
            visits.append(time.perf_counter() - begun)
            stop.wait(0.1)

    probing, web = pids
    before_cpu = cpu_seconds(web), cpu_seconds(probing)  # (probing includes its children)
    lines_before = len(prober_log.read_text(errors="replace").splitlines())
    began = time.monotonic()
    threads = [threading.Thread(target=scraper) for _ in range(scrapers)]
    threads.append(threading.Thread(target=visitor))
    try:
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        lag = healthz(public).get("loop_lag_ms")  # worst stall of the last minute
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - began
    web_cpu = cpu_seconds(web) - before_cpu[0]
    probing_cpu = cpu_seconds(probing) - before_cpu[1] - web_cpu
    text = prober_log.read_text(errors="replace").splitlines()[lines_before:]
    # stats lines come every minute from start: the second one here covers a minute inside
    minutes = stats_lines("\n".join(text))[1:] or stats_lines("\n".join(text))
    return {
        "scrapers": scrapers,
        "seconds": elapsed,
        "load_average": os.getloadavg(),  # the machine's other work shows here
        "scrapes": len(scrapes),
        "scrape_errors": len([e for e in errors if e != "visitor"]),
        "healthz_failed": errors.count("visitor"),
        "scrape_p50_ms": percentile(scrapes, 50) * 1000,
        "scrape_p99_ms": percentile(scrapes, 99) * 1000,
        "web_cpu_s": web_cpu,
        "probing_cpu_s": probing_cpu,
        "probing_loop_lag_ms": lag,
        "check_start_lag": minutes,
        "healthz_p50_ms": percentile(visits, 50) * 1000,
        "healthz_p99_ms": percentile(visits, 99) * 1000,
        "healthz_max_ms": max(visits, default=0.0) * 1000,
    }


def bench(
    children: Children,
    monitors: int,
    seconds: float,
    scrapers: int,
    source: pathlib.Path | None,
    out: pathlib.Path,
) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="prober-metrics-"))
    port, metrics_port = free_port(), free_port()
    config = work / "monitors.toml"
    write_config(config, monitors, port, metrics_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    prober_log = out / f"prober-{monitors}.log"
    with prober_log.open("wb") as sink:
        proc = children.start(
            [str(PYTHON), "-m", "prober", "run", "-c", str(config)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=source or work,
        )  # fmt: skip
    log(f"{monitors} monitors: prober run pid={proc.pid} on 127.0.0.1:{port}")
    ready = wait_for(
        lambda: re.search(r"status page ready pid=(\d+)", prober_log.read_text()), 180, "the page"
    )
    web = int(ready.group(1))
    wait_for(lambda: "prober running" in prober_log.read_text(), 180, "prober running")
    scrape_port = metrics_port
    try:
        get(metrics_port, "/metrics", timeout=600)
    except ConnectionRefusedError:
        scrape_port = port  # before: /metrics on the public listener
    listener = "own" if scrape_port == metrics_port else "public"
    log(f"scraping 127.0.0.1:{scrape_port}/metrics ({listener} listener)")
    # every monitor checked once (a minute), and the snapshot caught up
    time.sleep(INTERVAL + 15)
    status, body, first_s, zipped = get(scrape_port, "/metrics", gzipped=True, timeout=600)
    kept_s = get(scrape_port, "/metrics", gzipped=True, timeout=600)[2]
    text = gzip.decompress(body) if zipped else body
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    result: dict[str, Any] = {
        "monitors": monitors,
        "listener": listener,
        "status": status,
        "first_scrape_ms": first_s * 1000,
        "second_scrape_ms": kept_s * 1000,
        "bytes": len(text),
        "gzip_bytes": len(body) if zipped else len(gzip.compress(text, 6)),
        "served_gzip": zipped,
        "series": series,
    }
    log(json.dumps(result))
    pids = (proc.pid, web)
    result["quiet"] = window(seconds, port, scrape_port, 0, pids, prober_log)
    log("quiet: " + json.dumps(result["quiet"]))
    result["scraped"] = window(seconds, port, scrape_port, scrapers, pids, prober_log)
    log("scraped: " + json.dumps(result["scraped"]))
    children.stop(proc)
    with contextlib.suppress(OSError):
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--monitors", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--scrapers", type=int, default=8)
    parser.add_argument("--source", type=pathlib.Path, help="run the prober from this checkout")
    parser.add_argument("--label", default="current")
    args = parser.parse_args()
    out = OUT / args.label
    out.mkdir(parents=True, exist_ok=True)
    children = Children()
    results = []
    with terminate_as_interrupt():
        try:
            for monitors in args.monitors:
                results.append(
                    bench(children, monitors, args.seconds, args.scrapers, args.source, out)
                )
        finally:
            children.stop_all()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
