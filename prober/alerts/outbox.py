"""The alert outbox in SQLite: rows in, claims, outcomes. SQL lives here and only here.

Every (event, notifier) pair is a row with an idempotency key. Rows for incidents are
written by the result writer in the transaction that records the incident, so an alert
exists exactly when its cause does: kill -9 before the commit loses both, after it loses
neither. The key makes writing twice a no-op (a replayed result, a restart).

States: pending -> sending (claimed, in a batch) -> sent | failed | suppressed, or back to
pending with a later due_ms (a retry; it keeps its batch so the same message, with the
same key, goes out). A row found in `sending` at start was claimed by a process that died
before it recorded the outcome: it goes back to pending and is sent again, once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence

from prober.alerts.message import Kind
from prober.config import Config
from prober.config.locations import COMBINED
from prober.config.monitors import HttpMonitor, TlsMonitor
from prober.incidents import Incident, Opened, Resolved
from prober.results import Outcome
from prober.store.engine import Connection
from prober.store.tables import OUTCOME_CODES

PENDING, SENDING, SENT, FAILED, SUPPRESSED = "pending", "sending", "sent", "failed", "suppressed"
ESCALATED = "escalated_after_ms"  # in an escalation's data: the step's delay


@dataclasses.dataclass(frozen=True, slots=True)
class Routes:
    """Which notifiers hear which events of which monitor."""

    monitors: Mapping[str, tuple[str, ...]]  # monitor slug -> notifier ids (its `notify`)
    events: Mapping[str, frozenset[str]]  # notifier id -> the event kinds it wants
    group_wait_ms: int = 30_000
    cert_warn_ms: Mapping[str, int] = dataclasses.field(default_factory=dict)  # slug -> window

    @classmethod
    def of(cls, config: Config) -> Routes:
        return cls(
            monitors={m.id: tuple(m.notify) for m in config.monitors},
            events={n.id: frozenset(n.events) for n in config.notifiers},
            group_wait_ms=round(config.settings.alert_group_wait * 1000),
            cert_warn_ms={
                m.id: m.warn_days * 86_400_000
                for m in config.monitors
                if isinstance(m, TlsMonitor | HttpMonitor) and m.warn_days
            },
        )

    def targets(self, monitor: str, kind: Kind) -> list[str]:
        return [n for n in self.monitors.get(monitor, ()) if kind.value in self.events.get(n, ())]

    def everyone(self, kind: Kind) -> list[str]:
        return [n for n, kinds in self.events.items() if kind.value in kinds]


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    notifier: str
    kind: Kind
    monitor: str
    incident: str
    created_ms: int
    due_ms: int
    state: str
    attempts: int
    first_try_ms: int | None
    batch: int | None
    silenced: bool
    sent_ms: int | None
    data: Mapping[str, object]

    @property
    def escalated_after_ms(self) -> int | None:
        """An opening sent by an `escalate` step: its delay; None for any other row."""
        after = self.data.get(ESCALATED) if self.kind is Kind.OPENED else None
        return after if isinstance(after, int) and not isinstance(after, bool) else None


_COLUMNS = (
    "id, key, notifier, kind, monitor, incident, created_ms, due_ms, state, attempts,"
    " first_try_ms, batch, silenced, sent_ms, data"
)


def _row(values: Sequence[object]) -> Row:
    (id_, key, notifier, kind, monitor, incident, created, due, state, attempts, first_try,
     batch, silenced, sent, data) = values  # fmt: skip
    return Row(
        int(id_),  # type: ignore[call-overload]
        str(key),
        str(notifier),
        Kind(str(kind)),
        str(monitor),
        str(incident),
        int(created),  # type: ignore[call-overload]
        int(due),  # type: ignore[call-overload]
        str(state),
        int(attempts),  # type: ignore[call-overload]
        None if first_try is None else int(first_try),  # type: ignore[call-overload]
        None if batch is None else int(batch),  # type: ignore[call-overload]
        bool(silenced),
        None if sent is None else int(sent),  # type: ignore[call-overload]
        json.loads(str(data)),
    )


def incident_key(location: str, monitor: str, start_ms: int) -> str:
    return f"{location}/{monitor}/{start_ms}"


class Outbox:
    """Adds rows inside the caller's (the writer's) transaction."""

    def __init__(self, location: str, routes: Routes) -> None:
        self.location = location
        self.routes = routes
        self.added = 0  # rows written; the writer wakes the dispatcher when it grows

    def incident(
        self, conn: Connection, monitor: str, change: Opened | Resolved, now_ms: int
    ) -> None:
        i: Incident = change.incident
        kind = Kind.OPENED if isinstance(change, Opened) else Kind.RESOLVED
        data: dict[str, object] = {"since_ms": i.start_ms, "cause": i.cause}
        if kind is Kind.RESOLVED:
            data["until_ms"] = i.end_ms
        incident = incident_key(self.location, monitor, i.start_ms)
        targets = self.routes.targets(monitor, kind)
        if kind is Kind.RESOLVED:  # and everyone an `escalate` step told, once each
            wanted = [
                n for n in escalated(conn, incident) if kind.value in self.routes.events.get(n, ())
            ]
            targets += [n for n in wanted if n not in targets]
        for notifier in targets:
            self._add(
                conn,
                f"{incident}/{kind}/{notifier}",
                notifier,
                kind,
                monitor,
                incident,
                now_ms,
                data,
            )

    def certificate(self, conn: Connection, monitor: str, not_after_ms: int, now_ms: int) -> None:
        """A result saw a certificate: an event when it is within the monitor's warn_days,
        once per certificate (its expiry is in the key: a renewed one starts afresh)."""
        warn = self.routes.cert_warn_ms.get(monitor)
        if warn is None or not_after_ms - now_ms > warn:
            return
        incident = f"{self.location}/{monitor}/cert-{not_after_ms}"
        data = {"since_ms": now_ms, "cert_expires_ms": not_after_ms}
        for notifier in self.routes.targets(monitor, Kind.CERT_EXPIRING):
            self._add(conn, f"{incident}/{Kind.CERT_EXPIRING}/{notifier}", notifier,
                      Kind.CERT_EXPIRING, monitor, incident, now_ms, data)  # fmt: skip

    def regional(
        self,
        conn: Connection,
        monitor: str,
        locations: Sequence[str],
        since_ms: int,
        cause: str | None,
        now_ms: int,
    ) -> None:
        """A regional problem (failing at fewer than `quorum` locations) lasted down_after:
        told once per problem, to notifiers that ask for `regional`."""
        incident = f"{self.location}/{monitor}/regional-{since_ms}"
        data = {"since_ms": since_ms, "cause": cause or "", "locations": list(locations)}
        for notifier in self.routes.targets(monitor, Kind.REGIONAL):
            self._add(conn, f"{incident}/{Kind.REGIONAL}/{notifier}", notifier,
                      Kind.REGIONAL, monitor, incident, now_ms, data)  # fmt: skip

    def network(self, conn: Connection, failing: bool, at_ms: int) -> None:
        """The prober's own network went down (every canary fails) or came back."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'network_down_since_ms'").fetchone()
        if failing == (row is not None):
            return  # no change (a repeat after a restart)
        if failing:
            since, data = at_ms, {"since_ms": at_ms}
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('network_down_since_ms', ?)", (str(at_ms),)
            )
        else:
            since = int(row[0])
            data = {"since_ms": since, "until_ms": at_ms}
            conn.execute("DELETE FROM meta WHERE key = 'network_down_since_ms'")
        incident = f"{self.location}/prober-network/{since}"
        step = "down" if failing else "back"
        for notifier in self.routes.everyone(Kind.PROBER_NETWORK):
            self._add(conn, f"{incident}/{step}/{notifier}", notifier, Kind.PROBER_NETWORK,
                      "", incident, at_ms, data)  # fmt: skip

    def _add(
        self,
        conn: Connection,
        key: str,
        notifier: str,
        kind: Kind,
        monitor: str,
        incident: str,
        now_ms: int,
        data: Mapping[str, object],
    ) -> None:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
            " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
            (key, notifier, kind.value, monitor, incident, now_ms,
             now_ms + self.routes.group_wait_ms, PENDING, json.dumps(data, separators=(",", ":"))),
        )  # fmt: skip
        self.added += cursor.rowcount


