"""Prometheus metrics of one service process (its own registry, so several apps can share a process)."""
from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Example:
        >>> m = Metrics()
        >>> m.observe("GET", "/recommend", 200, 0.004)
        >>> b'memrec_requests_total{method="GET",route="/recommend",status="200"} 1.0' in m.render()
        True
    """

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("memrec_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("memrec_request_seconds", "HTTP request latency", ["method", "route"], buckets=BUCKETS,
                                 registry=self.registry)
        self.events = Counter("memrec_events", "Events received", ["result"], registry=self.registry)  # applied | duplicate
        self.memory_updates = Counter("memrec_memory_updates", "Memory updates (trigger fired or explicit)", ["cause"],
                                      registry=self.registry)
        self.frozen = Gauge("memrec_gc_frozen_objects", "Objects frozen out of garbage collection at start-up",
                            registry=self.registry)
        self.frozen.set_function(gc.get_freeze_count)
        self.worker_threads = Gauge("memrec_worker_threads", "Threads for blocking handlers (event writes)", registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
