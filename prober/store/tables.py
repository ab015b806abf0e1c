"""SQLModel tables. Sized for 10,000 monitors at 60 s (14.4 M results a day).

`result` is a WITHOUT ROWID table keyed (monitor, ts, location): the key is the index for
"one monitor, a time range", a repeated import is a no-op, and rows stay small (integer
micro- and milliseconds, NULL phases cost one byte). Config models live in prober.config;
these are storage only.
"""

from __future__ import annotations

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from prober.results import Outcome

# Bump with a step in prober/store/migrations.py (MIGRATIONS[n]: n-1 -> n) and a test there.
SCHEMA_VERSION = 7

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


# Derived data. The writer keeps it in the same transaction as the result that caused it,
# so a report never needs the raw rows (they are pruned after settings.retention_days).


class TransitionRow(SQLModel, table=True):
    """A change of a monitor's status (prober.incidents.Status values)."""

    __tablename__ = "transition"
    __table_args__ = {"sqlite_with_rowid": False}

    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    ts_ms: int = Field(primary_key=True)
    old: str | None = None  # None: the monitor's first result
    new: str


class IncidentRow(SQLModel, table=True):
    """A confirmed failure run: from its first down result to the first success of the
    streak that ended it (end_ms; None while open)."""

    __tablename__ = "incident"
    __table_args__ = (
        # Open incidents, read by the alert dispatcher on every pass (since version 2).
        Index("incident_open", "location_id", sqlite_where=text("end_ms IS NULL")),
        {"sqlite_with_rowid": False},
    )

    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    start_ms: int = Field(primary_key=True)  # the first down result
    confirmed_ms: int  # the result that confirmed it (down_after reached)
    end_ms: int | None = None  # the first success of the streak that resolved it
    resolved_ms: int | None = None  # the result that completed that streak (up_after)
    cause: str


class CoverageRow(SQLModel, table=True):
    """A span of time covered by known (not unknown) results: everything else is unknown.

    The newest span of a monitor is open (end_ms None): it reaches to its last result plus
    the monitor's maximum coverage (2 x interval), never past now.
    """

    __tablename__ = "coverage"
    __table_args__ = {"sqlite_with_rowid": False}

    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    start_ms: int = Field(primary_key=True)
    end_ms: int | None = None


class MonitorStateRow(SQLModel, table=True):
    """The incident tracker's state, saved at every transition; on start the results after
    as_of_ms are replayed, so a restart continues where it was."""

    __tablename__ = "monitor_state"

    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    as_of_ms: int
    state: str  # JSON of prober.incidents.Tracker.to_dict()


class _RollupColumns(SQLModel):
    up: int = 0
    degraded: int = 0
    down: int = 0
    unknown: int = 0
    lat_count: int = 0  # latency over up/degraded results
    lat_sum_us: int = 0
    lat_min_us: int | None = None
    lat_max_us: int | None = None
    hist: str = "[]"  # prober.store.rollups.Histogram.to_json


class _HourKey(SQLModel):
    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    hour_ms: int = Field(primary_key=True)  # UTC epoch ms of the hour's start


class _DayKey(SQLModel):
    monitor_id: int = Field(primary_key=True)
    location_id: int = Field(primary_key=True)
    day: str = Field(primary_key=True)  # local date in settings.timezone, YYYY-MM-DD


# The key columns come first (pydantic orders fields from the last base to the first).
# Since version 2: SQLite 3.40.0-3.41.0 (Debian 12's 3.40.1 among them) has quick_check
# report "NULL value in rollup_hour.up" for every row of a WITHOUT ROWID table whose key
# columns follow other NOT NULL columns, and the 100-line limit then hides real findings.


class RollupHourRow(_RollupColumns, _HourKey, table=True):
    __tablename__ = "rollup_hour"
    __table_args__ = {"sqlite_with_rowid": False}


class RollupDayRow(_RollupColumns, _DayKey, table=True):
    __tablename__ = "rollup_day"
    __table_args__ = {"sqlite_with_rowid": False}


