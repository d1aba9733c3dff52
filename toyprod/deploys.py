"""Announce deploys to Vigil (`POST /api/v1/events/deploy`), as a CD pipeline would."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from toyprod import SERVICE
from toyprod.logs import JsonLog
from toyprod.shop import Build
from vigil.models import DeployEvent


class DeployAnnouncer:
    def __init__(self, vigil_url: str, token: str | None, log: JsonLog) -> None:
        self._url = f"{vigil_url.rstrip('/')}/api/v1/events/deploy"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._log = log

    async def announce(self, build: Build, *, author: str, description: str) -> bool:
        """True when Vigil accepted the event; a failure is logged, never raised: the deploy happened anyway."""
        event = DeployEvent(
            service=SERVICE,
            version=build.version,
            commit=build.commit,
            author=author,
            description=description,
            ts=datetime.now(UTC),
        )
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.post(self._url, json=event.model_dump(mode="json"), headers=self._headers)
        except httpx.HTTPError as exc:
            self._log.warning("toyprod.deploy", f"could not announce deploy {build.version} to Vigil: {exc!r}")
            return False
        if not response.is_success:
            self._log.warning(
                "toyprod.deploy",
                f"Vigil refused deploy event {build.version}: HTTP {response.status_code} {response.text[:300]}",
            )
        return response.is_success
