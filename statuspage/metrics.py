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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
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
        }
        for monitor in snapshot.monitors:
            _add_monitor(families, monitor)
        yield from families.values()

        overall = GaugeMetricFamily(
            "status_page_overall", PAGE_FAMILIES["status_page_overall"][1], labels=["state"]
        )
        for state in Overall:
            overall.add_metric([state.value], 1.0 if state is snapshot.overall else 0.0)
        yield overall
        yield GaugeMetricFamily(
            "status_page_generated_timestamp_seconds",
            PAGE_FAMILIES["status_page_generated_timestamp_seconds"][1],
            value=snapshot.generated_at.timestamp(),
        )


def _add_monitor(families: dict[str, GaugeMetricFamily], m: MonitorView) -> None:
    labels = [m.id, m.name, m.group, m.type]

    def add(name: str, value: float, *extra: str) -> None:
        families[name].add_metric([*labels, *extra], value)

    if m.checked_at is not None and m.state is not State.MAINTENANCE:
        add("probe_success", 1.0 if m.state in (State.UP, State.DEGRADED) else 0.0)
    if m.latency_ms is not None:
        add("probe_duration_seconds", m.latency_ms / 1000.0)
    if m.status_code is not None:
        add("probe_http_status_code", float(m.status_code))
    if m.cert_expires is not None:
        add("probe_ssl_earliest_cert_expiry", m.cert_expires.timestamp())
    if m.state is not State.UNKNOWN:
        add("monitor_up", 0.0 if m.state is State.DOWN else 1.0)
    for state in State:
        add("monitor_state", 1.0 if state is m.state else 0.0, state.value)
    for window, percent in m.uptime.items():
        if percent is not None:
            add("monitor_uptime_ratio", percent / 100.0, window)
    if m.checked_at is not None:
        add("monitor_last_check_timestamp_seconds", m.checked_at.timestamp())
    add("monitor_stale", 1.0 if m.stale else 0.0)
    add("monitor_incidents_open", 1.0 if any(i.end is None for i in m.incidents) else 0.0)


def add_to(registry: CollectorRegistry, get: Callable[[], Snapshot | None]) -> SnapshotCollector:
    """Register a SnapshotCollector reading `get()` on every scrape; returns it."""
    collector = SnapshotCollector(get)
    registry.register(collector)
    return collector
