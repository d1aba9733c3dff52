"""Temporal wiring shared by every process: client connection, data converter and search attributes."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from vigil.settings import Settings

STATUS_ATTR = SearchAttributeKey.for_keyword("VigilStatus")
SEVERITY_ATTR = SearchAttributeKey.for_keyword("VigilSeverity")
SERVICE_ATTR = SearchAttributeKey.for_keyword("VigilService")
CATEGORY_ATTR = SearchAttributeKey.for_keyword("VigilCategory")
INCIDENT_ATTR = SearchAttributeKey.for_keyword("VigilIncidentId")
"""The occurrence's incident id; the workflow id names the alert group, whose incidents share it."""
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    STATUS_ATTR,
    SEVERITY_ATTR,
    SERVICE_ATTR,
    CATEGORY_ATTR,
    INCIDENT_ATTR,
)


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client with the pydantic data converter; `runtime` carries e.g. a worker's metrics exporter."""
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
