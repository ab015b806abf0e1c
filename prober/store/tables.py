"""SQLModel tables. Sized for 10,000 monitors at 60 s (14.4 M results a day).

`result` is a WITHOUT ROWID table keyed (monitor, ts, location): the key is the index for
"one monitor, a time range", a repeated import is a no-op, and rows stay small (integer
micro- and milliseconds, NULL phases cost one byte). Config models live in prober.config;
these are storage only.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel

from prober.checks.result import Outcome

SCHEMA_VERSION = 1

OUTCOME_CODES: dict[Outcome, int] = {
    Outcome.UNKNOWN: 0,
    Outcome.UP: 1,
    Outcome.DEGRADED: 2,
    Outcome.DOWN: 3,
}
OUTCOMES_BY_CODE = {code: outcome for outcome, code in OUTCOME_CODES.items()}


class MonitorRow(SQLModel, table=True):
    __tablename__ = "monitor"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True)
    type: str


class LocationRow(SQLModel, table=True):
    __tablename__ = "location"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)


class ResultRow(SQLModel, table=True):
    __tablename__ = "result"
    __table_args__ = {"sqlite_with_rowid": False}

    monitor_id: int = Field(primary_key=True)
    ts_ms: int = Field(primary_key=True)  # UTC epoch milliseconds of the check's start
    location_id: int = Field(primary_key=True)
    outcome: int  # OUTCOME_CODES
    latency_us: int | None = None
    status_code: int | None = None
    error: str | None = None
    dns_us: int | None = None
    connect_us: int | None = None
    tls_us: int | None = None
    first_byte_us: int | None = None
    cert_expiry: int | None = None  # UTC epoch seconds of the earliest expiry seen
    details: str | None = None  # compact JSON of what the columns do not hold


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str