def reminder_key(opened: Row, n: int) -> str:
    return f"{opened.incident}/reminder-{n}/{opened.notifier}"


def add_reminder(conn: Connection, opened: Row, n: int, now_ms: int) -> bool:
    """The n-th reminder of an incident to one notifier; false if it exists already."""
    key = reminder_key(opened, n)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
        " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
        (key, opened.notifier, Kind.REMINDER.value, opened.monitor, opened.incident, now_ms,
         now_ms, PENDING, json.dumps(dict(opened.data), separators=(",", ":"))),
    )  # fmt: skip
    return cursor.rowcount == 1


def escalation_key(incident: str, notifier: str) -> str:
    """One per (incident, notifier): a notifier named by two steps is told once."""
    return f"{incident}/escalated/{notifier}"


def add_escalation(
    conn: Connection, opened: Row, notifier: str, after_ms: int, now_ms: int
) -> bool:
    """An `escalate` step's opening to one more notifier, due now, copied from the opening
    that went out first (`opened`); false if that notifier was escalated to already."""
    data = {**opened.data, ESCALATED: after_ms}
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
        " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
        (escalation_key(opened.incident, notifier), notifier, Kind.OPENED.value, opened.monitor,
         opened.incident, now_ms, now_ms, PENDING, json.dumps(data, separators=(",", ":"))),
    )  # fmt: skip
    return cursor.rowcount == 1


