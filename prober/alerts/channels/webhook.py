"""Generic webhook: the whole message as JSON, optionally signed.

Headers: `Idempotency-Key` (the same on every attempt of one message: a receiver that
saw it already can drop the repeat) and, with `secret`, `X-Prober-Signature:
sha256=<hex HMAC-SHA256 of the body with the secret>`. The body carries the key too.

Each event's `remediation` is null unless its monitor's `remediate` made an attempt for the
incident (an opening sent after it, a "remediated" event): then its result (verified,
failed, timed_out, interrupted, running), exit code, start and end, and last output.
"""

from __future__ import annotations

import hashlib
import hmac

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Event, Message, Remediation, clean
from prober.config.settings import WebhookNotifier

SIGNATURE_HEADER = "X-Prober-Signature"


def build_payload(message: Message, notifier: WebhookNotifier) -> list[HttpRequest]:
    payload = {
        "idempotency_key": message.key,
        "kind": message.kind.value,
        "test": message.test,
        "title": message.title,
        "text": message.text,
        "events": [_event(e) for e in message.events],
    }
    headers = {name: value.get_secret_value() for name, value in notifier.headers.items()}
    headers["Idempotency-Key"] = message.key
    request = HttpRequest.json(notifier.url.get_secret_value(), payload, headers)
    if notifier.secret is not None:
        digest = hmac.new(
            notifier.secret.get_secret_value().encode(), request.body, hashlib.sha256
        ).hexdigest()
        request = HttpRequest(
            request.url, request.body, {**request.headers, SIGNATURE_HEADER: f"sha256={digest}"}
        )
    return [request]


def _event(event: Event) -> dict[str, object]:
    duration = event.duration
    return {
        "kind": event.kind.value,
        "monitor": event.monitor_id or None,
        "name": event.monitor_name,
        "since": event.since.isoformat(),
        "until": event.until.isoformat() if event.until else None,
        "duration_s": None if duration is None else round(duration.total_seconds()),
        "cause": clean(event.cause) or None,
        "link": event.link or None,
        "dependents": list(event.dependents),
        "cert_expires": event.cert_expires.isoformat() if event.cert_expires else None,
        "incident": event.incident_key or None,
        "remediation": None if event.attempt is None else _remediation(event.attempt),
    }


def _remediation(attempt: Remediation) -> dict[str, object]:
    return {
        "result": attempt.result,
        "action": attempt.action,
        "exit_code": attempt.exit_code,
        "timed_out": attempt.timed_out,
        "started": attempt.started.isoformat(),
        "ended": attempt.ended.isoformat() if attempt.ended else None,
        "output_tail": attempt.output_tail,
    }


async def send(message: Message, notifier: WebhookNotifier, ctx: SendContext) -> str:
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)
