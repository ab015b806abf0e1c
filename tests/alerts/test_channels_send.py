"""Sending through every channel to real loopback receivers: an aiohttp sink that records
what arrives and answers what a test asks, and aiosmtpd servers (STARTTLS, implicit TLS,
login) with trustme certificates."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import pathlib
import smtplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from prober.alerts import channels
from prober.alerts.channels import NotifyError, SendContext
from prober.config.settings import NOTIFIER_TYPES, EmailNotifier, Notifier
from tests.alerts.test_payloads import GROUPED, RESOLVED
from tests.support.hostile import closed_port, respond, serve
from tests.support.pki import Pki

TOKEN = "123456:SECRET-bot-token"
ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class Sink:
    """A loopback receiver: records every request, answers `status`, `headers`, `body`
    (where `{path}` is replaced by the request's path, as a careless server might)."""

    server: TestServer | None = None
    seen: list[Seen] = dataclasses.field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: str = "ok"

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.headers), body))
        text = self.body.replace("{path}", request.path)
        return web.Response(status=self.status, headers=self.headers, text=text)


@pytest.fixture
async def sink(aiohttp_server: ServerFactory) -> Sink:
    sink = Sink()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sink.handle)
    sink.server = await aiohttp_server(app)
    return sink


@pytest.fixture
async def ctx() -> AsyncIterator[SendContext]:
    async with aiohttp.ClientSession() as session:
        yield SendContext(session, timeout=5.0)


def notifier(kind: str, base: str, **fields: Any) -> Notifier:
    """A notifier of `kind` whose URL points at `base` (http://127.0.0.1:port)."""
    defaults: dict[str, dict[str, Any]] = {
        "webhook": {"url": f"{base}/hook?token=q1", "secret": "s3cret"},
        "slack": {"url": f"{base}/services/T0/B0/XYZ"},
        "discord": {"url": f"{base}/api/webhooks/1/abc"},
        "telegram": {"api_url": base, "bot_token": TOKEN, "chat_id": "-100"},
        "ntfy": {"url": f"{base}/alerts", "token": "tk_1"},
        "pagerduty": {"api_url": f"{base}/v2/enqueue", "routing_key": "R0UTING"},
        "alertmanager": {"url": base},
    }
    data = {"id": kind, "type": kind, **defaults[kind], **fields}
    model = NOTIFIER_TYPES[kind].model_validate(data)
    assert not isinstance(model, EmailNotifier)
    return model  # type: ignore[return-value]


HTTP_KINDS = ["webhook", "slack", "discord", "telegram", "ntfy", "pagerduty", "alertmanager"]


# --- what arrives ---------------------------------------------------------------------