class AlertRow(SQLModel, table=True):
    """The outbox: one row per (event, notifier), written in the transaction of the change
    that caused it; prober.alerts.dispatcher claims, sends and records it."""

    __tablename__ = "alert"
    __table_args__ = (
        Index(
            "alert_pending", "state", "due_ms", sqlite_where=text("state IN ('pending', 'sending')")
        ),
        Index("alert_incident", "incident", "notifier"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)  # idempotency key, sent with every attempt
    notifier: str
    kind: str  # prober.alerts.message.Kind
    monitor: str  # slug; "" for the prober's own network
    incident: str  # what the event is about: "LOCATION/MONITOR/START_MS", a certificate, ...
    created_ms: int
    due_ms: int  # not before: group wait, backoff, the end of a maintenance window
    state: str  # pending | sending | sent | failed | suppressed
    attempts: int = 0
    first_try_ms: int | None = None  # retries give up 24 h after the first attempt
    batch: int | None = None  # the id of the first row of the message it goes out in
    silenced: bool = False  # held back by maintenance at least once
    sent_ms: int | None = None
    last_error: str | None = None
    data: str = "{}"  # JSON: since_ms, until_ms, cause, cert_expires_ms


class PushTokenRow(SQLModel, table=True):
    """Generated push tokens (a monitor's `token` in the config, when set, wins)."""

    __tablename__ = "push_token"

    monitor: str = Field(primary_key=True)  # slug
    token: str  # secrets.token_urlsafe(24): 192 random bits


class SubscriberRow(SQLModel, table=True):
    """A visitor's email subscription (prober.alerts.subscribers): pending until the
    confirm link is used; deleted when they unsubscribe or a pending one expires."""

    __tablename__ = "subscriber"
    # ids never reused: an outbox row names its subscriber by id, and may outlive them
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(unique=True)  # normalised: trimmed, the domain lower-cased
    lang: str  # the page's language when they subscribed: their mail's
    state: str  # pending | confirmed
    created_ms: int
    confirmed_ms: int | None = None
    mailed_ms: int | None = None  # the last confirmation mail (per-address limit)
    mailed_since_ms: int = 0  # start of the current 24 h count of confirmation mails
    mailed_count: int = 0


class SubscriberTokenRow(SQLModel, table=True):
    """Confirm and unsubscribe tokens, as SHA-256 digests only: each mail carries fresh
    ones, made when it is sent, so no token is ever stored as itself."""

    __tablename__ = "subscriber_token"

    digest: str = Field(primary_key=True)  # hex SHA-256 of the token
    subscriber: int = Field(index=True)
    purpose: str  # confirm | unsubscribe
    created_ms: int


class AnnouncedRow(SQLModel, table=True):
    """What subscribers were told of (or deliberately not: too old at first sight), so a
    restart or a reload never tells it twice: `notice/ID/INDEX`, `maintenance/KEY/START`."""

    __tablename__ = "announced"

    key: str = Field(primary_key=True)
    at_ms: int  # when it was seen
    mailed: bool


class RemediationRow(SQLModel, table=True):
    """One remediation attempt (prober.remediation): written when it starts, completed when
    it ends. A row still without `ended_ms` at start-up was cut short by a crash."""

    __tablename__ = "remediation"
    __table_args__ = (Index("remediation_monitor", "monitor", "started_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    monitor: str  # slug
    incident: str  # the incident key: "LOCATION/MONITOR/START_MS"
    started_ms: int
    ended_ms: int | None = None  # NULL while running
    result: str = "running"  # running | verified | failed | timed_out | interrupted
    exit_code: int | None = None  # negative: killed by that signal (subprocess's convention)
    timed_out: bool = False
    output_tail: str = ""  # the last 4 KiB of output, redacted
    # the command's process (its own session: pid = process group) and its identity, the
    # start time in clock ticks after boot (/proc/PID/stat field 22): a restart after
    # kill -9 kills that group only if a process with both still exists (schema 6)
    pid: int | None = None
    pid_start: int | None = None
    resumed_ms: int | None = None  # a restart resumed its verification (the hold counts from it)


class InboxRow(SQLModel, table=True):
    """Results a hub took (its own checks, an agent's batch, a push) while another hub of the
    same PostgreSQL database holds the evaluation lock: that one stores and judges them, and
    deletes the row in the same transaction (prober.store.hubs). Empty with one hub."""

    __tablename__ = "inbox"

    id: int | None = Field(default=None, primary_key=True)
    hub: str  # the location of the hub that took them
    created_ms: int
    body: str  # JSON: the observations (prober.store.hubs.encode)


# Every table of the schema, in creation order: a fresh database gets exactly these
# (prober.store.migrations), and an upgraded one must end up the same.
TABLES: tuple[type[SQLModel], ...] = (
    MonitorRow,
    LocationRow,
    ResultRow,
    MetaRow,
    TransitionRow,
    IncidentRow,
    CoverageRow,
    MonitorStateRow,
    RollupHourRow,
    RollupDayRow,
    AlertRow,
    PushTokenRow,
    SubscriberRow,
    SubscriberTokenRow,
    AnnouncedRow,
    RemediationRow,
    InboxRow,
)
