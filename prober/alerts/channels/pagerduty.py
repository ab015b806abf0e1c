"""PagerDuty Events API v2: one event per monitor, keyed by the incident.

PagerDuty groups alerts by `dedup_key` itself, so a grouped message becomes one request
per event: "trigger" for an outage, a reminder, an expiring certificate or the prober's
network going down; "resolve" (routing key, action and dedup key only) when it is over.
The dedup key is the incident's key (the message's when an event has none), so a resend
or a reminder updates the same PagerDuty incident. Text is plain JSON: `summary` is the
event's line (clean, at most 1024 characters). A `notify-test` message says [TEST] and
uses its own dedup key, so it can never touch a real incident.
"""

from __future__ import annotations

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Event, Kind, Message, clean
from prober.config.settings import PagerDutyNotifier

SUMMARY_LIMIT = 1024
SOURCE = "prober"


def build_payload(message: Message, notifier: PagerDutyNotifier) -> list[HttpRequest]:
    key = notifier.routing_key.get_secret_value()
    return [
        HttpRequest.json(notifier.api_url, _event(message, event, words, key))
        for event, words in zip(message.events, message.lines, strict=True)
        if event.kind is not Kind.REMEDIATED  # refused by the config: nothing to page about
    ]


async def send(message: Message, notifier: PagerDutyNotifier, ctx: SendContext) -> str:
    # One request per event: when one fails, the dispatcher resends them all, and
    # PagerDuty folds the repeats into the same incidents by dedup_key.
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)


def _event(message: Message, event: Event, words: str, routing_key: str) -> dict[str, object]:
    if message.test:
        dedup_key = f"prober-test-{message.key}"
    else:
        dedup_key = event.incident_key or message.key
    if event.recovered:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    marks = "[TEST] " if message.test else ""
    if message.title_prefix:
        marks += f"[{clean(message.title_prefix, 80)}] "
    payload: dict[str, object] = {
        "summary": clean(marks + words, SUMMARY_LIMIT),
        "source": SOURCE,
        "severity": "warning" if event.kind in (Kind.CERT_EXPIRING, Kind.REGIONAL) else "critical",
        "timestamp": event.since.isoformat(),
    }
    if event.monitor_id:
        payload["component"] = event.monitor_id
    payload["custom_details"] = {
        "cause": clean(event.cause) or None,
        "since": event.since.isoformat(),
        "link": event.link or None,
        "dependents": list(event.dependents),
    }
    body: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload,
    }
    if event.link:
        body["links"] = [{"href": event.link, "text": "Monitor page"}]
    return body
