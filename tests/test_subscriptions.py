"""Email subscriptions in the probing process (prober.alerts.subscribers) and end to end
through `prober run`: addresses, announcements (once, across restarts and reloads; never
the history at first sight; never to pending sign-ups), the mail they become, and the
config's rules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import re
import signal
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from prober.alerts import outbox
from prober.alerts.subscribers import Subscribers, compose, subscribe
from prober.config import ConfigError, load_config
from prober.config.load import Config
from prober.config.settings import Settings, subscription_errors
from prober.notices import ComponentStatus, Impact, Notice, Progress, Update
from prober.store.db import open_engine
from prober.subscriptions import normalise
from prober.timeline import to_ms
from tests.alerts.test_channels_send import Inbox, LoopbackController
from tests.support.net import free_port
from tests.support.proc import ProberRun, until

NOW = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("a@example.com", "a@example.com"),
        ("  Ada.Lovelace@Example.COM\t", "Ada.Lovelace@example.com"),
        ("first+tag@mail.example.co.kr", "first+tag@mail.example.co.kr"),
        ("a@b\r\nBcc: x@example.com", None),
        ("a@example.com\r\n", "a@example.com"),  # outer whitespace is trimmed, nothing inside
        ("a b@example.com", None),
        ("<a@example.com>", None),
        ("a@example..com", None),
        ("a@example.com.", None),
        ("a.@example.com", None),
        ("a@127.0.0.1", None),
        ("a@例시.kr", None),  # IDNs in their xn-- form only
        ("@example.com", None),
    ],
)
def test_addresses(given: str, stored: str | None) -> None:
    assert normalise(given) == stored


CONFIG = """
[settings]
title = "Acme"
public_url = "https://status.example.com"
database = "sqlite:///prober.db"
timezone = "Asia/Seoul"
subscriptions = {{ email = "mail" }}

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "vault"
name = "Vault"
type = "http"
url = "http://127.0.0.1:9/"
public = false

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = 25
from = "status@example.com"
to = ["ops@example.com"]
{extra}
"""
MAINTENANCE = """
[[maintenance]]
title = "Database upgrade"
monitors = ["api"]
start = 2026-12-03T08:55:00Z
end = 2026-12-03T10:00:00Z

