"""Push monitors: pings come in, silence goes out as `down`.

`PushHub.receive()` handles `/push/{token}[/start|/fail|/{exit_code}]`: the token is found
by its SHA-256 (a dict lookup on the digest, so an unknown token costs what a known one
does, whatever its bytes), a per-token bucket refuses floods with 429 before anything is
stored, and the ping becomes a result for the writer. `PushHub.overdue(now)` turns every
passed deadline into a `down` result at the deadline:

- `period`: due `period + grace` after the last result; while silent, again every period.
- `cron` (+ `timezone`, default settings.timezone): due `grace` after the first fire time
  after the last ping; a ping up to `grace` early counts for the coming fire time.
- After `/start`, the run must end (a ping, `/fail` or an exit code; `rid` pairs them)
  within `grace`: its duration is the result's latency.
- At start, each monitor's deadline follows from its newest stored result; a deadline that
  passed while the prober was stopped is judged at start, and the stopped time stays
  unknown (coverage), not down.

`now` is always a parameter: tests drive a clock of their own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple
from zoneinfo import ZoneInfo

from prober import maintenance
from prober.config.durations import format_duration
from prober.config.monitors import PushMonitor
from prober.results import CheckResult, Outcome
from prober.store.engine import Connection
from prober.timeline import from_ms

log = logging.getLogger(__name__)

MSG_LIMIT = 200  # characters of `msg` kept
BURST = 20  # pings a token may send at once
REFILL_PER_S = 1.0  # and then this many a second
ACTIONS = ("", "start", "fail")
EXIT_CODE = re.compile(r"[0-9]{1,3}")  # fullmatch: ASCII only (str.isdigit takes "²", "٣", "３")
Submit = Callable[[str, dt.datetime, CheckResult], None]


def ensure_tokens(conn: Connection, monitors: Iterable[PushMonitor]) -> dict[str, str]:
    """Each push monitor's token: the config's, else the stored one, else a new one (192
    random bits) stored now. Monitor id -> token."""
    tokens: dict[str, str] = {}
    stored = dict(conn.execute("SELECT monitor, token FROM push_token").fetchall())
    for m in monitors:
        if m.token is not None:
            tokens[m.id] = m.token.get_secret_value()
            continue
        token = stored.get(m.id)
        if token is None:
            token = secrets.token_urlsafe(24)
            conn.execute("INSERT INTO push_token (monitor, token) VALUES (?, ?)", (m.id, token))
        tokens[m.id] = token
    return tokens


def last_results(conn: Connection, monitors: Iterable[str]) -> dict[str, int]:
    """Each monitor's newest stored result time (ms), at any location."""
    found = {}
    for mid in monitors:
        row = conn.execute(
            "SELECT max(r.ts_ms) FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " WHERE m.slug = ?",
            (mid,),
        ).fetchone()
        if row and row[0] is not None:
            found[mid] = int(row[0])
    return found


def last_pings(conn: Connection, monitors: Iterable[str], since_ms: int) -> dict[str, int]:
    """Each monitor's newest ping stored after `since_ms` (not a missed deadline): what
    another hub sharing the database took."""
    found = {}
    for mid in monitors:
        row = conn.execute(
            "SELECT max(r.ts_ms) FROM result r JOIN monitor m ON m.id = r.monitor_id"
            " WHERE m.slug = ? AND r.ts_ms > ? AND ifnull(r.details ->> '$.push', '') != 'missed'",
            (mid, since_ms),
        ).fetchone()
        if row and row[0] is not None:
            found[mid] = int(row[0])
    return found


def urls(base: str, tokens: Mapping[str, str]) -> dict[str, str]:
    """Monitor id -> its ping URL under `base` (settings.public_url, or the listen address)."""
    return {mid: f"{base.rstrip('/')}/push/{token}" for mid, token in tokens.items()}


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def known_action(action: str) -> bool:
    """A ping, `start`, `fail`, or an exit code of 1 to 3 ASCII digits (the rest: 404)."""
    return action in ACTIONS or EXIT_CODE.fullmatch(action) is not None


