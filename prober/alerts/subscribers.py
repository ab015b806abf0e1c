"""Email subscriptions, the probing process's part: the subscriber tables, their rows in
the outbox, and the announcements. SQL on `subscriber`, `subscriber_token` and
`announced` lives here and only here.

- `Subscribers.handle` answers what the web process forwards over the control socket
  (subscribe, confirm, unsubscribe), each in one short `BEGIN IMMEDIATE` transaction on a
  connection of its own (in a worker thread: the event loop never touches SQLite). What
  a visitor is told never depends on what is stored: the web process answers a sign-up
  before it forwards it.
- `Subscribers.announce` (every few seconds, and after a reload) finds people's incident
  updates with `notify = true` and maintenance windows that started, records each in
  `announced` and queues one outbox row per confirmed subscriber, in one transaction: a
  restart or a reload never tells anything twice. Something older than FRESH_MS at first
  sight (the first start, subscriptions just turned on) is recorded without mail.
- `compose` (the dispatcher, inside its claim transaction) turns a row into a Mail for
  the email notifier named in `settings.subscriptions`, with fresh tokens whose digests
  it stores: no token is ever at rest as itself. A retry makes new ones (the old stay
  valid). A row of someone who has left is dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
import threading
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from prober import maintenance, subscriptions
from prober.alerts.message import Kind
from prober.alerts.outbox import PENDING, Row
from prober.config import Config
from prober.store.engine import Connection, Database, connect
from prober.subscriptions import FRESH_MS, PACE_MS, Links, Mail
from prober.timeline import from_ms, to_ms

log = logging.getLogger(__name__)

CONFIRM, UNSUBSCRIBE = "confirm", "unsubscribe"  # token purposes


class Subscribers:
    """The probing process's side of subscriptions; `wake` tells the dispatcher."""

    def __init__(
        self, path: pathlib.Path | Database, config: Config, wake: Callable[[], None] = lambda: None
    ) -> None:
        self._path = path
        self.config = config  # replaced on reload
        self._wake = wake
        self._lock = threading.Lock()  # one connection, one worker thread at a time
        self._conn: Connection | None = None

    def _run(self, fn: Callable[[Connection], int]) -> int:
        with self._lock:
            if self._conn is None:
                self._conn = connect(self._path)
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                added = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if added:
            self._wake()
        return added

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def handle(self, asked: Mapping[str, str], now_ms: int) -> str:
        """A request from the web process: `{action, address, lang}` or `{action, digest}`
        -> "ok", "confirmed", "invalid", or "off" (subscriptions are not configured)."""
        wanted = self.config.settings.subscriptions
        if wanted is None:
            return "off"
        action = asked.get("action", "")
        if action == "subscribe":
            address = subscriptions.normalise(asked.get("address", ""))
            if address is not None:
                lang = asked.get("lang", "")
                if lang not in subscriptions.LANGUAGES:
                    lang = self.config.settings.language
                self._run(lambda conn: subscribe(conn, address, lang, wanted.email, now_ms))
            return "ok"
        answer = "invalid"

        def act(conn: Connection) -> int:
            nonlocal answer
            if action == "confirm":
                answer = confirm(conn, asked.get("digest", ""), now_ms)
            elif action == "unsubscribe":
                answer = unsubscribe(conn, asked.get("digest", ""))
            return 0

        self._run(act)
        return answer

    def announce(self, now_ms: int) -> int:
        """Queue what subscribers have not been told yet; the number of rows queued."""
        config = self.config
        wanted = config.settings.subscriptions
        if wanted is None:
            return 0

        def run(conn: Connection) -> int:
            expire(conn, now_ms)
            return announce(conn, config, wanted.email, now_ms)

        return self._run(run)


# -- sign-ups -------------------------------------------------------------------------


def expire(conn: Connection, now_ms: int) -> None:
    """Pending sign-ups past PENDING_MS are forgotten, with their tokens."""
    old = now_ms - subscriptions.PENDING_MS
    conn.execute(
        "DELETE FROM subscriber_token WHERE subscriber IN"
        " (SELECT id FROM subscriber WHERE state = 'pending' AND created_ms < ?)",
        (old,),
    )
    conn.execute("DELETE FROM subscriber WHERE state = 'pending' AND created_ms < ?", (old,))


