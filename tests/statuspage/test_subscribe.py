"""Email subscriptions through the real app, a real database, the real outbox and
dispatcher, and a real SMTP server (aiosmtpd) on loopback: sign-up, confirmation mail,
confirm, unsubscribe; limits per address and per client; one answer for every address;
the pending cap; hostile input; tokens stored as digests only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import pathlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from prober.alerts.dispatcher import Dispatcher
from prober.alerts.subscribers import Subscribers
from prober.config import load_config
from prober.config.load import Config
from prober.store.db import open_engine
from prober.subscriptions import PENDING_CAP
from prober.timeline import to_ms
from statuspage.app import create_app
from statuspage.publisher import Publisher
from statuspage.subscribe import GATE, Gate
from tests.alerts.test_channels_send import Inbox, LoopbackController

PUBLIC = "https://status.example.com"
CONFIG = """
[settings]
title = "Acme"
public_url = "{public}"
database = "sqlite:///prober.db"
trusted_proxies = ["127.0.0.1"]
{subscriptions}

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = {port}
from = "Acme status <status@example.com>"
to = ["ops@example.com"]
security = "none"
"""
LINK = re.compile(
    re.escape(PUBLIC) + r"(/(?:subscribe/confirm|unsubscribe)/[A-Za-z0-9_-]+(?:\?lang=ko)?)"
)


class _Health:
    def report(self) -> dict[str, object]:
        return {"status": "ok", "problems": []}


@dataclasses.dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    inbox: Inbox
    db: pathlib.Path
    gate: Gate
    config: Config
    n: int = 0

    async def post(self, path: str, data: Any = None, **headers: str) -> tuple[int, bytes]:
        """From a new client each time (X-Forwarded-For from the trusted loopback proxy)."""
        self.n += 1
        headers.setdefault("X-Forwarded-For", f"2001:db8::{self.n:x}")
        response = await self.client.post(path, data=data, headers=headers)
        return response.status, await response.read()

    async def subscribe(self, address: str, **headers: str) -> tuple[int, bytes]:
        return await self.post("/subscribe", {"email": address}, **headers)

    async def mails(self, n: int, within: float = 30.0) -> list[EmailMessage]:
        """Once at least `n` mails arrived (polled, with a deadline)."""
        deadline = time.monotonic() + within
        while len(self.inbox.envelopes) < n:
            assert time.monotonic() < deadline, f"{len(self.inbox.envelopes)} mails, not {n}"
            await asyncio.sleep(0.05)
        return [_parsed(e.content) for e in self.inbox.envelopes]

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


def _parsed(content: object) -> EmailMessage:
    assert isinstance(content, bytes)
    mail = message_from_bytes(content, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


def _text(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def links(mail: EmailMessage) -> dict[str, str]:
    """`confirm` and `unsubscribe` paths in the body; the List-Unsubscribe header's too."""
    found = {m.split("/")[1]: m for m in LINK.findall(_text(mail))}
    header = str(mail["List-Unsubscribe"]).strip()  # folded onto its own line
    assert header.startswith(f"<{PUBLIC}/unsubscribe/") and header.endswith(">")
    found["header"] = header[1 + len(PUBLIC) : -1]
    return found


def write_config(
    folder: pathlib.Path, port: int, *, on: bool = True, public: str = PUBLIC
) -> pathlib.Path:
    path = folder / "monitors.toml"
    subscriptions = 'subscriptions = { email = "mail" }' if on else ""
    path.write_text(CONFIG.format(public=public, port=port, subscriptions=subscriptions))
    return path


@contextlib.asynccontextmanager
async def rig_for(tmp_path: pathlib.Path, *, on: bool = True) -> AsyncIterator[Rig]:
    inbox = Inbox()
    smtp = LoopbackController(inbox, hostname="127.0.0.1", server_hostname="smtp.test")
    smtp.start()
    try:
        config = load_config(write_config(tmp_path, smtp.port, on=on))
        open_engine(config.database_path).dispose()  # the schema
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            dispatcher = Dispatcher(config, config.database_path, session, idle_s=0.5)
            subscribers = Subscribers(config.database_path, config, wake=dispatcher.wake)

            async def forward(asked: Any) -> str:
                now_ms = to_ms(dt.datetime.now(dt.UTC))
                return await asyncio.to_thread(subscribers.handle, asked, now_ms)

            app = create_app(config, _Health(), publisher=Publisher(config))
            gate = Gate(forward)
            app[GATE] = gate
            sending = asyncio.create_task(dispatcher.run(stop))
            async with TestClient(TestServer(app)) as client:
                yield Rig(client, inbox, config.database_path, gate, config)
            stop.set()
            await sending
            subscribers.close()
    finally:
        smtp.stop()


@pytest.fixture
async def rig(tmp_path: pathlib.Path) -> AsyncIterator[Rig]:
    async with rig_for(tmp_path) as made:
        yield made


