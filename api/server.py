"""`vigil api`: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from vigil.settings import Settings


def serve(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