def escalated(conn: Connection, incident: str) -> list[str]:
    """The notifiers an `escalate` step wrote an opening for, in any state."""
    rows = conn.execute(
        "SELECT notifier FROM alert WHERE incident = ? AND kind = ?"
        " AND json_extract(data, '$.' || ?) IS NOT NULL ORDER BY id",
        (incident, Kind.OPENED.value, ESCALATED),
    )
    return [str(n) for (n,) in rows]


def remediated_key(incident: str, notifier: str) -> str:
    return f"{incident}/remediated/{notifier}"


def add_remediated(
    conn: Connection,
    opened: Row,
    notifier: str,
    data: Mapping[str, object],
    now_ms: int,
) -> bool:
    """A "recovered automatically" to one notifier asking for `remediated`, due now, for the
    incident of an opening dropped because its remediation was verified (`opened`); false
    if it exists already (a second opening dropped, a later pass, a restart)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
        " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
        (remediated_key(opened.incident, notifier), notifier, Kind.REMEDIATED.value,
         opened.monitor, opened.incident, now_ms, now_ms, PENDING,
         json.dumps({**opened.data, **data}, separators=(",", ":"))),
    )  # fmt: skip
    return cursor.rowcount == 1


def add_silence(
    conn: Connection,
    notifier: str,
    window: str,
    data: Mapping[str, object],
    now_ms: int,
) -> bool:
    """A maintenance window (`window`: its stable key) as a silence for one notifier, due
    now; false if it exists already (a later pass, a restart)."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
        " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, '', ?, ?, ?, ?, 0, 0, ?)",
        (f"{window}/{Kind.SILENCE}/{notifier}", notifier, Kind.SILENCE.value, window, now_ms,
         now_ms, PENDING, json.dumps(dict(data), separators=(",", ":"))),
    )  # fmt: skip
    return cursor.rowcount == 1


def forget_reminders(conn: Connection, opened: Row, keep: str) -> int:
    """Delete an incident's finished reminders to one notifier but `keep` (a key): for a
    notifier reminded every minute, an outage of a day would leave 1,440 rows."""
    return conn.execute(
        "DELETE FROM alert WHERE incident = ? AND notifier = ? AND kind = ? AND key != ?"
        " AND state IN ('sent', 'failed', 'suppressed')",
        (opened.incident, opened.notifier, Kind.REMINDER.value, keep),
    ).rowcount


def unfinished(conn: Connection) -> list[Row]:
    """Rows still to be sent or decided, oldest first."""
    return [
        _row(r)
        for r in conn.execute(
            f"SELECT {_COLUMNS} FROM alert WHERE state IN ('pending', 'sending') ORDER BY id"  # noqa: S608
        )
    ]


def by_incident(conn: Connection, incidents: Iterable[str], kind: Kind) -> list[Row]:
    """Rows of one kind for these incidents, any state."""
    found: list[Row] = []
    wanted = list(incidents)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found += [
            _row(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM alert WHERE kind = ? AND incident IN ({marks})",  # noqa: S608
                (kind.value, *chunk),
            )
        ]
    return found