@dataclasses.dataclass(slots=True)
class _Watch:
    monitor: PushMonitor
    tz: dt.tzinfo
    due_ms: int = 0
    why: str = ""  # what a miss at due_ms means, in words
    starts: dict[str, int] = dataclasses.field(default_factory=dict)  # rid -> start ms
    tokens: float = BURST
    refilled_ms: int = 0
    heard_ms: int = 0  # the newest result the deadline counts from

    @property
    def grace_ms(self) -> int:
        return round(self.monitor.grace * 1000)

    def expect_after(self, last_ms: int) -> None:
        """The next deadline after a result at last_ms."""
        self.heard_ms = max(self.heard_ms, last_ms)
        m = self.monitor
        if m.period is not None:
            self.due_ms = last_ms + round(m.period * 1000) + self.grace_ms
            self.why = (
                f"no ping within {format_duration(m.period)} + {format_duration(m.grace)} grace"
            )
        else:
            assert m.cron is not None
            fire = maintenance.next_fire(m.cron, last_ms + self.grace_ms, self.tz)
            self.due_ms = fire + self.grace_ms
            stamp = from_ms(fire, self.tz).strftime("%Y-%m-%d %H:%M %Z")
            self.why = (
                f"no ping for the {stamp} run (cron {m.cron!r}, grace {format_duration(m.grace)})"
            )

    def missed(self) -> None:
        """After a miss: the next one comes one period (or cron time) later."""
        m = self.monitor
        self.starts.clear()
        if m.period is not None:
            self.due_ms += round(m.period * 1000)
        else:
            self.expect_after(self.due_ms)

    def allow(self, now_ms: int) -> bool:
        self.tokens = min(BURST, self.tokens + (now_ms - self.refilled_ms) / 1000 * REFILL_PER_S)
        self.refilled_ms = now_ms
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Answer(NamedTuple):
    status: int
    text: str


