"""The families /metrics serves of the monitors, in blackbox_exporter's meanings.

Every monitor, private ones too (the metrics listener is the operators', never the
public's), from a `readings.Frame`: every monitor's newest result and accounting. Every
per-monitor series is labelled `monitor` (id) and `location` (`settings.location`, the
location whose results they are) and nothing else but a family's own label (`phase`,
`state`, `window`, `version`); names, groups and types are in `prober_monitor_info`, so
renaming a monitor starts no new series.

- `probe_*`: the newest check, as blackbox_exporter reports a probe. `probe_success` is 1
  up or degraded, 0 down (at once: confirmation by `down_after` is the page's business),
  whatever maintenance says. No `probe_*` sample at all while the newest result is
  `unknown` (the prober could not judge) or stale (older than twice the interval: the
  coverage rule's unknown time), nor before the first one. An HTTP check that got no
  response has `probe_http_status_code` 0 (blackbox's value) and its phases that did not
  happen 0; `transfer` is the rest of the check's time after the first byte.
- `monitor_up`, `monitor_state`, `monitor_uptime_ratio`, ...: the state as the status page
  tells it (maintenance, confirmed incidents, stale results), for every monitor.
- `prober_{monitored,downtime,unknown}_seconds_total`: the report's accounting since the
  monitor's first coverage, only ever growing (see statuspage.readings), so
  `1 - increase(downtime) / increase(monitored)` is the report's uptime over a window.
- `status_page_*`: the public page's banner, from its Snapshot.

`exposition()` writes the text (or OpenMetrics) directly; `FrameCollector` is the same
families as prometheus_client objects, and a test holds the two to the same bytes
(prometheus_client checks and escapes every label of every sample: seconds of CPU for
10,000 monitors).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator

from prometheus_client import utils
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from statuspage.readings import Frame, Last, Reading
from statuspage.snapshot import Overall, Snapshot, State

DAY_MS = 86_400_000
WINDOWS = {"24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "90d": 90 * DAY_MS}
PHASES = ("resolve", "connect", "tls", "processing", "transfer")  # blackbox's names
# a failure not confirmed yet (down_after) is up to the public, as the page shows it
_OUTCOME_STATE = {0: State.UNKNOWN, 1: State.UP, 2: State.DEGRADED, 3: State.UP}


@typing.final
class Family(typing.NamedTuple):
    kind: str  # gauge | counter | info
    label: str | None  # the family's own label, besides monitor and location
    help: str


# name (without _total / _info) -> Family, in the order written
FAMILIES: dict[str, Family] = {
    "prober_monitor": Family(
        "info", None, "A monitor's name, group and type (labels monitor, name, group, type)"
    ),
    "probe_success": Family(
        "gauge",
        None,
        "Whether the newest check succeeded (1 up or degraded, 0 down); absent while it is "
        "unknown or stale",
    ),
    "probe_duration_seconds": Family("gauge", None, "How long the newest check took"),
    "probe_http_status_code": Family(
        "gauge", None, "HTTP status code of the newest check's response, 0 when none came"
    ),
    "probe_http_duration_seconds": Family(
        "gauge", "phase", "Time the newest HTTP check spent in each phase, redirects summed"
    ),
    "probe_http_ssl": Family("gauge", None, "Whether the final response came over TLS"),
    "probe_http_version": Family("gauge", None, "HTTP version of the response, 0 when none"),
    "probe_http_redirects": Family("gauge", None, "Redirects the newest HTTP check followed"),
    "probe_tls_version_info": Family("gauge", "version", "TLS version of the newest check"),
    "probe_ssl_earliest_cert_expiry": Family(
        "gauge", None, "Earliest expiry of the certificate chain seen, in unix seconds"
    ),
    "probe_dns_lookup_time_seconds": Family(
        "gauge", None, "Time the newest check spent resolving the target's name"
    ),
    "monitor_up": Family(
        "gauge",
        None,
        "Whether the monitor counts as available (1 up, degraded or in maintenance, 0 down: "
        "an incident is open); absent while its state is unknown",
    ),
    "monitor_state": Family(
        "gauge", "state", "The monitor's state as the status page tells it: 1 for the current one"
    ),
    "monitor_uptime_ratio": Family(
        "gauge",
        "window",
        "Share of monitored time the monitor was up, 0 to 1, over the trailing window; "
        "absent when nothing was monitored in it",
    ),
    "monitor_last_check_timestamp_seconds": Family(
        "gauge", None, "Time of the monitor's newest check, unix seconds"
    ),
    "monitor_stale": Family(
        "gauge", None, "1 when the newest check is older than twice the interval, else 0"
    ),
    "monitor_incidents_open": Family("gauge", None, "1 while an incident is open, else 0"),
    "prober_monitored_seconds": Family(
        "counter",
        None,
        "Monitored time since the monitor's first coverage (not unknown, not maintenance), "
        "as the monthly report counts it",
    ),
    "prober_downtime_seconds": Family(
        "counter", None, "Downtime since the monitor's first coverage, as the report counts it"
    ),
    "prober_unknown_seconds": Family(
        "counter",
        None,
        "Unknown time (no fresh known result, outside maintenance) since the first coverage",
    ),
}
PAGE_FAMILIES: dict[str, Family] = {
    "status_page_overall": Family(
        "gauge", "state", "The status page's overall state: 1 for the current one, 0 for the others"
    ),
    "status_page_generated_timestamp_seconds": Family(
        "gauge", None, "When the status page's data was last computed, unix seconds"
    ),
}
LABELS = ["location", "monitor"]
INFO_LABELS = ["monitor", "name", "group", "type"]

Sample = tuple[str, str, str | None, float]  # family, location, its own label's value, value


def monitor_samples(r: Reading, now_ms: int) -> Iterator[Sample]:
    """One monitor's samples at `now_ms` (but the info), in FAMILIES' order: `probe_*` of
    each location probing it, the rest at its verdict's location."""
    for location, newest in r.probes:
        if newest.outcome != 0 and now_ms - newest.ts_ms <= r.cover_ms:  # known, not stale
            for name, own, value in _probe(r.type, newest):
                yield name, location, own, value
    last, stale, here = r.last, r.stale(now_ms), r.location
    state = _state(r, now_ms, stale)
    if state is not State.UNKNOWN:
        yield "monitor_up", here, None, 0.0 if state is State.DOWN else 1.0
    for each in State:
        yield "monitor_state", here, each.value, 1.0 if each is state else 0.0
    for window, length in WINDOWS.items():
        mon, down, _ = r.window(now_ms - length, now_ms)
        if mon:
            yield "monitor_uptime_ratio", here, window, (mon - down) / mon
    if last is not None:
        yield "monitor_last_check_timestamp_seconds", here, None, last.ts_ms / 1000
    yield "monitor_stale", here, None, 1.0 if stale else 0.0
    yield "monitor_incidents_open", here, None, 1.0 if r.incident_open else 0.0
    counted = r.counted
    yield "prober_monitored_seconds", here, None, counted.monitored_ms / 1000 if counted else 0.0
    yield "prober_downtime_seconds", here, None, counted.down_ms / 1000 if counted else 0.0
    yield "prober_unknown_seconds", here, None, counted.unknown_ms / 1000 if counted else 0.0


