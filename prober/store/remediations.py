"""The `remediation` table: one row per attempt, the durable record behind the attempts
budget and restart safety (prober.remediation).

A row is written when the command starts (`ended_ms` NULL) and completed when it ends, so
a prober killed mid-remediation leaves a row without an end: `interrupt_unfinished` marks
those `interrupted` at the next start, and their incident is not remediated again (the
checks that follow judge its outcome). The command's pid and start time (`record_process`)
let that start kill a command the dead prober left running, and nothing else. A row that
ended but is still `running` was cut during its verification: `resume_unsettled` stamps it
for the restarted prober to verify. Functions of a plain sqlite3 connection in autocommit
mode (prober.store.db.connect_raw): every write is one statement.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prober.store.engine import Connection

RUNNING = "running"
INTERRUPTED = "interrupted"


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    monitor: str
    incident: str
    started_ms: int
    ended_ms: int | None
    result: str
    exit_code: int | None
    timed_out: bool
    output_tail: str
    pid: int | None = None  # the command's process (and group), while known
    pid_start: int | None = None  # its start time, clock ticks after boot (/proc/PID/stat)
    resumed_ms: int | None = None  # when a restart resumed its verification


def start(conn: Connection, monitor: str, incident: str, now_ms: int) -> int:
    cursor = conn.execute(
        "INSERT INTO remediation (monitor, incident, started_ms, result, timed_out, output_tail)"
        " VALUES (?, ?, ?, ?, 0, '') RETURNING id",
        (monitor, incident, now_ms, RUNNING),
    )
    (rowid,) = cursor.fetchone()
    return int(rowid)


def finish(
    conn: Connection,
    attempt: int,
    now_ms: int,
    *,
    result: str,
    exit_code: int | None,
    timed_out: bool,
    output_tail: str,
) -> None:
    """The command ended: its exit, and a result (`failed`, `timed_out`, or `running`
    while its verification is pending)."""
    conn.execute(
        "UPDATE remediation SET ended_ms = ?, result = ?, exit_code = ?, timed_out = ?,"
        " output_tail = ? WHERE id = ?",
        (now_ms, result, exit_code, timed_out, output_tail, attempt),
    )


def settle(conn: Connection, attempt: int, result: str) -> None:
    """The verification's verdict on an attempt that ended: `verified` or `failed`."""
    conn.execute("UPDATE remediation SET result = ? WHERE id = ?", (result, attempt))


def interrupt_unfinished(conn: Connection, now_ms: int) -> list[Attempt]:
    """Rows a previous run left without an end (it died mid-remediation), now marked
    `interrupted`; returned as they are now."""
    found = [
        dataclasses.replace(_attempt(r), ended_ms=now_ms, result=INTERRUPTED)
        for r in conn.execute(_SELECT + "WHERE ended_ms IS NULL ORDER BY id")
    ]
    conn.execute(
        "UPDATE remediation SET ended_ms = ?, result = ? WHERE ended_ms IS NULL",
        (now_ms, INTERRUPTED),
    )
    return found


def record_process(conn: Connection, attempt: int, pid: int, pid_start: int | None) -> None:
    """The command's process, once started: its pid (= its group) and its start time."""
    conn.execute(
        "UPDATE remediation SET pid = ?, pid_start = ? WHERE id = ?", (pid, pid_start, attempt)
    )


def note(conn: Connection, attempt: int, line: str) -> None:
    """A line of the prober's own appended to an attempt's output tail."""
    conn.execute(
        "UPDATE remediation SET output_tail = output_tail || ? WHERE id = ?",
        (line + "\n", attempt),
    )


def resume_unsettled(conn: Connection, now_ms: int) -> list[Attempt]:
    """Rows whose command ended (and succeeded) but whose verification a stopped prober
    never settled, stamped `resumed_ms` (the held opening waits from then); returned."""
    found = [
        dataclasses.replace(_attempt(r), resumed_ms=now_ms)
        for r in conn.execute(
            _SELECT + "WHERE ended_ms IS NOT NULL AND result = ? ORDER BY id", (RUNNING,)
        )
    ]
    conn.executemany(
        "UPDATE remediation SET resumed_ms = ? WHERE id = ?", [(now_ms, a.id) for a in found]
    )
    return found


def started_since(conn: Connection, monitor: str, since_ms: int) -> int:
    """Attempts for `monitor` started after `since_ms`: what the budget counts."""
    (count,) = conn.execute(
        "SELECT count(*) FROM remediation WHERE monitor = ? AND started_ms > ?",
        (monitor, since_ms),
    ).fetchone()
    return int(count)


def for_incident(conn: Connection, monitor: str, incident: str) -> list[Attempt]:
    """Every attempt made for one incident, oldest first (its timeline)."""
    found = conn.execute(
        _SELECT + "WHERE monitor = ? AND incident = ? ORDER BY id", (monitor, incident)
    )
    return [_attempt(r) for r in found]


_SELECT = (
    "SELECT id, monitor, incident, started_ms, ended_ms, result, exit_code, timed_out,"
    " output_tail, pid, pid_start, resumed_ms FROM remediation "
)


def _attempt(r: tuple[Any, ...]) -> Attempt:
    return Attempt(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], *r[9:12])


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """An attempt as the operator's report shows it (prober.report.compute)."""

    incident: str
    started_ms: int
    ended_ms: int | None
    result: str
    exit_code: int | None
    timed_out: bool
    output_tail: str


def started_from(conn: Connection, monitor: str, from_ms: int) -> list[Recorded]:
    """Attempts for `monitor` started at `from_ms` or later, oldest first: what the operator's
    report lists under its incidents and counts per month (the columns it shows, by name)."""
    found = conn.execute(
        "SELECT incident, started_ms, ended_ms, result, exit_code, timed_out, output_tail"
        " FROM remediation WHERE monitor = ? AND started_ms >= ? ORDER BY started_ms, id",
        (monitor, from_ms),
    )
    return [Recorded(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in found]
