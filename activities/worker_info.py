"""`worker_info`: registered on every task queue, so a probe can prove each worker picks up work."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from temporalio import activity

from vigil import __version__
from vigil.models import WorkerInfo

_STARTED_AT = datetime.now(UTC)


@activity.defn(name="worker_info")
async def worker_info() -> WorkerInfo:
    return WorkerInfo(
        task_queue=activity.info().task_queue,
        pid=os.getpid(),
        version=__version__,
        started_at=_STARTED_AT,
        capabilities={"host": platform.node(), "python": platform.python_version()},
    )