async def test_webhook_signed_and_keyed(sink: Sink, ctx: SendContext) -> None:
    answer = await channels.send(RESOLVED, notifier("webhook", sink.url("")), ctx)
    assert answer == "HTTP 200: ok"
    [seen] = sink.seen
    assert (seen.method, seen.path) == ("POST", "/hook")
    assert seen.headers["Idempotency-Key"] == "msg-resolved-1"
    assert seen.headers["User-Agent"] == "prober-alerts/1"
    digest = hmac.new(b"s3cret", seen.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(seen.headers["X-Prober-Signature"], f"sha256={digest}")
    assert seen.json()["idempotency_key"] == "msg-resolved-1"


async def test_slack_and_discord_bodies(sink: Sink, ctx: SendContext) -> None:
    await channels.send(GROUPED, notifier("slack", sink.url("")), ctx)
    sink.status, sink.body = 204, ""
    assert await channels.send(GROUPED, notifier("discord", sink.url("")), ctx) == "HTTP 204"
    slack_seen, discord_seen = sink.seen
    assert slack_seen.path == "/services/T0/B0/XYZ"
    assert slack_seen.headers["Content-Type"] == "application/json"
    assert slack_seen.json()["text"] == "[Acme] DOWN: 3 monitors"
    assert discord_seen.path == "/api/webhooks/1/abc"
    assert discord_seen.json()["allowed_mentions"] == {"parse": []}


async def test_telegram_path_and_body(sink: Sink, ctx: SendContext) -> None:
    sink.body = '{"ok":true,"result":{"message_id":7}}'
    answer = await channels.send(GROUPED, notifier("telegram", sink.url("")), ctx)
    assert answer == 'HTTP 200: {"ok":true,"result":{"message_id":7}}'
    [seen] = sink.seen
    assert seen.path == f"/bot{TOKEN}/sendMessage"
    body = seen.json()
    assert (body["chat_id"], body["parse_mode"]) == ("-100", "HTML")
    assert body["text"].startswith("<b>[Acme] DOWN: 3 monitors</b>\n")


@pytest.mark.parametrize(
    ("topic_path", "root_path"), [("/alerts", "/"), ("/ntfy/alerts", "/ntfy/")]
)
async def test_ntfy_publishes_to_root(
    sink: Sink, ctx: SendContext, topic_path: str, root_path: str
) -> None:
    await channels.send(GROUPED, notifier("ntfy", sink.url(""), url=sink.url(topic_path)), ctx)
    [seen] = sink.seen
    assert (seen.method, seen.path) == ("POST", root_path)
    assert seen.headers["Authorization"] == "Bearer tk_1"
    body = seen.json()
    assert (body["topic"], body["priority"], body["tags"]) == ("alerts", 5, ["rotating_light"])


async def test_ntfy_without_token(sink: Sink, ctx: SendContext) -> None:
    await channels.send(RESOLVED, notifier("ntfy", sink.url(""), token=None), ctx)
    assert "Authorization" not in sink.seen[0].headers


async def test_pagerduty_one_request_per_event(sink: Sink, ctx: SendContext) -> None:
    sink.status = 202
    sink.body = '{"status":"success","message":"Event processed","dedup_key":"x"}'
    answer = await channels.send(GROUPED, notifier("pagerduty", sink.url("")), ctx)
    assert answer.count("HTTP 202: ") == 3
    assert [s.path for s in sink.seen] == ["/v2/enqueue"] * 3
    bodies = [s.json() for s in sink.seen]
    assert [b["dedup_key"] for b in bodies] == ["inc-api-1", "inc-db-1", "inc-web-1"]
    assert {b["routing_key"] for b in bodies} == {"R0UTING"}
    assert bodies[0]["payload"]["component"] == "api"
    await channels.send(RESOLVED, notifier("pagerduty", sink.url("")), ctx)
    assert sink.seen[-1].json() == {
        "routing_key": "R0UTING",
        "event_action": "resolve",
        "dedup_key": "inc-api-1",
    }


async def test_alertmanager_posts_alerts_under_its_base_path(sink: Sink, ctx: SendContext) -> None:
    am = notifier("alertmanager", sink.url(""), url=sink.url("/am/"))
    assert await channels.send(GROUPED, am, ctx) == "HTTP 200: ok"
    [seen] = sink.seen
    assert (seen.method, seen.path) == ("POST", "/am/api/v2/alerts")
    assert [a["labels"]["monitor"] for a in seen.json()] == ["api", "db", "web"]


# --- how answers are judged -----------------------------------------------------------


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [
        (500, {}, False, None),
        (429, {"Retry-After": "7"}, False, 7.0),
        (400, {}, True, None),
        (301, {"Location": "http://127.0.0.1:1/elsewhere"}, True, None),
    ],
)
async def test_status_handling(
    sink: Sink,
    ctx: SendContext,
    kind: str,
    status: int,
    headers: dict[str, str],
    permanent: bool,
    retry_after: float | None,
) -> None:
    sink.status, sink.headers, sink.body = status, headers, "nope"
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, notifier(kind, sink.url("")), ctx)
    assert (caught.value.permanent, caught.value.retry_after) == (permanent, retry_after)
    assert str(caught.value) == f"HTTP {status}: nope"
    assert len(sink.seen) == 1  # a 301 is not followed


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_connection_refused_is_transient(ctx: SendContext, kind: str) -> None:
    with pytest.raises(NotifyError) as caught:
        await channels.send(GROUPED, notifier(kind, f"http://127.0.0.1:{closed_port()}"), ctx)
    assert not caught.value.permanent
    assert "SECRET" not in str(caught.value)