class PushHub:
    def __init__(
        self, monitors: Iterable[PushMonitor], tokens: Mapping[str, str], zone: str, submit: Submit
    ) -> None:
        default = ZoneInfo(zone)
        self._watches = {
            m.id: _Watch(m, ZoneInfo(m.timezone) if m.timezone else default) for m in monitors
        }
        self._by_digest = {digest(tokens[mid]): mid for mid in self._watches if mid in tokens}
        self._submit = submit
        self._zone = default

    def reconfigure(
        self, monitors: Iterable[PushMonitor], tokens: Mapping[str, str], now_ms: int
    ) -> None:
        """A reloaded config: unchanged monitors keep their deadline, runs and bucket; new
        or changed ones expect their first ping from now; removed ones stop."""
        default = self._zone
        watches = {}
        for m in monitors:
            old = self._watches.get(m.id)
            if old is not None and old.monitor == m:
                watches[m.id] = old
                continue
            watch = _Watch(m, ZoneInfo(m.timezone) if m.timezone else default)
            watch.refilled_ms = now_ms
            watch.expect_after(now_ms)
            watches[m.id] = watch
        self._watches = watches
        self._by_digest = {digest(tokens[mid]): mid for mid in watches if mid in tokens}

    def restore(self, last_results: Mapping[str, int], now_ms: int) -> None:
        """Deadlines from each monitor's newest stored result (ms); none: from now."""
        for mid, watch in self._watches.items():
            watch.refilled_ms = now_ms
            last = last_results.get(mid)
            watch.expect_after(now_ms if last is None else last)
            if watch.due_ms < now_ms:  # passed while the prober was stopped: judged now
                watch.due_ms = now_ms
                watch.why += " (the deadline passed while the prober was stopped)"

    def digests(self) -> frozenset[bytes]:
        """The SHA-256 digests of every token taken (the web process pre-checks with them)."""
        return frozenset(self._by_digest)

    def receive(self, token: str, action: str, query: Mapping[str, str], now_ms: int) -> Answer:
        mid = self._by_digest.get(digest(token))
        if mid is None:
            return Answer(404, "not found\n")
        if not known_action(action):
            return Answer(404, "not found\n")
        watch = self._watches[mid]
        if not watch.allow(now_ms):
            return Answer(429, "too many pings; slow down\n")
        rid = query.get("rid", "")[:64]
        if action == "start":
            watch.starts[rid] = now_ms
            if len(watch.starts) > 100:  # runs that never ended: forget the oldest
                watch.starts.pop(next(iter(watch.starts)))
            watch.due_ms = now_ms + watch.grace_ms
            watch.why = (
                f"started, not finished within the {format_duration(watch.monitor.grace)} grace"
            )
            return Answer(200, "OK\n")
        result = self._result(watch, action, query, rid, now_ms)
        if isinstance(result, Answer):
            return result
        self._submit(mid, from_ms(now_ms, dt.UTC), result)
        watch.expect_after(now_ms)
        return Answer(200, "OK\n")

    def _result(
        self, watch: _Watch, action: str, query: Mapping[str, str], rid: str, now_ms: int
    ) -> CheckResult | Answer:
        msg = " ".join(query.get("msg", "").split())[:MSG_LIMIT]
        status = query.get("status", "")
        if action == "fail":
            outcome = Outcome.DOWN
        elif EXIT_CODE.fullmatch(action):
            outcome = Outcome.UP if int(action) == 0 else Outcome.DOWN
            msg = (
                msg
                if int(action) == 0
                else f"exit code {int(action)}" + (f": {msg}" if msg else "")
            )
        elif status in ("", "up"):
            outcome = Outcome.UP
        elif status in ("down", "degraded"):
            outcome = Outcome(status)
        else:
            return Answer(400, "status: up, down or degraded\n")
        started = watch.starts.pop(rid, None)
        if started is None and not rid and watch.starts:  # no rid: the newest start
            started = watch.starts.pop(next(reversed(watch.starts)))
        latency: float | None = None
        if started is not None:
            latency = float(now_ms - started)
        elif "latency_ms" in query:
            try:
                latency = float(query["latency_ms"])
            except ValueError:
                return Answer(400, "latency_ms: a number\n")
            if not 0 <= latency < 86_400_000:
                return Answer(400, "latency_ms: 0 to one day\n")
        error = (msg or "reported down") if outcome is Outcome.DOWN else None
        details = {"push": action or "ping"} | ({"msg": msg} if msg and error is None else {})
        return CheckResult(outcome, latency or 0.0, error=error, details=details)

    def due(self, now_ms: int) -> dict[str, int]:
        """The monitors whose deadline has passed: their last ping's time at the latest
        (what a ping taken by another hub must be newer than)."""
        return {mid: w.heard_ms for mid, w in self._watches.items() if w.due_ms <= now_ms}

    def heard(self, pings: Mapping[str, int]) -> None:
        """Pings another hub took (monitor -> ms): deadlines from them when newer."""
        for mid, at_ms in pings.items():
            watch = self._watches.get(mid)
            if watch is not None and at_ms > watch.heard_ms:
                watch.expect_after(at_ms)

    def overdue(self, now_ms: int) -> list[str]:
        """Record a `down` result for every deadline passed by now; the monitors."""
        late = []
        for mid, watch in self._watches.items():
            while watch.due_ms <= now_ms:
                result = CheckResult(Outcome.DOWN, 0.0, error=watch.why, details={"push": "missed"})
                self._submit(mid, from_ms(watch.due_ms, dt.UTC), result)
                late.append(mid)
                watch.missed()
        return late

    def next_due_ms(self) -> int | None:
        return min((w.due_ms for w in self._watches.values()), default=None)
