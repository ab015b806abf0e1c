"""Alertmanager API v2: prober's confirmed incidents as alerts, maintenance as silences.

Every event of a message is one alert in one `POST /api/v2/alerts`. An alert is named by
its labels: `alertname` (`ProbeDown` for an incident), `monitor`, `location`, `severity`
("critical", or the notifier's `labels.severity`), `depends_on` (the monitor's parents,
comma-separated, when it has any: for inhibit rules) and the notifier's `labels`. Names
and causes are annotations, so renaming a monitor keeps its alert. `startsAt` is the
incident's start; an opening and its re-sends (reminders, every `repeat`) have no
`endsAt`, so Alertmanager keeps the alert firing for its resolve_timeout after each; the
resolution sends `endsAt` = the first success. `generatorURL` is the monitor's page when
`settings.public_url` is set.

A SILENCE message (a maintenance window started, `silences = true`) is one `POST
/api/v2/silences` per window: `monitor` matching the window's monitors (any, for "*") and
`location` this prober's, from the window's start to its end. A `notify-test` message is
an alert `ProberTest` that ends five minutes after it was sent.
"""

from __future__ import annotations

import datetime as dt
import re

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Event, Kind, Message, clean
from prober.config.settings import AlertmanagerNotifier

ALERTNAMES = {
    Kind.OPENED: "ProbeDown",
    Kind.REMINDER: "ProbeDown",
    Kind.RESOLVED: "ProbeDown",
    Kind.CERT_EXPIRING: "ProbeCertificateExpiring",
    Kind.PROBER_NETWORK: "ProberNetworkDown",
    Kind.TEST: "ProberTest",
    Kind.REGIONAL: "ProbeRegional",
}
TEST_LASTS = dt.timedelta(minutes=5)
CREATED_BY = "prober"


def build_payload(message: Message, notifier: AlertmanagerNotifier) -> list[HttpRequest]:
    base = notifier.url.rstrip("/")
    if message.kind is Kind.SILENCE:
        return [HttpRequest.json(f"{base}/api/v2/silences", _silence(e)) for e in message.events]
    alerts = [
        _alert(message, event, words, notifier)
        for event, words in zip(message.events, message.lines, strict=True)
    ]
    return [HttpRequest.json(f"{base}/api/v2/alerts", alerts)]


async def send(message: Message, notifier: AlertmanagerNotifier, ctx: SendContext) -> str:
    # Several silences: when one fails the dispatcher sends them all again; Alertmanager
    # then holds two equal silences for a while, which silence exactly what one would.
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)


def _alert(
    message: Message, event: Event, words: str, notifier: AlertmanagerNotifier
) -> dict[str, object]:
    kind = event.kind
    labels = {
        "alertname": ALERTNAMES[kind],
        "monitor": event.monitor_id,
        "location": event.location,
        "severity": "warning" if kind in (Kind.CERT_EXPIRING, Kind.REGIONAL) else "critical",
        "depends_on": ",".join(event.parents),
        **notifier.labels,
    }
    annotations = {
        "summary": clean(words, 1000),
        "title": message.title,
        "monitor_name": "" if kind is Kind.TEST else clean(event.monitor_name, 200),
        "cause": clean(event.cause),
        "dependents": clean(", ".join(event.dependents), 1000),
    }
    alert: dict[str, object] = {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": _time(event.since),
    }
    if kind is Kind.TEST:
        alert["endsAt"] = _time(event.since + TEST_LASTS)
    elif event.recovered and event.until is not None:
        alert["endsAt"] = _time(event.until)
    if event.link:
        alert["generatorURL"] = event.link
    return alert


def _silence(event: Event) -> dict[str, object]:
    if "*" in event.scope:
        monitors = ".+"
    else:
        monitors = "|".join(re.escape(m) for m in event.scope)
    matchers = [{"name": "monitor", "value": monitors, "isRegex": True, "isEqual": True}]
    if event.location:
        matchers.append(
            {"name": "location", "value": event.location, "isRegex": False, "isEqual": True}
        )
    until = event.until or event.since
    return {
        "matchers": matchers,
        "startsAt": _time(event.since),
        "endsAt": _time(until),
        "createdBy": CREATED_BY,
        "comment": clean(f"Maintenance: {event.monitor_name}", 500),
    }


def _time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, to the millisecond: `2026-12-03T09:00:00.000Z`."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