def open_incidents(
    conn: Connection, location: str, places: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Monitor slug -> incident key, for every open incident of a monitor's verdict: kept
    under `places[slug]` (prober.config.locations.verdict_location; default this hub's
    `location`). A combined verdict's incident is keyed by the start its opening was told
    with (`alias_ms` in its state), which late results may have moved since."""
    rows = conn.execute(
        "SELECT m.slug, l.name, i.start_ms, json_extract(s.state, '$.alias_ms')"
        " FROM incident i JOIN monitor m ON m.id = i.monitor_id"
        " JOIN location l ON l.id = i.location_id"
        " LEFT JOIN monitor_state s ON l.name = ? AND s.monitor_id = i.monitor_id"
        " AND s.location_id = i.location_id"
        " WHERE i.end_ms IS NULL",
        (COMBINED,),
    )
    where = places or {}
    return {
        slug: incident_key(location, slug, start if alias is None else alias)
        for slug, name, start, alias in rows
        if name == where.get(slug, location)
    }


def recovered(
    conn: Connection, slugs: Iterable[str], location: str, places: Mapping[str, str]
) -> dict[str, int]:
    """Monitor slug -> when its newest ended incident (at `places[slug]`, default
    `location`) was resolved: the result that completed its recovery."""
    found: dict[str, int] = {}
    for slug in slugs:
        row = conn.execute(
            "SELECT COALESCE(i.resolved_ms, i.end_ms) FROM incident i"
            " JOIN monitor m ON m.id = i.monitor_id JOIN location l ON l.id = i.location_id"
            " WHERE m.slug = ? AND l.name = ? AND i.end_ms IS NOT NULL"
            " ORDER BY i.start_ms DESC LIMIT 1",
            (slug, places.get(slug, location)),
        ).fetchone()
        if row is not None:
            found[slug] = int(row[0])
    return found


def newest_result(conn: Connection, slug: str) -> tuple[int, bool] | None:
    """A monitor's newest result at any location: (its check's start, whether it was down)."""
    row = conn.execute(
        "SELECT r.ts_ms, r.outcome FROM result r JOIN monitor m ON m.id = r.monitor_id"
        " WHERE m.slug = ? ORDER BY r.ts_ms DESC LIMIT 1",
        (slug,),
    ).fetchone()
    return None if row is None else (int(row[0]), row[1] == OUTCOME_CODES[Outcome.DOWN])


def release_claims(conn: Connection) -> int:
    """At start: rows a dead process claimed but never recorded go back to pending."""
    return conn.execute("UPDATE alert SET state = 'pending' WHERE state = 'sending'").rowcount


def set_state(
    conn: Connection,
    ids: Sequence[int],
    state: str,
    *,
    batch: int | None = None,
    due_ms: int | None = None,
    error: str | None = None,
    sent_ms: int | None = None,
    silenced: bool | None = None,
    only_from: str | None = None,
    claim_ms: int | None = None,
) -> int:
    """One update for many rows. `only_from` makes it conditional; `claim_ms` counts an
    attempt (and keeps the first attempt's time)."""
    sets = ["state = ?"]
    values: list[object] = [state]
    for column, value in (("batch", batch), ("due_ms", due_ms), ("last_error", error),
                          ("sent_ms", sent_ms), ("silenced", silenced)):  # fmt: skip
        if value is not None:
            sets.append(f"{column} = ?")
            values.append(value)
    if claim_ms is not None:
        sets.append("attempts = attempts + 1")
        sets.append("first_try_ms = COALESCE(first_try_ms, ?)")
        values.append(claim_ms)
    changed = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        where = f"id IN ({','.join('?' * len(chunk))})"
        params = [*values, *chunk]
        if only_from is not None:
            where += " AND state = ?"
            params.append(only_from)
        changed += conn.execute(
            f"UPDATE alert SET {', '.join(sets)} WHERE {where}",  # noqa: S608
            params,
        ).rowcount
    return changed


def queue_depth(conn: Connection) -> int:
    (n,) = conn.execute(
        "SELECT count(*) FROM alert WHERE state IN ('pending', 'sending')"
    ).fetchone()
    return int(n)
