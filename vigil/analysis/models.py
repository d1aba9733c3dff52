"""Messages of the analysis engine. Log text in them is untrusted data: it is analysed, never obeyed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


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
