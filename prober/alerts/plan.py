"""What to do with the outbox's unfinished rows now: pure, so its rules are tested as tables.

For each row that is due (or waiting only for its group to be due), in this order:

- A retry (the row already went out in a batch and failed) is sent again as that same
  batch: same events, same idempotency key. Nothing is re-decided.
- Maintenance: an opening, reminder or certificate event of a monitor inside a window is
  held until the window ends (`silenced`); a reminder is dropped instead (the next one
  comes), except to an Alertmanager that holds the window as a silence (`silencers`): it
  keeps hearing of the alert, which it silences. An incident that ended while its opening
  was held is never announced. A silence goes out at once.
- Dependencies: while a monitor it `depends_on` has an open incident, a monitor's opening
  is held (rechecked every `HOLD_MS`) and its reminders are dropped; the parent's message
  lists it. When the parents are up again (`Recovery`, read from the database) the hold
  ends only after the dependent's own next check: its opening waits for a `down` result
  of its own newer than the result that resolved the parent (looked at again `SETTLE_MS`
  after that check is due), at most interval x (up_after + 1) after that recovery; then
  it goes out if its incident is still open. If the incident ended meanwhile, neither
  the opening nor the resolution is sent (the incident stays recorded).
- Escalation: an `escalate` step's opening (written by the dispatcher when the step is
  due, while the incident is open) is dropped if the incident ended before it went out,
  held in maintenance like any opening, and never held for a parent's recovery (its
  incident was announced already); it travels with other escalations only.
- Remediation: the opening of a monitor with `remediate` waits for its attempt and the
  attempt's verification (`Remedy`, read from the `remediation` table), at most until the
  remedy's deadline, and is judged as soon as the attempt has a verdict (held or not):
  verified, it is dropped ("remediated automatically"), and so its resolution
  (`Plan.remediated` lists such openings: the dispatcher tells the notifiers asking for
  `remediated`); failed, timed out, interrupted or past the deadline, it goes out.
- A resolution (or "network back") goes out only after its opening did (sent, or failed
  for good); if the opening was held back and dropped, so is the resolution. A notifier
  whose `events` leave out openings gets resolutions alone.
- Grouping: what remains is grouped per (notifier, kind). A group goes out when its oldest
  row is due (created + alert_group_wait), taking along the rows that arrived since. A
  subscriber's mail (SUBSCRIBER) goes alone, to its one recipient, when due.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from prober.alerts.message import Kind
from prober.alerts.outbox import FAILED, PENDING, SENDING, SENT, SUPPRESSED, Row

REMEDIATED = "remediated automatically"  # why an opening of a verified remediation is dropped
HOLD_MS = 15_000  # how often a dependent held by its parent is looked at again
SETTLE_MS = 1_000  # after a dependent's next check is due, before its result is looked for
# (monitor slug, now_ms) -> the end of the maintenance window it is in, or None
InMaintenance = Callable[[str, int], int | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    """A dependent whose parents are all up again, as the database has it: what decides
    whether its held opening goes out."""

    parents_up_ms: int  # the result that resolved its parents' last incident
    checked_ms: int | None  # its own newest result (the check's start), if any
    checked_down: bool  # whether that result was `down`
    interval_ms: int
    up_after: int

    @property
    def checked(self) -> bool:
        """Its own check after the parents' recovery still saw it down."""
        at = self.checked_ms
        return self.checked_down and at is not None and at > self.parents_up_ms

    @property
    def deadline_ms(self) -> int:
        """Never held longer: then judged on what is known."""
        return self.parents_up_ms + self.interval_ms * (self.up_after + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Remedy:
    """Where the remediation of an incident stands, for its opening: `result` is the
    attempt's (prober.remediation.Result, `running` until judged) or "" before one
    started; the opening waits for it until `until_ms`, never longer."""

    result: str
    until_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Situation:
    now_ms: int
    open_incidents: Mapping[str, str]  # monitor slug -> key of its open incident
    parents: Mapping[str, Sequence[str]]  # monitor slug -> its depends_on
    in_maintenance: InMaintenance
    # (incident, notifier) -> state of the opening row, for resolutions whose opening
    # finished already (the unfinished ones are among the rows)
    openings: Mapping[tuple[str, str], str]
    # notifiers that silence maintenance themselves (Alertmanager with `silences`): their
    # reminders go on in a window, so the alert stays there, silenced, instead of lapsing
    silencers: frozenset[str] = frozenset()
    # monitor slug -> how its parents' recovery stands, for dependents with an opening to judge
    recoveries: Mapping[str, Recovery] = dataclasses.field(default_factory=dict)
    # incident key -> its remediation, for openings of monitors with `remediate`
    remedies: Mapping[str, Remedy] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class Plan:
    send: list[list[Row]] = dataclasses.field(default_factory=list)  # batches, rows in id order
    hold: list[tuple[Row, int]] = dataclasses.field(default_factory=list)  # (row, until_ms)
    drop: list[tuple[Row, str]] = dataclasses.field(default_factory=list)  # (row, why)
    # openings dropped because their remediation was verified (also in `drop`)
    remediated: list[Row] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.send or self.hold or self.drop)


