"""Discord webhook: the title as `content`, one embed with a line per event.

Discord renders markdown in content and embeds, so every markdown character in the text
(`\\ * _ ~ ` | > #` and `[ ] ( )`) is backslash-escaped, and `allowed_mentions` parses
nothing: an `@everyone` or `<@id>` in a target's error is shown, never pings. Links are
the ones built here. Limits: content 2000 characters, embed title 256, description 4096
(an event's line at most 1000); events that do not fit are counted in "…and N more".
"""

from __future__ import annotations

import re

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.channels.fitting import fit, join_within
from prober.alerts.message import Kind, Message
from prober.config.settings import DiscordNotifier

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
ENTRY_LIMIT = 1000  # one event's line, escaped: a long list of dependents is cut here
RED, GREEN, ORANGE = 0xD93025, 0x2DA44E, 0xF08C00
_MARKDOWN = re.compile(r"([\\*_~`|>#\[\]()])")


def build_payload(message: Message, notifier: DiscordNotifier) -> list[HttpRequest]:
    links = [event.link for event in message.events if event.link]
    embed: dict[str, object] = {
        "title": fit(message.title, TITLE_LIMIT, escape),
        "description": _description(message),
        "color": color(message),
    }
    if links:
        embed["url"] = links[0]
    payload = {
        "content": fit(message.title, CONTENT_LIMIT, escape),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }
    return [HttpRequest.json(notifier.url.get_secret_value(), payload)]


async def send(message: Message, notifier: DiscordNotifier, ctx: SendContext) -> str:
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)


def color(message: Message) -> int:
    if message.events[0].recovered or message.kind in (Kind.TEST, Kind.REMEDIATED):
        return GREEN
    return ORANGE if message.kind is Kind.CERT_EXPIRING else RED


def escape(text: str) -> str:
    """Text as Discord markdown shows it literally."""
    return _MARKDOWN.sub(r"\\\1", text)


def _description(message: Message) -> str:
    entries = [
        fit(words, ENTRY_LIMIT, escape)
        + (f" ([monitor page]({_url(event.link)}))" if event.link else "")
        for event, words in zip(message.events, message.lines, strict=True)
    ]
    return join_within(entries, DESCRIPTION_LIMIT)


def _url(url: str) -> str:
    """A URL that cannot close the masked link around it."""
    return url.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
