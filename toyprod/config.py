"""toyprod's configuration, derived from Vigil's `Settings` (tests build it directly with short timings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vigil.settings import Settings

MIB = 1024 * 1024
MAX_DISK_QUOTA = 64 * MIB
"""disk-fill never writes more real bytes than this, whatever the configuration says."""


@dataclass(frozen=True)
class ToyConfig:
    state_dir: Path
    vigil_url: str | None = None
    """Base URL of Vigil's API for log shipping and deploy events; None: neither is sent."""
    vigil_token: str | None = None
    chaos_token: str | None = None
    """Explicit chaos token; None: read `{state_dir}/chaos-token` on each chaos request."""
    pool_size: int = 10
    pool_timeout_s: float = 5.0
    query_latency_s: float = 0.004
    payments_latency_s: float = 0.03
    disk_quota_bytes: int = MAX_DISK_QUOTA
    watchdog_interval_s: float = 1.0
    ship_interval_s: float = 1.0
    ship_batch: int = 500
    ship_buffer: int = 10_000
    ship_max_backoff_s: float = 30.0
    slow_request_s: float = 0.4

    @classmethod
    def from_settings(cls, settings: Settings) -> ToyConfig:
        return cls(
            state_dir=settings.state_dir,
            vigil_url=f"http://{settings.api_host}:{settings.api_port}",
            vigil_token=settings.api_token.get_secret_value() if settings.api_token else None,
            chaos_token=settings.chaos_token.get_secret_value() if settings.chaos_token else None,
        )

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "toyprod-data"


def resolve_chaos_token(explicit: str | None, state_dir: Path) -> str | None:
    """The chaos token: the explicit one, else the content of `{state_dir}/chaos-token`, else None."""
    if explicit:
        return explicit
    try:
        token = (state_dir / "chaos-token").read_text().strip()
    except OSError:
        return None
    return token or None
