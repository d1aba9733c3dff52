"""Detectors: a rule library over log events that names what went wrong (OOM, DB connections, timeouts, ...).

Each rule has a name, a `Category`, a severity and case-insensitive patterns (compiled once) over an event's
message, exception and a few structured fields. `detect` makes one pass over the events, then adds the
aggregate detectors (5xx spike, 401/403 and 429 bursts from status fields, repeated start lines, bad deploys).
A `Finding` has the id `detector:<name>` and, in `evidence`, the ids of the error fingerprints behind it.

Log text is untrusted: it is matched and truncated, never executed, followed or obeyed. Patterns are linear
(bounded gaps, no nested quantifiers) and run on at most `MAX_SCAN_CHARS` of each event.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from vigil.analysis.fingerprints import (
    TemplateOf,
    as_utc,
    default_template_of,
    fingerprint_ids_of,
    is_error,
    truncate,
)
from vigil.analysis.models import Category, ErrorFingerprint, Finding, Level, LogEvent

MAX_SCAN_CHARS = 4000
MAX_SAMPLES = 3
SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}
_LEVEL_RANK = {Level.DEBUG: 0, Level.INFO: 1, Level.WARNING: 2, Level.ERROR: 3, Level.CRITICAL: 4}
_STATUS_FIELDS = ("status", "status_code", "statusCode", "http_status", "response_status", "http.status_code")
_TEXT_FIELDS = ("error", "err", "error.message", "exception", "reason", "exit_code", "exitCode", "signal")

Check = Callable[["re.Match[str]"], bool]
_TOKEN = re.compile(r"[a-z0-9]+")


def _kw(words: str) -> frozenset[str]:
    return frozenset(words.split())


class DeployMarker(BaseModel):
    """A deploy of `service` to `version` at `ts` (from the deploy events Vigil received)."""

    ts: datetime
    service: str
    version: str
    evidence_id: str = Field(default="", description="The deploy's evidence id; `deploy:<version>` when unset.")


@dataclass(frozen=True)
class Rule:
    """One detector. `pattern` is None for the aggregate detectors computed from counts, not single lines."""

    name: str
    category: Category
    severity: str
    title: str
    description: str
    pattern: re.Pattern[str] | None = None
    min_level: Level | None = None  # events whose level is known and below this are ignored
    min_count: int = 1
    check: Check | None = None  # a further condition on the match (a threshold on a captured number)
    group: str | None = None  # within a group the first matching rule takes the event
    keywords: frozenset[str] = frozenset()  # words (lowercase [a-z0-9]+) one of which every match contains

    def __post_init__(self) -> None:
        bad = [k for k in self.keywords if not _TOKEN.fullmatch(k)]
        if bad:
            raise ValueError(f"rule {self.name}: keywords must be single lowercase words: {bad}")

    @property
    def id(self) -> str:
        return f"detector:{self.name}"


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


def _number_at_least(threshold: float, group: int = 1) -> Check:
    def check(match: re.Match[str]) -> bool:
        value = match.group(group)
        return value is not None and float(value.replace(",", "")) >= threshold

    return check


def _number_at_most(threshold: float, group: int = 1) -> Check:
    def check(match: re.Match[str]) -> bool:
        value = match.group(group)
        return value is not None and float(value) <= threshold

    return check


SLOW_QUERY_MS = 1000.0
SLOW_REQUEST_MS = 1000.0
CERT_WARN_DAYS = 30.0
DISK_USAGE_PERCENT = 90.0
AUTH_LINES = 3
AUTH_STATUS_BURST = 10
RATE_LIMIT_STATUS_BURST = 5

_W = Level.WARNING
_E = Level.ERROR

LINE_RULES: tuple[Rule, ...] = (
    Rule(
        "oom-killed",
        Category.MEMORY,
        "critical",
        "Processes killed or failing for lack of memory",
        "Kernel OOM killer, Kubernetes OOMKilled, JVM OutOfMemoryError, Python MemoryError, Go/Node out of memory.",
        _rx(
            r"\bout of memory: kill(?:ed)? process\b",
            r"\binvoked oom-killer\b|\boom-kill(?:er)?\b|\bmemory cgroup out of memory\b",
            r"\boomkilled\b|\breason\W{1,5}oom\b",
            r"\bjava\.lang\.outofmemoryerror\b|\boutofmemoryerror\b",
            r"(?:^|[\s.:(])memoryerror\b",
            r"\bjavascript heap out of memory\b|\bfatal error: runtime: out of memory\b",
            r"\bcannot allocate memory\b|\benomem\b|\bfailed to allocate memory\b",
        ),
        keywords=_kw("memory oom oomkilled outofmemoryerror memoryerror enomem"),
    ),
    Rule(
        "memory-pressure",
        Category.MEMORY,
        "warning",
        "Memory usage growing or under pressure",
        "Warnings that memory grows (leaks) or is near its limit, and GC thrashing.",
        _rx(
            r"\bmemory usage (?:is )?(?:growing|increasing|high|above|exceeds?|critical)\b",
            r"\bhigh memory (?:usage|pressure)\b|\bmemory pressure\b|\bpossible memory leak\b",
            r"\bgc overhead limit exceeded\b|\bheap (?:usage|space) (?:above|exceeds?|at \d)",
        ),
        min_level=_W,
        keywords=_kw("memory gc heap"),
    ),
    Rule(
        "db-pool-exhausted",
        Category.DATABASE,
        "high",
        "Database connection pool exhausted",
        "SQLAlchemy QueuePool limit, HikariCP 'Connection is not available', pgbouncer/PostgreSQL client limits.",
        _rx(
            r"\bqueuepool limit of size \d+ overflow \d+ reached\b",
            r"\bconnection is not available, request timed out after\b",
            r"\bhikaripool-\d+ - connection is not available\b",
            r"\bno more connections allowed\b|\bpool_size\b.{0,40}\bexhausted\b",
            r"\bsorry, too many clients already\b|\bremaining connection slots are reserved\b",
            r"\btoo many connections\b|\bconnection pool (?:is )?(?:exhausted|full)\b",
            r"\bclient_login_timeout\b|\bquery_wait_timeout\b",
            r"\b(?:timeout|timed out) (?:waiting for|acquiring) (?:a )?(?:db |database )?connection\b",
        ),
        min_level=_W,
        group="connection",
        keywords=_kw("queuepool connection connections clients pool client query"),
    ),
    Rule(
        "db-connection-refused",
        Category.DATABASE,
        "critical",
        "Database unreachable: connection refused or server down",
        "libpq/psycopg/asyncpg, JDBC, MySQL and pgbouncer failures to reach the database server.",
        _rx(
            r"\bconnection to server (?:at|on) .{1,200}? failed\b",
            r"\bcould not connect to (?:the )?(?:database )?server\b",
            r"\bis the server running (?:on that host|locally)\b",
            r"\bcan't connect to (?:local )?mysql server\b|\bcommunications link failure\b",
            r"\bthe database system is (?:starting up|shutting down|in recovery mode)\b",
            r"\bconnection refused\b.{0,80}\b(?:5432|3306|6432|1433|27017)\b",
            r"\b(?:5432|3306|6432|1433|27017)\b.{0,80}\bconnection refused\b",
            r"\bpgbouncer\b.{0,120}\b(?:server conn crashed|closing because: server conn)",
            r"\bunable to (?:acquire|obtain) (?:jdbc )?connection\b",
        ),
        min_level=_W,
        group="connection",
        keywords=_kw("server mysql communications database refused pgbouncer connection"),
    ),
    Rule(
        "db-deadlock",
        Category.DATABASE,
        "high",
        "Database deadlocks",
        "PostgreSQL 'deadlock detected', MySQL 'Deadlock found', SQL Server 'was deadlocked'.",
        _rx(r"\bdeadlock detected\b", r"\bdeadlock found when trying to get lock\b", r"\bwas deadlocked on\b"),
        min_level=_W,
        keywords=_kw("deadlock deadlocked"),
    ),
    Rule(
        "db-slow-queries",
        Category.DATABASE,
        "warning",
        f"Slow database queries (over {SLOW_QUERY_MS:g} ms)",
        "PostgreSQL 'duration: N ms' statements (log_min_duration_statement) and MySQL slow-log 'Query_time'.",
        _rx(r"\bduration: (\d+(?:\.\d+)?) ms\b"),
        check=_number_at_least(SLOW_QUERY_MS),
        keywords=_kw("duration"),
    ),
    Rule(
        "connection-refused",
        Category.NETWORK,
        "high",
        "Connections refused or reset by a dependency",
        "ECONNREFUSED, nginx 'connect() failed (111: Connection refused)', connection reset by peer.",
        _rx(
            r"\bconnection refused\b|\beconnrefused\b|\bconnectexception\b",
            r"\bconnection reset by peer\b|\beconnreset\b|\bno route to host\b|\behostunreach\b",
            r"\bno live upstreams\b",
        ),
        min_level=_W,
        group="connection",
        keywords=_kw("refused econnrefused connectexception reset econnreset route ehostunreach upstreams"),
    ),
    Rule(
        "timeouts",
        Category.NETWORK,
        "high",
        "Timeouts talking to dependencies",
        "Read/connect/upstream timeouts, 'timed out', context deadline exceeded, TimeoutError/SocketTimeoutException.",
        _rx(
            r"\btimed out\b",
            r"\bdeadline exceeded\b|\bdeadline_exceeded\b",
            r"\b(?:read|connect|connection|socket|request|gateway|upstream|query|lock|statement|i/o)[ _-]?timeout"
            r"(?:error|exception)?\b(?!\s*[=:]\s*[\d\"'])",
            r"\btimeout (?:error|exceeded|expired|occurred|while)\b|\btimeouterror\b|\btimeoutexception\b",
            r"\betimedout\b|\bcanceling statement due to statement timeout\b",
        ),
        min_level=_W,
        group="connection",
        keywords=_kw(
            "timed deadline timeout timeouterror timeoutexception etimedout readtimeout connecttimeout sockettimeout "
            "sockettimeoutexception readtimeouterror connecttimeouterror connecttimeoutexception requesttimeout "
            "gatewaytimeout upstreamtimeout querytimeout statement"
        ),
    ),
    Rule(
        "upstream-unavailable",
        Category.DEPENDENCY,
        "high",
        "Upstream dependency failing (502/503, no healthy upstream)",
        "Envoy 'upstream connect error or disconnect/reset before headers', 'no healthy upstream', nginx "
        "'upstream prematurely closed', 502 Bad Gateway / 503 Service Unavailable from a dependency.",
        _rx(
            r"\bupstream connect error\b|\bdisconnect/reset before headers\b|\bno healthy upstream\b",
            r"\bupstream prematurely closed connection\b|\bupstream sent (?:invalid|too big)\b",
            r"\b(?:502 )?bad gateway\b|\b(?:503 )?service unavailable\b|\b504 gateway time-?out\b",
        ),
        min_level=_W,
        keywords=_kw("upstream disconnect healthy bad unavailable 504"),
    ),
    Rule(
        "cpu-saturation",
        Category.COMPUTE,
        "warning",
        "CPU saturated or throttled",
        "High CPU usage warnings, CPU throttling, event-loop lag, kernel soft lockups and hung tasks.",
        _rx(
            r"\bhigh cpu (?:usage|load|utili[sz]ation)\b|\bcpu (?:usage|utili[sz]ation|load) (?:above|exceeds?|at \d)",
            r"\bcpu ?throttling(?:high)?\b|\bcpu throttled\b",
            r"\bevent loop (?:lag|blocked)\b|\bsoft lockup\b|\bblocked for more than \d+ seconds\b",
        ),
        min_level=_W,
        keywords=_kw("cpu cputhrottling cputhrottlinghigh event lockup blocked"),
    ),
    Rule(
        "slow-requests",
        Category.CAPACITY,
        "warning",
        f"Slow requests (over {SLOW_REQUEST_MS:g} ms)",
        "Application 'slow request ... took N ms' warnings: latency above the service's budget.",
        _rx(r"\bslow (?:request|response)\b.{0,120}?\b(?:took|in|duration[:=]?) ?(\d+(?:\.\d+)?) ?ms\b"),
        min_level=_W,
        check=_number_at_least(SLOW_REQUEST_MS),
        keywords=_kw("slow"),
    ),
    Rule(
        "disk-full",
        Category.STORAGE,
        "critical",
        "Disk full",
        "ENOSPC 'No space left on device', disk quota exceeded, disk usage at 90% or more.",
        _rx(
            r"\bno space left on device\b|\benospc\b|\berrno 28\b|\bdisk quota exceeded\b|\bedquot\b",
            r"\bdisk (?:is )?full\b|\bnot enough (?:free )?disk space\b|\bfilesystem (?:is )?full\b",
            r"\bcould not (?:extend|write to) file\b.{0,200}\bno space\b",
        ),
        min_level=_W,
        keywords=_kw("space enospc errno quota edquot disk filesystem"),
    ),
    Rule(
        "disk-usage-high",
        Category.STORAGE,
        "warning",
        f"Disk usage at {DISK_USAGE_PERCENT:g}% or more",
        "Warnings that a disk or volume is nearly full.",
        _rx(r"\bdisk (?:usage|space|utili[sz]ation)\b.{0,120}?\b(\d{1,3}(?:\.\d+)?) ?%"),
        min_level=_W,
        check=_number_at_least(DISK_USAGE_PERCENT),
        keywords=_kw("disk"),
    ),
    Rule(
        "io-errors",
        Category.STORAGE,
        "high",
        "Disk I/O errors or read-only filesystem",
        "EIO 'Input/output error', kernel I/O errors, EXT4/XFS errors, read-only filesystem (EROFS).",
        _rx(
            r"\binput/output error\b|\beio\b|\berofs\b|\bread-only file ?system\b",
            r"\b(?:buffer )?i/o error\b|\bblk_update_request\b",
            r"\bremounting filesystem read-only\b|\bext4-fs error\b|\bxfs\b.{0,40}\bcorruption\b",
        ),
        min_level=_W,
        keywords=_kw("input eio erofs only o blk remounting ext4 xfs"),
    ),
    Rule(
        "crash-loop",
        Category.DEPLOYMENT,
        "high",
        "Crash loop or repeated restarts",
        "Kubernetes CrashLoopBackOff/back-off restarting, non-zero exit codes, systemd restart counters, and the "
        "same start line repeated (3 or more times) by one service.",
        _rx(
            r"\bback-off restarting failed container\b|\bcrashloopbackoff\b",
            r"\b(?:exited|terminated|exit(?:ed)?) with (?:exit )?(?:code|status) ?[:=]? ?-?0*[1-9]\d*\b",
            r"\bexit (?:code|status)[:= ]{1,3}-?0*[1-9]\d*\b",
            r"\bcode=(?:exited|killed|dumped), status=(?:0*[1-9]|[a-z])",
            r"\brestart counter is at \d+\b|\bstart request repeated too quickly\b",
            r"\bcontainer .{0,80}? (?:failed liveness probe|will be restarted)\b",
        ),
        min_level=None,
        keywords=_kw("back crashloopbackoff exited terminated exit code restart repeated container"),
    ),
    Rule(
        "tls-failures",
        Category.SECURITY,
        "critical",
        "Expired certificate or TLS handshake failures",
        "x509 expired / unknown authority, 'certificate has expired', certificate verify failed, handshake errors.",
        _rx(
            r"\bx509: certificate (?:has expired|signed by unknown authority|is not valid)\b",
            r"\bcertificate (?:has )?expired\b|\bcertificate_expired\b|\bcertificate is not yet valid\b",
            r"\bcertificate verify failed\b|\bcertificate_verify_failed\b|\bunable to get local issuer certificate\b",
            r"\bself[- ]signed certificate in certificate chain\b|\bpkix path (?:building|validation) failed\b",
            r"\b(?:ssl|tls) handshake (?:error|failed|failure|timeout)\b|\bhandshake_failure\b",
            r"\bsslhandshakeexception\b|\bssl routines\b.{0,80}\b(?:fail|error|alert)",
            r"\bcertificate \S{1,120} expired [\d.]+ days ago\b",
        ),
        group="tls",
        keywords=_kw("x509 certificate handshake sslhandshakeexception ssl pkix"),
    ),
    Rule(
        "cert-expiring",
        Category.SECURITY,
        "warning",
        f"Certificate expires within {CERT_WARN_DAYS:g} days",
        "'certificate ... expires in N days' warnings (cert-manager, checks, the service itself).",
        _rx(r"\bcert(?:ificate)?\b.{0,160}?\bexpires? (?:in|within) (\d+(?:\.\d+)?) ?days?\b"),
        check=_number_at_most(CERT_WARN_DAYS),
        group="tls",
        keywords=_kw("cert certificate"),
    ),
    Rule(
        "dns-failures",
        Category.NETWORK,
        "high",
        "DNS resolution failures",
        "NXDOMAIN, 'no such host', 'Temporary failure in name resolution', getaddrinfo failures, unknown host, "
        "a lookup against a resolver on :53 that fails (Go), DNS query timeouts.",
        _rx(
            r"\bnxdomain\b|\bservfail\b|\bno such host\b",
            r"\btemporary failure in name resolution\b|\bname or service not known\b",
            r"\bnodename nor servname provided\b|\bname resolution failed\b",
            r"\bgetaddrinfo\b.{0,40}\b(?:enotfound|eai_again|failed|error)\b|\b(?:enotfound|eai_again)\b",
            r"\bcould not resolve (?:host|hostname)\b|\bunknownhostexception\b|\bcould not be resolved\b",
            # Go's resolver: "dial tcp: lookup HOST on 10.96.0.10:53: read udp ...: i/o timeout"
            r"\blookup \S+ on \S+:53\b|\bdns (?:query|lookup|resolution)\b.{0,40}\b(?:timeout|timed out)\b",
        ),
        min_level=_W,
        keywords=_kw(
            "nxdomain servfail host resolution known nodename resolved getaddrinfo enotfound eai resolve "
            "unknownhostexception lookup dns"
        ),
    ),
    Rule(
        "rate-limited",
        Category.DEPENDENCY,
        "warning",
        "Rate limiting (429 Too Many Requests)",
        "429 / Too Many Requests, 'rate limit exceeded', nginx 'limiting requests'; also 5+ responses with status 429.",
        _rx(
            r"\b429\b.{0,20}\btoo many requests\b|\btoo many requests\b",
            r"\brate[ -]?limit(?:ed|ing)?\b(?!\s*[=:]\s*[\d\"'])(?! (?:is|set to|configured)\b)",
            r"\bratelimit(?:ed|exceeded|error)?\b(?!\s*[=:]\s*[\d\"'])|\blimiting requests, excess\b",
            r"(?<!cpu )\bthrottl(?:ed|ing)\b",
        ),
        min_level=_W,
        keywords=_kw(
            "429 many rate ratelimit ratelimited ratelimitexceeded ratelimiterror limiting throttled throttling"
        ),
    ),
    Rule(
        "auth-failures",
        Category.SECURITY,
        "warning",
        "Authentication failures",
        "'authentication failed', 'invalid credentials', OpenSSH 'Failed password'/'Invalid user', PostgreSQL "
        "'password authentication failed'; 3+ lines, or 10+ responses with status 401/403.",
        _rx(
            r"\bauthentication (?:failed|failure)\b|\bauth(?:entication)? error\b",
            r"\binvalid (?:credentials|password|api[ _-]?key|token)\b|\bbad credentials\b",
            r"\bfailed password for\b|\binvalid user \S+ from\b|\bpam_unix\(\S+\): authentication failure\b",
            r"\bpassword authentication failed for user\b|\baccess denied for user\b",
            r"\b(?:unauthorized|forbidden)\b.{0,40}\b(?:token|credentials|login)\b",
        ),
        min_count=AUTH_LINES,
        keywords=_kw("authentication auth invalid credentials password denied unauthorized forbidden pam"),
    ),
)


AGGREGATE_RULES: tuple[Rule, ...] = (
    Rule(
        "http-5xx-spike",
        Category.DEPENDENCY,
        "high",
        "Spike of 5xx responses",
        "Share of responses with a 5xx status (access logs, status fields) above a threshold, with a minimum count.",
    ),
    Rule(
        "bad-deploy",
        Category.DEPLOYMENT,
        "critical",
        "Errors started right after a deploy",
        "A service's error rate in the minutes after a deploy is clearly above the same span before it.",
    ),
)

RULES: tuple[Rule, ...] = LINE_RULES + AGGREGATE_RULES
"""Every detector, for documentation: name, category, severity, description."""

_RULES_BY_NAME = {r.name: r for r in RULES}
SYMPTOM_DETECTORS: dict[str, Category] = {"http-5xx-spike": _RULES_BY_NAME["http-5xx-spike"].category}
"""Detectors of symptoms, not causes: beside a cause another detector names, their events are mostly that
cause's failures counted a second time, so the classifier's votes and the RCA's detector support weigh them by
`SYMPTOM_WEIGHT`."""
SYMPTOM_WEIGHT = 0.5
_ALL_KEYWORDS = frozenset().union(*(r.keywords for r in LINE_RULES))
_START_WORDS = frozenset({"started", "starting", "startup"})
_START_LINE = re.compile(
    r"^start(?:ed|ing) [\w@.-]{1,100}\.service\b|^started \w{1,100} in [\d.]+ seconds\b"
    r"|\bstarted server process\b|\bapplication startup complete\b"
    r"|\b(?:server|service|application|app)\b.{0,60}\b(?:started|starting up)\b"
    r"|\bv?\d+\.\d+\S{0,40} .{0,60}\bstarted$",
    re.IGNORECASE,
)
STARTS_FOR_CRASH_LOOP = 3


def _merge(into: list[LogEvent], more: Sequence[LogEvent]) -> None:
    """Add events not yet counted (a '429 Too Many Requests' line with status 429 is one hit, not two)."""
    seen = {id(e) for e in into}
    into.extend(e for e in more if id(e) not in seen)


def _status_of(event: LogEvent) -> int | None:
    fields = event.fields
    if not fields:
        return None
    for key in _STATUS_FIELDS:
        value = fields.get(key)
        if value is not None and len(value) == 3 and value.isdigit():
            return int(value)
    return None


def _haystack(event: LogEvent) -> str:
    parts = [event.message[:MAX_SCAN_CHARS]]
    if event.exception_type:
        parts.append(f"{event.exception_type}: {event.exception_message or ''}"[:MAX_SCAN_CHARS])
    if event.fields:
        parts.extend(event.fields[k][:500] for k in _TEXT_FIELDS if k in event.fields)
    return "\n".join(parts)


def _level_ok(event: LogEvent, min_level: Level | None) -> bool:
    if min_level is None or event.level is None:
        return True
    if event.exception_type:  # an exception is at least a warning, whatever level it was logged at
        return True
    return _LEVEL_RANK[event.level] >= _LEVEL_RANK[min_level]


def _finding(
    rule: Rule,
    events: Sequence[LogEvent],
    fingerprints: Sequence[ErrorFingerprint],
    template_of: TemplateOf,
    *,
    title: str | None = None,
) -> Finding:
    stamps = [as_utc(e.ts) for e in events if e.ts is not None]
    samples: list[str] = []
    seen: set[str] = set()
    for event in events[:100]:
        sample = truncate(event.message.split("\n", 1)[0] or (event.exception_message or ""))
        shape = default_template_of(sample)
        if shape in seen:
            continue
        seen.add(shape)
        samples.append(sample)
        if len(samples) == MAX_SAMPLES:
            break
    return Finding(
        id=rule.id,
        detector=rule.name,
        category=rule.category,
        title=title or rule.title,
        severity=rule.severity,
        count=len(events),
        first_seen=min(stamps) if stamps else None,
        last_seen=max(stamps) if stamps else None,
        services=sorted({e.service for e in events if e.service}),
        samples=samples,
        evidence=fingerprint_ids_of(events, fingerprints, template_of=template_of),
    )


def detect(
    events: Sequence[LogEvent],
    *,
    fingerprints: Sequence[ErrorFingerprint] = (),
    deploys: Sequence[DeployMarker] = (),
    template_of: TemplateOf = default_template_of,
    error_share_5xx: float = 0.05,
    min_5xx: int = 5,
    deploy_window: timedelta = timedelta(minutes=10),
    deploy_factor: float = 3.0,
    deploy_min_errors: int = 5,
) -> list[Finding]:
    """Run every rule over `events`; findings ordered by severity, then count (largest first).

    `fingerprints` should come from `fingerprint_errors` with the same `template_of`: a finding's evidence lists
    the ids of those fingerprints that its matching error events belong to.
    """
    hits: dict[str, list[LogEvent]] = defaultdict(list)
    status_total = 0
    status_5xx: list[LogEvent] = []
    status_auth: list[LogEvent] = []
    status_429: list[LogEvent] = []
    starts: dict[tuple[str | None, str], list[LogEvent]] = defaultdict(list)
    tokens_of = _TOKEN.findall
    start_line = _START_LINE.search

    for event in events:
        status = _status_of(event)
        if status is not None:
            status_total += 1
            if status >= 500:
                status_5xx.append(event)
            elif status in (401, 403):
                status_auth.append(event)
            elif status == 429:
                status_429.append(event)
        haystack = _haystack(event)
        tokens = set(tokens_of(haystack.lower()))
        if not _START_WORDS.isdisjoint(tokens) and start_line(event.message[:300]) and not is_error(event):
            starts[(event.service, default_template_of(event.message))].append(event)
        # Keywords are a prefilter: a rule none of whose words occur cannot match.
        if _ALL_KEYWORDS.isdisjoint(tokens):
            continue
        taken: set[str] = set()
        for rule in LINE_RULES:
            if rule.group is not None and rule.group in taken:
                continue
            if rule.keywords.isdisjoint(tokens):
                continue
            if not _level_ok(event, rule.min_level):
                continue
            assert rule.pattern is not None
            match = rule.pattern.search(haystack)
            if match is None or (rule.check is not None and not rule.check(match)):
                continue
            hits[rule.name].append(event)
            if rule.group is not None:
                taken.add(rule.group)

    # Aggregates from status fields and repeated start lines.
    if len(status_429) >= RATE_LIMIT_STATUS_BURST:
        _merge(hits["rate-limited"], status_429)
    if len(status_auth) >= AUTH_STATUS_BURST:  # a burst of 401/403 counts even without auth log lines
        _merge(hits["auth-failures"], status_auth)
    for group in starts.values():
        if len(group) >= STARTS_FOR_CRASH_LOOP:
            _merge(hits["crash-loop"], group)

    findings: list[Finding] = []
    for rule in LINE_RULES:
        matched = hits.get(rule.name)
        burst = rule.name == "auth-failures" and len(status_auth) >= AUTH_STATUS_BURST
        if not matched or (len(matched) < rule.min_count and not burst):
            continue
        matched.sort(key=lambda e: e.line)
        findings.append(_finding(rule, matched, fingerprints, template_of))

    if status_total and len(status_5xx) >= min_5xx and len(status_5xx) / status_total >= error_share_5xx:
        share = len(status_5xx) / status_total
        rule = _RULES_BY_NAME["http-5xx-spike"]
        title = f"{len(status_5xx)} of {status_total} responses were 5xx ({share:.0%})"
        findings.append(_finding(rule, status_5xx, fingerprints, template_of, title=title))

    bad = _bad_deploys(events, deploys, deploy_window, deploy_factor, deploy_min_errors)
    if bad:
        rule = _RULES_BY_NAME["bad-deploy"]
        after = [e for _, errors in bad for e in errors]
        names = ", ".join(f"{d.service} {d.version}" for d, _ in bad)
        title = f"Errors rose right after deploy {names}"
        findings.append(_finding(rule, after, fingerprints, template_of, title=title))

    findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), -f.count, f.detector))
    return findings


def _bad_deploys(
    events: Sequence[LogEvent],
    deploys: Sequence[DeployMarker],
    window: timedelta,
    factor: float,
    min_errors: int,
) -> list[tuple[DeployMarker, list[LogEvent]]]:
    """Deploys after which the service's errors per minute rose to `factor` times the rate before, or more.

    Events without a service count for every deploy (single-service logs often carry none). The spans before
    and after are clipped to the log window, so a deploy near its edge is compared at a fair rate.
    """
    if not deploys:
        return []
    timed = [(as_utc(e.ts), e) for e in events if e.ts is not None]
    if not timed:
        return []
    stamps = [ts for ts, _ in timed]
    start, end = min(stamps), max(stamps)
    minute = timedelta(minutes=1)
    bad: list[tuple[DeployMarker, list[LogEvent]]] = []
    errors = [(ts, e) for ts, e in timed if is_error(e)]
    for deploy in sorted(deploys, key=lambda d: as_utc(d.ts)):
        at = as_utc(deploy.ts)
        before_errors = 0
        after: list[LogEvent] = []
        for ts, event in errors:
            if event.service is not None and event.service != deploy.service:
                continue
            if at - window <= ts < at:
                before_errors += 1
            elif at <= ts < at + window:
                after.append(event)
        if len(after) < min_errors:
            continue
        before_span = max(min(window, at - start), minute) / minute
        after_span = max(min(window, end - at), minute) / minute
        before_rate, after_rate = before_errors / before_span, len(after) / after_span
        if after_rate >= factor * max(before_rate, 1.0 / (window / minute)):
            bad.append((deploy, after))
    return bad