def _probe(kind: str, last: Last) -> Iterator[tuple[str, str | None, float]]:
    """blackbox_exporter's families of one result."""
    yield "probe_success", None, 1.0 if last.outcome in (1, 2) else 0.0
    if last.latency_us is not None:
        yield "probe_duration_seconds", None, last.latency_us / 1e6
    answered = last.status_code is not None
    if kind == "http":
        yield "probe_http_status_code", None, float(last.status_code or 0)
        yield from _phases(last)
        yield "probe_http_ssl", None, 1.0 if answered and last.tls_version else 0.0
        yield "probe_http_version", None, _version(last.http_version) if answered else 0.0
        yield "probe_http_redirects", None, float(last.redirects)
    if last.tls_version:
        yield "probe_tls_version_info", last.tls_version.replace("TLSv", "TLS "), 1.0
    if last.cert_expiry is not None:
        yield "probe_ssl_earliest_cert_expiry", None, float(last.cert_expiry)
    if last.dns_us is not None:
        yield "probe_dns_lookup_time_seconds", None, last.dns_us / 1e6


def _phases(last: Last) -> Iterator[tuple[str, str | None, float]]:
    """Blackbox's five phases, 0 for those that did not happen; `transfer` is the time
    after the first byte (the body, summed over redirects), the rest of the check's."""
    spent = (last.dns_us, last.connect_us, last.tls_us, last.first_byte_us)
    transfer = 0
    if last.first_byte_us is not None and last.latency_us is not None:
        transfer = max(0, last.latency_us - sum(us or 0 for us in spent))
    for phase, us in zip(PHASES, (*spent, transfer), strict=True):
        yield "probe_http_duration_seconds", phase, (us or 0) / 1e6