async def test_sign_up_confirm_and_unsubscribe(rig: Rig) -> None:
    page = await rig.client.get("/")  # the live page offers the form
    assert page.status == 200
    assert '<form class="subscribe"' in await page.text()
    status, body = await rig.subscribe("  Ada.Lovelace@Example.COM ")
    assert status == 202
    assert b"Check your inbox" in body
    assert b"Ada" not in body  # the address is never echoed
    (mail,) = await rig.mails(1)
    # To the subscriber alone (not the notifier's `to`), with one-click unsubscribe headers.
    assert mail["To"] == "Ada.Lovelace@example.com"  # the domain lower-cased, nothing else
    assert rig.inbox.envelopes[0].rcpt_tos == ["Ada.Lovelace@example.com"]
    assert mail["From"] == "Acme status <status@example.com>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Subject"] == "Confirm your subscription to Acme"
    found = links(mail)
    assert set(found) == {"subscribe", "unsubscribe", "header"}
    assert rig.rows("SELECT address, state FROM subscriber") == [
        ("Ada.Lovelace@example.com", "pending")
    ]

    # A GET (a mail scanner's prefetch) changes nothing: a page with a button.
    page = await rig.client.get(found["subscribe"])
    assert page.status == 200
    text = await page.text()
    assert '<form method="post">' in text and "Confirm subscription" in text
    assert found["subscribe"].rsplit("/", 1)[1] not in text  # the token is not in the page
    assert rig.rows("SELECT state FROM subscriber") == [("pending",)]

    status, body = await rig.post(found["subscribe"])
    assert status == 200 and b"Subscribed" in body
    assert rig.rows("SELECT state FROM subscriber") == [("confirmed",)]
    status, body = await rig.post(found["subscribe"])  # used: dead
    assert status == 410 and b"expired" in body

    # Tokens at rest: SHA-256 digests only; no token of the mail is anywhere in the files.
    digests = rig.rows("SELECT digest, purpose FROM subscriber_token")
    assert digests and all(re.fullmatch(r"[0-9a-f]{64}", d) for d, _ in digests)
    stored = b"".join(p.read_bytes() for p in rig.db.parent.glob("prober.db*"))
    for path in found.values():
        assert path.rsplit("/", 1)[1].encode() not in stored

    # GET the unsubscribe link: nothing; POST it as RFC 8058's one-click does: gone.
    assert (await rig.client.get(found["header"])).status == 200
    assert rig.rows("SELECT count(*) FROM subscriber") == [(1,)]
    status, body = await rig.post(found["header"], "List-Unsubscribe=One-Click")
    assert status == 200 and b"Unsubscribed" in body
    assert rig.rows("SELECT count(*) FROM subscriber") == [(0,)]
    assert rig.rows("SELECT count(*) FROM subscriber_token") == [(0,)]
    status, body = await rig.post(found["unsubscribe"])  # a dead link says so
    assert status == 410 and b"unsubscribed already" in body


async def test_the_same_answer_for_every_address(rig: Rig) -> None:
    """New, pending, confirmed and rate-limited addresses: one status, the same bytes."""
    first = await rig.subscribe("known@example.com")
    (mail,) = await rig.mails(1)
    await rig.post(links(mail)["subscribe"])  # confirmed
    answers = [
        first,
        await rig.subscribe("known@example.com"),  # confirmed: gets nothing
        await rig.subscribe("pending@example.com"),  # new
        await rig.subscribe("pending@example.com"),  # pending, mailed a moment ago
        await rig.subscribe("someone-else@example.org"),
    ]
    assert {status for status, _ in answers} == {202}
    assert len({body for _, body in answers}) == 1
    await rig.gate.close()  # every sign-up forwarded
    assert rig.rows("SELECT count(*) FROM alert WHERE kind = 'subscriber'") == [(3,)]
    mails = await rig.mails(3)  # one confirmation each, none to the confirmed address
    assert sorted(str(m["To"]) for m in mails) == [
        "known@example.com",
        "pending@example.com",
        "someone-else@example.org",
    ]


async def test_per_address_limit(rig: Rig) -> None:
    for _ in range(4):
        assert (await rig.subscribe("again@example.com"))[0] == 202
    await rig.gate.close()
    await rig.mails(1)
    assert rig.rows("SELECT mailed_count FROM subscriber") == [(1,)]
    assert rig.rows("SELECT count(*) FROM alert WHERE kind = 'subscriber'") == [(1,)]


async def test_per_client_limit_answers_429(rig: Rig) -> None:
    one = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [(await rig.subscribe(f"a{i}@example.com", **one))[0] for i in range(6)]
    assert statuses == [202] * 5 + [429]
    assert (await rig.post("/unsubscribe/" + "A" * 24, **one))[0] == 429
    assert (await rig.subscribe("b@example.com"))[0] == 202  # another client is served


