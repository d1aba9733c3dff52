"""What every console page works with: the settings, the shared Temporal source and the shared store."""

from __future__ import annotations

from dataclasses import dataclass, field

from ui.console import IncidentSource
from vigil.settings import Settings
from vigil.store.database import Store


@dataclass
class ConsoleContext:
    """One per console process, shared by every browser tab. `store` is None until PostgreSQL answered (pages that
    need it say so and try again); the Temporal client reconnects inside `source`."""

    settings: Settings
    source: IncidentSource
    store: Store | None = field(default=None)