async def test_garbled_answer_does_not_leak_the_url(ctx: SendContext) -> None:
    """aiohttp's own error text carries the URL: a webhook's secret token, here."""
    async with serve(respond(b"HTTP/1.1 2000 \xff\r\nbroken\r\n\r\n")) as port:
        hook = notifier(
            "webhook", f"http://127.0.0.1:{port}", url=f"http://127.0.0.1:{port}/h?token=SECRET"
        )
        with pytest.raises(NotifyError) as caught:
            await channels.send(RESOLVED, hook, ctx)
    assert not caught.value.permanent
    assert "SECRET" not in str(caught.value)
    assert str(caught.value).startswith("ClientResponseError: 400, ")


async def test_telegram_retry_after_from_json(sink: Sink, ctx: SendContext) -> None:
    sink.status = 429
    sink.body = json.dumps(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 12",
            "parameters": {"retry_after": 12},
        }
    )
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, notifier("telegram", sink.url("")), ctx)
    assert (caught.value.permanent, caught.value.retry_after) == (False, 12.0)
    sink.headers = {"Retry-After": "3"}  # the header, when there is one, wins
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, notifier("telegram", sink.url("")), ctx)
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("status", [200, 401, 404, 500])
async def test_telegram_token_never_shown(sink: Sink, ctx: SendContext, status: int) -> None:
    sink.status, sink.body = status, "you asked for {path}"
    try:
        text = await channels.send(RESOLVED, notifier("telegram", sink.url("")), ctx)
    except NotifyError as exc:
        text = str(exc)
    assert TOKEN not in text and "SECRET" not in text
    assert "/bot***/sendMessage" in text


async def test_telegram_token_never_shown_on_network_errors(ctx: SendContext) -> None:
    async with serve(respond(b"HTTP/1.1 2000 \xff\r\n\r\n")) as port:
        for base in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{closed_port()}"):
            with pytest.raises(NotifyError) as caught:
                await channels.send(RESOLVED, notifier("telegram", base), ctx)
            assert "SECRET" not in str(caught.value)


# --- email ----------------------------------------------------------------------------

PASSWORD = "hunter2-pw"


class Inbox:
    """An aiosmtpd handler: keeps every envelope; can refuse recipients or data."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as ABC123"

    def received(self) -> EmailMessage:
        [envelope] = self.envelopes
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        return mail


class LoopbackController(Controller):
    """aiosmtpd on 127.0.0.1 with a port chosen by the kernel."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._listen()

    async def _listen(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (b"alerts", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def smtp() -> Iterator[Callable[..., tuple[LoopbackController, Inbox]]]:
    started: list[LoopbackController] = []

    def start(**options: Any) -> tuple[LoopbackController, Inbox]:
        inbox = Inbox()
        controller = LoopbackController(
            inbox, hostname="127.0.0.1", server_hostname="smtp.test", **options
        )
        controller.start()
        started.append(controller)
        return controller, inbox

    yield start
    for controller in started:
        controller.stop()


def mailer(port: int, **fields: Any) -> EmailNotifier:
    data = {
        "id": "mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "from": "Prober <prober@example.com>",
        "to": ["ops@example.com", "oncall@example.com"],
        **fields,
    }
    return EmailNotifier.model_validate(data)


async def test_email_over_starttls(smtp: Any, pki: Pki, ctx: SendContext) -> None:
    controller, inbox = smtp(tls_context=pki.valid(), require_starttls=True)
    notifier = mailer(controller.port, ca_file=pki.ca_file)
    answer = await channels.send(GROUPED, notifier, ctx)
    assert answer == "250 2.0.0 Ok: queued as ABC123"
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "prober@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    mail = inbox.received()
    assert mail["Subject"] == "[Acme] DOWN: 3 monitors"
    assert mail["From"] == "Prober <prober@example.com>"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["Date"]
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    assert "Database & cache is down" in plain.get_content()
    assert "Database &amp; cache is down" in rich.get_content()


async def test_email_implicit_tls(smtp: Any, pki: Pki, ctx: SendContext) -> None:
    controller, inbox = smtp(ssl_context=pki.valid())
    notifier = mailer(controller.port, security="tls", ca_file=pki.ca_file)
    assert (await channels.send(RESOLVED, notifier, ctx)).startswith("250 ")
    assert inbox.received()["Subject"] == "RESOLVED: API"


async def test_email_plain(smtp: Any, ctx: SendContext) -> None:
    controller, inbox = smtp()
    await channels.send(RESOLVED, mailer(controller.port, security="none"), ctx)
    assert inbox.received()["Message-ID"] == "<d2d1c9a5f9cb2910795efb0db8cb21b8@prober>"


async def test_email_untrusted_certificate_is_transient(
    smtp: Any, pki: Pki, ctx: SendContext
) -> None:
    controller, inbox = smtp(tls_context=pki.valid(), require_starttls=True)
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, mailer(controller.port), ctx)  # no ca_file
    assert not caught.value.permanent
    assert "not trusted" in str(caught.value) and "ca_file" in str(caught.value)
    assert inbox.envelopes == []


async def test_email_no_starttls_offered_is_permanent(smtp: Any, ctx: SendContext) -> None:
    controller, inbox = smtp()  # no tls_context: no STARTTLS in EHLO
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, mailer(controller.port), ctx)
    assert caught.value.permanent
    assert inbox.envelopes == []


