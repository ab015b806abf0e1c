"""One module per channel, one signature, one registry: `type` in [[notifiers]] is the key.

Each module has a pure `build_payload(message, notifier)` (pinned by exact-payload tests)
and `async send(message, notifier, ctx) -> str` that returns the channel's answer or
raises NotifyError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prober.alerts.channels import (
    alertmanager,
    discord,
    email,
    ntfy,
    pagerduty,
    slack,
    telegram,
    webhook,
)
from prober.alerts.channels.base import NotifyError
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Message
from prober.config.settings import Notifier

Send = Callable[[Message, Any, SendContext], Awaitable[str]]

SENDERS: dict[str, Send] = {
    "webhook": webhook.send,
    "slack": slack.send,
    "discord": discord.send,
    "telegram": telegram.send,
    "email": email.send,
    "ntfy": ntfy.send,
    "pagerduty": pagerduty.send,
    "alertmanager": alertmanager.send,
}


async def send(message: Message, notifier: Notifier, ctx: SendContext) -> str:
    """Send through the notifier's channel: its answer, or NotifyError."""
    return await SENDERS[notifier.type](message, notifier, ctx)


__all__ = ["SENDERS", "NotifyError", "SendContext", "send"]
