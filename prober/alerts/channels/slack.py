"""Slack incoming webhook: Block Kit sections, with the title as the fallback `text`.

Slack reads `&`, `<` and `>` as markup (`<!channel>` pings, `<url|text>` links), so every
piece of text is escaped to `&amp;`, `&lt;`, `&gt;` before it goes in, and the only links
are the ones built here, `<url|text>` from escaped parts. Limits: a section's text is at
most 3000 characters (cut without splitting an entity) and a message has at most 50
blocks: past that, the remaining events are named in one final "…and N more" section.
"""

from __future__ import annotations

from prober.alerts.channels.base import HttpRequest, post
from prober.alerts.channels.context import SendContext
from prober.alerts.channels.fitting import fit
from prober.alerts.message import Message, clean
from prober.config.settings import SlackNotifier

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
LINK_TEXT = "Open the monitor page"


def build_payload(message: Message, notifier: SlackNotifier) -> list[HttpRequest]:
    title = escape(message.title)
    blocks = [_section(f"*{title}*")]
    events = list(zip(message.events, message.lines, strict=True))
    room = BLOCK_LIMIT - 1  # after the title
    shown = events if len(events) <= room else events[: room - 1]
    for event, words in shown:
        link = f"\n{link_to(event.link, LINK_TEXT)}" if event.link else ""
        blocks.append(_section(fit(words, SECTION_LIMIT - len(link), escape) + link))
    rest = events[len(shown) :]
    if rest:
        names = ", ".join(clean(event.monitor_name, 120) for event, _ in rest)
        blocks.append(_section(fit(f"…and {len(rest)} more: {names}", SECTION_LIMIT, escape)))
    payload = {"text": title, "blocks": blocks}
    return [HttpRequest.json(notifier.url.get_secret_value(), payload)]


async def send(message: Message, notifier: SlackNotifier, ctx: SendContext) -> str:
    answers = [await post(ctx.session, r, ctx.timeout) for r in build_payload(message, notifier)]
    return "; ".join(answers)


def escape(text: str) -> str:
    """Text as Slack mrkdwn shows it literally: no mentions, links or entities of its own."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link_to(url: str, text: str) -> str:
    """`<url|text>`; a `|` in the URL would end it early, so it is percent-encoded."""
    return f"<{escape(url.replace('|', '%7C'))}|{escape(text)}>"


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
