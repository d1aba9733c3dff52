"""Knowledge-base errors a user can fix: the CLI prints their message without a traceback."""

from __future__ import annotations


class KnowledgeBaseError(RuntimeError):
    """A knowledge-base problem a user can fix; the CLI prints the message without a traceback."""


class KnowledgeBaseLockedError(KnowledgeBaseError):
    """The local knowledge-base path is held by another process."""


def locked_message(path: object) -> str:
    return (
        f"the knowledge base at {path} is in use by another process: the embedded store admits one process per "
        "path, and a running `vigil up` (its ml worker) holds it. Stop `vigil up`, or run a Qdrant server and set "
        "QDRANT_URL for every Vigil process."
    )
