"""Who owns a service: the Jira user its tickets go to and the GitHub repository its code lives in.

Read from the YAML file `VIGIL_SERVICE_OWNERS`, a mapping of service name to its owners:

    checkout:
      jira_assignee: alice@example.com    # Jira Cloud: an email or account id; Jira Server: a user name
      github_repo: acme/shop
    payments:
      github_repo: acme/payments

A file that cannot work (unreadable, not YAML, a misspelt key, a repository that is not `owner/name`) stops the
integrations worker at start with every problem listed, rather than silently leaving tickets unassigned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from vigil.integrations.base import IntegrationConfigError

REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$"

Repository = Annotated[str, StringConstraints(strip_whitespace=True, pattern=REPOSITORY_PATTERN)]
Assignee = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ServiceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ServiceOwner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jira_assignee: Assignee | None = Field(default=None, description="Jira user the service's tickets go to.")
    github_repo: Repository | None = Field(default=None, description="`owner/name` of the service's code.")


class ServiceOwners(BaseModel):
    """Service -> owners; a service not listed has none (tickets unassigned, no GitHub issue)."""

    model_config = ConfigDict(frozen=True)

    services: dict[ServiceName, ServiceOwner] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> ServiceOwners:
        """The owners in `path`; None: nobody owns anything. Raises IntegrationConfigError listing every problem
        of the file."""
        if path is None:
            return cls()
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise IntegrationConfigError(f"service owners file {path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise IntegrationConfigError(f"service owners file {path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            reason = getattr(exc, "problem", None) or "unparsable"
            raise IntegrationConfigError(f"service owners file {path}: invalid YAML{where}: {reason}") from None
        if document is None:
            return cls()
        if not isinstance(document, dict):
            raise IntegrationConfigError(
                f"service owners file {path}: expected a mapping of service name to "
                f"{{jira_assignee, github_repo}}, got {type(document).__name__}"
            )
        problems: list[str] = []
        services: dict[str, ServiceOwner] = {}
        for service, entry in document.items():
            if not isinstance(service, str) or not service.strip():
                problems.append(f"{service!r}: a service name must be a non-empty string")
                continue
            try:
                services[service.strip()] = ServiceOwner.model_validate({} if entry is None else entry)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    where = ".".join(str(part) for part in (service, *error["loc"]))
                    problems.append(f"{where}: {_message(error['msg'], error['type'])}")
        if problems:
            raise IntegrationConfigError(f"service owners file {path}: " + "; ".join(problems))
        return cls(services=services)

    def assignee(self, service: str | None) -> str | None:
        owner = self.services.get(service) if service else None
        return owner.jira_assignee if owner else None

    def repository(self, service: str | None) -> str | None:
        owner = self.services.get(service) if service else None
        return owner.github_repo if owner else None


def _message(message: str, kind: str) -> str:
    if kind == "string_pattern_mismatch":
        return "must be a GitHub repository as owner/name"
    if kind == "extra_forbidden":
        return "unknown key (expected jira_assignee, github_repo)"
    if kind == "model_type":
        return "expected a mapping with jira_assignee and/or github_repo"
    return message
