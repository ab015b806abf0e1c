"""Email subscriptions, the pure part: addresses, tokens, limits and what each mail says.

A visitor subscribes on the page (statuspage.subscribe, in the web process), which
forwards to the probing process (prober.alerts.subscribers: the tables, the outbox rows,
the announcements). Double opt-in: a pending address gets a confirmation mail and nothing
else until its link is used. Every mail carries fresh tokens (`new_token`, 144 random
bits), made when it is sent; only their SHA-256 digests are stored.

No I/O here: the web process imports this module, the probing process too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import secrets

from prober.notices import Progress

# limits (the README's "Subscriptions" section says them too)
PENDING_CAP = 1000  # pending sign-ups at once; past it new ones are refused, silently
PENDING_MS = 48 * 3_600_000  # a pending sign-up (and its confirm link) lasts this long
MAIL_GAP_MS = 10 * 60_000  # at most one confirmation mail per address per 10 minutes
MAILS_PER_DAY = 3  # ... and 3 per 24 hours
FRESH_MS = 3_600_000  # an update older than this at first sight is not mailed
PACE_MS = 200  # subscriber mails of one announcement go out 5 a second
KEEP_TOKENS = 50  # per subscriber and purpose: the links of their newest 50 mails work
MAX_ADDRESS = 254  # RFC 5321's path limit, less the brackets

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,64}")  # fullmatch: what a route takes as a token


def normalise(text: str) -> str | None:
    """The address as stored (trimmed, the domain lower-cased; the local part is the
    mailbox owner's and kept as written), or None when it is not one plain address: no
    display name, comment, quoted part, IP literal or line break ever gets through."""
    text = text.strip()
    local, at, domain = text.rpartition("@")
    if not at or len(text) > MAX_ADDRESS or len(local) > 64:
        return None
    if not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    return f"{local}@{domain.lower()}"


def new_token() -> str:
    return secrets.token_urlsafe(18)  # 144 bits, 24 characters


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Mail:
    """One mail to one subscriber, as the email channel sends it."""

    to: str
    subject: str
    text: str
    unsubscribe: str  # the absolute unsubscribe URL: the List-Unsubscribe header


@dataclasses.dataclass(frozen=True, slots=True)
class Links:
    page: str  # settings.public_url + "/"
    unsubscribe: str
    confirm: str = ""


_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "confirm.subject": "Confirm your subscription to {title}",
        "confirm.body": (
            "Someone, hopefully you, asked for {title}'s incident and maintenance updates"
            " at this address.\n\nTo confirm, open this link and press the button:\n{confirm}"
            "\n\nIf it was not you, ignore this mail: nothing more will be sent. The link"
            " expires in 48 hours."
        ),
        "update.subject": "[{title}] {status}: {name}",
        "maintenance.subject": "[{title}] Maintenance started: {name}",
        "maintenance.body": "{name}\nFrom {start} to {end}.",
        "affected": "Affected: {names}",
        "footer": "Status page: {page}\nUnsubscribe: {unsubscribe}",
        Progress.INVESTIGATING: "Investigating",
        Progress.IDENTIFIED: "Identified",
        Progress.MONITORING: "Monitoring",
        Progress.RESOLVED: "Resolved",
    },
    "ko": {
        "confirm.subject": "{title} 구독을 확인해 주세요",
        "confirm.body": (
            "누군가(아마도 본인)가 이 주소로 {title}의 장애 및 점검 소식을 받겠다고"
            " 신청했습니다.\n\n확인하려면 아래 링크를 열고 버튼을 눌러 주세요:\n{confirm}"
            "\n\n본인이 신청하지 않았다면 이 메일을 무시하세요. 더 이상 메일을 보내지"
            " 않습니다. 링크는 48시간 후에 만료됩니다."
        ),
        "update.subject": "[{title}] {status}: {name}",
        "maintenance.subject": "[{title}] 점검 시작: {name}",
        "maintenance.body": "{name}\n{start}부터 {end}까지.",
        "affected": "영향받는 서비스: {names}",
        "footer": "상태 페이지: {page}\n구독 해지: {unsubscribe}",
        Progress.INVESTIGATING: "조사 중",
        Progress.IDENTIFIED: "원인 확인",
        Progress.MONITORING: "모니터링 중",
        Progress.RESOLVED: "해결됨",
    },
}
LANGUAGES = tuple(_WORDS)


def _words(lang: str) -> dict[str, str]:
    return _WORDS.get(lang, _WORDS["en"])


def _line(text: str, limit: int = 150) -> str:
    """One line for a subject: control characters out, bounded."""
    flat = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def stamp(moment: dt.datetime, zone: dt.tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def confirmation(to: str, lang: str, title: str, links: Links) -> Mail:
    w = _words(lang)
    body = w["confirm.body"].format(title=title, confirm=links.confirm)
    footer = w["footer"].format(page=links.page, unsubscribe=links.unsubscribe)
    subject = _line(w["confirm.subject"].format(title=title))
    return Mail(to, subject, f"{body}\n\n{footer}\n", links.unsubscribe)


def update(
    to: str,
    lang: str,
    title: str,
    links: Links,
    *,
    name: str,
    status: str,
    at: dt.datetime,
    body: str,
    affected: list[str],
    zone: dt.tzinfo,
) -> Mail:
    """A people's incident update (`status`: a Progress value; `body`: its Markdown source,
    which reads as plain text)."""
    w = _words(lang)
    said = w.get(status, status)
    parts = [name, f"{said} — {stamp(at, zone)}", "", body.strip()]
    if affected:
        parts += ["", w["affected"].format(names=", ".join(affected))]
    parts += ["", w["footer"].format(page=links.page, unsubscribe=links.unsubscribe)]
    subject = _line(w["update.subject"].format(title=title, status=said, name=name))
    return Mail(to, subject, "\n".join(parts) + "\n", links.unsubscribe)


def maintenance(
    to: str,
    lang: str,
    title: str,
    links: Links,
    *,
    name: str,
    start: dt.datetime,
    end: dt.datetime,
    affected: list[str],
    zone: dt.tzinfo,
) -> Mail:
    w = _words(lang)
    when = {"start": stamp(start, zone), "end": stamp(end, zone)}
    parts = [w["maintenance.body"].format(name=name, **when)]
    if affected:
        parts += ["", w["affected"].format(names=", ".join(affected))]
    parts += ["", w["footer"].format(page=links.page, unsubscribe=links.unsubscribe)]
    subject = _line(w["maintenance.subject"].format(title=title, name=name))
    return Mail(to, subject, "\n".join(parts) + "\n", links.unsubscribe)
