"""Prometheus metrics of the public monitors, read at scrape time from the current Snapshot.

The families follow blackbox_exporter where it has a name (`probe_success`,
`probe_duration_seconds`, `probe_http_status_code`, `probe_ssl_earliest_cert_expiry`), so
dashboards and alerts written for it work here; the rest are `monitor_*` (one public
monitor) and `status_page_*` (the page). Every per-monitor series carries the labels
`monitor` (id), `name`, `group` ("" for none) and `type`; a family's label set never varies.

Like the page, this sees only public monitors and the snapshot's allow-list of fields,
and it tells the state as the page tells it:
- `probe_success`: 1 when the monitor is up or degraded, 0 when down or unknown (stale, or
  the prober could not judge). Absent when never checked, and in maintenance (the
  snapshot's state then says "maintenance", not what the last check saw).
- `monitor_up`: 1 up, degraded or in maintenance, 0 down. Absent when unknown: "no data"
  must not fire `monitor_up == 0` alerts; alert on `monitor_state{state="unknown"} == 1`
  or `monitor_stale == 1` for that.
- Other per-monitor values are absent while unknown (no latency, no certificate seen, no
  uptime in a window with nothing monitored), never 0.
Before the first snapshot there is nothing to tell: no samples at all.

The metrics listener writes these families with `exposition()` (the collector's text,
four times faster) after the registry's others, through `Scrapes`: rendered in a worker
thread, never on the event loop, at most once per MAX_AGE seconds however many scrapers
ask (Prometheus, a second Prometheus, someone's curl loop), and kept with its gzip form.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import time
import typing
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, utils
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from statuspage.snapshot import MonitorView, Overall, Snapshot, State

LABELS = ["monitor", "name", "group", "type"]

# name -> (extra labels, HELP)
MONITOR_FAMILIES: dict[str, tuple[list[str], str]] = {
    "probe_success": (
        [],
        "Whether the monitor's last check succeeded (1 up or degraded, 0 down or unknown); "
        "absent when never checked or in maintenance",
    ),
    "probe_duration_seconds": ([], "Latency of the monitor's last check, in seconds"),
    "probe_http_status_code": ([], "HTTP status code of the monitor's last check"),
    "probe_ssl_earliest_cert_expiry": (
        [],
        "Earliest expiry of the monitor's TLS certificate chain, in unix seconds",
    ),
    "monitor_up": (
        [],
        "Whether the monitor counts as available (1 up, degraded or in maintenance, "
        "0 down); absent while its state is unknown",
    ),
    "monitor_state": (
        ["state"],
        "The monitor's public state: 1 for the current one, 0 for the others",
    ),
    "monitor_uptime_ratio": (
        ["window"],
        "Share of monitored time the monitor was up, 0 to 1, over the trailing window; "
        "absent when nothing was monitored in it",
    ),
    "monitor_last_check_timestamp_seconds": ([], "Time of the monitor's last check, unix seconds"),
    "monitor_stale": (
        [],
        "1 when the monitor's last check is older than twice its interval, else 0",
    ),
    "monitor_incidents_open": ([], "1 while the monitor has an open incident, else 0"),
}
PAGE_FAMILIES: dict[str, tuple[list[str], str]] = {
    "status_page_overall": (
        ["state"],
        "The status page's overall state: 1 for the current one, 0 for the others",
    ),
    "status_page_generated_timestamp_seconds": (
        [],
        "When the status page's data was last computed, unix seconds",
    ),
}


class SnapshotCollector(Collector):
    """Per public monitor: last check, state, uptime windows; the page's overall state."""

    def __init__(self, get: Callable[[], Snapshot | None]) -> None:
        self._get = get

    def describe(self) -> Iterator[Metric]:
        """The names, without asking for a snapshot (the registry calls this on register)."""
        for name, (extra, text) in MONITOR_FAMILIES.items():
            yield GaugeMetricFamily(name, text, labels=LABELS + extra)
        for name, (extra, text) in PAGE_FAMILIES.items():
            yield GaugeMetricFamily(name, text, labels=extra)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._get()
        if snapshot is None:
            return
        families = {
            name: GaugeMetricFamily(name, text, labels=LABELS + extra)
            for name, (extra, text) in MONITOR_FAMILIES.items()
        } | {
            name: GaugeMetricFamily(name, text, labels=extra)
            for name, (extra, text) in PAGE_FAMILIES.items()
        }
        for m in snapshot.monitors:
            labels = [m.id, m.name, m.group, m.type]
            for name, extra, value in _monitor_samples(m):
                families[name].add_metric([*labels, *extra], value)
        for name, extra, value in _page_samples(snapshot):
            families[name].add_metric(list(extra), value)
        yield from families.values()