@pytest.mark.parametrize(
    ("reply", "where", "permanent"),
    [
        ("550 5.1.1 no such user", "rcpt", True),
        ("450 4.2.0 mailbox busy", "rcpt", False),
        ("554 5.7.1 rejected as spam", "data", True),
        ("451 4.3.0 try again later", "data", False),
        ("421 4.7.0 closing", "data", False),
    ],
)
async def test_email_refusals(
    smtp: Any, pki: Pki, ctx: SendContext, reply: str, where: str, permanent: bool
) -> None:
    controller, inbox = smtp(tls_context=pki.valid(), require_starttls=True)
    setattr(inbox, f"{where}_reply", reply)
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, mailer(controller.port, ca_file=pki.ca_file), ctx)
    assert caught.value.permanent is permanent
    assert reply in str(caught.value)


async def test_email_login(smtp: Any, pki: Pki, ctx: SendContext) -> None:
    controller, inbox = smtp(
        tls_context=pki.valid(),
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    good = mailer(controller.port, ca_file=pki.ca_file, username="alerts", password=PASSWORD)
    assert (await channels.send(RESOLVED, good, ctx)).startswith("250 ")
    assert len(inbox.envelopes) == 1
    bad = mailer(controller.port, ca_file=pki.ca_file, username="alerts", password="wrong-pw")
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, bad, ctx)
    assert caught.value.permanent
    assert str(caught.value).startswith("login refused: 535")
    assert "wrong-pw" not in str(caught.value)


async def test_email_password_never_echoed(smtp: Any, pki: Pki, ctx: SendContext) -> None:
    controller, inbox = smtp(
        tls_context=pki.valid(), require_starttls=True, authenticator=authenticate
    )
    inbox.data_reply = f"554 5.7.1 your password is {PASSWORD}"  # a server as careless as can be
    notifier = mailer(controller.port, ca_file=pki.ca_file, username="alerts", password=PASSWORD)
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, notifier, ctx)
    assert PASSWORD not in str(caught.value)
    assert "your password is ***" in str(caught.value)


async def test_email_connection_refused_is_transient(ctx: SendContext) -> None:
    with pytest.raises(NotifyError) as caught:
        await channels.send(RESOLVED, mailer(closed_port()), ctx)
    assert not caught.value.permanent
    assert "ConnectionRefusedError" in str(caught.value)


def test_smtp_errors_are_what_smtplib_says() -> None:
    """The classification leans on smtplib's hierarchy: pin the parts it relies on."""
    assert issubclass(smtplib.SMTPAuthenticationError, smtplib.SMTPResponseException)
    assert issubclass(smtplib.SMTPException, OSError)
    assert issubclass(ssl.SSLCertVerificationError, OSError)
