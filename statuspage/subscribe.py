"""The subscription routes (`settings.subscriptions`; off: every one is 404).

| route | does |
|---|---|
| `POST /subscribe` | form field `email` (and `lang`): 202 and "check your inbox", always the same |
| `GET /subscribe/confirm/{token}` | a page with a button (nothing changes) |
| `POST /subscribe/confirm/{token}` | confirms: 200 "subscribed", or 410 when the link is dead |
| `GET /unsubscribe/{token}` | a page with a button (nothing changes) |
| `POST /unsubscribe/{token}` | unsubscribes: 200, 410 for a dead link; RFC 8058's one-click |

Links in mail are GETs that change nothing: mail scanners and clients fetch links before
(or instead of) a person, so a GET that confirmed would confirm anyone's address, and one
that unsubscribed would unsubscribe them. The button posts to the page's own URL, so the
token never appears in a page body.

No enumeration: a sign-up is answered before anything is looked up (the probing process
gets it afterwards, in the background), so known, pending, rate-limited and unknown
addresses get the same status and the same bytes, at the same speed. Per client (the
address `statuspage.clients.client_address` names; `settings.trusted_proxies`), POSTs
draw on a bucket: 429 when empty. The web process stores nothing: it forwards to the
probing process over the control socket (prober.alerts.subscribers does the rest).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp import web

from prober.subscriptions import LANGUAGES, TOKEN, digest, normalise
from statuspage.app import PUBLISHER, TEMPLATES
from statuspage.clients import client_address
from statuspage.i18n import Translator

log = logging.getLogger(__name__)

FORM_LIMIT = 2048  # bytes of a sign-up's body
BURST = 5  # POSTs a client may make at once ...
REFILL_PER_S = 1 / 60  # ... and one more a minute after that
CLIENTS = 10_000  # buckets kept (least recently used out)
IN_FLIGHT = 64  # sign-ups being forwarded at once; past it they are dropped

# -> "ok" | "confirmed" | "invalid" | "off": prober.runtime.control.Client.subscriptions
Forward = Callable[[Mapping[str, str]], Awaitable[str]]


class Gate:
    """Per-client buckets and the way to the probing process."""

    def __init__(self, forward: Forward) -> None:
        self._forward = forward
        self._buckets: collections.OrderedDict[object, tuple[float, float]] = (
            collections.OrderedDict()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0  # sign-ups answered but never forwarded (IN_FLIGHT)
        self._said = -60.0

    def allow(self, client: object) -> bool:
        now = time.monotonic()
        tokens, at = self._buckets.pop(client, (float(BURST), now))
        tokens = min(float(BURST), tokens + (now - at) * REFILL_PER_S)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)
        while len(self._buckets) > CLIENTS:
            self._buckets.popitem(last=False)
        return allowed

    def later(self, asked: Mapping[str, str]) -> None:
        """Forward after answering; a sign-up lost here (the probing process away, a
        flood) is one the visitor repeats."""
        if len(self._tasks) >= IN_FLIGHT:
            self.dropped += 1
            if time.monotonic() - self._said >= 60.0:  # a line a minute at most
                self._said = time.monotonic()
                log.warning("subscriptions: too many sign-ups at once; dropped=%d", self.dropped)
            return
        task = asyncio.create_task(self._send(asked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, asked: Mapping[str, str]) -> None:
        if await self.ask(asked) is None:
            log.warning("subscriptions: the probing process did not take a sign-up")

    async def ask(self, asked: Mapping[str, str]) -> str | None:
        try:
            return await self._forward(asked)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)


GATE = web.AppKey("subscriptions", Gate)

# page -> (heading key, text key, button key or "")
PAGES = {
    "sent": ("subscribe.sent_title", "subscribe.sent", ""),
    "invalid": ("subscribe.invalid_title", "subscribe.invalid", ""),
    "busy": ("subscribe.busy_title", "subscribe.busy", ""),
    "confirm": ("subscribe.confirm_title", "subscribe.confirm", "subscribe.confirm_button"),
    "confirmed": ("subscribe.confirmed_title", "subscribe.confirmed", ""),
    "expired": ("subscribe.expired_title", "subscribe.expired", ""),
    "unsubscribe": (
        "subscribe.unsubscribe_title",
        "subscribe.unsubscribe",
        "subscribe.unsubscribe_button",
    ),
    "unsubscribed": ("subscribe.unsubscribed_title", "subscribe.unsubscribed", ""),
    "unsubscribe_expired": ("subscribe.expired_title", "subscribe.unsubscribe_expired", ""),
    "unavailable": ("subscribe.unavailable_title", "subscribe.unavailable", ""),
}


def _gate(request: web.Request) -> Gate:
    """The gate, or 404 when subscriptions are off (now: a reload may turn them off)."""
    gate = request.app.get(GATE)
    if gate is None or request.app[PUBLISHER].config.settings.subscriptions is None:
        raise web.HTTPNotFound(text="not found\n")
    return gate


def _lang(request: web.Request, asked: str = "") -> str:
    wanted = asked or request.query.get("lang", "")
    return wanted if wanted in LANGUAGES else request.app[PUBLISHER].config.settings.language


def page(request: web.Request, status: int, name: str, lang: str) -> web.Response:
    heading, text, button = PAGES[name]
    t = Translator(lang)
    settings = request.app[PUBLISHER].config.settings
    home = "/" if lang == settings.language else f"/?lang={lang}"
    body = (
        request.app[TEMPLATES]
        .get_template("subscribe_page.html")
        .render(
            lang=lang,
            title=settings.title,
            heading=t(heading),
            text=t(text),
            button=t(button) if button else "",
            home=home,
            back=t("subscribe.back"),
        )
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def _form(request: web.Request) -> dict[str, list[str]] | None:
    """The urlencoded body ({} when it is not one), or None when it is too big."""
    if (request.content_length or 0) > FORM_LIMIT:
        return None
    data = bytearray()
    while len(data) <= FORM_LIMIT:
        chunk = await request.content.read(FORM_LIMIT + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > FORM_LIMIT:
        return None
    try:
        return urllib.parse.parse_qs(data.decode(), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):  # not UTF-8, too many fields
        return {}


def _client(request: web.Request) -> object:
    trusted = request.app[PUBLISHER].config.settings.trusted_proxies
    return client_address(request, trusted)


async def subscribe(request: web.Request) -> web.Response:
    gate = _gate(request)
    lang = _lang(request)
    if not gate.allow(_client(request)):
        return page(request, 429, "busy", lang)
    form = await _form(request)
    if form is None:
        return page(request, 413, "invalid", lang)
    lang = _lang(request, (form.get("lang") or [""])[0])
    given = form.get("email", [])
    address = normalise(given[0]) if len(given) == 1 else None
    if address is None:
        return page(request, 400, "invalid", lang)
    gate.later({"action": "subscribe", "address": address, "lang": lang})
    return page(request, 202, "sent", lang)


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    if not TOKEN.fullmatch(token):
        raise web.HTTPNotFound(text="not found\n")
    return token


async def confirm_page(request: web.Request) -> web.Response:
    _gate(request)
    _token(request)
    return page(request, 200, "confirm", _lang(request))


async def confirm(request: web.Request) -> web.Response:
    gate, lang = _gate(request), _lang(request)
    token = _token(request)
    if not gate.allow(_client(request)):
        return page(request, 429, "busy", lang)
    answer = await gate.ask({"action": "confirm", "digest": digest(token)})
    if answer is None:
        return page(request, 503, "unavailable", lang)
    if answer == "confirmed":
        return page(request, 200, "confirmed", lang)
    return page(request, 410, "expired", lang)


async def unsubscribe_page(request: web.Request) -> web.Response:
    _gate(request)
    _token(request)
    return page(request, 200, "unsubscribe", _lang(request))


async def unsubscribe(request: web.Request) -> web.Response:
    """The button, and RFC 8058's one-click POST (body `List-Unsubscribe=One-Click`, not
    needed: the token says it all). A dead token (used, or from an old mail) is 410."""
    gate, lang = _gate(request), _lang(request)
    token = _token(request)
    if not gate.allow(_client(request)):
        return page(request, 429, "busy", lang)
    answer = await gate.ask({"action": "unsubscribe", "digest": digest(token)})
    if answer is None:
        return page(request, 503, "unavailable", lang)
    if answer != "ok":  # used already, or older than the newest 50 mails' links
        return page(request, 410, "unsubscribe_expired", lang)
    return page(request, 200, "unsubscribed", lang)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/subscribe", subscribe)
    app.router.add_get("/subscribe/confirm/{token}", confirm_page)
    app.router.add_post("/subscribe/confirm/{token}", confirm)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe)
