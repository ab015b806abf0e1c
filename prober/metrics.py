"""Prometheus collectors for /metrics, read at scrape time from the live objects."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prober.alerts.dispatcher import Delivery


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


def registry(delivery: Delivery, notifiers: list[str]) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=True)
    found.register(AlertCollector(delivery, notifiers))
    return found
