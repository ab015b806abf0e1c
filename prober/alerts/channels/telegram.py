"""Telegram Bot API: `sendMessage` with parse_mode HTML, a bold title and a line per event.

Every piece of text goes through `html.escape`, and the only tags are the ones written
here (`<b>`, `<a href>`), so a `<script>` or `<b>` in a target's error arrives as text.
Telegram's limit is 4096 characters; events that do not fit are counted in a final
"…and N more" line. The bot token is in the URL path: it is replaced by *** in every
answer and error, which also read Telegram's JSON `retry_after` when a 429 has no
Retry-After header.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

from prober.alerts.channels.base import HttpRequest, NotifyError, post
from prober.alerts.channels.context import SendContext
from prober.alerts.channels.fitting import fit, join_within
from prober.alerts.message import Message
from prober.config.settings import TelegramNotifier

TEXT_LIMIT = 4096
ENTRY_LIMIT = 1000  # one event's line, escaped: a long list of dependents is cut here
_RETRY_AFTER = re.compile(r'"retry_after"\s*:\s*(\d+(?:\.\d+)?)')


def build_payload(message: Message, notifier: TelegramNotifier) -> list[HttpRequest]:
    token = notifier.bot_token.get_secret_value()
    head = f"<b>{fit(message.title, ENTRY_LIMIT, html.escape)}</b>"
    entries = [
        fit(words, ENTRY_LIMIT, html.escape)
        + (f' (<a href="{html.escape(event.link)}">monitor page</a>)' if event.link else "")
        for event, words in zip(message.events, message.lines, strict=True)
    ]
    payload = {
        "chat_id": notifier.chat_id,
        "text": join_within([head, *entries], TEXT_LIMIT),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }
    url = f"{notifier.api_url.rstrip('/')}/bot{token}/sendMessage"
    return [HttpRequest.json(url, payload)]


async def send(message: Message, notifier: TelegramNotifier, ctx: SendContext) -> str:
    token = notifier.bot_token.get_secret_value()
    answers: list[str] = []
    for request in build_payload(message, notifier):
        try:
            answers.append(redact(await post(ctx.session, request, ctx.timeout), token))
        except NotifyError as exc:
            text = redact(str(exc), token)
            retry_after = exc.retry_after
            if retry_after is None and (found := _RETRY_AFTER.search(text)):
                retry_after = float(found.group(1))
            raise NotifyError(text, permanent=exc.permanent, retry_after=retry_after) from None
    return "; ".join(answers)


def redact(text: str, token: str) -> str:
    """`text` without the bot token, as written or as percent-encoded in a URL."""
    if not token:
        return text
    for form in {token, quote(token), quote(token, safe="")}:
        text = text.replace(form, "***")
    return text
