"""Messages of the analysis engine. Log text in them is untrusted data: it is analysed, never obeyed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # the pipeline's types, for the dataclasses below; messages stay light to import (no numpy)
    from vigil.analysis.anomalies import LogAnomaly
    from vigil.analysis.bundle import Bundle
    from vigil.analysis.correlate import DeployCorrelation
    from vigil.analysis.metric_anomalies import MetricAnomaly


class LogFormat(StrEnum):
    JSON = "json"
    LOGFMT = "logfmt"
    SYSLOG_3164 = "syslog3164"
    SYSLOG_5424 = "syslog5424"
    ACCESS = "access"
    PLAIN = "plain"


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class LogEvent(BaseModel):
    """One log event: one input line, or several folded together (a stack trace belongs to its line)."""

    line: int = Field(description="1-based number of the event's first input line.")
    line_count: int = 1
    ts: datetime | None = None
    service: str | None = None
    level: Level | None = None
    logger: str | None = None
    message: str = Field(description="The message with the header (time, level, logger, prefixes) removed.")
    fields: dict[str, str] = Field(default_factory=dict, description="Structured fields: JSON/logfmt/access.")
    format: LogFormat = LogFormat.PLAIN
    exception_type: str | None = None
    exception_message: str | None = None
    frames: list[str] = Field(default_factory=list, description="Stack frames, innermost last, as 'file:func'.")


class Category(StrEnum):
    DATABASE = "database"
    NETWORK = "network"
    COMPUTE = "compute"
    MEMORY = "memory"
    STORAGE = "storage"
    DEPLOYMENT = "deployment"
    DEPENDENCY = "dependency"
    CONFIGURATION = "configuration"
    CAPACITY = "capacity"
    SECURITY = "security"


class ErrorFingerprint(BaseModel):
    """Errors grouped by normalised exception type + innermost frame + message template."""

    id: str = Field(description="Stable evidence id, e.g. 'error:9f2c41d0'.")
    exception_type: str | None
    frame: str | None
    template: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    services: list[str]
    sample: str = Field(description="One example message, truncated.")


class Finding(BaseModel):
    """What a detector saw, with the evidence that shows it."""

    id: str = Field(description="Stable evidence id, e.g. 'detector:db-connection-refused'.")
    detector: str
    category: Category
    title: str
    severity: str = Field(description="critical, high, warning or info.")
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    services: list[str]
    samples: list[str] = Field(default_factory=list, description="Up to 3 example lines, truncated.")
    evidence: list[str] = Field(default_factory=list, description="Ids of the evidence items behind it.")


# -- the pipeline's intermediate data and the report's parts (assembled by `report`, localised by `localise`) ----


class ChainHop(BaseModel):
    """One hop of a root-cause chain: a component and why the path goes through it, citing evidence ids."""

    component: str = Field(max_length=200)
    relation: str = Field(default="", max_length=300, description="Why this hop: 'alert fired', 'reports …'.")
    evidence: list[str] = Field(default_factory=list, description="Ids of the evidence items that show it.")


class Suspect(BaseModel):
    """A component that may have caused the incident, with the signals that point at it."""

    component: str
    kind: str = Field(description="What it is: service, host, domain, database, node, zone, bucket, queue...")
    score: float
    category: Category | None = Field(default=None, description="The failure its own evidence points at.")
    onset: datetime | None = None
    reporters: list[str] = Field(default_factory=list, description="Other components whose errors name it.")
    reasons: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    telemetry: bool = Field(default=False, description="A telemetry source (exporter, event stream, monitoring).")


class Evidence(BaseModel):
    id: str
    kind: str
    title: str
    count: int | None = None
    first_seen: datetime | None = None
    services: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class RootCause(BaseModel):
    summary: str
    component: str
    chain: list[ChainHop] = Field(default_factory=list, description="Alerting component → … → the suspect.")
    confidence: float | None = Field(
        default=None, description="Of the component: the top suspect's share of the suspects' evidence."
    )


class Action(BaseModel):
    action: str
    evidence: list[str]


@dataclass(frozen=True)
class MetricChange:
    """A bundle series that moved: its report id (`metric:name{labels}`) and what `metric_anomalies` found."""

    id: str
    category: Category | None
    anomaly: MetricAnomaly
    service: str | None = None
    shift: float = 0.0  # robust z of the values after the onset against those before it (BARO-style)

    @property
    def onset(self) -> datetime | None:
        return None if self.anomaly.onset is None else datetime.fromtimestamp(self.anomaly.onset, UTC)


@dataclass
class Extracted:
    """The pipeline's intermediate results, up to the classifier's features."""

    bundle: Bundle
    events: list[LogEvent]
    templates: list[tuple[str, str, int, int]]  # id, template, count, error/warning count
    fingerprints: list[ErrorFingerprint]
    findings: list[Finding]
    deploys: list[DeployCorrelation]
    onset: datetime | None
    services: list[str]
    new_exception_after_deploy: bool
    metrics: list[MetricChange] = field(default_factory=list)
    log_anomalies: list[LogAnomaly] = field(default_factory=list)
    onset_source: str | None = None
    features: dict[str, float] = field(default_factory=dict)
    template_ids: list[str] = field(default_factory=list)  # per event, resolved
    surge_keys: list[str] = field(default_factory=list)  # per event: its template, split by 5xx status
    pivot: datetime | None = None  # the alert's start (earliest firing), else the first metric change
    surges: dict[str, float] = field(default_factory=dict)  # template id -> weight of its change at the pivot
    finding_weights: dict[str, float] = field(default_factory=dict)  # finding id -> the same, for findings