[[maintenance]]
title = "Vault rotation"
monitors = ["vault"]
start = 2026-12-03T08:50:00Z
end = 2026-12-03T10:00:00Z
"""


def _config(tmp_path: pathlib.Path, extra: str = "") -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG.format(extra=extra))
    config = load_config(path)
    open_engine(config.database_path).dispose()
    return config


def _update(minutes_ago: int, body: str, notify: bool = True) -> Update:
    return Update(NOW - dt.timedelta(minutes=minutes_ago), Progress.INVESTIGATING, body, notify)


def _notice(*updates: Update) -> Notice:
    components = (("api", ComponentStatus.MAJOR_OUTAGE), ("vault", ComponentStatus.MAJOR_OUTAGE))
    return Notice("db-outage", "Database outage", Impact.MAJOR, components, None, updates)


def _add(db: pathlib.Path, address: str, state: str) -> int:
    conn = sqlite3.connect(db)
    cursor = conn.execute(
        "INSERT INTO subscriber (address, lang, state, created_ms, mailed_since_ms, mailed_count)"
        " VALUES (?, 'en', ?, ?, 0, 0)",
        (address, state, to_ms(NOW)),
    )
    conn.commit()
    conn.close()
    return int(cursor.lastrowid or 0)


def _rows(db: pathlib.Path) -> list[outbox.Row]:
    conn = sqlite3.connect(db)
    try:
        return outbox.unfinished(conn)
    finally:
        conn.close()


def test_announcements_once_fresh_only_confirmed_only(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path, MAINTENANCE)
    notice = _notice(
        _update(120, "Seen two hours ago: history, not news"),
        _update(10, "We are **on it**."),
        _update(5, "A quiet correction", notify=False),
    )
    config = dataclasses.replace(config, notices=(notice,))
    db = config.database_path
    confirmed = _add(db, "c@example.com", "confirmed")
    _add(db, "p@example.com", "pending")
    woken: list[int] = []
    subscribers = Subscribers(db, config, wake=lambda: woken.append(1))

    assert subscribers.announce(to_ms(NOW)) == 2  # the fresh update, the maintenance start
    rows = _rows(db)
    assert [(r.kind.value, r.incident, r.data["subscriber"]) for r in rows] == [
        ("subscriber", "notice/db-outage/1", confirmed),
        ("subscriber", rows[1].incident, confirmed),
    ]
    assert rows[1].incident.startswith("maintenance/")
    assert rows[1].due_ms > rows[0].due_ms  # paced
    conn = sqlite3.connect(db)
    told = conn.execute("SELECT key, mailed FROM announced ORDER BY key").fetchall()
    conn.close()
    assert told == [
        (rows[1].incident, 1),
        ("notice/db-outage/0", 0),  # older than an hour at first sight: recorded, not mailed
        ("notice/db-outage/1", 1),
    ]  # the private window and the notify = false update: not news
    assert woken == [1]

    # Again, after a reload (a new config object), after a restart (a new Subscribers).
    subscribers.config = dataclasses.replace(config)
    assert subscribers.announce(to_ms(NOW) + 60_000) == 0
    assert Subscribers(db, config).announce(to_ms(NOW) + 120_000) == 0
    # A new update is news.
    later = dataclasses.replace(notice, updates=(*notice.updates, _update(-1, "Fixed.")))
    again = Subscribers(db, dataclasses.replace(config, notices=(later,)))
    assert again.announce(to_ms(NOW) + 120_000) == 1
    assert len(_rows(db)) == 3


def test_confirmation_mails_per_address_10_minutes_apart_3_a_day(tmp_path: pathlib.Path) -> None:
    db = _config(tmp_path).database_path
    conn = sqlite3.connect(db, isolation_level=None)
    minute, start = 60_000, to_ms(NOW)
    mailed = [
        subscribe(conn, "a@example.com", "en", "mail", start + m * minute)
        for m in (0, 5, 11, 22, 33, 44, 60 * 24 + 1)
    ]
    conn.close()
    # 5 min: too soon; 11, 22: the 2nd and 3rd; 33, 44: over 3 a day; a day later: again
    assert mailed == [1, 0, 1, 1, 0, 0, 1]


def test_a_row_becomes_a_mail_with_fresh_tokens_stored_as_digests(tmp_path: pathlib.Path) -> None:
    config = dataclasses.replace(
        _config(tmp_path), notices=(_notice(_update(10, "We are **on it**.\nMore soon.")),)
    )
    db = config.database_path
    _add(db, "c@example.com", "confirmed")
    Subscribers(db, config).announce(to_ms(NOW))
    (row,) = _rows(db)
    conn = sqlite3.connect(db, isolation_level=None)
    mail = compose(conn, row, config, to_ms(NOW))
    again = compose(conn, row, config, to_ms(NOW))  # a retry: new tokens, the old stay valid
    digests = conn.execute("SELECT digest, purpose FROM subscriber_token").fetchall()
    conn.close()
    assert mail is not None and again is not None
    assert mail.to == "c@example.com"
    assert mail.subject == "[Acme] Investigating: Database outage"
    assert mail.text == (
        "Database outage\n"
        "Investigating — 2026-12-03 17:50 KST\n\n"
        "We are **on it**.\nMore soon.\n\n"
        "Affected: API\n\n"  # the private monitor is not named
        "Status page: https://status.example.com/\n"
        f"Unsubscribe: {mail.unsubscribe}\n"
    )
    assert re.fullmatch(
        r"https://status\.example\.com/unsubscribe/[A-Za-z0-9_-]{24}", mail.unsubscribe
    )
    assert mail.unsubscribe != again.unsubscribe
    token = mail.unsubscribe.rsplit("/", 1)[1]
    assert [p for _, p in digests] == ["unsubscribe", "unsubscribe"]
    assert token not in str(digests)
    # Bounded: a subscriber's newest 50 unsubscribe links work, older ones are forgotten.
    conn = sqlite3.connect(db, isolation_level=None)
    for _ in range(60):
        compose(conn, row, config, to_ms(NOW) + 1)
    kept = conn.execute("SELECT count(*), min(created_ms) FROM subscriber_token").fetchone()
    assert kept == (50, to_ms(NOW) + 1)
    conn.close()
    # Someone who left gets nothing.
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DELETE FROM subscriber")
    assert compose(conn, row, config, to_ms(NOW)) is None
    conn.close()


def test_subscriptions_need_an_email_notifier_and_a_public_url(tmp_path: pathlib.Path) -> None:
    settings = Settings.model_validate(
        {"public_url": "https://s.example.com", "subscriptions": {"email": "mail"}}
    )
    where = ("settings", "subscriptions", "email")
    assert subscription_errors(settings, {"mail": "email"}) == []
    assert subscription_errors(settings, {"hook": "webhook"}) == [
        (where, "no notifier has id 'mail'")
    ]
    assert subscription_errors(settings, {"mail": "slack"}) == [
        (where, "notifier 'mail' is of type 'slack'; subscriptions need an email one")
    ]
    assert subscription_errors(Settings(), {}) == []
    path = tmp_path / "monitors.toml"
    path.write_text(
        CONFIG.format(extra="").replace(
            'type = "email"', 'type = "webhook"\nurl = "http://127.0.0.1:9/"'
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)  # the loader asks subscription_errors, with the line
    assert (
        f"{path}:7: settings.subscriptions.email: notifier 'mail' is of type 'webhook';"
        " subscriptions need an email one"
    ) in caught.value.errors
    path.write_text(
        CONFIG.format(extra="").replace('public_url = "https://status.example.com"', "")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        f"{path}:7: settings.subscriptions: needs settings.public_url: every mail to a subscriber"
        " carries absolute confirm and unsubscribe links"
    ]


# -- end to end: `prober run` --------------------------------------------------------------


def _post(url: str, fields: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(fields or {}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _mails(inbox: Inbox) -> list[EmailMessage]:
    found = []
    for envelope in list(inbox.envelopes):
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        found.append(mail)
    return found


def _body(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _update_toml(at: dt.datetime, status: str, body: str) -> str:
    """An `[[updates]]` table as DESIGN.md's "Incidents written by people" shows it."""
    return f'\n[[updates]]\nat = "{at.isoformat()}"\nstatus = "{status}"\nbody = "{body}"\n'