async def test_pending_sign_ups_are_capped(rig: Rig) -> None:
    conn = sqlite3.connect(rig.db)
    now = to_ms(dt.datetime.now(dt.UTC))
    conn.executemany(
        "INSERT INTO subscriber (address, lang, state, created_ms, mailed_since_ms,"
        " mailed_count) VALUES (?, 'en', 'pending', ?, ?, 1)",
        [(f"p{i}@example.com", now, now) for i in range(PENDING_CAP)],
    )
    conn.commit()
    conn.close()
    status, body = await rig.subscribe("late@example.com")
    assert status == 202 and b"Check your inbox" in body  # refused silently
    await rig.gate.close()
    assert rig.rows("SELECT count(*) FROM subscriber WHERE address = 'late@example.com'") == [(0,)]
    assert rig.rows("SELECT count(*) FROM alert") == [(0,)]
    # An expired pending sign-up makes room.
    conn = sqlite3.connect(rig.db)
    conn.execute("UPDATE subscriber SET created_ms = 0 WHERE address = 'p0@example.com'")
    conn.commit()
    conn.close()
    await rig.subscribe("late@example.com")
    await rig.gate.close()
    assert rig.rows("SELECT state FROM subscriber WHERE address = 'late@example.com'") == [
        ("pending",)
    ]


@pytest.mark.parametrize(
    "address",
    [
        "a@b\r\nBcc: victim@example.com",
        "a@example.com\nBcc: victim@example.com",
        "Name <a@example.com>",
        "a@example.com, b@example.com",
        "a@[127.0.0.1]",
        '"quoted"@example.com',
        "no-at-sign",
        "a@localhost",
        "a@-bad-.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "",
    ],
)
async def test_hostile_addresses_are_refused(rig: Rig, address: str) -> None:
    status, body = await rig.subscribe(address)
    assert status == 400 and b"not an email address" in body
    await rig.gate.close()
    assert rig.rows("SELECT count(*) FROM subscriber") == [(0,)]


async def test_hostile_bodies(rig: Rig) -> None:
    big = "email=a%40example.com&pad=" + "x" * 100_000
    status, _ = await rig.post(
        "/subscribe", big, **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 413
    status, _ = await rig.post(
        "/subscribe", b"email=\xff\xfe@example.com", **{"Content-Type": "text/plain"}
    )
    assert status == 400
    assert (await rig.post("/subscribe", "email=a%40x.com&email=b%40x.com"))[0] == 400
    assert (await rig.post("/subscribe", "&".join(["a=1"] * 20)))[0] == 400
    # Tokens that cannot be ours: 404 before anything is asked.
    for path in ("/unsubscribe/short", "/subscribe/confirm/" + "%00" * 30):
        assert (await rig.client.get(path)).status == 404
    await rig.gate.close()
    assert rig.rows("SELECT count(*) FROM subscriber") == [(0,)]


async def test_korean_pages_and_mail(rig: Rig) -> None:
    status, body = await rig.post("/subscribe", {"email": "kim@example.kr", "lang": "ko"})
    assert status == 202 and "메일함을 확인해 주세요".encode() in body
    (mail,) = await rig.mails(1)
    assert "구독을 확인해 주세요" in str(mail["Subject"])
    found = links(mail)
    assert found["subscribe"].endswith("?lang=ko") and found["header"].endswith("?lang=ko")
    page = await rig.client.get(found["subscribe"])  # in Korean, as the sign-up was
    assert "구독 확인하기" in await page.text()
    status, body = await rig.post(found["subscribe"])
    assert status == 200 and "구독 완료".encode() in body


async def test_off_when_not_configured(tmp_path: pathlib.Path) -> None:
    async with rig_for(tmp_path, on=False) as off:
        assert (await off.subscribe("a@example.com"))[0] == 404
        token = "A" * 24
        for path in (f"/subscribe/confirm/{token}", f"/unsubscribe/{token}"):
            assert (await off.client.get(path)).status == 404
            assert (await off.post(path))[0] == 404


def test_the_csp_lets_the_form_post_to_the_page_only() -> None:
    from statuspage.app import SECURITY_HEADERS

    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "form-action 'self'" in csp
    assert "script-src" not in csp and "'unsafe-inline'" not in csp  # default-src 'self'


@pytest.mark.parametrize(("lang", "label"), [("en", "Email address"), ("ko", "이메일 주소")])
def test_the_form_macro_is_a_plain_post_form(lang: str, label: str) -> None:
    """What `/` includes when `snapshot.subscribe`: works without JavaScript, posts here."""
    from statuspage.i18n import Translator
    from statuspage.pages import make_environment

    template = make_environment().from_string(
        '{% from "_subscribe.html" import subscribe_form with context %}{{ subscribe_form() }}'
    )
    html = template.render(t=Translator(lang), lang=lang)
    assert '<form class="subscribe" method="post" action="/subscribe">' in html
    assert '<input id="subscribe-email" name="email" type="email"' in html
    assert f'<input type="hidden" name="lang" value="{lang}">' in html
    assert f'<label for="subscribe-email">{label}</label>' in html
    assert "<script" not in html and not re.search(r"\son[a-z]+=", html)  # no handlers
