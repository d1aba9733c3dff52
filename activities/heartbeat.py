"""Heartbeating while an activity awaits long work (a thread running the analysis, an LLM request)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import activity

HEARTBEAT_SECONDS = 5.0
T = TypeVar("T")


async def with_heartbeat(work: Awaitable[T], what: Callable[[], str]) -> T:
    """Await `work`, heartbeating `what()` every few seconds; cancelled with the activity."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
            if done:
                return task.result()
            activity.heartbeat(what())
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