def plan(rows: Sequence[Row], s: Situation) -> Plan:
    """`rows` in id order (the order they were written: an opening before its resolution)."""
    out = Plan()
    now = s.now_ms
    openings = dict(s.openings)
    for row in rows:
        if _opens(row):
            openings[(row.incident, row.notifier)] = row.state
    retries: dict[int, list[Row]] = {}
    groups: dict[tuple[str, Kind, int], list[Row]] = {}
    early: set[int] = set()  # held, but judged now: due now
    for row in rows:
        if row.state != PENDING:
            continue  # being sent right now
        if row.batch is not None:
            if row.due_ms <= now:
                retries.setdefault(row.batch, []).append(row)
            continue
        if row.silenced and row.due_ms > now:
            if not _remedy_settled(row, s):
                continue  # held: looked at again when due (or when its remediation is judged)
            early.add(row.id)
        verdict = _judge(row, s, openings)
        if verdict is _SEND:
            alone = row.id if row.kind is Kind.SUBSCRIBER else 0
            if row.escalated_after_ms is not None:
                alone = -1  # its own message: "ESCALATED", not one more "DOWN"
            groups.setdefault((row.notifier, row.kind, alone), []).append(row)
        elif isinstance(verdict, _Hold):  # never sooner than its own group wait
            out.hold.append((row, max(verdict.until_ms, row.due_ms)))
        elif isinstance(verdict, _Drop):
            out.drop.append((row, verdict.why))
            if verdict.why == REMEDIATED:
                out.remediated.append(row)
            if _opens(row):
                openings[(row.incident, row.notifier)] = SUPPRESSED
    out.send.extend(retries.values())
    for group in groups.values():
        if min(now if r.id in early else r.due_ms for r in group) <= now:
            out.send.append(group)
    return out


def _opens(row: Row) -> bool:
    return row.kind is Kind.OPENED or (
        row.kind is Kind.PROBER_NETWORK and "until_ms" not in row.data
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Hold:
    until_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Drop:
    why: str


_SEND, _WAIT = object(), object()  # with its group / no change this time


def _judge(row: Row, s: Situation, openings: Mapping[tuple[str, str], str]) -> object:
    kind = row.kind
    if kind is Kind.RESOLVED or (kind is Kind.PROBER_NETWORK and not _opens(row)):
        opening = openings.get((row.incident, row.notifier))
        if opening in (SENT, FAILED):
            return _SEND
        if opening in (PENDING, SENDING):
            return _WAIT
        if opening is None:  # the notifier does not take openings (`events`): nothing to pair
            return _SEND
        return _Drop("its opening was never sent")
    if kind in (Kind.PROBER_NETWORK, Kind.SILENCE, Kind.SUBSCRIBER, Kind.REMEDIATED):
        return _SEND
    if _verified(row, s):  # whatever held it: nobody is to be woken for it
        return _Drop(REMEDIATED)
    still_open = s.open_incidents.get(row.monitor) == row.incident
    if kind is Kind.REMINDER and not still_open:
        return _Drop("the incident ended")
    if kind is Kind.OPENED and row.silenced and not still_open:
        return _Drop("the incident ended while its alert was held")
    escalation = row.escalated_after_ms is not None
    if escalation and not still_open:
        return _Drop("the incident ended before its escalation went out")
    window_end = s.in_maintenance(row.monitor, s.now_ms)
    if window_end is not None:
        if kind is not Kind.REMINDER:
            return _Hold(window_end)
        if row.notifier not in s.silencers:
            return _Drop("in maintenance")
    if kind is Kind.CERT_EXPIRING or kind is Kind.REGIONAL:
        return _SEND
    down = [p for p in s.parents.get(row.monitor, ()) if p in s.open_incidents]
    if down:
        if kind is Kind.REMINDER:
            return _Drop(f"depends on {down[0]}, which is down")
        return _Hold(s.now_ms + HOLD_MS)
    recovery = s.recoveries.get(row.monitor) if kind is Kind.OPENED and not escalation else None
    if recovery is not None and not recovery.checked and s.now_ms < recovery.deadline_ms:
        last = recovery.checked_ms if recovery.checked_ms is not None else s.now_ms
        due = max(last + recovery.interval_ms, s.now_ms) + SETTLE_MS
        return _Hold(min(due, recovery.deadline_ms))
    if kind is Kind.OPENED and not escalation:
        return _remedied(s.remedies.get(row.incident), s.now_ms)
    return _SEND


def _remedy(row: Row, s: Situation) -> Remedy | None:
    """An opening's remediation (none for an escalation's)."""
    if row.kind is not Kind.OPENED or row.escalated_after_ms is not None:
        return None
    return s.remedies.get(row.incident)


def _verified(row: Row, s: Situation) -> bool:
    remedy = _remedy(row, s)
    return remedy is not None and remedy.result == "verified"


def _remedy_settled(row: Row, s: Situation) -> bool:
    """Its remediation has a verdict: a held opening is judged now, not at its hold's end
    (verified: dropped at once; failed: sent without waiting out the deadline)."""
    remedy = _remedy(row, s)
    return remedy is not None and remedy.result not in ("", "running")


def _remedied(remedy: Remedy | None, now_ms: int) -> object:
    """An opening and its incident's remediation: wait for it, or send it."""
    if remedy is None:
        return _SEND
    if remedy.result in ("", "running") and now_ms < remedy.until_ms:
        return _Hold(remedy.until_ms)
    return _SEND
