"""Prometheus collectors for /metrics, read at scrape time from the live objects."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prober.alerts.dispatcher import Delivery
from prober.overload import Overload


class AlertCollector(Collector):
    """Alert delivery: messages sent, failed for good, retried, held back; queue depth."""

    def __init__(self, delivery: Delivery, notifiers: list[str]) -> None:
        self._delivery = delivery
        self._notifiers = notifiers

    def collect(self) -> Iterator[Metric]:
        d = self._delivery
        for name, counts, text in (
            ("prober_alerts_sent", d.sent, "Alert messages delivered"),
            ("prober_alerts_failed", d.failed, "Alert messages given up on (permanent or 24 h)"),
            ("prober_alerts_retried", d.retried, "Alert sends that failed and will be retried"),
            ("prober_alerts_suppressed", d.suppressed, "Alerts not sent (maintenance, depends_on)"),
        ):
            family = CounterMetricFamily(name, text, labels=["notifier"])
            for notifier in self._notifiers:
                family.add_metric([notifier], counts[notifier])
            yield family
        yield GaugeMetricFamily(
            "prober_alerts_queue_depth", "Alerts waiting to be sent or retried", value=d.queue_depth
        )


class OverloadCollector(Collector):
    """Checks recorded `unknown` because the prober itself was late (`scheduler.overload`)."""

    def __init__(self, overload: Overload) -> None:
        self._overload = overload

    def collect(self) -> Iterator[Metric]:
        o = self._overload
        yield CounterMetricFamily(
            "prober_checks_overloaded",
            "Checks recorded unknown, not down or degraded: the prober itself was late",
            value=o.total,
        )
        yield GaugeMetricFamily(
            "prober_overloaded",
            "1 while checks are being recorded unknown because the prober is late",
            value=1.0 if o.in_streak else 0.0,
        )


def registry(
    delivery: Delivery, notifiers: list[str], overload: Overload | None = None
) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=True)
    found.register(AlertCollector(delivery, notifiers))
    if overload is not None:
        found.register(OverloadCollector(overload))
    return found
