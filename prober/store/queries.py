"""Named reads. Callers never see SQL; they run these off the event loop (to_thread)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import sqlalchemy
from sqlalchemy import func
from sqlmodel import Session, select

from prober.results import Outcome
from prober.store.tables import OUTCOMES_BY_CODE, MonitorRow, ResultRow


@dataclasses.dataclass(frozen=True, slots=True)
class StoredResult:
    monitor: str
    at: dt.datetime
    outcome: Outcome
    latency_ms: float | None
    status_code: int | None
    error: str | None
    details: dict[str, Any]


def _stored(slug: str, row: ResultRow) -> StoredResult:
    return StoredResult(
        monitor=slug,
        at=dt.datetime.fromtimestamp(row.ts_ms / 1000, dt.UTC),
        outcome=OUTCOMES_BY_CODE[row.outcome],
        latency_ms=None if row.latency_us is None else row.latency_us / 1000,
        status_code=row.status_code,
        error=row.error,
        details=json.loads(row.details) if row.details else {},
    )


def results_between(
    engine: sqlalchemy.Engine, monitor: str, start: dt.datetime, end: dt.datetime
) -> list[StoredResult]:
    """One monitor's results with start <= time < end, oldest first (uses the primary key)."""
    with Session(engine) as session:
        query = (
            select(ResultRow)
            .join(MonitorRow, MonitorRow.id == ResultRow.monitor_id)  # type: ignore[arg-type]
            .where(MonitorRow.slug == monitor)
            .where(ResultRow.ts_ms >= int(start.timestamp() * 1000))
            .where(ResultRow.ts_ms < int(end.timestamp() * 1000))
            .order_by(ResultRow.ts_ms)  # type: ignore[arg-type]
        )
        return [_stored(monitor, row) for row in session.exec(query)]


def latest_results(engine: sqlalchemy.Engine) -> dict[str, StoredResult]:
    """Each monitor's newest result."""
    with Session(engine) as session:
        newest = (
            select(ResultRow.monitor_id, func.max(ResultRow.ts_ms).label("ts"))
            .group_by(ResultRow.monitor_id)  # type: ignore[arg-type]
            .subquery()
        )
        query = (
            select(MonitorRow.slug, ResultRow)
            .join(ResultRow, ResultRow.monitor_id == MonitorRow.id)  # type: ignore[arg-type]
            .join(
                newest,
                sqlalchemy.and_(
                    newest.c.monitor_id == ResultRow.monitor_id, newest.c.ts == ResultRow.ts_ms
                ),
            )
        )
        return {slug: _stored(slug, row) for slug, row in session.exec(query)}


def count_results(engine: sqlalchemy.Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ResultRow)).one())
