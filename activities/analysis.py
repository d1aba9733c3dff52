"""`analyze_bundle`: the analysis pipeline (`vigil.analysis.report.analyze`) as an activity on `vigil-ml`.

The pipeline is CPU-bound, so it runs in a thread while the activity heartbeats; the classifier is loaded once
per process (`default_classifier` caches it).
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import activity

from vigil.analysis.bundle import Bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import AnalysisReport, analyze

HEARTBEAT_SECONDS = 5.0


@activity.defn(name="analyze_bundle")
async def analyze_bundle(bundle: Bundle) -> AnalysisReport:
    stages: list[str] = []
    work = asyncio.ensure_future(
        asyncio.to_thread(analyze, bundle, classifier=default_classifier(), progress=stages.append)
    )
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=HEARTBEAT_SECONDS)
            if done:
                return work.result()
            activity.heartbeat(stages[-1] if stages else "started")
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
