"""What an alert says: events, the message that carries them, and its words.

Pure: no I/O, no clock. A `Message` is what one notifier sends in one go: one or more
events of one kind (incidents opening within `alert_group_wait` travel together). Channel
modules turn a Message into their payload; the words (titles, lines) are made here once so
every channel says the same thing, and each channel escapes them for its own markup.

Target-controlled text (a check's error: a response body excerpt, a DNS answer, a TLS
error) is only ever a value: `clean()` flattens it to one printable line of bounded length
before any channel sees it, and channels escape it again for their markup. No template is
ever evaluated.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re

from prober.subscriptions import Mail


class Kind(enum.StrEnum):
    OPENED = "opened"  # an incident was confirmed
    RESOLVED = "resolved"  # it ended
    REMINDER = "reminder"  # still down, `repeat` after the last message
    CERT_EXPIRING = "cert_expiring"  # a certificate entered warn_days
    PROBER_NETWORK = "prober_network"  # every canary fails: the prober's own network is down
    TEST = "test"  # `prober notify-test`: nothing happened; never stored, never routed
    REGIONAL = "regional"  # failing at fewer than `quorum` locations, for down_after
    SILENCE = "silence"  # a maintenance window started: an Alertmanager silence (`silences`)
    SUBSCRIBER = "subscriber"  # to one visitor who subscribed (prober.subscriptions): `mail`
    REMEDIATED = "remediated"  # a remediation was verified: "recovered automatically"


CAUSE_LIMIT = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(text: str, limit: int = CAUSE_LIMIT) -> str:
    """One printable line of at most `limit` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class Remediation:
    """A remediation attempt as an alert tells it (prober.store.remediations.Attempt)."""

    result: str  # verified | failed | timed_out | interrupted | running (not judged yet)
    action: str  # what ran: the command's program name, or "webhook NOTIFIER_ID"; no arguments
    started: dt.datetime
    ended: dt.datetime | None
    exit_code: int | None  # negative: killed by that signal
    timed_out: bool
    output_tail: str  # its last output, redacted when it was recorded


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to one monitor (or, for PROBER_NETWORK, to the prober)."""

    kind: Kind
    monitor_id: str  # "" for PROBER_NETWORK and TEST
    monitor_name: str  # TEST: the id of the notifier being tested
    since: dt.datetime  # the incident's first down result; the certificate check; canaries failing
    cause: str = ""  # what was seen vs wanted (a check's error), target-controlled
    until: dt.datetime | None = None  # RESOLVED: the first success; REMINDER: as of when;
    # PROBER_NETWORK: when the network came back
    link: str = ""  # the monitor's page on the public status page, "" when it has none
    dependents: tuple[str, ...] = ()  # names of monitors down under this one (depends_on)
    cert_expires: dt.datetime | None = None  # CERT_EXPIRING
    incident_key: str = ""  # stable per incident: PagerDuty's dedup_key
    location: str = ""  # the prober's settings.location
    parents: tuple[str, ...] = ()  # ids of the monitors this one depends_on
    scope: tuple[str, ...] = ()  # SILENCE: the window's monitors ("*": all); the name is its title
    # REGIONAL: the failing locations, and how many locations probe the monitor
    locations: tuple[str, ...] = ()
    of_locations: int = 0
    # OPENED sent by an `escalate` step: how long after the opening alert went out
    escalated_after: dt.timedelta | None = None
    # OPENED of a monitor with `remediate`: how its remediation went (exit code, output tail)
    remediation: str = ""
    # OPENED and REMEDIATED: the attempt itself (webhook JSON); REMEDIATED: `until` is when
    # it was seen verified
    attempt: Remediation | None = None

    @property
    def duration(self) -> dt.timedelta | None:
        return None if self.until is None else self.until - self.since

    @property
    def recovered(self) -> bool:
        """RESOLVED, or a PROBER_NETWORK event that says the network is back."""
        return self.kind is Kind.RESOLVED or (
            self.kind is Kind.PROBER_NETWORK and self.until is not None
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """What one notifier sends at once: events of one kind, in order."""

    kind: Kind
    events: tuple[Event, ...]
    key: str  # idempotency key: the same on every attempt to send this message
    title_prefix: str = ""  # the status page's title, so several probers can share a channel
    test: bool = False  # `prober notify-test`: clearly marked, nothing happened
    zone: dt.tzinfo = dt.UTC  # times are written in settings.timezone
    mail: Mail | None = None  # SUBSCRIBER: the whole mail, words and recipient

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("a message needs at least one event")

    @property
    def title(self) -> str:
        return title(self)

    @property
    def lines(self) -> list[str]:
        return [line(event, self.zone) for event in self.events]

    @property
    def text(self) -> str:
        """Plain text: the title, then a line per event."""
        return "\n".join([self.title, *self.lines])


def notify_test_message(
    notifier_id: str,
    now: dt.datetime,
    *,
    title_prefix: str = "",
    link: str = "",
    zone: dt.tzinfo = dt.UTC,
) -> Message:
    """What `prober notify-test` sends: a test in its first words, nothing about an outage.

    Each channel sends it as it sends an alert (the path under test), with its own
    idempotency key; PagerDuty gets a dedup key of its own, so it never touches a real
    incident."""
    stamp_ms = round(now.timestamp() * 1000)
    event = Event(Kind.TEST, "", notifier_id, now, link=link)
    key = f"test/{notifier_id}/{stamp_ms}"
    return Message(Kind.TEST, (event,), key, title_prefix=title_prefix, test=True, zone=zone)


def title(message: Message) -> str:
    events = message.events
    first, n = events[0], len(events)
    kind = message.kind
    if message.mail is not None:
        return clean(message.mail.subject, 200)
    if kind is Kind.TEST:  # TEST first: the words a chat preview or a lock screen shows
        source = f"prober [{clean(message.title_prefix, 80)}]" if message.title_prefix else "prober"
        name = clean(first.monitor_name, 80)
        return clean(f"TEST from {source}: this is a test of notifier {name}, nothing is down", 200)
    if kind is Kind.OPENED and all(e.escalated_after is not None for e in events):
        words = f"ESCALATED: {first.monitor_name}" if n == 1 else f"ESCALATED: {n} monitors"
    elif kind is Kind.OPENED:
        words = f"DOWN: {first.monitor_name}" if n == 1 else f"DOWN: {n} monitors"
    elif kind is Kind.RESOLVED:
        words = f"RESOLVED: {first.monitor_name}" if n == 1 else f"RESOLVED: {n} monitors"
    elif kind is Kind.REMINDER:
        words = f"STILL DOWN: {first.monitor_name}" if n == 1 else f"STILL DOWN: {n} monitors"
    elif kind is Kind.CERT_EXPIRING:
        words = (
            f"CERTIFICATE EXPIRING: {first.monitor_name}"
            if n == 1
            else f"CERTIFICATES EXPIRING: {n} monitors"
        )
    elif kind is Kind.SILENCE:
        words = f"MAINTENANCE: {first.monitor_name}" if n == 1 else f"MAINTENANCE: {n} windows"
    elif kind is Kind.REGIONAL:
        words = f"REGIONAL: {first.monitor_name}" if n == 1 else f"REGIONAL: {n} monitors"
    elif kind is Kind.REMEDIATED:
        words = (
            f"RECOVERED AUTOMATICALLY: {first.monitor_name}"
            if n == 1
            else f"RECOVERED AUTOMATICALLY: {n} monitors"
        )
    else:
        words = "PROBER NETWORK BACK" if first.recovered else "PROBER NETWORK DOWN"
    prefix = f"[{clean(message.title_prefix, 80)}] " if message.title_prefix else ""
    return clean(("[TEST] " if message.test else "") + prefix + words, 200)


def line(event: Event, zone: dt.tzinfo = dt.UTC) -> str:
    """One event in words: who, what was seen, since when, how long."""
    since = stamp(event.since, zone)
    name = clean(event.monitor_name, 120)
    cause = clean(event.cause) if event.cause else ""
    kind = event.kind
    if kind is Kind.TEST:
        text = (
            f"Nothing is down: prober notify-test sent this at {since} to check that "
            f"notifier {name} reaches you"
        )
    elif kind is Kind.OPENED or kind is Kind.REMINDER:
        text = f"{name} is down since {since}"
        if kind is Kind.REMINDER:
            text += f" ({span(event.duration)} so far)"
        if cause:
            text += f": {cause}"
        if event.dependents:
            names = ", ".join(clean(d, 120) for d in event.dependents)
            text += f". Also down, depending on it: {names}"
        if kind is Kind.OPENED and event.remediation:
            text += f". {clean(event.remediation, 600)}"
        if kind is Kind.OPENED and event.escalated_after is not None:
            text = f"Escalated after {short(event.escalated_after)}: {text}"
    elif kind is Kind.RESOLVED:
        duration = event.duration
        text = f"{name} is up again after {span(duration) if duration else 'a while'}"
        text += f" (down since {since}"
        text += f", cause: {cause})" if cause else ")"
    elif kind is Kind.CERT_EXPIRING:
        expires = stamp(event.cert_expires, zone) if event.cert_expires else "soon"
        text = f"{name}: the TLS certificate expires {expires}"
        if cause:
            text += f" ({cause})"
    elif kind is Kind.REGIONAL:
        where = ", ".join(clean(p, 60) for p in event.locations)
        text = (
            f"{name} fails from {where} since {since} ({len(event.locations)} of "
            f"{event.of_locations} locations: a regional problem, not down)"
        )
        if cause:
            text += f": {cause}"
    elif kind is Kind.REMEDIATED:
        text = remediated(event, zone)
    elif kind is Kind.SILENCE:
        until = stamp(event.until, zone) if event.until else "its end"
        text = f"Maintenance {name} from {since} to {until}: {', '.join(event.scope)}"
    elif event.recovered:
        text = f"The prober's network is back (it failed from {since} for {span(event.duration)})"
    else:
        text = (
            f"The prober's own network is down since {since}: every canary fails, so checks "
            "report unknown instead of down"
        )
    return text


def remediated(event: Event, zone: dt.tzinfo = dt.UTC) -> str:
    """`API recovered automatically: down since ..., restart-api ran at ..., verified 1m 30s
    after it went down. No down alert was sent. Its last output: ...`"""
    name = clean(event.monitor_name, 120)
    text = f"{name} recovered automatically: down since {stamp(event.since, zone)}"
    if event.cause:
        text += f" ({clean(event.cause)})"
    attempt = event.attempt
    if attempt is not None:
        text += f", {clean(attempt.action, 120)} ran at {stamp(attempt.started, zone)}"
    if event.duration is not None:
        text += f", verified {span(event.duration)} after it went down"
    text += ". No down alert was sent"
    tail = clean(attempt.output_tail, 600) if attempt is not None else ""
    return text + (f". Its last output: {tail}" if tail else "")


def stamp(moment: dt.datetime, zone: dt.tzinfo = dt.UTC) -> str:
    """`2026-11-23 13:05 KST`, in the status page's zone."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def span(delta: dt.timedelta | None) -> str:
    """`3h 05m`, `12m 30s`, `45s`."""
    if delta is None:
        return "a while"
    total = max(0, round(delta.total_seconds()))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def short(delta: dt.timedelta) -> str:
    """`15m`, `1h 30m`, `2s`: a configured delay, without the zero parts."""
    total = max(0, round(delta.total_seconds()))
    parts = [(total // 86_400, "d"), (total // 3600 % 24, "h"), (total // 60 % 60, "m"),
             (total % 60, "s")]  # fmt: skip
    return " ".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
