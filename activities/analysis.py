"""`analyze_bundle`: the analysis pipeline (`vigil.analysis.report.analyze`) as an activity on `vigil-ml`.

The pipeline is CPU-bound, so it runs in a thread while the activity heartbeats; the classifier is loaded once
per process (`default_classifier` caches it).
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.heartbeat import with_heartbeat
from vigil.analysis.bundle import Bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.report import AnalysisReport, analyze


@activity.defn(name="analyze_bundle")
async def analyze_bundle(bundle: Bundle) -> AnalysisReport:
    stages = ["started"]
    return await with_heartbeat(
        asyncio.to_thread(analyze, bundle, classifier=default_classifier(), progress=stages.append),
        lambda: stages[-1],
    )
