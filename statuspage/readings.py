"""Every monitor's newest result and its accounted time, kept in memory for /metrics.

The operators' view (DESIGN.md, "Prometheus and Alertmanager"): every monitor, private
ones too; the newest result at each location that probes it, and its verdict where it is
kept (prober.config.locations: `settings.location` without agents; `*` for the quorum of
several). `Readings.refresh(conn, config, now)` reads only what changed since the last
call, as statuspage.incremental does for the page: the results newer than the newest
seen, in one json_each join on the result key; coverage, incidents and the last
transition again only for monitors whose newest coverage span, newest incident or last
transition moved; everything after a config change, a new monitor or location, or a
rewrite of history (`meta.rewrites`). It answers a `Frame`: immutable, so one thread
renders it while another reads the next.

The time counters are a monitor's accounting (docs/REFERENCE.md, the monthly report's
own) from its first coverage until `settled_ms`, the moment before which no later result
can change it: its newest result, or earlier while a verdict is pending. A failure run not
confirmed yet may become an incident from its first down (settled until then); an open
incident ends at the first success of the recovery streak under way (settled until that
success; a quorum's verdict, whose streak is not stored: its start). So they only grow,
across restarts too (they are read from the store), unless history is rewritten
(import-results, a maintenance window added in the past, an agent's batch older than the
newest result); and
between two moments they grow by exactly the report's figures for the window between the
two `settled_ms`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from typing import Any
from zoneinfo import ZoneInfo

from prober import maintenance, timeline
from prober.config import Config
from prober.config.locations import COMBINED, latency_location, verdict_location
from prober.config.monitors import Monitor
from prober.redact import visible_text
from prober.store.engine import Connection
from prober.store.ledger import TrackSpec, rewrites
from prober.timeline import Spans
from statuspage.incremental import FAR, MAINT, Tally

DAY_MS = 86_400_000
MAINT_AHEAD_MS = 8 * DAY_MS  # maintenance spans are expanded this far past now
_DOWN, _UP, _DEGRADED = 3, 1, 2  # result.outcome codes
_COLUMNS = (
    "ts_ms, outcome, latency_us, status_code, dns_us, connect_us, tls_us, first_byte_us,"
    " cert_expiry, details, outcome = 2 AND error LIKE 'certificate expires in %'"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Last:
    """A monitor's newest result: its columns, and what /metrics reads of its details."""

    ts_ms: int
    outcome: int  # 0 unknown, 1 up, 2 degraded, 3 down
    latency_us: int | None
    status_code: int | None
    dns_us: int | None
    connect_us: int | None
    tls_us: int | None
    first_byte_us: int | None
    cert_expiry: int | None  # unix seconds
    redirects: int  # redirects followed
    http_version: str  # "1.1" unless the check stored another
    tls_version: str | None  # "TLSv1.3": the final response came over TLS
    cert_warning: bool = False  # degraded only by warn_days: private, up on the page

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> Last:
        """From a row of _COLUMNS."""
        ts, outcome, latency, status, dns, connect, tls, first_byte, expiry, text, warn = row
        details = json.loads(text) if isinstance(text, str) else {}
        if not isinstance(details, dict):
            details = {}
        hops = details.get("redirects")
        http_version = details.get("http_version")
        tls_version = details.get("tls_version")
        return cls(
            ts,
            outcome,
            latency,
            status,
            dns,
            connect,
            tls,
            first_byte,
            expiry,
            redirects=len(hops) if isinstance(hops, list) else 0,
            http_version=http_version if isinstance(http_version, str) else "1.1",
            tls_version=tls_version if isinstance(tls_version, str) else None,
            cert_warning=bool(warn),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Counted:
    """Accounted ms from the first coverage until `settled_ms` (see the module's doc)."""

    settled_ms: int
    monitored_ms: int
    down_ms: int
    unknown_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """One monitor, as a refresh left it; /metrics adds what follows from `now`."""

    id: str
    name: str
    group: str
    type: str
    cover_ms: int
    location: str  # where its verdict is kept: the page's view and the counters are its
    probes: tuple[tuple[str, Last], ...]  # the newest result at each location probing it
    last: Last | None  # the one the page shows (its latency location's)
    incident_open: bool
    tally: Tally  # coverage, incidents and maintenance (expanded to MAINT_AHEAD_MS past now)
    reach: int  # where the open coverage span ends (FAR: none open)
    counted: Counted | None  # None: no coverage yet

    def stale(self, now_ms: int) -> bool:
        return self.last is not None and now_ms - self.last.ts_ms > self.cover_ms

    def maintained(self, now_ms: int) -> bool:
        return bool(self.tally.rate_at(now_ms, self.reach) & MAINT)

    def window(self, lo: int, hi: int) -> tuple[int, int, int]:
        """(monitored, down, maintained) ms in [lo, hi), as timeline.account counts them."""
        return self.tally.window(lo, hi, self.reach)


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    readings: tuple[Reading, ...]  # in config order
    read_at_ms: int
    version: int  # moves with every refresh that changed something


class _Kept:
    """One monitor's kept state between refreshes."""

    __slots__ = (
        "cover_ms",
        "first_ms",
        "incidents",
        "known",
        "last_down",
        "lasts",
        "lname",
        "maint_key",
        "mark",
        "mid",
        "monitor",
        "open_start",
        "pending_since",
        "places",
        "reading",
        "tally",
        "up_since",
        "vlid",
        "vname",
    )

    def __init__(
        self,
        monitor: Monitor,
        mid: int | None,
        key: tuple[int, ...],
        hub: str,
        ids: dict[str, int],
    ) -> None:
        self.monitor = monitor
        self.mid = mid
        self.maint_key = key
        self.cover_ms = TrackSpec.of(monitor).cover_ms
        self.vname = verdict_location(monitor, hub)
        self.vlid = ids.get(self.vname)
        self.lname = latency_location(monitor, hub)
        # (name, id) of the locations probing it: one without agents
        self.places = tuple((name, ids.get(name)) for name in monitor.locations or (hub,))
        self.lasts: dict[str, Last] = {}  # the newest result read, by location name
        self.mark: tuple[object, ...] | None = None
        self.known = Spans.empty()
        self.open_start: int | None = None  # the open coverage span's start
        self.first_ms: int | None = None  # the first coverage span's start
        self.incidents: list[tuple[int, int | None]] = []
        self.pending_since: int | None = None  # the status is pending since (a failure run)
        self.last_down: int | None = None  # the newest down result read (None: not read)
        self.up_since: int | None = None  # the first success after it
        self.tally = Tally(Spans.empty(), Spans.empty(), Spans.empty())
        self.reading: Reading | None = None

    @property
    def combined(self) -> bool:
        return self.vname == COMBINED

    def newest(self) -> int | None:
        """The newest result the verdict has seen: at its location, or at any of a quorum's
        (as prober.report.compute.Reader reaches the open coverage span)."""
        if self.combined:
            return max((last.ts_ms for last in self.lasts.values()), default=None)
        last = self.lasts.get(self.vname)
        return None if last is None else last.ts_ms

    def reach(self) -> int:
        if self.open_start is None:
            return FAR
        return (self.newest() or self.open_start) + self.cover_ms

    def settled(self) -> int | None:
        """The moment before which no later result changes this monitor's accounting."""
        settled = self.newest()
        if settled is None:
            return None
        if self.pending_since is not None:
            settled = min(settled, self.pending_since)
        opened = [start for start, end in self.incidents if end is None]
        if opened and self.combined:  # the quorum's recovery streak is not stored
            settled = min(settled, opened[0])
        elif opened and self.up_since is not None:
            settled = min(settled, self.up_since)
        return settled


class Readings:
    """Keeps every monitor's Reading; `refresh` reads what changed since the last call."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._kept: list[_Kept] = []
        self._rewrites = -1
        self._max_mid: int | None = None
        self._max_lid: int | None = None
        self._maint: dict[tuple[int, ...], tuple[Spans, int]] = {}
        self._horizon = 0
        self._frame: Frame | None = None
        self.full = False
        self.full_reads = 0

    def refresh(self, conn: Connection, config: Config, now: dt.datetime) -> Frame:
        """Every monitor's reading as of `now`, in one read transaction."""
        conn.execute("BEGIN")
        try:
            return self._refresh(conn, config, timeline.to_ms(now))
        finally:
            conn.execute("ROLLBACK")

    def _refresh(self, conn: Connection, config: Config, now_ms: int) -> Frame:
        counter = rewrites(conn)
        (max_mid,) = conn.execute("SELECT max(id) FROM monitor").fetchone()
        (max_lid,) = conn.execute("SELECT max(id) FROM location").fetchone()
        self.full = (
            config is not self._config
            or counter != self._rewrites
            or (max_mid, max_lid) != (self._max_mid, self._max_lid)
        )
        if self.full:
            self._start_over(conn, config, now_ms)
            self._rewrites, self._max_mid, self._max_lid = counter, max_mid, max_lid
            self.full_reads += 1
        moved = self._expand_maintenance(config, now_ms)
        changed = self._read_results(conn)
        moved |= self._read_derived(conn, changed)
        for i in moved | changed:
            self._kept[i].reading = None
        return self._make_frame(config, now_ms, bool(moved or changed))

    def _start_over(self, conn: Connection, config: Config, now_ms: int) -> None:
        self._config = config
        places = {name: lid for lid, name in conn.execute("SELECT id, name FROM location")}
        ids = {slug: mid for mid, slug in conn.execute("SELECT id, slug FROM monitor")}
        hub = config.settings.location
        self._kept = [
            _Kept(
                m,
                ids.get(m.id),
                tuple(
                    i
                    for i, item in enumerate(config.maintenance)
                    if maintenance.applies(item, m.id)
                ),
                hub,
                places,
            )
            for m in config.monitors
        ]
        (first,) = conn.execute("SELECT min(start_ms) FROM coverage").fetchone()
        self._horizon = min(now_ms, first) if first is not None else now_ms
        # every set of maintenance items a monitor has, expanded at the next refresh
        self._maint = {k.maint_key: (Spans.empty(), 0) for k in self._kept if k.maint_key}

    def _expand_maintenance(self, config: Config, now_ms: int) -> set[int]:
        """Maintenance spans per set of items, from the first coverage to MAINT_AHEAD_MS
        past now; expanded again (those monitors' tallies redone) a day before they run
        out. Answers the monitors whose tallies were redone."""
        tz = ZoneInfo(config.settings.timezone)
        stale = set()
        for key, (_, end) in list(self._maint.items()):
            if end - DAY_MS <= now_ms:
                items = [config.maintenance[i] for i in key]
                end = now_ms + MAINT_AHEAD_MS
                self._maint[key] = (maintenance.spans(items, None, self._horizon, end, tz), end)
                stale.add(key)
        if not stale:
            return set()
        redone = set()
        for i, k in enumerate(self._kept):
            if k.maint_key in stale:
                self._retally(k)
                redone.add(i)
        return redone

    def _read_results(self, conn: Connection) -> set[int]:
        """The newest result at each location of each monitor (all of them after a start
        over), and the downs and successes among those read since the last refresh at its
        verdict's location. Answers the monitors with new results."""
        if self.full:
            for k in self._kept:
                k.lasts = {}
                for name, lid in k.places:
                    if k.mid is None or lid is None:
                        continue
                    row = conn.execute(
                        f"SELECT {_COLUMNS} FROM result"  # noqa: S608
                        " WHERE monitor_id = ? AND location_id = ? ORDER BY ts_ms DESC LIMIT 1",
                        (k.mid, lid),
                    ).fetchone()
                    if row is not None:
                        k.lasts[name] = Last.of(row)
            return {i for i, k in enumerate(self._kept) if k.mid is not None}
        by_key: dict[tuple[int, int], tuple[int, str]] = {}
        seen = []
        for i, k in enumerate(self._kept):
            if k.mid is None:
                continue
            # a location with nothing read yet: from its monitor's newest result on, less
            # a coverage (never a scan of every result the others stored)
            floor = max((last.ts_ms for last in k.lasts.values()), default=0) - k.cover_ms
            for name, lid in k.places:
                if lid is not None:
                    last = k.lasts.get(name)
                    seen.append([k.mid, lid, last.ts_ms if last else floor])
                    by_key[k.mid, lid] = (i, name)
        if not seen:
            return set()
        rows = conn.execute(
            "SELECT r.monitor_id, r.location_id, r.ts_ms, r.outcome, r.latency_us,"
            " r.status_code, r.dns_us, r.connect_us, r.tls_us, r.first_byte_us, r.cert_expiry,"
            " r.details, r.outcome = 2 AND r.error LIKE 'certificate expires in %'"
            " FROM json_each(?) AS j JOIN result AS r"
            " ON r.monitor_id = j.value ->> 0 AND r.ts_ms > j.value ->> 2"
            " AND r.location_id = j.value ->> 1 ORDER BY r.monitor_id, r.location_id, r.ts_ms",
            (json.dumps(seen),),
        ).fetchall()
        changed = set()
        for key, group in itertools.groupby(rows, lambda r: (r[0], r[1])):
            found = list(group)
            i, name = by_key[key]
            k = self._kept[i]
            if name == k.vname:  # the verdict's own results: its recovery streak
                for row in found:
                    ts, outcome = row[2], row[3]
                    if outcome == _DOWN:
                        k.last_down, k.up_since = ts, None
                    elif outcome in (_UP, _DEGRADED) and k.up_since is None:
                        k.up_since = ts
            k.lasts[name] = Last.of(found[-1][2:])
            changed.add(i)
        return changed

    def _read_derived(self, conn: Connection, changed: set[int]) -> set[int]:
        """Coverage, incidents and status of the monitors with new results whose newest
        coverage span, newest incident or last transition moved (all after a start over),
        where each one's verdict is kept. Answers the monitors read again."""
        pairs = [[k.mid, k.vlid] for k in (self._kept[i] for i in changed) if k.vlid is not None]
        if not pairs:
            return set()
        marks = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT m, c.start_ms, c.end_ms,"
                " (SELECT ts_ms || ':' || new FROM transition WHERE monitor_id = m"
                " AND location_id = l ORDER BY ts_ms DESC LIMIT 1),"
                " (SELECT start_ms || ':' || ifnull(end_ms, '') FROM incident"
                " WHERE monitor_id = m AND location_id = l ORDER BY start_ms DESC LIMIT 1),"
                " (SELECT count(*) FROM incident WHERE monitor_id = m AND location_id = l"
                " AND end_ms IS NULL)"
                " FROM (SELECT j.value ->> 0 AS m, j.value ->> 1 AS l FROM json_each(?) AS j)"
                " AS p"
                " LEFT JOIN coverage AS c ON c.monitor_id = m AND c.location_id = l"
                " AND c.start_ms = (SELECT max(start_ms) FROM coverage WHERE monitor_id = m"
                " AND location_id = l)",
                (json.dumps(pairs),),
            )
        }
        moved: dict[int, _Kept] = {}
        for i in changed:
            k = self._kept[i]
            mark = marks.get(k.mid)
            if k.mid is not None and k.vlid is not None and (self.full or mark != k.mark):
                k.mark = mark
                moved[k.mid] = k
        if not moved:
            return set()
        for k in moved.values():
            k.known, k.open_start, k.first_ms, k.incidents = Spans.empty(), None, None, []
            k.pending_since = None
        chosen = json.dumps([[mid, k.vlid] for mid, k in moved.items()])
        spans: dict[int, list[tuple[int, int]]] = {}
        for mid, start, end in conn.execute(
            "SELECT c.monitor_id, c.start_ms, c.end_ms FROM json_each(?) AS j JOIN coverage"
            " AS c ON c.monitor_id = j.value ->> 0 AND c.location_id = j.value ->> 1",
            (chosen,),
        ):
            k = moved[mid]
            if end is None:
                k.open_start = start
            k.first_ms = start if k.first_ms is None else min(k.first_ms, start)
            spans.setdefault(mid, []).append((start, FAR if end is None else end))
        for mid, start, end in conn.execute(
            "SELECT i.monitor_id, i.start_ms, i.end_ms FROM json_each(?) AS j JOIN incident"
            " AS i ON i.monitor_id = j.value ->> 0 AND i.location_id = j.value ->> 1"
            " ORDER BY i.monitor_id, i.start_ms",
            (chosen,),
        ):
            moved[mid].incidents.append((start, end))
        for mid, ts, new in conn.execute(
            "SELECT t.monitor_id, t.ts_ms, t.new FROM json_each(?) AS j JOIN transition AS t"
            " ON t.monitor_id = j.value ->> 0 AND t.location_id = j.value ->> 1"
            " AND t.ts_ms = (SELECT max(ts_ms) FROM transition WHERE monitor_id ="
            " t.monitor_id AND location_id = t.location_id)",
            (chosen,),
        ):
            moved[mid].pending_since = ts if new == "pending" else None
        for mid, k in moved.items():
            k.known = Spans.of(spans.get(mid, []))
            if not k.combined and (self.full or k.last_down is None):
                self._read_recovery(conn, k)
            self._retally(k)
        return {i for i in changed if self._kept[i].mid in moved}

    def _read_recovery(self, conn: Connection, k: _Kept) -> None:
        """The newest down result and the first success after it, of a monitor with an
        open incident (read from the results once; then kept from the results read)."""
        opened = [start for start, end in k.incidents if end is None]
        if not opened:
            return
        key = (k.mid, k.vlid)
        row = conn.execute(
            "SELECT ts_ms FROM result WHERE monitor_id = ? AND location_id = ? AND ts_ms >= ?"
            " AND outcome = 3 ORDER BY ts_ms DESC LIMIT 1",
            (*key, opened[0]),
        ).fetchone()
        k.last_down = opened[0] if row is None else row[0]
        row = conn.execute(
            "SELECT ts_ms FROM result WHERE monitor_id = ? AND location_id = ? AND ts_ms > ?"
            " AND outcome IN (1, 2) ORDER BY ts_ms LIMIT 1",
            (*key, k.last_down),
        ).fetchone()
        k.up_since = None if row is None else row[0]

    def _retally(self, k: _Kept) -> None:
        incidents = Spans.of((s, FAR if e is None else e) for s, e in k.incidents)
        maintained = self._maint[k.maint_key][0] if k.maint_key else Spans.empty()
        k.tally = Tally(k.known, incidents, maintained)

    def _make_frame(self, config: Config, now_ms: int, moved: bool) -> Frame:
        old = self._frame
        if old is not None and not moved and not self.full:
            self._frame = dataclasses.replace(old, read_at_ms=now_ms)
            return self._frame
        readings = []
        for k in self._kept:
            if k.reading is None:
                k.reading = _reading(k)
            readings.append(k.reading)
        version = 0 if old is None else old.version + 1
        self._frame = Frame(tuple(readings), now_ms, version)
        return self._frame


def _reading(k: _Kept) -> Reading:
    m = k.monitor
    reach = k.reach()
    settled = k.settled()
    counted = None
    if k.first_ms is not None and settled is not None:
        settled = max(settled, k.first_ms)
        mon, down, maint = k.tally.window(k.first_ms, settled, reach)
        counted = Counted(settled, mon, down, settled - k.first_ms - mon - maint)
    return Reading(
        id=m.id,
        name=visible_text(m.display_name),
        group=visible_text(m.group),
        type=str(getattr(m, "type", "")),
        cover_ms=k.cover_ms,
        location=k.vname,
        probes=tuple((name, k.lasts[name]) for name, _ in k.places if name in k.lasts),
        last=k.lasts.get(k.lname),
        incident_open=any(end is None for _, end in k.incidents),
        tally=k.tally,
        reach=reach,
        counted=counted,
    )
