"""History benchmark: import, monthly report and pruning at 100 monitors x 30 days.

    .venv/bin/python bench/history.py [--monitors 100] [--days 30] [--rounds 1]
        [--baseline DIR] [--no-docs]

Writes a CSV of one result a minute per monitor for the last `days` days of last month
(4.32 million rows by default; outages, blips and unknown stretches included), then
measures with the real CLI, in one run:
- `prober import-results` wall time and rows per second (the median of `--rounds`
  imports into a fresh database); with `--baseline DIR` (another checkout, e.g.
  `git worktree add /tmp/base HEAD`), the same file imported by that code too, each
  round right before ours, and the ratio;
- `prober report --month` (JSON) wall time, and the report computation alone in-process,
  beside a plain `SELECT count(*)` over the same month's raw rows (the ratio is what the
  rollups buy);
- database bytes per stored result, before and after `prober prune` (retention 1 day:
  everything but each monitor's newest hour), each after a VACUUM;
- that the pruned month's report gives the same uptime and downtime as before.
Only loopback and local files: the monitors are never probed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "history"
DOCS = ROOT / "docs" / "BENCHMARKS.md"
START_MARK, END_MARK = "<!-- history:start -->", "<!-- history:end -->"


def log(message: str) -> None:
    print(f"[history {time.strftime('%H:%M:%S')}] {message}", flush=True)


def last_month(now: dt.datetime) -> tuple[str, dt.datetime]:
    first_this = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first_last = (first_this - dt.timedelta(days=1)).replace(day=1)
    return f"{first_last:%Y-%m}", first_last


def write_csv(path: pathlib.Path, monitors: int, start: dt.datetime, days: int) -> int:
    rng = random.Random(7)
    minutes = days * 1440
    base = int(start.timestamp())
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
            for _ in range(rng.randint(0, 4)):  # outages and blips
                at, length = rng.randrange(minutes), rng.choice((1, 2, 5, 30, 90))
                bad.update(dict.fromkeys(range(at, min(minutes, at + length)), "down"))
            at = rng.randrange(minutes)
            bad.update(dict.fromkeys(range(at, min(minutes, at + 10)), "unknown"))
            lines = []
            for i, stamp in enumerate(stamps):
                state = bad.get(i)
                if state == "down":
                    lines.append(f"{name},{stamp},down,10000,timeout after 10s\n")
                elif state == "unknown":
                    lines.append(f"{name},{stamp},unknown,,canaries failing\n")
                else:
                    lines.append(f"{name},{stamp},up,{rng.randint(15, 250)},\n")
            f.writelines(lines)
            rows += len(lines)
    return rows


def prober(
    config: pathlib.Path, *args: str, source: pathlib.Path | None = None
) -> tuple[float, str]:
    """Runs `prober ARGS -c CONFIG`; from the checkout `source` if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBER_")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    begun = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "prober", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - begun
    if done.returncode != 0:
        raise SystemExit(f"prober {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done.stdout


def remove_db(db: pathlib.Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{db}{suffix}").unlink(missing_ok=True)


def commit_of(checkout: pathlib.Path) -> str:
    """The checkout's commit, and whether its code differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "prober", "statuspage")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def db_bytes(path: pathlib.Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
        return int(pages * size)
    finally:
        conn.close()


def in_process_report(config: pathlib.Path, month: str) -> float:
    sys.path.insert(0, str(ROOT))
    from prober.config import load_config
    from prober.report import monthly

    loaded = load_config(str(config))
    best = float("inf")
    for _ in range(3):
        begun = time.perf_counter()
        monthly.report(loaded, month, "json")
        best = min(best, time.perf_counter() - begun)
    return best


def count_raw(db: pathlib.Path, start: dt.datetime, end: dt.datetime) -> tuple[float, int]:
    conn = sqlite3.connect(db)
    try:
        best, count = float("inf"), 0
        for _ in range(3):
            begun = time.perf_counter()
            (count,) = conn.execute(
                "SELECT count(*) FROM result WHERE ts_ms >= ? AND ts_ms < ?",
                (int(start.timestamp() * 1000), int(end.timestamp() * 1000)),
            ).fetchone()
            best = min(best, time.perf_counter() - begun)
        return best, count
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--monitors", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="imports to take the median of")
    parser.add_argument(
        "--baseline", type=pathlib.Path, help="another checkout to import the same file with"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    month, start = last_month(dt.datetime.now(dt.UTC))
    end = start + dt.timedelta(days=args.days)
    config = OUT / "monitors.toml"
    lines = ['[settings]\ntimezone = "UTC"\ndatabase = "sqlite:///prober.db"\nretention_days = 1\n']
    for m in range(args.monitors):
        lines.append(f'[[monitors]]\nid = "m{m:04d}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n')
    config.write_text("\n".join(lines))
    csv_path = OUT / "history.csv"
    log(f"writing {args.monitors} monitors x {args.days} days to {csv_path}")
    rows = write_csv(csv_path, args.monitors, start, args.days)
    log(f"{rows:,} rows, {csv_path.stat().st_size / 1e6:.0f} MB")

    db = OUT / "prober.db"
    load = os.getloadavg()[0]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        if args.baseline:
            remove_db(db)
            seconds, out = prober(config, "import-results", str(csv_path), source=args.baseline)
            theirs.append(seconds)
            log(f"baseline: {out.strip()}")
        remove_db(db)
        seconds, out = prober(config, "import-results", str(csv_path))
        ours.append(seconds)
        log(out.strip())
    import_s = statistics.median(ours)
    report_cli_s, before = prober(config, "report", "--month", month, "--format", "json")
    report_s = in_process_report(config, month)
    count_s, counted = count_raw(db, start, end)
    log(f"report {report_s:.3f}s in-process, {report_cli_s:.2f}s CLI; count(*) {count_s:.3f}s")
    bytes_before = db_bytes(db)
    prune_s, out = prober(config, "prune")
    log(out.strip())
    bytes_after = db_bytes(db)
    _, after = prober(config, "report", "--month", month, "--format", "json")
    same = all(
        (a["uptime_percent"], a["downtime_seconds"]) == (b["uptime_percent"], b["downtime_seconds"])
        for a, b in zip(json.loads(before)["monitors"], json.loads(after)["monitors"], strict=True)
    )
    pruned = int(re.search(r"pruned ([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    results = {
        "month": month,
        "monitors": args.monitors,
        "days": args.days,
        "rows": rows,
        "load_average_before": load,
        "commit": commit_of(ROOT),
        "import_seconds": import_s,
        "import_rows_per_second": rows / import_s,
        "import_seconds_each": ours,
        "baseline_commit": commit_of(args.baseline) if args.baseline else None,
        "baseline_import_seconds": statistics.median(theirs) if theirs else None,
        "baseline_import_seconds_each": theirs,
        "report_seconds_in_process": report_s,
        "report_seconds_cli": report_cli_s,
        "count_seconds": count_s,
        "count_rows": counted,
        "report_to_count_ratio": report_s / count_s,
        "bytes_before_prune": bytes_before,
        "bytes_per_result_before": bytes_before / rows,
        "pruned": pruned,
        "prune_seconds": prune_s,
        "bytes_after_prune": bytes_after,
        "bytes_per_result_after": bytes_after / rows,
        "report_same_after_prune": same,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    print(table)
    if not args.no_docs:
        text = DOCS.read_text()
        block = f"{START_MARK}\n{table}\n{END_MARK}"
        if START_MARK in text:
            head, rest = text.split(START_MARK, 1)
            text = head + block + rest.split(END_MARK, 1)[1]
        else:
            text = text.rstrip() + "\n\n## History: import, report, prune\n\n" + block + "\n"
        DOCS.write_text(text)
        log(f"updated {DOCS.relative_to(ROOT)}")


def render(r: dict[str, object]) -> str:
    def f(key: str, spec: str) -> str:
        return format(r[key], spec)

    each = r["import_seconds_each"]
    assert isinstance(each, list)
    rounds = f", median of {len(each)}" if len(each) > 1 else ""
    baseline = []
    if r["baseline_import_seconds"] is not None:
        before = float(r["baseline_import_seconds"])  # type: ignore[arg-type]
        baseline = [
            f"| the same import by {r['baseline_commit']}, each round right before{rounds} | "
            f"{before:.1f} s = {int(r['rows']) / before:,.0f} rows/s; now "  # type: ignore[call-overload]
            f"**{before / float(r['import_seconds']):.2f}× faster** | |"  # type: ignore[arg-type]
        ]

    return "\n".join(
        [
            "<!-- generated by bench/history.py; edits between these markers are overwritten -->",
            "",
            f"**Run:** {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {r['monitors']} monitors x "
            f"{r['days']} days x 1 result/min = {f('rows', ',')} rows (month {r['month']}), "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version}; commit {r['commit']}; load average "
            f"{f('load_average_before', '.2f')} before the first import.",
            "",
            "| measure | figure | target |",
            "|---|---|---|",
            f"| `prober import-results` (parse, insert, derive incidents, roll up){rounds} | "
            f"{f('import_seconds', '.1f')} s = **{f('import_rows_per_second', ',.0f')} rows/s** "
            "| ≥ 200,000 rows/s |",
            *baseline,
            f"| monthly report, computed in-process (best of 3) | "
            f"**{f('report_seconds_in_process', '.3f')} s** | < 1 s |",
            f"| `prober report --format json` (whole CLI, incl. start-up) | "
            f"{f('report_seconds_cli', '.2f')} s | |",
            f"| plain `SELECT count(*)` over the month's {f('count_rows', ',')} raw rows | "
            f"{f('count_seconds', '.3f')} s | |",
            f"| report ÷ count(*) | **{f('report_to_count_ratio', '.2f')}×** | |",
            f"| database after import (VACUUMed) | {int(r['bytes_before_prune']) / 1e6:.0f} MB = "  # type: ignore[call-overload]
            f"**{f('bytes_per_result_before', '.1f')} bytes per result** = "
            f"{float(r['bytes_per_result_before']) * 43_200 / 1e6:.2f} MB per monitor per month "  # type: ignore[arg-type]
            "at 60 s | |",
            f"| `prober prune` (retention 1 day) | {f('pruned', ',')} rows in "
            f"{f('prune_seconds', '.1f')} s | |",
            f"| database after pruning (VACUUMed) | {int(r['bytes_after_prune']) / 1e6:.1f} MB = "  # type: ignore[call-overload]
            f"**{f('bytes_per_result_after', '.2f')} bytes per original result** = "
            f"{float(r['bytes_per_result_after']) * 43_200 / 1e3:.0f} kB per monitor per month "  # type: ignore[arg-type]
            "kept for ever (rollups, incidents, transitions, coverage) | |",
            f"| same uptime and downtime after pruning | {r['report_same_after_prune']} | yes |",
        ]
    )


if __name__ == "__main__":
    main()