def subscribe(conn: Connection, address: str, lang: str, notifier: str, now_ms: int) -> int:
    """A sign-up: a confirmation mail when the address is new (and the pending cap is not
    reached) or pending and within its per-address limits; nothing otherwise (a confirmed
    address gets nothing). Returns the outbox rows added (0 or 1)."""
    expire(conn, now_ms)
    row = conn.execute(
        "SELECT id, state, mailed_ms, mailed_since_ms, mailed_count FROM subscriber"
        " WHERE address = ?",
        (address,),
    ).fetchone()
    if row is None:
        (pending,) = conn.execute(
            "SELECT count(*) FROM subscriber WHERE state = 'pending'"
        ).fetchone()
        if pending >= subscriptions.PENDING_CAP:
            log.warning("subscriptions: %d sign-ups pending; a new one was refused", pending)
            return 0
        cursor = conn.execute(
            "INSERT INTO subscriber (address, lang, state, created_ms, mailed_since_ms,"
            " mailed_count) VALUES (?, ?, 'pending', ?, ?, 0) RETURNING id",
            (address, lang, now_ms, now_ms),
        )
        sid, count, since = int(cursor.fetchone()[0]), 0, now_ms
    else:
        sid, state, mailed_ms, since, count = row
        if state != "pending":
            return 0
        if mailed_ms is not None and now_ms - mailed_ms < subscriptions.MAIL_GAP_MS:
            return 0
        if now_ms - since >= 86_400_000:
            since, count = now_ms, 0
        if count >= subscriptions.MAILS_PER_DAY:
            return 0
    conn.execute(
        "UPDATE subscriber SET mailed_ms = ?, mailed_since_ms = ?, mailed_count = ?, lang = ?"
        " WHERE id = ?",
        (now_ms, since, count + 1, lang, sid),
    )
    key = f"subscriber/confirm/{sid}/{now_ms}"
    return _queue(conn, notifier, key, key, {"subscriber": sid, "what": "confirm"}, now_ms, now_ms)


def confirm(conn: Connection, token_digest: str, now_ms: int) -> str:
    """ "confirmed" when the digest is a live confirm token of a pending sign-up."""
    expire(conn, now_ms)
    found = conn.execute(
        "SELECT t.subscriber FROM subscriber_token t JOIN subscriber s ON s.id = t.subscriber"
        " WHERE t.digest = ? AND t.purpose = ? AND s.state = 'pending'",
        (token_digest, CONFIRM),
    ).fetchone()
    if found is None:
        return "invalid"
    conn.execute(
        "UPDATE subscriber SET state = 'confirmed', confirmed_ms = ? WHERE id = ?",
        (now_ms, found[0]),
    )
    conn.execute(
        "DELETE FROM subscriber_token WHERE subscriber = ? AND purpose = ?", (found[0], CONFIRM)
    )
    return "confirmed"


def unsubscribe(conn: Connection, token_digest: str) -> str:
    """The subscriber of an unsubscribe token is deleted, address, tokens and all."""
    found = conn.execute(
        "SELECT subscriber FROM subscriber_token WHERE digest = ? AND purpose = ?",
        (token_digest, UNSUBSCRIBE),
    ).fetchone()
    if found is None:
        return "invalid"
    conn.execute("DELETE FROM subscriber_token WHERE subscriber = ?", (found[0],))
    conn.execute("DELETE FROM subscriber WHERE id = ?", (found[0],))
    return "ok"


# -- announcements ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _News:
    key: str  # in `announced`
    at_ms: int  # when it happened: freshness is judged on it
    data: Mapping[str, object]  # the outbox row's, without the subscriber


def news(config: Config, now_ms: int) -> list[_News]:
    """Every update with `notify = true` and every maintenance window running now that
    concerns a public monitor, keyed stably; future-dated ones wait."""
    names = {m.id: m.display_name for m in config.monitors if m.public}
    found: list[_News] = []
    for notice in config.notices:
        affected = [names[mid] for mid, _ in notice.components if mid in names]
        for i, item in enumerate(notice.updates):
            at_ms = to_ms(item.at)
            if item.notify and at_ms <= now_ms:
                data = {"what": "notice", "name": notice.title, "status": item.status.value,
                        "at_ms": at_ms, "body": item.body, "affected": affected}  # fmt: skip
                found.append(_News(f"notice/{notice.id}/{i}", at_ms, data))
    zone = ZoneInfo(config.settings.timezone)
    for window_item in config.maintenance:
        scope = ["*"] if "*" in window_item.monitors else sorted(window_item.monitors)
        public = names.values() if scope == ["*"] else [names[m] for m in scope if m in names]
        affected = list(public)
        if not affected:
            continue  # private monitors only: nothing a visitor sees
        digest = hashlib.sha256(f"{window_item.title}\0{chr(0).join(scope)}".encode()).hexdigest()
        for window in maintenance.active([window_item], None, from_ms(now_ms, zone), zone):
            start, end = to_ms(window.start), to_ms(window.end)
            data = {"what": "maintenance", "name": window_item.title, "since_ms": start,
                    "until_ms": end, "affected": affected}  # fmt: skip
            found.append(_News(f"maintenance/{digest[:16]}/{start}", start, data))
    return found


