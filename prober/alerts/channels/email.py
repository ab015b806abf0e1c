"""Email over SMTP (stdlib smtplib in a worker thread): plain text and an HTML alternative.

Headers are the config's `from`/`to` and the title, one line by `clean()`; the email
package refuses a header value with a line break, so no target text can add a header.
Target text reaches the bodies only: as is in the plain part, `html.escape`d in the HTML
part. The Message-ID comes from the message key (a resend carries the same id); the MIME
boundary is a hash of the bodies (exact payloads, and no body can contain it).

`security`: "tls" is SMTP_SSL, "starttls" upgrades or fails (never falls back to plain),
"none" is plain; certificates are checked against the system CAs plus `ca_file`. A 5xx
reply or a refused login is permanent; 4xx, network, timeout and TLS errors are not, an
untrusted certificate included (a rotation or a brief interception must not drop the
alert for good; the error says to check ca_file). The password never appears in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

from prober.alerts.channels.base import NotifyError
from prober.alerts.channels.context import SendContext
from prober.alerts.message import Message
from prober.config.settings import EmailNotifier
from prober.subscriptions import Mail

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

CELL = "padding:6px 10px;border-bottom:1px solid #ddd"


def build_payload(message: Message, notifier: EmailNotifier) -> EmailMessage:
    if message.mail is not None:
        return _subscriber_payload(message, message.mail, notifier)
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = notifier.sender
    mail["To"] = ", ".join(notifier.to)
    mail["Message-ID"] = f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@prober>"
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    plain, rich = _plain(message), _html(message)
    mail.set_content(plain, cte="quoted-printable")
    mail.add_alternative(rich, subtype="html", cte="quoted-printable")
    mail.set_boundary(f"prober-{hashlib.sha256((plain + rich).encode()).hexdigest()[:32]}")
    return mail


def _subscriber_payload(message: Message, words: Mail, notifier: EmailNotifier) -> EmailMessage:
    """A subscriber's mail (prober.subscriptions): to them alone, plain text, with RFC 2369
    / RFC 8058 one-click unsubscribe headers. Bulk, so no vacation replies either."""
    mail = EmailMessage()
    mail["Subject"] = words.subject
    mail["From"] = notifier.sender
    mail["To"] = words.to
    mail["Message-ID"] = f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@prober>"
    mail["Auto-Submitted"] = "auto-generated"
    mail["List-Unsubscribe"] = f"<{words.unsubscribe}>"
    mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(words.text, cte="quoted-printable")
    return mail


async def send(message: Message, notifier: EmailNotifier, ctx: SendContext) -> str:
    try:
        mail = build_payload(message, notifier)
    except ValueError as exc:  # an address in the config that is not one header value
        raise NotifyError(f"cannot write the email: {exc}", permanent=True) from None
    mail["Date"] = email.utils.formatdate(usegmt=True)
    password = notifier.password.get_secret_value() if notifier.password else ""
    try:
        return await asyncio.to_thread(_deliver, mail, notifier, password, ctx.timeout)
    except NotifyError as exc:
        if not password:
            raise
        text = str(exc).replace(password, "***")
        raise NotifyError(text, permanent=exc.permanent, retry_after=exc.retry_after) from None


def _deliver(mail: EmailMessage, notifier: EmailNotifier, password: str, timeout: float) -> str:
    """Runs in a worker thread: smtplib blocks."""
    try:
        answer, refused = _exchange(mail, notifier, password, timeout)
    except smtplib.SMTPAuthenticationError as exc:
        text = _reply(exc.smtp_code, exc.smtp_error)
        raise NotifyError(f"login refused: {text}", permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        replies = exc.recipients.items()
        text = "; ".join(f"{address}: {_reply(*reply)}" for address, reply in replies)
        permanent = all(code >= 500 for code, _ in exc.recipients.values())
        raise NotifyError(f"every recipient refused: {text}", permanent=permanent) from None
    except smtplib.SMTPResponseException as exc:
        text = _reply(exc.smtp_code, exc.smtp_error)
        raise NotifyError(text, permanent=exc.smtp_code >= 500) from None
    except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or no AUTH: fix the config
        raise NotifyError(f"the server does not support it: {exc}", permanent=True) from None
    except ssl.SSLCertVerificationError as exc:
        text = f"the server's certificate is not trusted ({exc.verify_message}): check ca_file"
        raise NotifyError(text, permanent=False) from None
    except (smtplib.SMTPException, OSError) as exc:  # disconnects, refusals, timeouts, TLS
        raise NotifyError(f"{type(exc).__name__}: {exc}", permanent=False) from None
    if refused:
        answer += "; refused: " + ", ".join(f"{a} ({_reply(*r)})" for a, r in refused.items())
    return answer


def _exchange(
    mail: EmailMessage, notifier: EmailNotifier, password: str, timeout: float
) -> tuple[str, dict[str, tuple[int, bytes]]]:
    """One SMTP session: the server's answer to DATA and the recipients it refused."""
    host, port = notifier.host, notifier.port
    if notifier.security == "tls":
        client: _Client = _TlsClient(host, port, timeout=timeout, context=_tls(notifier))
    else:
        client = _Client(host, port, timeout=timeout)
    try:  # not `with`: its QUIT after a failed handshake would hide the real error
        if notifier.security == "starttls":
            client.starttls(context=_tls(notifier))
        if notifier.username:
            client.login(notifier.username, password)
        refused = client.send_message(mail)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        return client.answer or "sent", refused
    finally:
        client.close()


class _Client(smtplib.SMTP):
    """Remembers the server's answer to DATA ("250 queued as …")."""

    answer = ""

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        code, reply = super().data(msg)
        self.answer = _reply(code, reply)
        return code, reply


class _TlsClient(_Client, smtplib.SMTP_SSL):
    pass


def _tls(notifier: EmailNotifier) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if notifier.ca_file:
        context.load_verify_locations(notifier.ca_file)
    return context


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(words.split())}"


def _plain(message: Message) -> str:
    parts = [message.title, ""]
    for event, words in zip(message.events, message.lines, strict=True):
        parts.append(words)
        if event.link:
            parts.append(event.link)
        parts.append("")
    return "\n".join(parts)


def _html(message: Message) -> str:
    rows = "".join(
        f'<tr><td style="{CELL}">{html.escape(words)}</td><td style="{CELL}">'
        + (f'<a href="{html.escape(event.link)}">monitor page</a>' if event.link else "")
        + "</td></tr>\n"
        for event, words in zip(message.events, message.lines, strict=True)
    )
    return (
        '<!doctype html>\n<html><body style="font-family:sans-serif">\n'
        f"<h2>{html.escape(message.title)}</h2>\n"
        f'<table style="border-collapse:collapse">\n{rows}</table>\n</body></html>\n'
    )
