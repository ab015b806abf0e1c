"""/metrics from a Snapshot: the text a Prometheus server scrapes, parsed back as it parses it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from statuspage.metrics import MONITOR_FAMILIES, PAGE_FAMILIES, SnapshotCollector, add_to
from statuspage.snapshot import Group, Overall, Snapshot, State
from tests.statuspage.factory import HOSTILE, NOW, monitor, sample

Scraped = dict[str, list[Sample]]


def scrape(snapshot: Snapshot | None) -> tuple[str, Scraped]:
    registry = CollectorRegistry(auto_describe=True)
    add_to(registry, lambda: snapshot)
    text = generate_latest(registry).decode()
    return text, {f.name: f.samples for f in text_string_to_metric_families(text)}


def series(scraped: Scraped, metric: str, monitor_id: str, **labels: str) -> list[float]:
    """The values of `metric` for one monitor whose labels include `labels`."""
    return [
        s.value
        for s in scraped.get(metric, [])
        if s.labels.get("monitor") == monitor_id
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(scraped: Scraped, metric: str, monitor_id: str, **labels: str) -> float:
    found = series(scraped, metric, monitor_id, **labels)
    assert len(found) == 1, (metric, monitor_id, labels, found)
    return found[0]


@pytest.fixture(scope="module")
def scraped() -> Scraped:
    return scrape(sample())[1]


def test_down_monitor(scraped: Scraped) -> None:
    assert one(scraped, "probe_success", "api") == 0
    assert one(scraped, "monitor_up", "api") == 0
    assert one(scraped, "probe_http_status_code", "api") == 503
    assert one(scraped, "probe_duration_seconds", "api") == pytest.approx(0.042)
    assert one(scraped, "monitor_incidents_open", "api") == 1
    assert one(scraped, "monitor_stale", "api") == 0
    assert one(scraped, "monitor_last_check_timestamp_seconds", "api") == pytest.approx(
        (NOW - dt.timedelta(seconds=20)).timestamp()
    )
    assert {
        s.labels["state"]: s.value for s in scraped["monitor_state"] if s.labels["monitor"] == "api"
    } == {"up": 0, "degraded": 0, "down": 1, "maintenance": 0, "unknown": 0}


def test_uptime_ratios_and_certificate(scraped: Scraped) -> None:
    assert one(scraped, "monitor_uptime_ratio", "api", window="24h") == pytest.approx(0.9826)
    assert one(scraped, "monitor_uptime_ratio", "api", window="90d") == pytest.approx(0.9998)
    expiry = one(scraped, "probe_ssl_earliest_cert_expiry", "api")
    assert expiry == (NOW + dt.timedelta(days=40)).timestamp()
    assert series(scraped, "probe_ssl_earliest_cert_expiry", "db") == []


def test_unknown_values_are_absent_not_zero(scraped: Scraped) -> None:
    # cron: stale, state unknown, no 24h uptime, no latency, no status code
    assert series(scraped, "monitor_uptime_ratio", "cron", window="24h") == []
    assert one(scraped, "monitor_uptime_ratio", "cron", window="7d") == pytest.approx(0.85)
    assert series(scraped, "monitor_up", "cron") == []
    assert one(scraped, "probe_success", "cron") == 0
    assert one(scraped, "monitor_stale", "cron") == 1
    assert one(scraped, "monitor_state", "cron", state="unknown") == 1
    assert series(scraped, "probe_duration_seconds", "cron") == []
    assert series(scraped, "probe_http_status_code", "cron") == []
    assert one(scraped, "monitor_incidents_open", "cron") == 0


def test_maintenance_and_degraded(scraped: Scraped) -> None:
    assert one(scraped, "monitor_up", "db") == 1
    assert series(scraped, "probe_success", "db") == []  # the state hides the last check
    assert one(scraped, "monitor_state", "db", state="maintenance") == 1
    assert one(scraped, "probe_success", "web") == 1
    assert one(scraped, "monitor_up", "web") == 1
    assert one(scraped, "probe_duration_seconds", "web") == pytest.approx(0.812)
    assert one(scraped, "monitor_incidents_open", "web") == 0  # resolved


def test_never_checked_monitor_has_no_probe_success() -> None:
    fresh = monitor("new", state=State.UNKNOWN, checked_at=None, latency_ms=None, status_code=None)
    snapshot = dataclasses.replace(sample(), groups=(Group("", (fresh,)),))
    _, scraped = scrape(snapshot)
    assert series(scraped, "probe_success", "new") == []
    assert series(scraped, "monitor_last_check_timestamp_seconds", "new") == []
    assert one(scraped, "monitor_state", "new", state="unknown") == 1


def test_labels_and_escaping() -> None:
    awkward = 'back\\slash "q"\nnew line'
    snapshot = sample()
    odd = monitor("odd", name=awkward, group=awkward)
    snapshot = dataclasses.replace(snapshot, groups=(*snapshot.groups, Group(awkward, (odd,))))
    text, scraped = scrape(snapshot)

    web = next(s for s in scraped["monitor_up"] if s.labels["monitor"] == "web")
    assert web.labels == {
        "monitor": "web",
        "name": HOSTILE,
        "group": "Frontend <&>",
        "type": "http",
    }
    assert '\\"quoted\\"' in text and "<script>" in text  # text format: quotes escaped only
    odd_up = next(s for s in scraped["monitor_up"] if s.labels["monitor"] == "odd")
    assert odd_up.labels["name"] == awkward and odd_up.labels["group"] == awkward
    assert "back\\\\slash" in text and "\\nnew line" in text
    assert one(scraped, "monitor_up", "db", name="Database", group="Backend", type="tcp") == 1


def test_label_sets_are_identical_within_each_family(scraped: Scraped) -> None:
    for name, samples in scraped.items():
        assert len({frozenset(s.labels) for s in samples}) == 1, name
    assert set(scraped) == set(MONITOR_FAMILIES) | set(PAGE_FAMILIES)
    assert {s.labels["monitor"] for s in scraped["monitor_state"]} == {"api", "db", "web", "cron"}


def test_page_families(scraped: Scraped) -> None:
    overall = {s.labels["state"]: s.value for s in scraped["status_page_overall"]}
    assert overall == {o.value: (1.0 if o is Overall.PARTIAL_OUTAGE else 0.0) for o in Overall}
    (generated,) = scraped["status_page_generated_timestamp_seconds"]
    assert generated.value == NOW.timestamp() and generated.labels == {}


def test_help_and_type_for_every_family() -> None:
    text, _ = scrape(sample())
    for name in (*MONITOR_FAMILIES, *PAGE_FAMILIES):
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} gauge" in text


def test_no_snapshot_yet_means_no_samples() -> None:
    text, scraped = scrape(None)
    assert text == ""
    assert scraped == {}


def test_reads_the_current_snapshot_at_each_scrape() -> None:
    current: list[Snapshot | None] = [None]
    registry = CollectorRegistry(auto_describe=True)
    collector = add_to(registry, lambda: current[0])
    assert isinstance(collector, SnapshotCollector)
    assert generate_latest(registry) == b""
    current[0] = sample()
    assert b'probe_success{group="Backend",monitor="api"' in generate_latest(registry)
    empty = dataclasses.replace(sample(), groups=())
    current[0] = empty
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert names >= set(PAGE_FAMILIES)
