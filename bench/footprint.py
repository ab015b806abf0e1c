"""Footprint benchmark: the 512 MB VPS profile, start-up and reload at 10,000 monitors.

    .venv/bin/python bench/footprint.py [--minutes 10] [--monitors 200] [--big 10000] [--no-docs]

1. `prober run` with 200 HTTP monitors at 60 s against a loopback target (an aiohttp
   server in its own process) for `--minutes`: RSS (mean, peak = VmHWM) and CPU (cores,
   from /proc/PID/stat), summed over `prober run` and its child processes, sampled every
   5 s after a one-minute warm-up. (bench/run.py's f200 scenario measures the same from
   launch, against nginx, in the full run.)
2. Start-up with 10,000 monitors (fresh database): process start to `/healthz` 200.
3. Reload with 10,000 monitors: 10 added and 10 changed, `prober reload`, until the log
   says `config reloaded` (its own `seconds=` figure, and the wall time).
Only loopback. Figures go between the markers in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROBER = [str(ROOT / ".venv" / "bin" / "python"), "-m", "prober"]
DOCS = ROOT / "docs" / "BENCHMARKS.md"
START_MARK, END_MARK = "<!-- footprint:start -->", "<!-- footprint:end -->"
TICK = os.sysconf("SC_CLK_TCK")
TARGET = """
import sys
from aiohttp import web
async def ok(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def log(message: str) -> None:
    print(f"[footprint {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(directory: pathlib.Path, name: str, port: int, monitors: int, target: str,
           interval: str, extra: int = 0, changed: int = 0) -> pathlib.Path:  # fmt: skip
    path = directory / f"{name}.toml"
    lines = [
        f'[settings]\nlisten = "127.0.0.1:{port}"\ndatabase = "sqlite:///{directory / name}.db"\n'
        'metrics = { listen = "" }\n'
    ]
    for i in range(monitors + extra):
        every = "2h" if i < changed else interval
        lines.append(
            f'[[monitors]]\nid = "m{i:05d}"\ngroup = "g{i // 50}"\ntype = "http"\n'
            f'url = "{target}/m/{i}"\ninterval = "{every}"\n'
        )
    path.write_text("\n".join(lines))
    return path


def healthy(port: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"/healthz not 200 within {within}s")


def tree(root: int) -> list[int]:
    """`prober run` and every live descendant (the status page runs in a child process)."""
    kids: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    found = [root]
    for pid in found:
        found += kids.get(pid, [])
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime (+ cutime + cstime: exited children) summed over the process tree."""
    total = 0.0
    for each in tree(pid):
        try:
            fields = pathlib.Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / TICK
    return total


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Summed over the process tree."""
    total = 0.0
    for each in tree(pid):
        try:
            text = pathlib.Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key + ":"):
                total += int(line.split()[1]) / 1024
    return total


