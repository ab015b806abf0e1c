"""ntfy: one JSON publish to the server's root, the topic in the body.

The configured URL is the topic's (`https://ntfy.sh/mytopic`); JSON publishing goes to
the URL one level up (`https://ntfy.sh/`) with `"topic": "mytopic"`, which also works for
a server behind a path prefix. ntfy shows plain text: `clean()` already made every line
printable, so nothing is escaped; the message is kept under ntfy's 4096-byte limit (past
it ntfy turns the text into an attachment). Priority is the notifier's, else 5 for an
outage, 4 for a reminder and 3 for the rest; a `token` is sent as a Bearer token.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Kind, Message
from prober.config.settings import NtfyNotifier

MESSAGE_LIMIT = 4096  # bytes of UTF-8


def build_payload(message: Message, notifier: NtfyNotifier) -> list[HttpRequest]:
    root, topic = split_topic(notifier.url.get_secret_value())
    payload: dict[str, object] = {
        "topic": topic,
        "title": message.title,
        "message": _within_bytes("\n".join(message.lines), MESSAGE_LIMIT),
        "priority": notifier.priority or priority(message),
        "tags": tags(message),
    }
    links = [event.link for event in message.events if event.link]
    if links:
        payload["click"] = links[0]
    headers = {}
    if notifier.token is not None:
        headers["Authorization"] = f"Bearer {notifier.token.get_secret_value()}"
    return [HttpRequest.json(root, payload, headers)]


async def send(message: Message, notifier: NtfyNotifier, ctx: SendContext) -> str:
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)


def split_topic(url: str) -> tuple[str, str]:
    """`https://ntfy.sh/alerts` -> (`https://ntfy.sh/`, `alerts`)."""
    parts = urlsplit(url)
    base, _, topic = parts.path.rstrip("/").rpartition("/")
    return urlunsplit((parts.scheme, parts.netloc, base + "/", "", "")), topic


def priority(message: Message) -> int:
    if message.events[0].recovered or message.kind is Kind.REMEDIATED:
        return 3
    if message.kind is Kind.OPENED or message.kind is Kind.PROBER_NETWORK:
        return 5
    return 4 if message.kind is Kind.REMINDER else 3


def tags(message: Message) -> list[str]:
    if message.kind is Kind.TEST:
        return ["test_tube"]
    if message.events[0].recovered or message.kind is Kind.REMEDIATED:
        return ["white_check_mark"]
    return ["warning"] if message.kind is Kind.CERT_EXPIRING else ["rotating_light"]


def _within_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode("utf-8", "ignore") + "…"
