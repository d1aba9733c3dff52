"""toyprod's Prometheus metrics, on a registry per app so that several apps can live in one process."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ToyMetrics:
    """Metric names are a contract: Prometheus rules are written against them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "toyprod_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "toyprod_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("toyprod_http_requests_in_flight", "HTTP requests being served.", registry=r)
        self.errors = Counter("toyprod_errors_total", "Errors by kind.", ["kind"], registry=r)
        self.dependency_up = Gauge(
            "toyprod_dependency_up", "1 when a dependency answers, 0 when it fails.", ["dependency"], registry=r
        )
        self.pool_in_use = Gauge("toyprod_db_pool_in_use", "Database connections checked out.", registry=r)
        self.pool_size = Gauge("toyprod_db_pool_size", "Database connection pool size.", registry=r)
        self.disk_usage = Gauge("toyprod_disk_usage_ratio", "Used fraction of toyprod's data quota.", registry=r)
        self.cert_expiry = Gauge(
            "toyprod_certificate_expiry_timestamp_seconds", "Unix time the served certificate expires.", registry=r
        )
        self.restarts = Counter("toyprod_restarts_total", "Process restarts through the admin API.", registry=r)
        self.payments_provider = Gauge(
            "toyprod_payments_provider", "1 for the payments provider charges go to.", ["provider"], registry=r
        )
        self.build_info = Gauge("toyprod_build_info", "Running version and commit.", ["version", "commit"], registry=r)
        self.logs_dropped = Counter(
            "toyprod_log_records_dropped_total",
            "Log records not delivered to Vigil: buffer overflow, or refused by Vigil.",
            ["reason"],
            registry=r,
        )
        self.logs_shipped = Counter("toyprod_log_records_shipped_total", "Log records Vigil accepted.", registry=r)
        for dependency in ("database", "payments"):
            self.dependency_up.labels(dependency).set(1)

    def set_payments_provider(self, provider: str) -> None:
        self.payments_provider.clear()
        self.payments_provider.labels(provider).set(1)

    def set_build(self, version: str, commit: str) -> None:
        self.build_info.clear()
        self.build_info.labels(version, commit).set(1)