def exposition(snapshot: Snapshot | None) -> str:
    """The text `generate_latest` makes of a SnapshotCollector, written directly: the same
    text (a test holds them equal) in a fraction of the time. prometheus_client checks and
    escapes every label of every sample: 3 s of CPU for 10,000 monitors' 170,000 samples."""
    if snapshot is None:
        return ""
    out = {name: [_help(name, text)] for name, (_, text) in MONITOR_FAMILIES.items()}
    for m in snapshot.monitors:
        own = {"monitor": _escape(m.id), "name": _escape(m.name)}
        own |= {"group": _escape(m.group), "type": _escape(m.type)}
        plain = _LINES[""].format_map(own)  # the families with the monitor's labels only
        for name, extra, value in _monitor_samples(m):
            if extra:  # a state or a window
                more = zip(MONITOR_FAMILIES[name][0], map(_escape, extra), strict=True)
                line = _LINES[name].format_map(own | dict(more))
            else:
                line = name + plain
            out[name].append(f"{line} {_number(value)}\n")
    page = {name: [_help(name, text)] for name, (_, text) in PAGE_FAMILIES.items()}
    for name, extra, value in _page_samples(snapshot):
        labels = dict(zip(PAGE_FAMILIES[name][0], map(_escape, extra), strict=True))
        page[name].append(f"{_LINES[name].format_map(labels)} {_number(value)}\n")
    return "".join(line for lines in (*out.values(), *page.values()) for line in lines)


Sample = tuple[str, tuple[str, ...], float]  # family, values of its extra labels, value


def _monitor_samples(m: MonitorView) -> Iterator[Sample]:
    if m.checked_at is not None and m.state is not State.MAINTENANCE:
        yield "probe_success", (), 1.0 if m.state in (State.UP, State.DEGRADED) else 0.0
    if m.latency_ms is not None:
        yield "probe_duration_seconds", (), m.latency_ms / 1000.0
    if m.status_code is not None:
        yield "probe_http_status_code", (), float(m.status_code)
    if m.cert_expires is not None:
        yield "probe_ssl_earliest_cert_expiry", (), m.cert_expires.timestamp()
    if m.state is not State.UNKNOWN:
        yield "monitor_up", (), 0.0 if m.state is State.DOWN else 1.0
    for state in State:
        yield "monitor_state", (state.value,), 1.0 if state is m.state else 0.0
    for window, percent in m.uptime.items():
        if percent is not None:
            yield "monitor_uptime_ratio", (window,), percent / 100.0
    if m.checked_at is not None:
        yield "monitor_last_check_timestamp_seconds", (), m.checked_at.timestamp()
    yield "monitor_stale", (), 1.0 if m.stale else 0.0
    yield "monitor_incidents_open", (), 1.0 if any(i.end is None for i in m.incidents) else 0.0


def _page_samples(snapshot: Snapshot) -> Iterator[Sample]:
    for state in Overall:
        yield "status_page_overall", (state.value,), 1.0 if state is snapshot.overall else 0.0
    yield "status_page_generated_timestamp_seconds", (), snapshot.generated_at.timestamp()


_go_float = typing.cast(Callable[[float], str], utils.floatToGoString)


def _number(value: float) -> str:
    """A value as generate_latest writes it (Go's float formatting); 0 and 1 are most."""
    return "1.0" if value == 1.0 else "0.0" if value == 0.0 else _go_float(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(name: str, text: str) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {text}\n# TYPE {name} gauge\n"


def _line(name: str, labels: list[str]) -> str:
    """A format string, `name{{a="{a}",b="{b}"}}`: the labels in the (sorted) order
    generate_latest writes them."""
    if not labels:
        return name
    return name + "{{" + ",".join(f'{k}="{{{k}}}"' for k in sorted(labels)) + "}}"


_LINES = {name: _line(name, LABELS + extra) for name, (extra, _) in MONITOR_FAMILIES.items()}
_LINES[""] = _line("", LABELS)
_LINES |= {name: _line(name, extra) for name, (extra, _) in PAGE_FAMILIES.items()}


def add_to(registry: CollectorRegistry, get: Callable[[], Snapshot | None]) -> SnapshotCollector:
    """Register a SnapshotCollector reading `get()` on every scrape; returns it."""
    collector = SnapshotCollector(get)
    registry.register(collector)
    return collector


MAX_AGE = 5.0  # seconds: a scrape's body is never older, and never rendered more often


@dataclasses.dataclass(frozen=True, slots=True)
class Exposition:
    body: bytes
    gzipped: bytes
    at: float  # the clock when its rendering began


class Scrapes:
    """The /metrics body. A scrape gets the kept one while it is under `max_age` old; else
    `prepare` (fresh data: the snapshot, the probing process's families) then one call of
    `render` in a worker thread, which scrapes arriving meanwhile share."""

    def __init__(
        self,
        render: Callable[[], bytes],
        prepare: Callable[[], Awaitable[None]] | None = None,
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._render = render
        self._prepare = prepare
        self._max_age = max_age
        self._clock = clock
        self._kept: Exposition | None = None
        self._rendering: asyncio.Future[Exposition] | None = None
        self.renders = 0

    async def get(self) -> Exposition:
        kept = self._kept
        if kept is not None and self._clock() - kept.at < self._max_age:
            return kept
        if self._rendering is None or self._rendering.done():
            self._rendering = asyncio.ensure_future(self._refresh())
        # shielded: a scraper that hangs up does not cancel the render the others wait for
        return await asyncio.shield(self._rendering)

    async def _refresh(self) -> Exposition:
        at = self._clock()
        if self._prepare is not None:
            await self._prepare()
        body, gzipped = await asyncio.to_thread(self._encode)
        self._kept = Exposition(body, gzipped, at)
        self.renders += 1
        return self._kept

    def _encode(self) -> tuple[bytes, bytes]:
        body = self._render()
        return body, gzip.compress(body, 6, mtime=0)