def announce(conn: Connection, config: Config, notifier: str, now_ms: int) -> int:
    fresh = news(config, now_ms)
    if not fresh:
        return 0
    told = {key for (key,) in conn.execute("SELECT key FROM announced")}
    added = 0
    subscribers: list[int] | None = None
    for item in fresh:
        if item.key in told:
            continue
        mail = now_ms - item.at_ms <= FRESH_MS
        conn.execute(
            "INSERT INTO announced (key, at_ms, mailed) VALUES (?, ?, ?)", (item.key, now_ms, mail)
        )
        if not mail:
            log.info("subscriptions: not mailing %s: older than an hour at first sight", item.key)
            continue
        if subscribers is None:
            confirmed = conn.execute("SELECT id FROM subscriber WHERE state = 'confirmed'")
            subscribers = [sid for (sid,) in confirmed]
        for sid in subscribers:
            key = f"subscriber/{item.key}/{sid}"
            data = {**item.data, "subscriber": sid}
            added += _queue(conn, notifier, key, item.key, data, now_ms, now_ms + added * PACE_MS)
        log.info("subscriptions: announcing %s to %d subscribers", item.key, len(subscribers))
    return added


def _queue(
    conn: Connection,
    notifier: str,
    key: str,
    incident: str,
    data: Mapping[str, object],
    now_ms: int,
    due_ms: int,
) -> int:
    cursor = conn.execute(
        "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
        " due_ms, state, attempts, silenced, data) VALUES (?, ?, ?, '', ?, ?, ?, ?, 0, 0, ?)",
        (key, notifier, Kind.SUBSCRIBER.value, incident, now_ms, due_ms, PENDING,
         json.dumps(dict(data), separators=(",", ":"))),
    )  # fmt: skip
    return cursor.rowcount


# -- a row becomes a mail (the dispatcher's claim transaction) ----------------------------


def compose(conn: Connection, row: Row, config: Config, now_ms: int) -> Mail | None:
    """The mail for a SUBSCRIBER row, with fresh tokens (digests stored); None when its
    subscriber is gone, or no longer one it may go to (a confirm mail to a confirmed
    address, any other to a pending one)."""
    data = row.data
    found = conn.execute(
        "SELECT address, lang, state FROM subscriber WHERE id = ?", (data.get("subscriber"),)
    ).fetchone()
    what = str(data.get("what", ""))
    if found is None or (found[2] == "pending") != (what == "confirm"):
        return None
    address, lang, _ = found
    sid = int(str(data["subscriber"]))
    settings = config.settings
    base = settings.public_url
    asked = "" if lang == settings.language else f"?lang={lang}"  # pages in their language
    unsubscribe = _mint(conn, sid, UNSUBSCRIBE, now_ms)
    links = Links(f"{base}/{asked}", f"{base}/unsubscribe/{unsubscribe}{asked}")
    title, zone = settings.title, ZoneInfo(settings.timezone)
    affected = [str(a) for a in _list(data.get("affected"))]
    if what == "confirm":
        links = dataclasses.replace(
            links, confirm=f"{base}/subscribe/confirm/{_mint(conn, sid, CONFIRM, now_ms)}{asked}"
        )
        return subscriptions.confirmation(address, lang, title, links)
    if what == "notice":
        return subscriptions.update(
            address, lang, title, links,
            name=str(data.get("name", "")), status=str(data.get("status", "")),
            at=from_ms(_int(data.get("at_ms")), zone), body=str(data.get("body", "")),
            affected=affected, zone=zone,
        )  # fmt: skip
    return subscriptions.maintenance(
        address, lang, title, links,
        name=str(data.get("name", "")), start=from_ms(_int(data.get("since_ms")), zone),
        end=from_ms(_int(data.get("until_ms")), zone), affected=affected, zone=zone,
    )  # fmt: skip


def _mint(conn: Connection, sid: int, purpose: str, now_ms: int) -> str:
    token = subscriptions.new_token()
    conn.execute(
        "INSERT INTO subscriber_token (digest, subscriber, purpose, created_ms)"
        " VALUES (?, ?, ?, ?)",
        (subscriptions.digest(token), sid, purpose, now_ms),
    )
    # bounded: the links of a subscriber's newest KEEP_TOKENS mails work, older ones not
    conn.execute(
        "DELETE FROM subscriber_token WHERE subscriber = ? AND purpose = ? AND digest NOT IN"
        " (SELECT digest FROM subscriber_token WHERE subscriber = ? AND purpose = ?"
        " ORDER BY created_ms DESC LIMIT ?)",
        (sid, purpose, sid, purpose, subscriptions.KEEP_TOKENS),
    )
    return token


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return int(value)
