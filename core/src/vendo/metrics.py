"""Prometheus metrics of one kernel: HTTP requests, hook timings, outbox deliveries.

Each kernel owns its own registry (no process-global state leaking between apps or
tests). With several server workers each worker exposes its own figures.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import SummaryMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The kernel's metric families."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "vendo_http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.http_latency = Histogram(
            "vendo_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.hook_timings = HookTimings()
        self.registry.register(self.hook_timings)
        self.outbox_deliveries = Counter(
            "vendo_outbox_deliveries", "Outbox delivery attempts by outcome", ["subscriber", "outcome"],
            registry=self.registry,
        )
        self.plugins = Gauge("vendo_plugins", "Plugins by load status", ["status"], registry=self.registry)
        self.observe_hook = self.hook_timings.observe

    def outbox_delivery(self, subscriber: str, outcome: str) -> None:
        """Count one delivery attempt's outcome (delivered, retry, dead)."""
        self.outbox_deliveries.labels(subscriber, outcome).inc()

    def render(self) -> bytes:
        """The text exposition format served at ``/metrics``."""
        return generate_latest(self.registry)


class HookTimings(Collector):
    """Count and total duration of each plugin's hook calls, exported as a summary.

    Hook dispatch is a hot path: a ``prometheus_client`` histogram costs about 2 µs per
    observation (a lock and a bucket search), more than the call it measures. Plain additions
    under the GIL cost a tenth of that; the figures are read at scrape time.
    """

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], list[float]] = {}

    def observe(self, hook: str, plugin: str, seconds: float) -> None:
        """Record one hook implementation's duration."""
        stats = self._stats.get((hook, plugin))
        if stats is None:
            stats = self._stats.setdefault((hook, plugin), [0, 0.0])
        stats[0] += 1
        stats[1] += seconds

    def collect(self) -> Iterator[SummaryMetricFamily]:
        family = SummaryMetricFamily(
            "vendo_hook_duration_seconds", "Time spent in plugin hook implementations", labels=["hook", "plugin"]
        )
        for (hook, plugin), (count, total) in sorted(self._stats.items()):
            family.add_metric([hook, plugin], count_value=count, sum_value=total)
        yield family
