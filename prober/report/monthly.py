"""The monthly report from the database file: on demand (`prober report`, the public
/reports/ route) and once a month as files beside the database (the web process writes
them). Reads only; imports nothing of the probing or alerting side."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from prober import timeline
from prober.config import Config
from prober.errors import UserError
from prober.report import compute, render
from prober.store.db import connect_raw, open_engine


class HistoryError(UserError):
    pass


def open_existing(config: Config) -> sqlite3.Connection:
    path = config.database_path
    if not path.exists():
        raise HistoryError(f"no database at {path}: `prober run` creates it")
    open_engine(path).dispose()  # checks (and creates missing) schema
    return connect_raw(path)


def previous_month(now: dt.datetime, tz: ZoneInfo) -> str:
    local = now.astimezone(tz)
    first = local.date().replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def report(
    config: Config,
    month: str,
    fmt: str,
    *,
    monitors: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> str:
    conn = open_existing(config)
    try:
        data = compute.build(
            conn, config, month, monitors=monitors, now=now or dt.datetime.now(dt.UTC)
        )
    finally:
        conn.close()
    return render.FORMATS[fmt](data)


def reports_dir(config: Config) -> pathlib.Path:
    return config.database_path.parent / "reports"


def write_monthly(config: Config, now: dt.datetime | None = None) -> list[pathlib.Path]:
    """Last month's report in every format under reports/ beside the database, unless it
    is there already or the prober has no data from before this month."""
    now = now or dt.datetime.now(dt.UTC)
    tz = ZoneInfo(config.settings.timezone)
    month = previous_month(now, tz)
    out = reports_dir(config)
    targets = [out / f"{month}.{fmt}" for fmt in render.FORMATS]
    if all(t.exists() for t in targets):
        return []
    conn = open_existing(config)
    try:
        (oldest,) = conn.execute("SELECT min(start_ms) FROM coverage").fetchone()
        _, month_end = timeline.month_bounds(month, tz)
        if oldest is None or oldest >= timeline.to_ms(month_end):
            return []
        data = compute.build(conn, config, month, now=now)
    finally:
        conn.close()
    out.mkdir(parents=True, exist_ok=True)
    for target, fmt in zip(targets, render.FORMATS, strict=True):
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(render.FORMATS[fmt](data), encoding="utf-8")
        tmp.replace(target)  # never a half-written report
    return targets
