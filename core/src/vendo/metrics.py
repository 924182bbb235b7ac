"""Prometheus metrics of one kernel: HTTP requests, hook timings, outbox deliveries.

Each kernel owns its own registry (no process-global state leaking between apps or
tests). With several server workers each worker exposes its own figures.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.hook_latency = Histogram(
            "vendo_hook_duration_seconds", "Time spent in plugin hook implementations", ["hook", "plugin"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.outbox_deliveries = Counter(
            "vendo_outbox_deliveries", "Outbox delivery attempts by outcome", ["subscriber", "outcome"],
            registry=self.registry,
        )
        self.plugins = Gauge("vendo_plugins", "Plugins by load status", ["status"], registry=self.registry)

    def observe_hook(self, hook: str, plugin: str, seconds: float) -> None:
        """Record one hook implementation's duration."""
        self.hook_latency.labels(hook, plugin).observe(seconds)

    def outbox_delivery(self, subscriber: str, outcome: str) -> None:
        """Count one delivery attempt's outcome (delivered, retry, dead)."""
        self.outbox_deliveries.labels(subscriber, outcome).inc()

    def render(self) -> bytes:
        """The text exposition format served at ``/metrics``."""
        return generate_latest(self.registry)