def start(cfg: pathlib.Path, log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    with log_path.open("w") as err:
        return subprocess.Popen([*PROBER, "run", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def vps_profile(
    directory: pathlib.Path, monitors: int, minutes: float, target: str
) -> dict[str, float]:
    port = free_port()
    cfg = config(directory, "vps", port, monitors, target, "60s")
    process = start(cfg, directory / "vps.log")
    try:
        healthy(port, 60)
        log(f"{monitors} monitors at 60 s: warming up for 60 s, then {minutes:g} min")
        time.sleep(60)
        cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(5)
            samples.append(rss_mb(process.pid))
        cpu = (cpu_seconds(process.pid) - cpu0) / (time.monotonic() - t0)
        peak = rss_mb(process.pid, "VmHWM")
    finally:
        stop(process)
    conn = sqlite3.connect(directory / "vps.db")
    (results,) = conn.execute("SELECT count(*) FROM result").fetchone()
    conn.close()
    return {
        "rss_mean": sum(samples) / len(samples),
        "rss_peak": peak,
        "cpu": cpu,
        "results": results,
    }


def big(directory: pathlib.Path, monitors: int) -> dict[str, float]:
    port = free_port()
    target = "http://127.0.0.1:9"  # refused at once: start-up is what is measured
    cfg = config(directory, "big", port, monitors, target, "1h")
    log_path = directory / "big.log"
    began = time.monotonic()
    process = start(cfg, log_path)
    try:
        startup = healthy(port, 600)
        # wall time from exec: the interpreter start counts too
        startup = time.monotonic() - began
        log(f"start-up with {monitors} monitors: {startup:.2f} s")
        rss = rss_mb(process.pid)
        config(directory, "big", port, monitors, target, "1h", extra=10, changed=10)
        began = time.monotonic()
        subprocess.run([*PROBER, "reload", "-c", str(cfg)], check=True, capture_output=True)
        while "config reloaded" not in log_path.read_text():
            time.sleep(0.05)
            if time.monotonic() - began > 600:
                raise TimeoutError("no reload within 600 s")
        wall = time.monotonic() - began
        found = re.search(r"config reloaded .*seconds=([0-9.]+)", log_path.read_text())
        own = float(found.group(1)) if found else float("nan")
        log(f"reload with {monitors} monitors: {wall:.2f} s (the process's own figure {own:.2f} s)")
    finally:
        stop(process)
    return {"startup": startup, "reload_wall": wall, "reload_own": own, "rss": rss}


def publish(text: str) -> None:
    docs = DOCS.read_text()
    note = "<!-- generated by bench/footprint.py; edits between these markers are overwritten -->"
    block = f"{START_MARK}\n{note}\n\n{text}\n{END_MARK}"
    pattern = re.escape(START_MARK) + ".*?" + re.escape(END_MARK)
    if re.search(pattern, docs, flags=re.S):
        docs = re.sub(pattern, lambda _: block, docs, flags=re.S)
    else:
        docs = docs.rstrip() + (
            "\n\n## Footprint: the 512 MB VPS profile, start-up and reload\n\n"
            "`.venv/bin/python bench/footprint.py` (about 14 minutes; rewrites the block below):"
            " RSS and CPU of `prober run` with 200 HTTP monitors at 60 s against a loopback"
            " target for 10 minutes after a minute's warm-up; start-up (process start to"
            " `/healthz` 200) and `prober reload` (10 added, 10 changed) with 10,000 monitors.\n\n"
            + block
            + "\n"
        )
    DOCS.write_text(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--monitors", type=int, default=200)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--big-only", action="store_true", help="only start-up and reload")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prober-footprint-") as tmp:
        directory = pathlib.Path(tmp)
        target_port = free_port()
        target = subprocess.Popen(
            [sys.executable, "-c", TARGET, str(target_port)], start_new_session=True
        )
        try:
            time.sleep(1.0)
            vps = vps_profile(
                directory, args.monitors, args.minutes, f"http://127.0.0.1:{target_port}"
            )
        finally:
            target.terminate()
            target.wait(10)
        large = big(directory, args.big)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        f"**Run:** {when}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.2f}.",
        "",
        "| measure | figure | target |",
        "|---|---|---|",
        f"| {args.monitors} monitors at 60 s for {args.minutes:g} min: RSS mean / peak | "
        f"{vps['rss_mean']:.0f} MB / {vps['rss_peak']:.0f} MB | fits a 512 MB VPS |",
        f"| the same: CPU | {vps['cpu']:.3f} cores ({vps['cpu'] * 100:.1f} % of one) | |",
        f"| the same: results stored | {vps['results']:,.0f} | |",
        f"| start-up with {args.big:,} monitors (process start to `/healthz` 200) | "
        f"{large['startup']:.2f} s | |",
        f"| RSS after start-up with {args.big:,} monitors | {large['rss']:.0f} MB | |",
        f"| `prober reload` with {args.big:,} monitors (10 added, 10 changed): wall / in-process | "
        f"{large['reload_wall']:.2f} s / {large['reload_own']:.2f} s | |",
    ])  # fmt: skip
    print(text)
    if not args.no_docs and not args.big_only:
        publish(text)
        log(f"written to {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
