"""The alert dispatcher's view of remediations (prober.remediation, the `remediation`
table): how long a remediated monitor's opening waits, and what its message says of the
attempt. Read in the dispatcher's pass, inside its transaction.

An opening waits for the attempt (one starts at the `after`-th down: at most `after`
intervals after the incident's start, and a second) and then for its verification: until
the command's end (at the latest its timeout) plus `verify` intervals and a second. Never
longer, whatever the record says (a prober stopped mid-verification leaves it `running`).
A push monitor's interval is its `period` (or the longest wait between its cron's fire
times); a monitor probed from several locations waits half an interval more at each
step (the ledger's gate holds its results that long before the verdict).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Mapping, Sequence

from prober.alerts.message import Kind, Remediation
from prober.alerts.outbox import PENDING, Row
from prober.alerts.plan import Remedy
from prober.config.monitors import Monitor, PushMonitor
from prober.store.engine import Connection
from prober.store.ledger import CRON_PUSH_COVER_S, cron_gap_s
from prober.store.remediations import Attempt, for_incident
from prober.timeline import from_ms

SETTLE_MS = 1_000


def _remediated(row: Row, monitors: Mapping[str, Monitor]) -> Monitor | None:
    monitor = monitors.get(row.monitor)
    if (
        row.kind is not Kind.OPENED
        or row.escalated_after_ms is not None
        or monitor is None
        or monitor.remediate is None
    ):
        return None
    return monitor


def _every_ms(monitor: Monitor) -> int:
    """How far apart a monitor's results come: its interval; a push monitor's period, or the
    longest wait between its cron's fire times."""
    if not isinstance(monitor, PushMonitor):
        return round(monitor.interval * 1000)
    if monitor.period is not None:
        return round(monitor.period * 1000)
    if monitor.cron is not None:
        return round(cron_gap_s(monitor.cron, monitor.timezone or "UTC") * 1000)
    return round(CRON_PUSH_COVER_S * 1000)


def attempts(
    conn: Connection, rows: Sequence[Row], monitors: Mapping[str, Monitor]
) -> dict[str, Attempt]:
    """Incident key -> its newest attempt, for the openings of remediated monitors."""
    found: dict[str, Attempt] = {}
    for row in rows:
        if _remediated(row, monitors) is not None and row.incident not in found:
            made = for_incident(conn, row.monitor, row.incident)
            if made:
                found[row.incident] = made[-1]
    return found


def situation(
    rows: Sequence[Row], attempts: Mapping[str, Attempt], monitors: Mapping[str, Monitor]
) -> dict[str, Remedy]:
    """Incident key -> how long its opening may wait, for the plan."""
    found: dict[str, Remedy] = {}
    for row in rows:
        monitor = _remediated(row, monitors)
        if monitor is None or row.state != PENDING or monitor.remediate is None:
            continue
        spec = monitor.remediate
        every = _every_ms(monitor)
        settle = SETTLE_MS + (every // 2 if len(monitor.locations) > 1 else 0)
        attempt = attempts.get(row.incident)
        if attempt is None:
            since = row.data.get("since_ms", row.created_ms)
            start = since if isinstance(since, int) else row.created_ms
            found[row.incident] = Remedy("", start + spec.after * every + settle)
            continue
        ended = attempt.ended_ms
        if ended is None:
            ended = attempt.started_ms + round(spec.timeout * 1000)
        ended = max(ended, attempt.resumed_ms or 0)  # a restart verifies it again from then
        found[row.incident] = Remedy(attempt.result, ended + spec.verify * every + settle)
    return found


def words(attempt: Attempt | None) -> str:
    """What an opening says of its incident's remediation ("" without one)."""
    if attempt is None:
        return ""
    tail = attempt.output_tail.strip()
    output = f"; its last output: {tail}" if tail else ""
    code = attempt.exit_code
    if attempt.result == "interrupted":
        said = "was interrupted by a restart of the prober"
    elif attempt.timed_out:
        said = "timed out (its process group was killed)"
    elif code is not None and code < 0:
        said = f"was killed by {signal.Signals(-code).name}"
    elif code == 0 and attempt.result == "running":
        said = "exited with code 0, but its checks did not succeed in time"
    elif code == 0:
        said = "exited with code 0, but the checks after it still failed"
    elif code is not None:
        said = f"failed with exit code {code}"
    else:
        said = "did not finish in time"
    return f"Automatic remediation {said}{output}"


def action(monitor: Monitor | None) -> str:
    """What a monitor's remediation runs, as an alert may say it: the program's name or the
    webhook notifier's id, never the arguments (they may hold secrets)."""
    spec = None if monitor is None else monitor.remediate
    if spec is None:
        return "remediation"
    if spec.command is not None:
        return os.path.basename(spec.command[0])
    return f"webhook {spec.webhook}"


def recorded(attempt: Attempt, monitor: Monitor | None) -> dict[str, object]:
    """An attempt as an outbox row keeps it (a "recovered automatically" row's `data`)."""
    return {
        "result": attempt.result,
        "action": action(monitor),
        "started_ms": attempt.started_ms,
        "ended_ms": attempt.ended_ms,
        "exit_code": attempt.exit_code,
        "timed_out": attempt.timed_out,
        "output_tail": attempt.output_tail,
    }


def told(data: object, zone: dt.tzinfo) -> Remediation | None:
    """`recorded`'s dict back as the message's Remediation; None for anything else."""
    if not isinstance(data, dict):
        return None
    started, ended, code = data.get("started_ms"), data.get("ended_ms"), data.get("exit_code")
    if not isinstance(started, int):
        return None
    return Remediation(
        result=str(data.get("result") or ""),
        action=str(data.get("action") or ""),
        started=from_ms(started, zone),
        ended=from_ms(ended, zone) if isinstance(ended, int) else None,
        exit_code=code if isinstance(code, int) else None,
        timed_out=data.get("timed_out") is True,
        output_tail=str(data.get("output_tail") or ""),
    )
