# ruff: noqa: E501  (log line templates are long by nature)
"""A labelled, reproducible corpus of incident bundles for the incident classifier (generated, seeded).

Each incident is a bundle (`vigil.analysis.bundle`): Alertmanager alerts, log lines of a few services in
varied formats (JSON like toyprod's, logfmt, Python logging, syslog, Java with stack traces, nginx access),
deploy events and a few metrics, labelled with one `Category` and `code_related`. Each category has several
failure *scenarios* with phrasings taken from toyprod's faults and from real-world software (PostgreSQL,
MySQL, SQLAlchemy, Go, Java, Kubernetes, nginx, the Linux kernel, ...). Noise: routine INFO/access traffic,
unrelated warnings from a second service, deploys that have nothing to do with it, alerts named after the
symptom (HighErrorRate, HighLatency) rather than the cause, and ambiguous incidents whose logs show a
secondary symptom of another category (a database outage also shows timeouts and 5xx).

Caveat: generated from phrasings we wrote, so it is easier than real incidents: treat accuracy on it as a
regression guard, not as a field result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

R = random.Random
Line = Callable[[R], tuple[str, str, str | None]]  # level, message, exception text (type: msg\n frames) or None

SERVICES = ["checkout", "orders", "payments-api", "catalog", "auth", "search", "inventory", "toyprod", "billing"]
HOSTS = ["db-primary", "pg-main", "mysql-01", "orders-db", "postgres.internal"]
UPSTREAMS = ["payments", "stripe", "shipping-api", "geo-service", "recommendations", "s3", "identity-provider"]


def _ip(r: R) -> str:
    return f"10.{r.randint(0, 9)}.{r.randint(0, 254)}.{r.randint(1, 254)}"


def _ms(r: R, lo: int = 1200, hi: int = 30000) -> int:
    return r.randint(lo, hi)


def _pick(*options: str) -> Callable[[R], str]:
    return lambda r: r.choice(options)


@dataclass(frozen=True)
class Scenario:
    category: str
    name: str
    alerts: tuple[str, ...]
    lines: tuple[Line, ...]
    code_related: bool = False
    deploy_before: bool = False  # the fault starts right after a deploy of the service
    deploy_words: tuple[str, ...] = ()


def L(level: str, fmt: Callable[[R], str], exc: Callable[[R], str] | None = None) -> Line:
    return lambda r: (level, fmt(r), exc(r) if exc else None)


def _py_trace(exc_type: str, msg: str, frames: list[tuple[str, str]]) -> str:
    body = "Traceback (most recent call last):\n" + "".join(
        f'  File "{f}", line {17 + i * 13}, in {fn}\n    pass\n' for i, (f, fn) in enumerate(frames)
    )
    return body + f"{exc_type}: {msg}"


def _java_trace(exc_type: str, msg: str, frames: list[str]) -> str:
    return f"{exc_type}: {msg}\n" + "".join(f"\tat {f}(App.java:{40 + i})\n" for i, f in enumerate(frames)).rstrip()


# -- scenarios ------------------------------------------------------------------------------------------------

SCENARIOS: list[Scenario] = [
    # database
    Scenario(
        "database",
        "db-down",
        ("PostgresDown", "DatabaseUnreachable", "HighErrorRate", "ServiceDegraded"),
        (
            L(
                "ERROR",
                lambda r: (
                    f'connection to server at "{r.choice(HOSTS)}" ({_ip(r)}), port 5432 failed: Connection refused'
                ),
                lambda r: _py_trace(
                    "psycopg.OperationalError",
                    "connection to server failed: Connection refused",
                    [("/app/shop/db.py", "connect"), ("/app/shop/routes.py", "list_products")],
                ),
            ),
            L("ERROR", lambda r: f"GET /api/products failed: database unavailable ({r.choice(HOSTS)}:5432)"),
            L(
                "ERROR",
                lambda r: (
                    f"Communications link failure: could not connect to {r.choice(HOSTS)}:3306 Connection refused"
                ),
            ),
            L("WARNING", lambda r: f"health check database failed: connection refused after {_ms(r, 100, 900)}ms"),
        ),
    ),
    Scenario(
        "database",
        "db-pool",
        ("DBConnectionPoolExhausted", "HighLatency", "HighErrorRate"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"QueuePool limit of size {r.choice([5, 10, 20])} overflow 0 reached, connection timed out, timeout {r.choice(['30.00', '5.00'])}"
                ),
                lambda r: _py_trace(
                    "sqlalchemy.exc.TimeoutError", "QueuePool limit reached", [("/app/orders/repo.py", "get_order")]
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    f"HikariPool-1 - Connection is not available, request timed out after {_ms(r, 30000, 30001)}ms."
                ),
            ),
            L("ERROR", lambda r: "FATAL: sorry, too many clients already"),
            L("WARNING", lambda r: f"db pool in use {r.randint(18, 20)}/20, waiters {r.randint(5, 80)}"),
        ),
    ),
    Scenario(
        "database",
        "db-locks",
        ("PostgresDeadlocks", "SlowQueries", "HighLatency"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"ERROR: deadlock detected DETAIL: Process {r.randint(1000, 9999)} waits for ShareLock on transaction {r.randint(10**6, 10**7)}"
                ),
            ),
            L(
                "WARNING",
                lambda r: (
                    f"LOG: duration: {_ms(r, 2000, 60000)}.512 ms statement: SELECT * FROM orders WHERE customer_id = {r.randint(1, 9999)}"
                ),
            ),
            L("WARNING", lambda r: f"slow query took {_ms(r, 1500, 20000)}ms: UPDATE inventory SET qty = qty - 1"),
            L(
                "ERROR",
                lambda r: (
                    f"Lock wait timeout exceeded; try restarting transaction (table {r.choice(['orders', 'stock'])})"
                ),
            ),
        ),
    ),
    # network
    Scenario(
        "network",
        "net-dns",
        ("DNSResolutionFailures", "HighErrorRate", "CoreDNSDown"),
        (
            L(
                "ERROR",
                lambda r: f"dial tcp: lookup {r.choice(UPSTREAMS)}.svc.cluster.local on 10.96.0.10:53: no such host",
            ),
            L("ERROR", lambda r: f"getaddrinfo ENOTFOUND {r.choice(UPSTREAMS)}.internal"),
            L("ERROR", lambda r: f"Temporary failure in name resolution ({r.choice(UPSTREAMS)})"),
            L(
                "WARNING",
                lambda r: f"[ERROR] plugin/errors: 2 {r.choice(UPSTREAMS)}. A: read udp {_ip(r)}:53: i/o timeout",
            ),
        ),
    ),
    Scenario(
        "network",
        "net-partition",
        ("NetworkPartition", "HighLatency", "PacketLoss", "ServiceDegraded"),
        (
            L(
                "ERROR",
                lambda r: f"read tcp {_ip(r)}:{r.randint(30000, 60000)}->{_ip(r)}:443: read: connection reset by peer",
            ),
            L("ERROR", lambda r: f"connect to {_ip(r)}:8080 failed: No route to host"),
            L(
                "ERROR",
                lambda r: (
                    f"upstream timed out (110: Connection timed out) while connecting to upstream, client: {_ip(r)}"
                ),
            ),
            L("WARNING", lambda r: f"packet loss {r.randint(5, 60)}% to {_ip(r)}, retransmits {r.randint(100, 900)}"),
            L("ERROR", lambda r: f"dial tcp {_ip(r)}:9092: i/o timeout"),
        ),
    ),
    # compute
    Scenario(
        "compute",
        "cpu",
        ("HighCPUUsage", "CPUThrottlingHigh", "HighLatency", "NodeLoadHigh"),
        (
            L(
                "WARNING",
                lambda r: (
                    f"CPU usage {r.randint(92, 100)}% on {r.choice(['node-3', 'ip-10-0-3-7', 'worker-2'])} for {r.randint(5, 30)}m"
                ),
            ),
            L("WARNING", lambda r: f"cpu throttled {r.randint(40, 90)}% of periods, container {r.choice(SERVICES)}"),
            L(
                "WARNING",
                lambda r: (
                    f"load average: {r.randint(30, 90)}.{r.randint(10, 99)}, {r.randint(20, 60)}.01, 12.40 (8 cpus)"
                ),
            ),
            L("WARNING", lambda r: f"event loop blocked for {_ms(r, 500, 5000)}ms"),
            L("ERROR", lambda r: f"watchdog: BUG: soft lockup - CPU#{r.randint(0, 7)} stuck for {r.randint(22, 60)}s!"),
        ),
    ),
    Scenario(
        "compute",
        "node",
        ("KubeNodeNotReady", "NodeDown", "PodsPending"),
        (
            L("ERROR", lambda r: f"Node {r.choice(['node-3', 'worker-7'])} status is now: NodeNotReady"),
            L(
                "WARNING",
                lambda r: (
                    "0/6 nodes are available: 3 Insufficient cpu, 3 node(s) had taint {node.kubernetes.io/not-ready}"
                ),
            ),
            L("WARNING", lambda r: f"kubelet stopped posting node status, last heartbeat {r.randint(40, 300)}s ago"),
            L("WARNING", lambda r: f"CPU usage {r.randint(92, 100)}% on node-3"),
        ),
    ),
    # memory
    Scenario(
        "memory",
        "oom",
        ("KubePodOOMKilled", "ContainerOOM", "PodRestarting", "HighMemoryUsage"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"Memory cgroup out of memory: Killed process {r.randint(1000, 99999)} (python) total-vm:{r.randint(10**6, 9 * 10**6)}kB"
                ),
            ),
            L("ERROR", lambda r: "Last State: Terminated Reason: OOMKilled Exit Code: 137"),
            L(
                "ERROR",
                lambda r: "session cache allocation failed",
                lambda r: _py_trace("MemoryError", "", [("/app/shop/cache.py", "put")]),
            ),
            L(
                "ERROR",
                lambda r: 'Exception in thread "main"',
                lambda r: _java_trace("java.lang.OutOfMemoryError", "Java heap space", ["com.acme.cache.Store.put"]),
            ),
        ),
    ),
    Scenario(
        "memory",
        "leak",
        ("HighMemoryUsage", "MemoryLeak", "ContainerMemoryNearLimit"),
        (
            L(
                "WARNING",
                lambda r: f"memory usage {r.randint(88, 99)}% of limit ({r.randint(900, 2000)}Mi), rss growing",
            ),
            L(
                "WARNING",
                lambda r: f"GC overhead: {r.randint(60, 98)}% time in GC, heap {r.randint(1800, 2048)}MB/2048MB",
            ),
            L("ERROR", lambda r: "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"),
            L("WARNING", lambda r: f"memory pressure: page allocation stalls, available {r.randint(10, 80)}MB"),
        ),
    ),
    # storage
    Scenario(
        "storage",
        "disk-full",
        ("NodeFilesystemAlmostFull", "DiskFull", "NodeFilesystemSpaceFillingUp", "HighErrorRate"),
        (
            L(
                "ERROR",
                lambda r: f'could not write to file "pg_wal/{r.randint(10**7, 10**8)}": No space left on device',
            ),
            L(
                "ERROR",
                lambda r: "write journal failed",
                lambda r: _py_trace(
                    "OSError", "[Errno 28] No space left on device", [("/app/shop/disk.py", "append_journal")]
                ),
            ),
            L("WARNING", lambda r: f"filesystem /var/lib/data is {r.randint(91, 99)}% full"),
            L("ERROR", lambda r: "ENOSPC: no space left on device, write"),
        ),
    ),
    Scenario(
        "storage",
        "disk-io",
        ("DiskIOErrors", "VolumeDegraded", "ReadOnlyFilesystem"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"blk_update_request: I/O error, dev {r.choice(['sda', 'nvme0n1', 'xvdf'])}, sector {r.randint(10**5, 10**8)}"
                ),
            ),
            L(
                "ERROR",
                lambda r: f"EXT4-fs error (device {r.choice(['sda1', 'xvdf'])}): remounting filesystem read-only",
            ),
            L("ERROR", lambda r: "OSError: [Errno 30] Read-only file system: '/var/lib/app/state.db'"),
            L("WARNING", lambda r: f"disk latency {_ms(r, 200, 3000)}ms await on /dev/{r.choice(['sda', 'xvdf'])}"),
        ),
    ),
    # deployment (code related)
    Scenario(
        "deployment",
        "bad-code",
        ("HighErrorRate", "ErrorBudgetBurn", "HTTP5xxHigh"),
        (
            L(
                "ERROR",
                lambda r: "Exception in ASGI application: GET /api/cart",
                lambda r: _py_trace(
                    r.choice(["TypeError", "KeyError", "AttributeError"]),
                    r.choice(
                        [
                            "'NoneType' object is not subscriptable",
                            "'discount_code'",
                            "'Cart' object has no attribute 'totals'",
                        ]
                    ),
                    [("/app/shop/cart.py", "render_cart"), ("/app/shop/pricing.py", "apply_discount")],
                ),
            ),
            L(
                "ERROR",
                lambda r: "Request processing failed",
                lambda r: _java_trace(
                    "java.lang.NullPointerException",
                    'Cannot invoke "Order.getTotal()" because "order" is null',
                    ["com.acme.checkout.PriceService.total", "com.acme.checkout.CheckoutController.post"],
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    f"unhandled exception in handler checkout_v{r.randint(2, 9)}: panic: runtime error: index out of range [{r.randint(1, 9)}] with length {r.randint(0, 1)}"
                ),
            ),
        ),
        code_related=True,
        deploy_before=True,
        deploy_words=("refactor pricing", "new cart page", "bump deps", "feature flag rollout"),
    ),
    Scenario(
        "deployment",
        "crashloop",
        ("KubePodCrashLooping", "DeploymentReplicasMismatch", "RolloutStuck"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"Back-off restarting failed container {r.choice(SERVICES)} in pod {r.choice(SERVICES)}-{r.randint(1000, 9999)}"
                ),
            ),
            L("INFO", lambda r: f"Application startup complete. version v1.{r.randint(10, 40)}.0 started"),
            L("ERROR", lambda r: "ImportError: cannot import name 'PaymentClient' from 'shop.clients'"),
            L("ERROR", lambda r: "Readiness probe failed: HTTP probe failed with statuscode: 500"),
        ),
        code_related=True,
        deploy_before=True,
        deploy_words=("move clients module", "new release", "upgrade framework"),
    ),
    # dependency
    Scenario(
        "dependency",
        "upstream-5xx",
        ("UpstreamErrors", "PaymentsFailing", "HighErrorRate", "ExternalAPIDown"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"payments upstream returned 503 Service Unavailable for POST /v1/charges ({r.choice(UPSTREAMS)})"
                ),
            ),
            L("ERROR", lambda r: f"circuit breaker '{r.choice(UPSTREAMS)}' OPEN after {r.randint(5, 50)} failures"),
            L("ERROR", lambda r: f"{r.choice(UPSTREAMS)} API error: 502 Bad Gateway"),
            L(
                "ERROR",
                lambda r: "payment failed",
                lambda r: _py_trace(
                    "shop.errors.PaymentError",
                    "payments service unavailable: HTTP 503",
                    [("/app/shop/payments.py", "charge")],
                ),
            ),
        ),
    ),
    Scenario(
        "dependency",
        "upstream-throttle",
        ("ThirdPartyRateLimited", "UpstreamErrors", "PaymentsFailing"),
        (
            L(
                "WARNING",
                lambda r: f"{r.choice(UPSTREAMS)} responded 429 Too Many Requests, retry after {r.randint(1, 60)}s",
            ),
            L(
                "ERROR",
                lambda r: f"quota exceeded for {r.choice(UPSTREAMS)} API key, rate limit {r.randint(100, 1000)}/min",
            ),
            L("ERROR", lambda r: f"upstream {r.choice(UPSTREAMS)} unavailable: service unavailable, retries exhausted"),
        ),
    ),
    # configuration
    Scenario(
        "configuration",
        "bad-config",
        ("HighErrorRate", "ConfigReloadFailed", "ServiceDown"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"invalid configuration: missing required setting {r.choice(['DATABASE_URL', 'PAYMENTS_API_KEY', 'REDIS_HOST'])}"
                ),
            ),
            L(
                "ERROR",
                lambda r: "config reload failed",
                lambda r: _py_trace(
                    "pydantic_core.ValidationError",
                    f"1 validation error for Settings {r.choice(['timeout', 'port', 'pool_size'])} Input should be a valid integer",
                    [("/app/shop/config.py", "load")],
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    f"unknown configuration key '{r.choice(['max_conns', 'retry_polcy', 'feature.x'])}' in /etc/app/config.yaml"
                ),
            ),
            L("ERROR", lambda r: f"yaml: line {r.randint(3, 90)}: mapping values are not allowed in this context"),
            L(
                "WARNING",
                lambda r: (
                    f"feature flag {r.choice(['new_checkout', 'fast_search'])} has invalid value 'yes please', using default"
                ),
            ),
        ),
        deploy_before=True,
        deploy_words=("config change", "update helm values", "rotate settings", "change env vars"),
    ),
    Scenario(
        "configuration",
        "wrong-endpoint",
        ("ConfigDrift", "HighErrorRate", "ServiceDegraded"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"environment variable {r.choice(['API_BASE_URL', 'CACHE_URL'])} points to staging host {r.choice(UPSTREAMS)}.staging"
                ),
            ),
            L("ERROR", lambda r: f"misconfigured: {r.choice(['replicas', 'timeout_ms'])}=0 is not allowed"),
            L("ERROR", lambda r: "no such configmap 'app-config-v2' referenced by deployment"),
        ),
        deploy_before=True,
        deploy_words=("config change", "update configmap"),
    ),
    # capacity
    Scenario(
        "capacity",
        "overload",
        ("HighLatency", "RequestQueueSaturated", "HPAMaxedOut", "ErrorBudgetBurn"),
        (
            L("WARNING", lambda r: f"request queue full ({r.randint(500, 5000)} waiting), rejecting new requests"),
            L("WARNING", lambda r: f"GET /api/search took {_ms(r, 1500, 9000)}ms (slow request)"),
            L(
                "WARNING",
                lambda r: (
                    f"HPA {r.choice(SERVICES)} at max replicas {r.choice([10, 20, 50])}, desired {r.randint(60, 120)}"
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    f"thread pool exhausted: {r.randint(200, 400)} active, queue capacity {r.randint(1000, 5000)} reached"
                ),
            ),
            L(
                "WARNING",
                lambda r: f"rate limiting clients: {r.randint(100, 900)} requests/s over budget, 429 returned",
            ),
        ),
    ),
    Scenario(
        "capacity",
        "traffic-spike",
        ("TrafficSpike", "HighLatency", "SaturationHigh"),
        (
            L("WARNING", lambda r: f"requests per second {r.randint(5000, 20000)} ({r.randint(4, 12)}x baseline)"),
            L(
                "WARNING",
                lambda r: f"worker saturation {r.randint(95, 100)}%: all {r.choice([16, 32, 64])} workers busy",
            ),
            L("WARNING", lambda r: f"POST /api/checkout took {_ms(r, 1200, 8000)}ms (slow request)"),
        ),
    ),
    # security
    Scenario(
        "security",
        "tls",
        ("SSLCertExpired", "TLSHandshakeErrors", "BlackboxProbeFailed"),
        (
            L(
                "ERROR",
                lambda r: (
                    f"x509: certificate has expired or is not yet valid: current time 2026-03-0{r.randint(1, 9)}T10:00:00Z is after 2026-03-01T00:00:00Z"
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    "SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed: certificate has expired (_ssl.c:1006)"
                ),
            ),
            L(
                "ERROR",
                lambda r: (
                    f"TLS handshake error from {_ip(r)}:{r.randint(30000, 60000)}: remote error: tls: bad certificate"
                ),
            ),
        ),
    ),
    Scenario(
        "security",
        "brute-force",
        ("AuthFailuresSpike", "SuspiciousLogins", "WAFBlocks"),
        (
            L(
                "WARNING",
                lambda r: (
                    f"Failed password for {r.choice(['root', 'admin', 'invalid user oracle'])} from {_ip(r)} port {r.randint(30000, 60000)} ssh2"
                ),
            ),
            L(
                "WARNING",
                lambda r: (
                    f"authentication failed for user '{r.choice(['admin', 'svc-report', 'alice'])}': invalid credentials"
                ),
            ),
            L("WARNING", lambda r: f"ModSecurity: Access denied with code 403, SQL injection attempt from {_ip(r)}"),
            L("ERROR", lambda r: f"JWT signature verification failed for token from {_ip(r)}"),
        ),
    ),
]

NOISE: tuple[Line, ...] = (
    L("INFO", lambda r: f"GET /api/products 200 {r.randint(3, 90)}ms"),
    L("INFO", lambda r: f"order {r.randint(10**5, 10**6)} created for customer {r.randint(1, 9999)}"),
    L("INFO", lambda r: f"cache hit ratio {r.randint(80, 99)}%"),
    L("DEBUG", lambda r: f"poll cycle done in {r.randint(1, 40)}ms"),
    L("INFO", lambda r: f"health check ok ({r.randint(1, 9)}ms)"),
    L("WARNING", lambda r: f"retrying request to {r.choice(UPSTREAMS)} (attempt {r.randint(1, 3)})"),
    L("WARNING", lambda r: f"deprecated API /v1/{r.choice(['cart', 'items'])} called by client {r.randint(1, 99)}"),
)

# Secondary symptoms that a cause drags along (ambiguity): e.g. a DB outage also shows request timeouts.
SECONDARY: dict[str, tuple[Line, ...]] = {
    "database": (L("ERROR", lambda r: f"request timed out after {_ms(r, 5000, 30000)}ms"),),
    "network": (L("ERROR", lambda r: f"payments upstream returned 503 Service Unavailable ({r.choice(UPSTREAMS)})"),),
    "compute": (L("WARNING", lambda r: f"GET /api/cart took {_ms(r, 1500, 6000)}ms (slow request)"),),
    "memory": (L("INFO", lambda r: f"Application startup complete. {r.choice(SERVICES)} started"),),
    "storage": (L("ERROR", lambda r: "could not write checkpoint: database write failed"),),
    "deployment": (L("ERROR", lambda r: f"request timed out after {_ms(r, 5000, 30000)}ms"),),
    "dependency": (L("ERROR", lambda r: f"context deadline exceeded calling {r.choice(UPSTREAMS)}"),),
    "configuration": (L("ERROR", lambda r: f"connection to {r.choice(UPSTREAMS)}.staging:443 refused"),),
    "capacity": (L("ERROR", lambda r: f"request timed out after {_ms(r, 5000, 30000)}ms"),),
    "security": (L("WARNING", lambda r: f"GET /login 401 {r.randint(3, 40)}ms"),),
}


# -- rendering ------------------------------------------------------------------------------------------------


def _render(r: R, style: str, ts: datetime, service: str, level: str, message: str, exc: str | None) -> str:
    stamp = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == "json":
        record: dict[str, Any] = {
            "ts": stamp,
            "level": level,
            "service": service,
            "logger": f"{service}.app",
            "message": message,
        }
        if exc:
            record["message"] = f"{message}\n{exc}"
        return json.dumps(record)
    if style == "logfmt":
        text = message.replace('"', "'")
        line = f'time={stamp} level={level.lower()} service={service} msg="{text}"'
        return line + (f' error="{exc.splitlines()[-1]}"' if exc else "")
    if style == "syslog":
        return f"{ts.strftime('%b %d %H:%M:%S').replace(' 0', '  ', 1)} host-{r.randint(1, 9)} {service}[{r.randint(100, 9999)}]: {level} {message}"
    # python logging
    line = f"{ts.strftime('%Y-%m-%d %H:%M:%S')},{ts.microsecond // 1000:03d} {level} [{service}.app] {message}"
    return line + (f"\n{exc}" if exc else "")


def incident(r: R, scenario: Scenario, *, lines: int = 24, start: datetime | None = None) -> dict[str, Any]:
    """One labelled incident: {"category", "code_related", "scenario", "bundle"}."""
    start = start or datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=r.randint(0, 60 * 24 * 60))
    service = r.choice(SERVICES)
    other = r.choice([s for s in SERVICES if s != service])
    style = r.choice(["json", "json", "logfmt", "python", "syslog"])
    onset = start + timedelta(minutes=r.randint(8, 20))
    logs: list[dict[str, Any]] = []
    signal_lines = r.sample(scenario.lines, k=r.randint(1, len(scenario.lines)))
    n_fault = max(3, int(lines * r.uniform(0.1, 0.5)))
    # A quarter of incidents carry a weaker, unrelated fault of another category (a red herring).
    herring = [s for s in SCENARIOS if s.category != scenario.category]
    distractor = r.choice(herring).lines if r.random() < 0.25 else ()
    n_distract = r.randint(1, max(1, n_fault // 2))
    stamps = sorted(start + timedelta(seconds=r.uniform(0, 30 * 60)) for _ in range(lines))
    for ts in stamps:
        kind = r.random()
        if ts >= onset and n_fault > 0 and kind < 0.75:
            n_fault -= 1
            level, message, exc = r.choice(signal_lines)(r)
            svc = service
        elif distractor and n_distract > 0 and kind < 0.85:
            n_distract -= 1
            level, message, exc = r.choice(distractor)(r)
            svc = r.choice([service, other])
        elif ts >= onset and kind < 0.9 and r.random() < 0.5:
            level, message, exc = r.choice(SECONDARY[scenario.category])(r)
            svc = service
        else:
            level, message, exc = r.choice(NOISE)(r)
            svc = r.choice([service, service, other])
        logs.append({"ts": ts.isoformat(), "service": svc, "line": _render(r, style, ts, svc, level, message, exc)})
    deploys: list[dict[str, Any]] = []
    if scenario.deploy_before or r.random() < 0.3:
        related = scenario.deploy_before
        at = onset - timedelta(minutes=r.uniform(0.5, 6)) if related else start + timedelta(minutes=r.uniform(-120, 30))
        words = scenario.deploy_words or ("routine release", "bump version", "docs", "minor fixes")
        deploys.append(
            {
                "ts": at.isoformat(),
                "service": service if related or r.random() < 0.3 else other,
                "version": f"v1.{r.randint(10, 99)}.{r.randint(0, 9)}",
                "commit": f"{r.getrandbits(28):07x}",
                "author": r.choice(["alice", "bob", "ci-bot", "dana"]),
                "description": r.choice(words),
            }
        )
    severity = r.choice(["critical", "warning", "page", "high"])
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": r.choice(scenario.alerts), "service": service, "severity": severity},
            "annotations": {"summary": f"{r.choice(scenario.alerts)} on {service}"},
            "startsAt": (onset + timedelta(minutes=r.uniform(0.5, 4))).isoformat(),
        }
    ]
    return {
        "category": scenario.category,
        "code_related": scenario.code_related,
        "scenario": scenario.name,
        "bundle": {"alerts": alerts, "logs": logs, "deploys": deploys},
    }


def corpus(n_per_category: int = 60, *, seed: int = 11, lines: int = 16) -> list[dict[str, Any]]:
    """`n_per_category` incidents of each category, scenarios in turn, deterministic for a seed."""
    r = random.Random(seed)
    by_category: dict[str, list[Scenario]] = {}
    for s in SCENARIOS:
        by_category.setdefault(s.category, []).append(s)
    out = []
    for i in range(n_per_category):
        for scenarios in by_category.values():
            out.append(incident(r, scenarios[i % len(scenarios)], lines=lines))
    return out


def big_bundle(n_lines: int = 100_000, *, seed: int = 5) -> dict[str, Any]:
    """One large bundle (benchmark): a database outage buried in `n_lines` lines of mixed formats."""
    r = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    scenario = SCENARIOS[0]
    logs: list[dict[str, Any]] = []
    styles = ["json", "logfmt", "python", "syslog"]
    step = 3600.0 / n_lines
    for i in range(n_lines):
        ts = start + timedelta(seconds=i * step)
        service = SERVICES[i % 4]
        if i > n_lines * 0.7 and r.random() < 0.2:
            level, message, exc = r.choice(scenario.lines)(r)
        else:
            level, message, exc = r.choice(NOISE)(r)
        logs.append(
            {
                "ts": ts.isoformat(),
                "service": service,
                "line": _render(r, styles[i % 4], ts, service, level, message, exc),
            }
        )
    alerts = [
        {
            "labels": {"alertname": "PostgresDown", "service": SERVICES[0], "severity": "critical"},
            "startsAt": (start + timedelta(minutes=43)).isoformat(),
        }
    ]
    return {"alerts": alerts, "logs": logs, "deploys": []}


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":  # python -m eval.incidentcorpus OUT.jsonl
    import sys

    write_jsonl(sys.argv[1] if len(sys.argv) > 1 else "incidents.jsonl", corpus())


# -- hand-made, out-of-distribution incidents ------------------------------------------------------------------
#
# Written by hand as raw lines in the shapes SREs meet (structured JSON logs, nginx access/error logs, Java stack
# traces, PostgreSQL server logs, kubelet/kernel messages), not in the generator's phrasing above: a check that
# the classifier and its calibration hold up on bundles unlike its training corpus.

HANDMADE_T0 = datetime(2026, 5, 14, 9, 0, tzinfo=UTC)


def _at(minute: float) -> datetime:
    return HANDMADE_T0 + timedelta(minutes=minute)


def _log(minute: float, service: str, line: str) -> dict[str, Any]:
    return {"ts": _at(minute).isoformat(), "service": service, "line": line}


def _nginx(minute: float, service: str, i: int, path: str, status: int, upstream_s: float) -> dict[str, Any]:
    stamp = _at(minute).strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = 0 if status >= 500 else 512 + (i * 37) % 900
    line = (
        f'10.42.{i % 7}.{20 + i % 200} - - [{stamp}] "GET {path}?page={i % 5} HTTP/1.1" {status} {size} "-" '
        f'"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36" rt={upstream_s + 0.002:.3f} uct="0.000" '
        f'urt="{upstream_s:.3f}"'
    )
    return _log(minute, service, line)


def _json(minute: float, service: str, level: str, msg: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"@timestamp": _at(minute).isoformat(timespec="milliseconds"), "level": level}
    record |= {"logger_name": f"com.shop.{service}", "thread_name": "http-nio-8080-exec-7", "message": msg}
    return _log(minute, service, json.dumps(record | extra))


def _steps(name: str, labels: dict[str, str], before: float, after: float, at_minute: float) -> dict[str, Any]:
    """A 15 s-resolution series over the 40 minutes of a hand-made incident, stepping at `at_minute`."""
    points = []
    for k in range(160):
        minute = k / 4
        wobble = ((k * 7919) % 13 - 6) / 6 * 0.03 * max(abs(before), 1.0)
        points.append([_at(minute).timestamp(), (after if minute >= at_minute else before) + wobble])
    return {"name": name, "labels": labels, "points": points}


def _traffic(service: str, until: float, path: str = "/api/cart") -> list[dict[str, Any]]:
    return [_nginx(m / 2, service, m, path, 200, 0.011 + (m % 5) / 100) for m in range(int(until * 2))]


def _alert(name: str, service: str, minute: float, summary: str, severity: str = "critical") -> dict[str, Any]:
    labels = {"alertname": name, "service": service, "severity": severity, "namespace": "shop"}
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": _at(minute).isoformat(),
    }


def _bad_deploy() -> dict[str, Any]:
    npe = (
        'java.lang.NullPointerException: Cannot invoke "com.shop.checkout.model.Cart.getItems()" because "cart" is null\n'
        "\tat com.shop.checkout.pricing.PriceCalculator.subtotal(PriceCalculator.java:88)\n"
        "\tat com.shop.checkout.api.CartController.summary(CartController.java:142)\n"
        "\tat jdk.internal.reflect.GeneratedMethodAccessor211.invoke(Unknown Source)\n"
        "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)"
    )
    logs = _traffic("checkout", 20)
    logs += [_json(m / 2, "checkout", "INFO", "Started CheckoutApplication in 7.412 seconds") for m in (40,)]
    for m in range(41, 80):
        logs.append(_nginx(m / 2, "checkout", m, "/api/cart", 500 if m % 3 else 200, 0.004))
        if m % 3:
            logs.append(_json(m / 2 + 0.01, "checkout", "ERROR", "Request processing failed", stack_trace=npe))
    return {
        "alerts": [_alert("CheckoutHighErrorRate", "checkout", 24, "checkout 5xx ratio above 5% for 2m")],
        "logs": logs,
        "deploys": [
            {
                "ts": _at(19.5).isoformat(),
                "service": "checkout",
                "version": "2.14.0",
                "commit": "9f3c2ab",
                "author": "rkumar",
                "description": "CHK-812 price cart summary server-side",
            }
        ],
        "metrics": [_steps("http_requests_total:rate1m", {"service": "checkout", "status": "500"}, 0.0, 6.5, 20.5)],
    }


def _db_pool() -> dict[str, Any]:
    hikari = (
        "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.\n"
        "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)\n"
        "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:197)\n"
        "\tat com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:100)\n"
        "\tat org.hibernate.engine.jdbc.connections.internal.DatasourceConnectionProviderImpl.getConnection(DatasourceConnectionProviderImpl.java:122)"
    )
    logs = _traffic("orders", 18, "/api/orders")
    for m in range(36, 80):
        logs.append(_nginx(m / 2, "orders", m, "/api/orders", 500 if m % 2 else 200, 30.01 if m % 2 else 0.9))
        if m % 2:
            logs.append(
                _json(
                    m / 2 + 0.01,
                    "orders",
                    "ERROR",
                    "Could not open JPA EntityManager for transaction",
                    stack_trace=hikari,
                )
            )
        if m % 4 == 0:
            logs.append(
                _json(
                    m / 2,
                    "orders",
                    "WARN",
                    "HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta=1m2s).",
                )
            )
    for m in range(40, 80, 5):
        logs.append(
            _log(
                m / 2,
                "postgres",
                f"{_at(m / 2).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC [{3100 + m}] orders@orders FATAL:  remaining connection slots are reserved for non-replication superuser connections",
            )
        )
    return {
        "alerts": [_alert("OrdersLatencyHigh", "orders", 20, "p99 latency of orders above 2s")],
        "logs": logs,
        "metrics": [
            _steps("hikaricp_connections_active", {"pool": "HikariPool-1", "service": "orders"}, 6.0, 20.0, 17.75),
            _steps("hikaricp_connections_pending", {"pool": "HikariPool-1", "service": "orders"}, 0.0, 37.0, 18.25),
        ],
    }


def _oom() -> dict[str, Any]:
    logs = _traffic("recommender", 25, "/v2/recommendations")
    for k, m in enumerate((12.0, 17.5, 23.0, 29.0, 35.5)):
        pid = 2311 + k * 97
        logs += [
            _log(
                m,
                "kernel",
                f"[{482113 + k * 331}.{k * 17:06d}] java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=969",
            ),
            _log(
                m,
                "kernel",
                f"[{482113 + k * 331}.{k * 17 + 9:06d}] Memory cgroup out of memory: Killed process {pid} (java) total-vm:9348220kB, anon-rss:2093012kB, file-rss:21460kB, shmem-rss:0kB, UID:1001 pgtables:5028kB oom_score_adj:969",
            ),
            _log(
                m + 0.1,
                "kubelet",
                f'I0514 {_at(m + 0.1).strftime("%H:%M:%S")}.512331    1873 kuberuntime_container.go:709] "Killing container with a grace period" pod="shop/recommender-7c9f6d8b54-x2kqp" podUID=0d6f1c2e containerName="recommender" containerID="containerd://4be1{k}" gracePeriod=30',
            ),
            _log(
                m + 0.2,
                "kubelet",
                f'E0514 {_at(m + 0.2).strftime("%H:%M:%S")}.104512    1873 pod_workers.go:1298] "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"recommender\\" with CrashLoopBackOff: \\"back-off {10 * 2**k}s restarting failed container=recommender pod=recommender-7c9f6d8b54-x2kqp_shop(0d6f1c2e)\\"" pod="shop/recommender-7c9f6d8b54-x2kqp"',
            ),
            _log(
                m + 0.3,
                "events",
                f"LAST SEEN: 3s TYPE: Warning REASON: OOMKilled OBJECT: pod/recommender-7c9f6d8b54-x2kqp MESSAGE: Container recommender exceeded its memory limit (2Gi), exit code 137 (restart {k + 1})",
            ),
        ]
    return {
        "alerts": [
            _alert(
                "KubePodNotReady",
                "recommender",
                13,
                "Pod shop/recommender-7c9f6d8b54-x2kqp has been in a non-ready state",
            )
        ],
        "logs": logs,
        "metrics": [
            _steps(
                "container_memory_working_set_bytes",
                {"container": "recommender", "namespace": "shop"},
                1.2e9,
                2.1e9,
                11.5,
            ),
        ],
    }


def _disk_full() -> dict[str, Any]:
    logs = _traffic("catalog", 21, "/api/products")
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    for m in range(42, 80):
        minute = m / 2
        logs.append(_nginx(minute, "catalog", m, "/api/products", 500 if m % 2 else 200, 0.02))
        if m % 2:
            logs.append(
                _log(
                    minute,
                    "postgres",
                    f'{_at(minute).strftime(stamp)[:-3]} UTC [{4100 + m}] catalog@catalog ERROR:  could not extend file "base/16384/2619.1": No space left on device',
                )
            )
            logs.append(
                _log(
                    minute,
                    "postgres",
                    f"{_at(minute).strftime(stamp)[:-3]} UTC [{4100 + m}] catalog@catalog HINT:  Check free disk space.",
                )
            )
        if m % 6 == 0:
            logs.append(
                _log(
                    minute,
                    "nginx-error",
                    f'{_at(minute).strftime("%Y/%m/%d %H:%M:%S")} [crit] 31#31: *{9000 + m} pwrite() "/var/cache/nginx/client_temp/00000{m:05d}" failed (28: No space left on device), client: 10.42.3.77, server: catalog.shop.internal, request: "POST /api/products/import HTTP/1.1"',
                )
            )
    logs.append(
        _log(
            22.0,
            "kubelet",
            'W0514 09:22:00.118812    1873 eviction_manager.go:351] "Eviction manager: attempting to reclaim" resourceName="ephemeral-storage"',
        )
    )
    return {
        "alerts": [
            _alert(
                "NodeFilesystemAlmostOutOfSpace",
                "catalog",
                21.5,
                "Filesystem on /dev/nvme1n1 at db-2 has 0.4% available space left",
            )
        ],
        "logs": logs,
        "metrics": [
            _steps(
                "node_filesystem_avail_bytes",
                {"device": "/dev/nvme1n1", "mountpoint": "/var/lib/postgresql"},
                4.2e9,
                1.6e7,
                20.75,
            ),
        ],
    }


def _tls_expired() -> dict[str, Any]:
    logs = _traffic("gateway", 15, "/v1/accounts")
    for m in range(30, 80):
        minute = m / 2
        logs.append(_nginx(minute, "gateway", m, "/v1/accounts", 502, 0.003))
        logs.append(
            _log(
                minute,
                "gateway",
                f'{_at(minute).strftime("%Y/%m/%d %H:%M:%S")} [error] 24#24: *{700 + m} SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed) while SSL handshaking to upstream, client: 10.42.1.{m}, server: api.shop.example, request: "GET /v1/accounts HTTP/1.1", upstream: "https://10.43.12.9:8443/v1/accounts"',
            )
        )
        if m % 5 == 0:
            logs.append(
                _json(
                    minute,
                    "accounts-sync",
                    "ERROR",
                    'Post "https://accounts.shop.internal:8443/v1/sync": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026-05-14T09:15:03Z is after 2026-05-14T09:15:00Z',
                )
            )
    return {
        "alerts": [
            _alert("ProbeFailure", "accounts", 16, "Blackbox probe https://accounts.shop.internal:8443/healthz failing")
        ],
        "logs": logs,
        "metrics": [
            _steps("probe_success", {"instance": "https://accounts.shop.internal:8443/healthz"}, 1.0, 0.0, 15.0)
        ],
    }


def _rate_limited() -> dict[str, Any]:
    logs = _traffic("payments-api", 16, "/api/payments")
    for m in range(32, 80):
        minute = m / 2
        logs.append(_nginx(minute, "payments-api", m, "/api/payments", 503 if m % 2 else 200, 2.4))
        logs.append(
            _json(
                minute,
                "payments-api",
                "WARN",
                "Stripe API request failed: 429 Too Many Requests (request_id=req_8Hq2k; retry after 2s)",
                http_status=429,
                upstream="api.stripe.com",
                attempt=1 + m % 3,
            )
        )
        if m % 2:
            logs.append(
                _json(
                    minute,
                    "payments-api",
                    "ERROR",
                    "charge failed after 3 attempts: upstream api.stripe.com rate limit exceeded",
                    order_id=f"ord_{51000 + m}",
                )
            )
    return {
        "alerts": [
            _alert("PaymentsErrorBudgetBurn", "payments-api", 17, "payments-api is burning its error budget 14x")
        ],
        "logs": logs,
        "metrics": [_steps("stripe_client_responses_total:rate1m", {"code": "429"}, 0.0, 18.0, 16.0)],
    }


def _dns() -> dict[str, Any]:
    logs = _traffic("shipping", 22, "/api/quotes")
    for m in range(44, 80):
        minute = m / 2
        logs.append(_nginx(minute, "shipping", m, "/api/quotes", 502, 5.0))
        logs.append(
            _log(
                minute,
                "shipping",
                json.dumps(
                    {
                        "level": "error",
                        "ts": _at(minute).timestamp(),
                        "caller": "carrier/client.go:118",
                        "msg": "quote request failed",
                        "carrier": "dhl",
                        "error": 'Get "https://rates.carrier-gw.svc.cluster.local/v1/quote": dial tcp: lookup rates.carrier-gw.svc.cluster.local on 10.96.0.10:53: read udp 10.42.5.17:40612->10.96.0.10:53: i/o timeout',
                    }
                ),
            )
        )
        if m % 4 == 0:
            logs.append(
                _log(
                    minute,
                    "coredns",
                    f"[ERROR] plugin/errors: 2 rates.carrier-gw.svc.cluster.local. A: read udp 10.42.0.9:52144->169.254.169.253:53: i/o timeout (attempt {m})",
                )
            )
    return {
        "alerts": [_alert("ShippingQuotesFailing", "shipping", 23, "shipping quote success ratio below 90%")],
        "logs": logs,
        "metrics": [_steps("coredns_dns_responses_total:rate1m", {"rcode": "SERVFAIL"}, 0.0, 40.0, 21.5)],
    }


def handmade() -> list[dict[str, Any]]:
    """Hand-written incidents, labelled like the corpus: {"category", "code_related", "scenario", "bundle"}."""
    cases = [
        ("deployment", True, "bad-deploy", _bad_deploy()),
        ("database", False, "db-pool", _db_pool()),
        ("memory", False, "oom", _oom()),
        ("storage", False, "disk-full", _disk_full()),
        ("security", False, "tls-expired", _tls_expired()),
        ("dependency", False, "rate-limited", _rate_limited()),
        ("network", False, "dns", _dns()),
    ]
    return [{"category": c, "code_related": code, "scenario": s, "bundle": b} for c, code, s, b in cases]