def _until(run: ProberRun, predicate: Callable[[], object]) -> None:
    """`until`, and the prober's log when it does not come true."""
    try:
        until(predicate)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{run.log}") from None


def test_prober_run_confirms_announces_once_across_a_restart_and_unsubscribes(
    tmp_path: pathlib.Path,
) -> None:
    inbox = Inbox()
    smtp = LoopbackController(inbox, hostname="127.0.0.1", server_hostname="smtp.test")
    smtp.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "monitors.toml"
    config.write_text(
        f"""
[settings]
title = "Acme"
listen = "127.0.0.1:{port}"
public_url = "{base}"
metrics = {{ listen = "" }}
subscriptions = {{ email = "mail" }}

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = {smtp.port}
from = "status@example.com"
to = ["ops@example.com"]
security = "none"
"""
    )
    incidents = tmp_path / "incidents"
    incidents.mkdir()
    db = tmp_path / "data" / "prober.db"
    run = ProberRun(["run", "-c", str(config)], tmp_path)
    try:
        run.wait_for("prober running")
        assert _post(f"{base}/subscribe", {"email": "reader@example.com"})[0] == 202
        assert _post(f"{base}/subscribe", {"email": "never-confirms@example.com"})[0] == 202
        _until(run, lambda: len(inbox.envelopes) == 2)
        (first,) = [m for m in _mails(inbox) if m["To"] == "reader@example.com"]
        confirm = re.search(re.escape(base) + r"/subscribe/confirm/[A-Za-z0-9_-]+", _body(first))
        assert confirm is not None
        status, page = _post(confirm.group(0))
        assert status == 200 and "Subscribed" in page

        # A people's incident with an update to tell: written, then a reload.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        notice = incidents / "db-outage.toml"
        head = (
            'title = "Database outage"\nimpact = "major"\ncomponents = { api = "major_outage" }\n'
        )
        notice.write_text(head + _update_toml(now, "investigating", "We are on it."))
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for("config reloaded")
        _until(run, lambda: len(inbox.envelopes) == 3)
        update = _mails(inbox)[2]
        assert update["To"] == "reader@example.com"
        assert update["Subject"] == "[Acme] Investigating: Database outage"
        assert "We are on it." in _body(update)
        assert str(update["List-Unsubscribe"]).strip().startswith(f"<{base}/unsubscribe/")
        assert run.stop() == 0

        # A restart: nothing is told again; an update written meanwhile is.
        later = max(now + dt.timedelta(seconds=1), dt.datetime.now(dt.UTC).replace(microsecond=0))
        notice.write_text(notice.read_text() + _update_toml(later, "identified", "Found it."))
        run = ProberRun(["run", "-c", str(config)], tmp_path)
        run.wait_for("prober running")
        _until(run, lambda: len(inbox.envelopes) == 4)
        mails = _mails(inbox)
        assert [m["To"] for m in mails[2:]] == ["reader@example.com"] * 2
        assert "Found it." in _body(mails[3])
        conn = sqlite3.connect(db)
        told = conn.execute("SELECT count(*) FROM alert WHERE kind = 'subscriber'").fetchone()
        conn.close()
        assert told == (4,)  # two confirmations, two updates: none to the pending address

        # The link in the mail unsubscribes (a POST, as its page's button does).
        unsubscribe = str(mails[3]["List-Unsubscribe"]).strip()[1:-1]
        assert _post(unsubscribe)[0] == 200
        conn = sqlite3.connect(db)
        left = conn.execute("SELECT address FROM subscriber").fetchall()
        conn.close()
        assert left == [("never-confirms@example.com",)]
    finally:
        run.stop()
        smtp.stop()
