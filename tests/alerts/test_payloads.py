"""Every channel's payload, pinned: the exact JSON (or email) for fixed messages, and what
hostile target text looks like once each channel has escaped it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import json
import re
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from prober.alerts.channels import discord, email, ntfy, pagerduty, slack, telegram, webhook
from prober.alerts.channels.base import HttpRequest
from prober.alerts.message import CAUSE_LIMIT, Event, Kind, Message
from prober.config.settings import (
    DiscordNotifier,
    EmailNotifier,
    NtfyNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    TelegramNotifier,
    WebhookNotifier,
)

SINCE = dt.datetime(2026, 11, 23, 4, 5, tzinfo=dt.UTC)  # 13:05 in Seoul
SEOUL = ZoneInfo("Asia/Seoul")
API_PAGE = "https://status.example.com/m/api"
WEB_PAGE = "https://status.example.com/m/web"

GROUPED = Message(
    Kind.OPENED,
    (
        Event(
            Kind.OPENED,
            "api",
            "API",
            SINCE,
            cause="status 503 not in [200]",
            link=API_PAGE,
            dependents=("Checkout", "Search"),
            incident_key="inc-api-1",
        ),
        Event(
            Kind.OPENED,
            "db",
            "Database & cache",
            SINCE + dt.timedelta(seconds=20),
            cause="connect timeout after 5s",
            incident_key="inc-db-1",
        ),
        Event(
            Kind.OPENED,
            "web",
            "Web",
            SINCE + dt.timedelta(seconds=40),
            link=WEB_PAGE,
            incident_key="inc-web-1",
        ),
    ),
    key="msg-opened-1",
    title_prefix="Acme",
    zone=SEOUL,
)
RESOLVED = Message(
    Kind.RESOLVED,
    (
        Event(
            Kind.RESOLVED,
            "api",
            "API",
            SINCE,
            cause="status 503 not in [200]",
            until=SINCE + dt.timedelta(hours=1, minutes=5, seconds=30),
            link=API_PAGE,
            incident_key="inc-api-1",
        ),
    ),
    key="msg-resolved-1",
)
API_LINE = (
    "API is down since 2026-11-23 13:05 KST: status 503 not in [200]. "
    "Also down, depending on it: Checkout, Search"
)
DB_LINE = "Database & cache is down since 2026-11-23 13:05 KST: connect timeout after 5s"
WEB_LINE = "Web is down since 2026-11-23 13:05 KST"
RESOLVED_LINE = (
    "API is up again after 1h 05m (down since 2026-11-23 04:05 UTC, cause: status 503 not in [200])"
)

SLACK = SlackNotifier.model_validate(
    {"id": "slack", "type": "slack", "url": "https://hooks.slack.com/services/T0/B0/XYZ"}
)
DISCORD = DiscordNotifier.model_validate(
    {"id": "discord", "type": "discord", "url": "https://discord.com/api/webhooks/1/abc"}
)
TELEGRAM = TelegramNotifier.model_validate(
    {"id": "tg", "type": "telegram", "bot_token": "123456:SECRET-token", "chat_id": "-100"}
)
NTFY = NtfyNotifier.model_validate(
    {"id": "ntfy", "type": "ntfy", "url": "https://ntfy.sh/alerts", "token": "tk_1"}
)
PAGERDUTY = PagerDutyNotifier.model_validate(
    {"id": "pd", "type": "pagerduty", "routing_key": "R0UTING"}
)
WEBHOOK = WebhookNotifier.model_validate(
    {
        "id": "hook",
        "type": "webhook",
        "url": "https://hooks.example.com/in",
        "secret": "s3cret",
        "headers": {"X-Team": "ops"},
    }
)
EMAIL = EmailNotifier.model_validate(
    {
        "id": "mail",
        "type": "email",
        "host": "smtp.example.com",
        "from": "Prober <prober@example.com>",
        "to": ["ops@example.com", "oncall@example.com"],
    }
)


def only(requests: list[HttpRequest]) -> HttpRequest:
    assert len(requests) == 1
    return requests[0]


# --- exact payloads -------------------------------------------------------------------


def test_slack_grouped() -> None:
    request = only(slack.build_payload(GROUPED, SLACK))
    assert request.url == "https://hooks.slack.com/services/T0/B0/XYZ"
    assert request.headers == {"Content-Type": "application/json"}
    assert request.payload() == {
        "text": "[Acme] DOWN: 3 monitors",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*[Acme] DOWN: 3 monitors*"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{API_LINE}\n<{API_PAGE}|Open the monitor page>",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Database &amp; cache is down since 2026-11-23 13:05 KST: "
                    "connect timeout after 5s",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{WEB_LINE}\n<{WEB_PAGE}|Open the monitor page>",
                },
            },
        ],
    }


def test_slack_resolved() -> None:
    assert only(slack.build_payload(RESOLVED, SLACK)).payload() == {
        "text": "RESOLVED: API",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*RESOLVED: API*"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{RESOLVED_LINE}\n<{API_PAGE}|Open the monitor page>",
                },
            },
        ],
    }


def test_discord_grouped() -> None:
    request = only(discord.build_payload(GROUPED, DISCORD))
    assert request.url == "https://discord.com/api/webhooks/1/abc"
    assert request.payload() == {
        "content": "\\[Acme\\] DOWN: 3 monitors",
        "embeds": [
            {
                "title": "\\[Acme\\] DOWN: 3 monitors",
                "description": (
                    "API is down since 2026-11-23 13:05 KST: status 503 not in \\[200\\]. "
                    "Also down, depending on it: Checkout, Search "
                    f"([monitor page]({API_PAGE}))\n"
                    f"{DB_LINE}\n"
                    f"{WEB_LINE} ([monitor page]({WEB_PAGE}))"
                ),
                "color": 0xD93025,
                "url": API_PAGE,
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_discord_resolved() -> None:
    assert only(discord.build_payload(RESOLVED, DISCORD)).payload() == {
        "content": "RESOLVED: API",
        "embeds": [
            {
                "title": "RESOLVED: API",
                "description": (
                    "API is up again after 1h 05m \\(down since 2026-11-23 04:05 UTC, "
                    "cause: status 503 not in \\[200\\]\\) "
                    f"([monitor page]({API_PAGE}))"
                ),
                "color": 0x2DA44E,
                "url": API_PAGE,
            }
        ],
        "allowed_mentions": {"parse": []},
    }


@pytest.mark.parametrize(
    ("kind", "until", "color"),
    [
        (Kind.REMINDER, SINCE + dt.timedelta(hours=2), discord.RED),
        (Kind.CERT_EXPIRING, None, discord.ORANGE),
        (Kind.PROBER_NETWORK, None, discord.RED),
        (Kind.PROBER_NETWORK, SINCE + dt.timedelta(minutes=3), discord.GREEN),
    ],
)
def test_discord_colors(kind: Kind, until: dt.datetime | None, color: int) -> None:
    message = Message(kind, (Event(kind, "", "x", SINCE, until=until),), key="k")
    payload = only(discord.build_payload(message, DISCORD)).payload()
    assert isinstance(payload, dict)
    assert payload["embeds"][0]["color"] == color
    assert "url" not in payload["embeds"][0]


def test_telegram_grouped() -> None:
    request = only(telegram.build_payload(GROUPED, TELEGRAM))
    assert request.url == "https://api.telegram.org/bot123456:SECRET-token/sendMessage"
    assert request.payload() == {
        "chat_id": "-100",
        "text": (
            "<b>[Acme] DOWN: 3 monitors</b>\n"
            f'{API_LINE} (<a href="{API_PAGE}">monitor page</a>)\n'
            "Database &amp; cache is down since 2026-11-23 13:05 KST: connect timeout after 5s\n"
            f'{WEB_LINE} (<a href="{WEB_PAGE}">monitor page</a>)'
        ),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def test_telegram_resolved() -> None:
    assert only(telegram.build_payload(RESOLVED, TELEGRAM)).payload() == {
        "chat_id": "-100",
        "text": (f'<b>RESOLVED: API</b>\n{RESOLVED_LINE} (<a href="{API_PAGE}">monitor page</a>)'),
        "parse_mode": "HTML",
        "disable_web_page_preview": True,
    }


def test_ntfy_grouped() -> None:
    request = only(ntfy.build_payload(GROUPED, NTFY))
    assert request.url == "https://ntfy.sh/"
    assert request.headers == {"Content-Type": "application/json", "Authorization": "Bearer tk_1"}
    assert request.payload() == {
        "topic": "alerts",
        "title": "[Acme] DOWN: 3 monitors",
        "message": f"{API_LINE}\n{DB_LINE}\n{WEB_LINE}",
        "priority": 5,
        "tags": ["rotating_light"],
        "click": API_PAGE,
    }


def test_ntfy_resolved() -> None:
    no_token = NtfyNotifier.model_validate(
        {
            "id": "n",
            "type": "ntfy",
            "url": "https://push.example.com:8443/ntfy/alerts",
            "priority": 2,
        }
    )
    request = only(ntfy.build_payload(RESOLVED, no_token))
    assert request.url == "https://push.example.com:8443/ntfy/"
    assert request.headers == {"Content-Type": "application/json"}
    assert request.payload() == {
        "topic": "alerts",
        "title": "RESOLVED: API",
        "message": RESOLVED_LINE,
        "priority": 2,
        "tags": ["white_check_mark"],
        "click": API_PAGE,
    }


@pytest.mark.parametrize(
    ("kind", "until", "priority", "tags"),
    [
        (Kind.OPENED, None, 5, ["rotating_light"]),
        (Kind.REMINDER, SINCE + dt.timedelta(hours=2), 4, ["rotating_light"]),
        (Kind.CERT_EXPIRING, None, 3, ["warning"]),
        (Kind.PROBER_NETWORK, None, 5, ["rotating_light"]),
        (Kind.PROBER_NETWORK, SINCE + dt.timedelta(minutes=3), 3, ["white_check_mark"]),
        (Kind.RESOLVED, SINCE + dt.timedelta(minutes=3), 3, ["white_check_mark"]),
    ],
)
def test_ntfy_priority_and_tags(
    kind: Kind, until: dt.datetime | None, priority: int, tags: list[str]
) -> None:
    message = Message(kind, (Event(kind, "m", "M", SINCE, until=until),), key="k")
    payload = only(ntfy.build_payload(message, NTFY)).payload()
    assert isinstance(payload, dict)
    assert (payload["priority"], payload["tags"]) == (priority, tags)
    assert "click" not in payload


def test_pagerduty_grouped_is_one_trigger_per_event() -> None:
    requests = pagerduty.build_payload(GROUPED, PAGERDUTY)
    assert [r.url for r in requests] == ["https://events.pagerduty.com/v2/enqueue"] * 3
    assert [r.payload() for r in requests] == [
        {
            "routing_key": "R0UTING",
            "event_action": "trigger",
            "dedup_key": "inc-api-1",
            "payload": {
                "summary": f"[Acme] {API_LINE}",
                "source": "prober",
                "severity": "critical",
                "timestamp": "2026-11-23T04:05:00+00:00",
                "component": "api",
                "custom_details": {
                    "cause": "status 503 not in [200]",
                    "since": "2026-11-23T04:05:00+00:00",
                    "link": API_PAGE,
                    "dependents": ["Checkout", "Search"],
                },
            },
            "links": [{"href": API_PAGE, "text": "Monitor page"}],
        },
        {
            "routing_key": "R0UTING",
            "event_action": "trigger",
            "dedup_key": "inc-db-1",
            "payload": {
                "summary": f"[Acme] {DB_LINE}",
                "source": "prober",
                "severity": "critical",
                "timestamp": "2026-11-23T04:05:20+00:00",
                "component": "db",
                "custom_details": {
                    "cause": "connect timeout after 5s",
                    "since": "2026-11-23T04:05:20+00:00",
                    "link": None,
                    "dependents": [],
                },
            },
        },
        {
            "routing_key": "R0UTING",
            "event_action": "trigger",
            "dedup_key": "inc-web-1",
            "payload": {
                "summary": f"[Acme] {WEB_LINE}",
                "source": "prober",
                "severity": "critical",
                "timestamp": "2026-11-23T04:05:40+00:00",
                "component": "web",
                "custom_details": {
                    "cause": None,
                    "since": "2026-11-23T04:05:40+00:00",
                    "link": WEB_PAGE,
                    "dependents": [],
                },
            },
            "links": [{"href": WEB_PAGE, "text": "Monitor page"}],
        },
    ]


def test_pagerduty_resolved() -> None:
    assert only(pagerduty.build_payload(RESOLVED, PAGERDUTY)).payload() == {
        "routing_key": "R0UTING",
        "event_action": "resolve",
        "dedup_key": "inc-api-1",
    }


def test_pagerduty_test_message_and_certificate() -> None:
    expires = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    event = Event(Kind.CERT_EXPIRING, "web", "Web", SINCE, cert_expires=expires)
    message = Message(Kind.CERT_EXPIRING, (event,), key="msg-test-9", test=True)
    assert message.title == "[TEST] CERTIFICATE EXPIRING: Web"
    assert only(pagerduty.build_payload(message, PAGERDUTY)).payload() == {
        "routing_key": "R0UTING",
        "event_action": "trigger",
        "dedup_key": "prober-test-msg-test-9",
        "payload": {
            "summary": "[TEST] Web: the TLS certificate expires 2026-12-01 00:00 UTC",
            "source": "prober",
            "severity": "warning",
            "timestamp": "2026-11-23T04:05:00+00:00",
            "component": "web",
            "custom_details": {
                "cause": None,
                "since": "2026-11-23T04:05:00+00:00",
                "link": None,
                "dependents": [],
            },
        },
    }


def test_pagerduty_network_and_fallback_key() -> None:
    down = Message(Kind.PROBER_NETWORK, (Event(Kind.PROBER_NETWORK, "", "", SINCE),), key="net-1")
    back = Message(
        Kind.PROBER_NETWORK,
        (Event(Kind.PROBER_NETWORK, "", "", SINCE, until=SINCE + dt.timedelta(minutes=4)),),
        key="net-2",
    )
    trigger = only(pagerduty.build_payload(down, PAGERDUTY)).payload()
    assert isinstance(trigger, dict)
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", "net-1")
    assert "component" not in trigger["payload"]
    assert only(pagerduty.build_payload(back, PAGERDUTY)).payload() == {
        "routing_key": "R0UTING",
        "event_action": "resolve",
        "dedup_key": "net-2",
    }


def test_webhook_resolved() -> None:
    request = only(webhook.build_payload(RESOLVED, WEBHOOK))
    assert request.url == "https://hooks.example.com/in"
    signature = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers == {
        "Content-Type": "application/json",
        "X-Team": "ops",
        "Idempotency-Key": "msg-resolved-1",
        "X-Prober-Signature": f"sha256={signature}",
    }
    assert request.payload() == {
        "idempotency_key": "msg-resolved-1",
        "kind": "resolved",
        "test": False,
        "title": "RESOLVED: API",
        "text": f"RESOLVED: API\n{RESOLVED_LINE}",
        "events": [
            {
                "kind": "resolved",
                "monitor": "api",
                "name": "API",
                "since": "2026-11-23T04:05:00+00:00",
                "until": "2026-11-23T05:10:30+00:00",
                "duration_s": 3930,
                "cause": "status 503 not in [200]",
                "link": API_PAGE,
                "dependents": [],
                "cert_expires": None,
                "incident": "inc-api-1",
                "remediation": None,
            }
        ],
    }


def test_webhook_grouped() -> None:
    request = only(webhook.build_payload(GROUPED, WEBHOOK))
    event = {
        "kind": "opened",
        "until": None,
        "duration_s": None,
        "cert_expires": None,
        "remediation": None,
    }
    assert request.payload() == {
        "idempotency_key": "msg-opened-1",
        "kind": "opened",
        "test": False,
        "title": "[Acme] DOWN: 3 monitors",
        "text": f"[Acme] DOWN: 3 monitors\n{API_LINE}\n{DB_LINE}\n{WEB_LINE}",
        "events": [
            {
                **event,
                "monitor": "api",
                "name": "API",
                "since": "2026-11-23T04:05:00+00:00",
                "cause": "status 503 not in [200]",
                "link": API_PAGE,
                "dependents": ["Checkout", "Search"],
                "incident": "inc-api-1",
            },
            {
                **event,
                "monitor": "db",
                "name": "Database & cache",
                "since": "2026-11-23T04:05:20+00:00",
                "cause": "connect timeout after 5s",
                "link": None,
                "dependents": [],
                "incident": "inc-db-1",
            },
            {
                **event,
                "monitor": "web",
                "name": "Web",
                "since": "2026-11-23T04:05:40+00:00",
                "cause": None,
                "link": WEB_PAGE,
                "dependents": [],
                "incident": "inc-web-1",
            },
        ],
    }


GROUPED_HTML = f"""<!doctype html>
<html><body style="font-family:sans-serif">
<h2>[Acme] DOWN: 3 monitors</h2>
<table style="border-collapse:collapse">
<tr><td style="{email.CELL}">{API_LINE}</td><td style="{email.CELL}"><a href="{API_PAGE}">monitor page</a></td></tr>
<tr><td style="{email.CELL}">Database &amp; cache is down since 2026-11-23 13:05 KST: connect timeout after 5s</td><td style="{email.CELL}"></td></tr>
<tr><td style="{email.CELL}">{WEB_LINE}</td><td style="{email.CELL}"><a href="{WEB_PAGE}">monitor page</a></td></tr>
</table>
</body></html>
"""


def parts(mail: EmailMessage) -> tuple[str, str]:
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(plain, EmailMessage)
    assert isinstance(rich, EmailMessage)
    return plain.get_content(), rich.get_content()


def test_email_grouped() -> None:
    mail = email.build_payload(GROUPED, EMAIL)
    key_hash = hashlib.sha256(b"msg-opened-1").hexdigest()[:32]
    assert [(name, str(value)) for name, value in mail.items()] == [
        ("Subject", "[Acme] DOWN: 3 monitors"),
        ("From", "Prober <prober@example.com>"),
        ("To", "ops@example.com, oncall@example.com"),
        ("Message-ID", f"<{key_hash}@prober>"),
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{mail.get_boundary()}"'),
    ]
    assert parts(mail) == (
        f"[Acme] DOWN: 3 monitors\n\n{API_LINE}\n{API_PAGE}\n\n{DB_LINE}\n\n{WEB_LINE}\n{WEB_PAGE}\n",
        GROUPED_HTML,
    )
    assert email.build_payload(GROUPED, EMAIL).as_bytes() == mail.as_bytes()  # resends match


def test_email_resolved_on_the_wire() -> None:
    mail = email.build_payload(RESOLVED, EMAIL)
    assert mail.as_string() == (
        "Subject: RESOLVED: API\n"
        "From: Prober <prober@example.com>\n"
        "To: ops@example.com, oncall@example.com\n"
        "Message-ID: <d2d1c9a5f9cb2910795efb0db8cb21b8@prober>\n"
        "Auto-Submitted: auto-generated\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/alternative;\n"
        ' boundary="prober-b9d9667b87e481ab06fcdba733b8655f"\n'
        "\n"
        "--prober-b9d9667b87e481ab06fcdba733b8655f\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "RESOLVED: API\n"
        "\n"
        "API is up again after 1h 05m (down since 2026-11-23 04:05 UTC, cause: status =\n"
        "503 not in [200])\n"
        "https://status.example.com/m/api\n"
        "\n"
        "--prober-b9d9667b87e481ab06fcdba733b8655f\n"
        'Content-Type: text/html; charset="utf-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "MIME-Version: 1.0\n"
        "\n"
        "<!doctype html>\n"
        '<html><body style=3D"font-family:sans-serif">\n'
        "<h2>RESOLVED: API</h2>\n"
        '<table style=3D"border-collapse:collapse">\n'
        '<tr><td style=3D"padding:6px 10px;border-bottom:1px solid #ddd">API is up aga=\n'
        "in after 1h 05m (down since 2026-11-23 04:05 UTC, cause: status 503 not in [2=\n"
        '00])</td><td style=3D"padding:6px 10px;border-bottom:1px solid #ddd"><a href=\n'
        '=3D"https://status.example.com/m/api">monitor page</a></td></tr>\n'
        "</table>\n"
        "</body></html>\n"
        "\n"
        "--prober-b9d9667b87e481ab06fcdba733b8655f--\n"
    )


# --- hostile target text --------------------------------------------------------------

HOSTILE = (
    '"quoted"\nnew line\r\n<script>alert(1)</script> <!channel> @everyone *bold* _it_ '
    "[x](http://evil) <b>bold</b> `code` back\\slash # heading > quote ~strike~ | pipe & amp "
    + "A"
    * 10_000
)
HOSTILE_NAME = 'Shop "<b>*x*</b>"\n<!channel> @everyone [y](http://evil)'
HOSTILE_PAGE = "https://status.example.com/m/shop"


def hostile(n: int = 1) -> Message:
    events = tuple(
        Event(
            Kind.OPENED,
            f"shop{i}",
            HOSTILE_NAME,
            SINCE,
            cause=HOSTILE,
            link=HOSTILE_PAGE,
            dependents=(HOSTILE_NAME,) * 30,
            incident_key=f"inc-{i}",
        )
        for i in range(n)
    )
    return Message(Kind.OPENED, events, key="hostile", title_prefix=HOSTILE_NAME)


MESSAGES = [pytest.param(hostile(), id="one"), pytest.param(hostile(60), id="sixty")]
_DISCORD_TOKEN = re.compile(r"\\[\\*_~`|>#\[\]()]|[^\\*_~`|>#\[\]()]")


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_slack(message: Message) -> None:
    payload = only(slack.build_payload(message, SLACK)).payload()
    assert isinstance(payload, dict)
    blocks = payload["blocks"]
    assert len(blocks) <= slack.BLOCK_LIMIT
    texts = [payload["text"]] + [block["text"]["text"] for block in blocks]
    assert all(len(text) <= slack.SECTION_LIMIT for text in texts)
    ours = f"<{HOSTILE_PAGE}|Open the monitor page>"
    for text in texts:
        assert "<" not in text.replace(ours, "") and ">" not in text.replace(ours, "")
    assert "&lt;!channel&gt;" in blocks[1]["text"]["text"]
    assert "&lt;script&gt;" in blocks[1]["text"]["text"]
    if len(message.events) > slack.BLOCK_LIMIT - 1:
        assert blocks[-1]["text"]["text"].startswith("…and 12 more: Shop")


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_discord(message: Message) -> None:
    payload = only(discord.build_payload(message, DISCORD)).payload()
    assert isinstance(payload, dict)
    assert payload["allowed_mentions"] == {"parse": []}
    embed = payload["embeds"][0]
    assert len(payload["content"]) <= discord.CONTENT_LIMIT
    assert len(embed["title"]) <= discord.TITLE_LIMIT
    assert len(embed["description"]) <= discord.DESCRIPTION_LIMIT
    ours = f" ([monitor page]({HOSTILE_PAGE}))"
    for text in [payload["content"], embed["title"], *embed["description"].split("\n")]:
        assert _DISCORD_TOKEN.sub("", text.replace(ours, "")) == ""  # every special escaped
    assert "\\*bold\\*" in embed["description"]
    assert "\\[x\\]\\(http://evil\\)" in embed["description"]
    assert "back\\\\slash" in embed["description"]
    if len(message.events) > 1:
        assert re.search(r"\n…and \d+ more$", embed["description"])


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_telegram(message: Message) -> None:
    text = only(telegram.build_payload(message, TELEGRAM)).payload()["text"]  # type: ignore[index]
    assert len(text) <= telegram.TEXT_LIMIT
    assert "<script>" not in text
    tags = set(re.findall(r"<[^>]*>", text))
    assert tags == {"<b>", "</b>", f'<a href="{HOSTILE_PAGE}">', "</a>"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "&amp; amp" in text
    first = html.unescape(text.split("\n")[1])
    assert first.startswith('Shop "<b>*x*</b>" <!channel> @everyone [y](http://evil) is down')


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_email(message: Message) -> None:
    mail = email.build_payload(message, EMAIL)
    assert [name for name, _ in mail.items()] == [
        "Subject",
        "From",
        "To",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    ]
    assert "\n" not in str(mail["Subject"])
    plain, rich = parts(mail)
    assert "<script>" not in rich and "<b>" not in rich
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rich
    assert set(re.findall(r"<(\w+)", rich)) == {"html", "body", "h2", "table", "tr", "td", "a"}
    lines = plain.split("\n")
    assert len(lines) == 2 + 3 * len(message.events)  # title, blank, then line, link, blank
    cause = next(line for line in lines if "<script>" in line)
    assert '"quoted" new line <script>alert(1)</script> <!channel>' in cause


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_webhook(message: Message) -> None:
    request = only(webhook.build_payload(message, WEBHOOK))
    payload = json.loads(request.body)
    for event in payload["events"]:
        cause = event["cause"]
        assert len(cause) <= CAUSE_LIMIT and cause.isprintable()
        assert cause.startswith('"quoted" new line <script>alert(1)</script>')


@pytest.mark.parametrize("message", MESSAGES)
def test_hostile_ntfy_and_pagerduty(message: Message) -> None:
    payload = only(ntfy.build_payload(message, NTFY)).payload()
    assert isinstance(payload, dict)
    assert len(payload["message"].encode()) <= ntfy.MESSAGE_LIMIT
    assert all(line.isprintable() for line in payload["message"].split("\n"))
    assert payload["title"].isprintable()
    for request in pagerduty.build_payload(message, PAGERDUTY):
        body = request.payload()
        assert isinstance(body, dict)
        summary = body["payload"]["summary"]
        assert len(summary) <= pagerduty.SUMMARY_LIMIT and summary.isprintable()
        assert len(body["payload"]["custom_details"]["cause"]) <= CAUSE_LIMIT