def _version(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _state(r: Reading, now_ms: int, stale: bool) -> State:
    """As the page tells it (statuspage.build): maintenance, then unknown, then an open
    incident; a failure not confirmed yet and a certificate within warn_days show as up
    (the failure itself is in probe_success)."""
    if r.maintained(now_ms):
        return State.MAINTENANCE
    if r.last is None or stale:
        return State.UNKNOWN
    if r.incident_open:
        return State.DOWN
    if r.last.cert_warning:
        return State.UP
    return _OUTCOME_STATE[r.last.outcome]


def page_samples(snapshot: Snapshot) -> Iterator[Sample]:
    for state in Overall:
        yield "status_page_overall", "", state.value, 1.0 if state is snapshot.overall else 0.0
    yield "status_page_generated_timestamp_seconds", "", None, snapshot.generated_at.timestamp()


class FrameCollector(Collector):
    """The families of `exposition()`, as prometheus_client objects (for tests, and for
    anyone who wants them in a registry)."""

    def __init__(
        self,
        frame: Callable[[], Frame | None],
        snapshot: Callable[[], Snapshot | None],
        now_ms: Callable[[], int],
    ) -> None:
        self._frame, self._snapshot, self._now_ms = frame, snapshot, now_ms

    def collect(self) -> Iterator[Metric]:
        frame, snapshot, now_ms = self._frame(), self._snapshot(), self._now_ms()
        if frame is not None:
            info = InfoMetricFamily("prober_monitor", FAMILIES["prober_monitor"].help, labels=[])
            made = {name: _family(name, f, LABELS) for name, f in FAMILIES.items()}
            for r in frame.readings:
                info.add_metric(
                    [], {"monitor": r.id, "name": r.name, "group": r.group, "type": r.type}
                )
                for name, location, own, value in monitor_samples(r, now_ms):
                    labels = [location, r.id] + ([] if own is None else [own])
                    made[name].add_metric(labels, value)
            yield info
            yield from (family for name, family in made.items() if name != "prober_monitor")
        if snapshot is not None:
            page = {name: _family(name, f, []) for name, f in PAGE_FAMILIES.items()}
            for name, _, own, value in page_samples(snapshot):
                page[name].add_metric([] if own is None else [own], value)
            yield from page.values()


def _family(name: str, f: Family, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
    every = labels + ([] if f.label is None else [f.label])
    if f.kind == "counter":
        return CounterMetricFamily(name, f.help, labels=every)
    return GaugeMetricFamily(name, f.help, labels=every)


def exposition(
    frame: Frame | None, snapshot: Snapshot | None, now_ms: int, *, openmetrics: bool = False
) -> str:
    """What generate_latest (or prometheus_client.openmetrics's, without its `# EOF`)
    writes of a FrameCollector, written directly."""
    out: list[str] = []
    if frame is not None:
        lines: dict[str, list[str]] = {name: [] for name in FAMILIES}
        info = lines["prober_monitor"]
        bases: dict[str, str] = {}  # location -> its label, escaped
        for r in frame.readings:
            mid = _escape(r.id)
            info.append(
                f'prober_monitor_info{{group="{_escape(r.group)}",monitor="{mid}",'
                f'name="{_escape(r.name)}",type="{_escape(r.type)}"}} 1.0\n'
            )
            for name, location, own, value in monitor_samples(r, now_ms):
                loc = bases.get(location)
                if loc is None:
                    loc = bases[location] = f'{{location="{_escape(location)}",monitor="'
                base = f'{loc}{mid}"'
                labels = base if own is None else f'{base},{FAMILIES[name].label}="{_escape(own)}"'
                lines[name].append(f"{_SAMPLE[name]}{labels}}} {_number(value)}\n")
        for name, f in FAMILIES.items():
            out.append(_header(name, f, openmetrics))
            out.extend(lines[name])
    if snapshot is not None:
        page: dict[str, list[str]] = {name: [] for name in PAGE_FAMILIES}
        for name, _, own, value in page_samples(snapshot):
            labels = "" if own is None else f'{{state="{_escape(own)}"}}'
            page[name].append(f"{name}{labels} {_number(value)}\n")
        for name, f in PAGE_FAMILIES.items():
            out.append(_header(name, f, openmetrics))
            out.extend(page[name])
    return "".join(out)


_SAMPLE = {
    name: name + ("_total" if f.kind == "counter" else "_info" if f.kind == "info" else "")
    for name, f in FAMILIES.items()
}


def _header(name: str, f: Family, openmetrics: bool) -> str:
    if openmetrics:
        text = f.help.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f"# HELP {name} {text}\n# TYPE {name} {f.kind}\n"
    text = f.help.replace("\\", "\\\\").replace("\n", "\\n")
    shown = _SAMPLE.get(name, name)
    kind = "gauge" if f.kind == "info" else f.kind
    return f"# HELP {shown} {text}\n# TYPE {shown} {kind}\n"


_go_float = typing.cast(Callable[[float], str], utils.floatToGoString)


def _number(value: float) -> str:
    """A value as generate_latest writes it (Go's float formatting); 0 and 1 are most."""
    return "1.0" if value == 1.0 else "0.0" if value == 0.0 else _go_float(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
