"""The monthly report from the database file: on demand (`prober report`, the public
/reports/ route) and once a month as files beside the database (the web process writes
them). Reads only; imports nothing of the probing or alerting side."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from prober import timeline
from prober.config import Config
from prober.errors import UserError
from prober.filemodes import replace_text
from prober.report import compute, render
from prober.store.db import open_database
from prober.store.engine import Connection, connect


class HistoryError(UserError):
    pass


_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


def open_existing(config: Config) -> Connection:
    db = config.database
    if db.path is not None and not db.path.exists():
        raise HistoryError(f"no database at {db.path}: `prober run` creates it")
    open_database(db)  # checks (and creates missing) schema
    return connect(db)


def previous_month(now: dt.datetime, tz: ZoneInfo) -> str:
    local = now.astimezone(tz)
    first = local.date().replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def month_bounds(month: str, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """timeline.month_bounds, with a HistoryError for a month the calendar cannot hold:
    0000-01, 9999-12 (it ends in year 10000), 0001-01 east of UTC (it starts in year 0)."""
    try:
        return timeline.month_bounds(month, tz)
    except ValueError as exc:
        raise HistoryError(str(exc)) from None
    except OverflowError:
        raise HistoryError(f"{month!r} is outside the calendar in {tz.key}") from None


def first_result_ms(conn: Connection, monitors: Sequence[str]) -> int | None:
    """When the oldest coverage of these monitors starts (any location): their first
    result, imported ones included; coverage is kept when raw results are pruned. An index
    seek per monitor (coverage is keyed by monitor first)."""
    (first,) = conn.execute(
        "SELECT min((SELECT min(c.start_ms) FROM coverage c WHERE c.monitor_id = m.id))"
        " FROM monitor m WHERE m.slug IN (SELECT value FROM json_each(?))",
        (json.dumps(list(monitors)),),
    ).fetchone()
    return None if first is None else int(first)


def reportable(month: str, first_ms: int | None, now: dt.datetime, zone: str) -> bool:
    """Whether `month` (YYYY-MM) runs from the month of the first result to the current
    one, in `zone`: the months /reports/ answers (no data: none)."""
    if first_ms is None or not _MONTH.fullmatch(month):
        return False
    tz = ZoneInfo(zone)
    first = timeline.from_ms(first_ms, tz)
    current = now.astimezone(tz)
    return (
        f"{first.year:04d}-{first.month:02d}" <= month <= f"{current.year:04d}-{current.month:02d}"
    )


def report(
    config: Config,
    month: str,
    fmt: str,
    *,
    monitors: Sequence[str] = (),
    now: dt.datetime | None = None,
    operator: bool = False,
) -> str:
    """The month's report as `fmt`; `operator` (prober report) with remediation attempts,
    which the public route never shows."""
    month_bounds(month, ZoneInfo(config.settings.timezone))  # a month the calendar holds
    conn = open_existing(config)
    try:
        data = compute.build(
            conn,
            config,
            month,
            monitors=monitors,
            now=now or dt.datetime.now(dt.UTC),
            operator=operator,
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
    private = names_private(config)
    for target, fmt in zip(targets, render.FORMATS, strict=True):
        replace_text(target, render.FORMATS[fmt](data), private=private)
    return targets


def names_private(config: Config, monitors: Sequence[str] = ()) -> bool:
    """Whether a report of these monitors (all when none) names one that is not public:
    its file is then created 0600, like the database it comes from."""
    return any(not m.public for m in config.monitors if not monitors or m.id in monitors)
