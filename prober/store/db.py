"""Open the SQLite database: WAL, busy_timeout, schema version checked from day one."""

from __future__ import annotations

import logging
import pathlib
import sqlite3
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlmodel import SQLModel, create_engine

from prober.store.tables import SCHEMA_VERSION, MetaRow

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # WAL + NORMAL: no committed row lost on kill -9
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA temp_store=MEMORY",
)


class SchemaError(Exception):
    pass


def connect_raw(path: pathlib.Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode; callers BEGIN IMMEDIATE themselves."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def open_engine(path: pathlib.Path) -> sqlalchemy.Engine:
    """The SQLAlchemy engine for schema and reads; creates the file and schema if new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    migrate(engine)
    return engine


def migrate(engine: sqlalchemy.Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=[t.__table__ for t in _tables()])  # type: ignore[attr-defined]
    with engine.begin() as conn:
        # Open incidents, read by the alert dispatcher on every pass. Here, not on the
        # model: create_all adds no index to a table that already exists.
        conn.execute(
            sqlalchemy.text(
                "CREATE INDEX IF NOT EXISTS incident_open ON incident (location_id)"
                " WHERE end_ms IS NULL"
            )
        )
    with engine.begin() as conn:
        row = conn.execute(
            sqlalchemy.text("SELECT value FROM meta WHERE key = 'schema_version'")
        ).first()
        if row is None:
            conn.execute(
                sqlalchemy.insert(MetaRow).values(key="schema_version", value=str(SCHEMA_VERSION))
            )
            return
        found = int(row[0])
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {found}; this prober knows up to "
            f"{SCHEMA_VERSION}: upgrade prober"
        )
    # Later versions add their steps here, each in its own transaction: 1 -> 2, 2 -> 3, ...


def _tables() -> list[type[SQLModel]]:
    from prober.store import tables

    return [
        tables.MonitorRow,
        tables.LocationRow,
        tables.ResultRow,
        tables.MetaRow,
        tables.TransitionRow,
        tables.IncidentRow,
        tables.CoverageRow,
        tables.MonitorStateRow,
        tables.RollupHourRow,
        tables.RollupDayRow,
        tables.AlertRow,
        tables.PushTokenRow,
    ]
