"""infra/ and docker-compose.yml: the real promtool and amtool check the canonical and the rendered configs,
promtool unit-tests the alert rules, and the compose file is checked against the application's settings.

The Debian packages `prometheus` and `prometheus-alertmanager` provide the binaries (scripts/setup.sh installs
them); a missing binary fails these tests rather than skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml
from pydantic import AliasChoices, SecretStr
from typer.core import TyperGroup

from vigil.cli import app
from vigil.settings import Settings
from vigil.stack.monitoring import (
    ALERTMANAGER_BINARIES,
    INFRA_DIR,
    MonitoringSetupError,
    MonitoringTimings,
    alertmanager_command,
    ensure_chaos_token,
    find_binaries,
    prometheus_command,
    render,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = INFRA_DIR / "prometheus"
ALERTMANAGER_CONFIG = INFRA_DIR / "alertmanager" / "alertmanager.yml"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SEVERITIES = {"critical", "warning", "info"}
FUTURE_ENV = {"QDRANT_URL", "LLM_BASE_URL"}
"""Variables the compose file sets for stages not built yet; everything else must be a Settings name."""


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"{' or '.join(names)} not found: install the Debian packages prometheus and prometheus-alertmanager "
        "(scripts/setup.sh does, as root or with sudo)"
    )


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{output}"
    return output


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _alert_rules(rules_dir: Path) -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(rules_dir.glob("*.yml"))
        for group in _yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


@pytest.fixture
def rendered_settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        state_dir=tmp_path / "state",
        api_port=18000,
        prometheus_port=19090,
        alertmanager_port=19093,
        toyprod_port=18090,
        incidents_worker_metrics_port=19101,
        ml_worker_metrics_port=19102,
        integrations_worker_metrics_port=19103,
        api_token=SecretStr("s3cret-token"),
    )


# --- Prometheus ---------------------------------------------------------------------------------------------


def test_canonical_prometheus_config_and_rules_pass_promtool() -> None:
    promtool = _binary("promtool")
    output = _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS" in output
    _run(promtool, "check", "rules", *map(str, sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))))


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
    assert len(tests) >= 2
    output = _run(_binary("promtool"), "test", "rules", *map(str, tests))
    assert "FAILED" not in output


def test_every_alert_has_severity_service_and_annotations() -> None:
    alerts = _alert_rules(PROMETHEUS_DIR / "rules")
    names = {rule["alert"] for rule in alerts}
    assert {
        "ToyprodAvailabilityBudgetBurn",
        "ToyprodLatencyBudgetBurn",
        "ToyprodHigh5xxRate",
        "ToyprodBadDeploy",
        "ToyprodDependencyDown",
        "ToyprodDBPoolExhausted",
        "ToyprodDiskAlmostFull",
        "ToyprodCertificateExpiring",
        "ProcessMemoryHigh",
        "ProcessMemoryGrowing",
        "ProcessCPUSaturated",
    } <= names
    for rule in alerts:
        where = f"alert {rule['alert']}"
        assert rule["labels"]["severity"] in SEVERITIES, where
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), where
        assert rule["annotations"]["runbook_url"].startswith("https://"), where
        # `service` comes from the scrape target; an aggregation must keep it.
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
            assert "service" in clause, f"{where}: `by ({clause})` drops the service label"
        assert "for" in rule, where


def test_burn_rate_alerts_follow_the_sre_workbook() -> None:
    """Pages at 14.4x over 1h and 5m and at 6x over 6h and 30m; a ticket at 1x over 3d and 6h."""
    alerts = [rule for rule in _alert_rules(PROMETHEUS_DIR / "rules") if rule["alert"].endswith("BudgetBurn")]
    windows = {(rule["alert"], rule["labels"]["window"]): rule for rule in alerts}
    for name, budget, metric in (
        ("ToyprodAvailabilityBudgetBurn", "0.005", "toyprod:http_request_errors"),
        ("ToyprodLatencyBudgetBurn", "0.01", "toyprod:http_request_slow"),
    ):
        fast, slow, ticket = (windows[(name, window)] for window in ("fast", "slow", "ticket"))
        assert f"{metric}:ratio_rate1h > (14.4 * {budget})" in fast["expr"]
        assert f"{metric}:ratio_rate5m > (14.4 * {budget})" in fast["expr"]
        assert f"{metric}:ratio_rate6h > (6 * {budget})" in slow["expr"]
        assert f"{metric}:ratio_rate30m > (6 * {budget})" in slow["expr"]
        assert f"{metric}:ratio_rate3d > {budget}" in ticket["expr"]
        assert f"{metric}:ratio_rate6h > {budget}" in ticket["expr"]
        assert (fast["labels"]["severity"], slow["labels"]["severity"]) == ("critical", "critical")
        assert ticket["labels"]["severity"] == "warning"


def test_toyprod_scrape_job_labels_its_service() -> None:
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    [toyprod] = jobs["toyprod"]["static_configs"]
    assert toyprod["labels"] == {"service": "toyprod", "namespace": "demo"}
    for job in jobs.values():
        for static in job["static_configs"]:
            assert {"service", "namespace"} <= set(static["labels"]), job["job_name"]


def test_compose_targets_use_the_default_ports() -> None:
    defaults = Settings(_env_file=None)
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    targets = {
        target for job in config["scrape_configs"] for static in job["static_configs"] for target in static["targets"]
    }
    assert targets == {
        f"toyprod:{defaults.toyprod_port}",
        f"api:{defaults.api_port}",
        f"worker-incidents:{defaults.incidents_worker_metrics_port}",
        f"worker-ml:{defaults.ml_worker_metrics_port}",
        f"worker-integrations:{defaults.integrations_worker_metrics_port}",
        f"localhost:{defaults.prometheus_port}",
        f"alertmanager:{defaults.alertmanager_port}",
    }


# --- Alertmanager ----------------------------------------------------------------------------------------------


def test_canonical_alertmanager_config_passes_amtool() -> None:
    _binary(*ALERTMANAGER_BINARIES)
    assert "SUCCESS" in _run(_binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    config = _yaml(ALERTMANAGER_CONFIG)
    route = config["route"]
    assert route["group_by"] == ["alertname", "service", "namespace"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")
    [receiver] = config["receivers"]
    assert route["receiver"] == receiver["name"]
    [hook] = receiver["webhook_configs"]
    assert hook["url"].endswith("/api/v1/alerts/alertmanager")
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["credentials_file"]


# --- the configs `vigil up` renders ------------------------------------------------------------------------------


def test_rendered_configs_pass_promtool_and_amtool(rendered_settings: Settings) -> None:
    timings = MonitoringTimings(
        scrape_interval="1s", evaluation_interval="1s", alert_for="5s", group_wait="1s", group_interval="2s"
    )
    rendered = render(rendered_settings, timings)
    assert rendered.directory == rendered_settings.state_dir / "monitoring"

    assert "SUCCESS" in _run(_binary("promtool"), "check", "config", str(rendered.prometheus_config))
    _run(_binary("promtool"), "check", "rules", *map(str, rendered.rules))
    assert "SUCCESS" in _run(_binary("amtool"), "check-config", str(rendered.alertmanager_config))

    prometheus = _yaml(rendered.prometheus_config)
    assert prometheus["global"]["scrape_interval"] == "1s"
    assert prometheus["global"]["evaluation_interval"] == "1s"
    targets = {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in prometheus["scrape_configs"]
    }
    assert targets["toyprod"] == ["127.0.0.1:18090"]
    assert targets["vigil-api"] == ["127.0.0.1:18000"]
    assert targets["vigil-workers"] == ["127.0.0.1:19101", "127.0.0.1:19102", "127.0.0.1:19103"]
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    alerts = _alert_rules(rendered.directory / "rules")
    assert alerts
    assert {rule["for"] for rule in alerts} == {"5s"}
    # The rendered rules are the canonical ones, timings aside.
    canonical = _alert_rules(PROMETHEUS_DIR / "rules")
    assert [(r["alert"], r["expr"], r["labels"]) for r in alerts] == [
        (r["alert"], r["expr"], r["labels"]) for r in canonical
    ]

    alertmanager = _yaml(rendered.alertmanager_config)
    assert (alertmanager["route"]["group_wait"], alertmanager["route"]["group_interval"]) == ("1s", "2s")
    [hook] = alertmanager["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:18000/api/v1/alerts/alertmanager"
    token_file = Path(hook["http_config"]["authorization"]["credentials_file"])
    assert token_file.read_text() == "s3cret-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for path in (rendered.prometheus_config, rendered.alertmanager_config, *rendered.rules):
        assert "s3cret-token" not in path.read_text()


def test_rendered_configs_keep_production_timings_without_overrides(rendered_settings: Settings) -> None:
    settings = rendered_settings.model_copy(update={"api_token": None})
    rendered = render(settings, MonitoringTimings(_env_file=None))
    prometheus = _yaml(rendered.prometheus_config)
    assert prometheus["global"]["scrape_interval"] == "15s"
    fors = {rule["alert"]: rule["for"] for rule in _alert_rules(rendered.directory / "rules")}
    assert fors["ToyprodHigh5xxRate"] == "2m"
    alertmanager = _yaml(rendered.alertmanager_config)
    assert alertmanager["route"]["group_wait"] == "30s"
    [hook] = alertmanager["receivers"][0]["webhook_configs"]
    assert "http_config" not in hook  # no token: no Authorization header
    assert not (rendered.directory / "vigil-api-token").exists()


def test_timing_overrides_must_be_prometheus_durations() -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        MonitoringTimings(alert_for="five seconds")


def test_commands_listen_on_localhost_with_state_in_the_state_dir(rendered_settings: Settings) -> None:
    binaries = find_binaries()
    rendered = render(rendered_settings, MonitoringTimings())
    prometheus = prometheus_command(binaries.prometheus, rendered, rendered_settings)
    alertmanager = alertmanager_command(binaries.alertmanager, rendered, rendered_settings)
    assert "--web.listen-address=127.0.0.1:19090" in prometheus
    assert "--web.enable-lifecycle" in prometheus
    assert "--web.listen-address=127.0.0.1:19093" in alertmanager
    assert "--cluster.listen-address=" in alertmanager
    state = str(rendered_settings.state_dir)
    assert any(arg.startswith("--storage.tsdb.path=" + state) for arg in prometheus)
    assert any(arg.startswith("--storage.path=" + state) for arg in alertmanager)


def test_missing_binaries_say_which_package_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MonitoringSetupError, match="prometheus and prometheus-alertmanager not found") as caught:
        find_binaries()
    assert "scripts/setup.sh" in str(caught.value)


def test_chaos_token_file_is_private_and_kept(rendered_settings: Settings) -> None:
    path = ensure_chaos_token(rendered_settings)
    assert path == rendered_settings.state_dir / "chaos-token"
    token = path.read_text()
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_chaos_token(rendered_settings) == path
    assert path.read_text() == token  # a second `vigil up` keeps the token scripts already use
    explicit = rendered_settings.model_copy(update={"chaos_token": SecretStr("given")})
    assert ensure_chaos_token(explicit) is None


# --- docker-compose.yml and Dockerfile --------------------------------------------------------------------------


def _settings_env_names() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"VIGIL_{name.upper()}")
    return names


def _compose() -> dict[str, Any]:
    return _yaml(COMPOSE_FILE)


def _vigil_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if "build" in service}


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port; every published port must be bound to 127.0.0.1."""
    ports: dict[int, int] = {}
    for spec in service.get("ports", []):
        host_ip, host, container = str(spec).split(":")
        assert host_ip == "127.0.0.1", spec
        ports[int(container)] = int(host)
    return ports


def test_compose_runs_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {
        "temporal",
        "temporal-ui",
        "postgres",
        "qdrant",
        "vllm",
        "prometheus",
        "alertmanager",
        "grafana",
        "api",
        "worker-incidents",
        "worker-ml",
        "worker-integrations",
        "console",
        "toyprod",
        "traffic",
    } <= set(services)
    assert services["vllm"]["profiles"] == ["gpu"]
    [device] = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    for name, mount in (
        ("prometheus", "./infra/prometheus:/etc/prometheus:ro"),
        ("alertmanager", "./infra/alertmanager:/etc/alertmanager:ro"),
        ("grafana", "./infra/grafana/provisioning:/etc/grafana/provisioning:ro"),
        ("grafana", "./infra/grafana/dashboards:/var/lib/grafana/dashboards:ro"),
    ):
        assert mount in services[name]["volumes"], name
    # Alertmanager reads the token from the file its config names.
    credentials = _yaml(ALERTMANAGER_CONFIG)["receivers"][0]["webhook_configs"][0]["http_config"]
    assert credentials["authorization"]["credentials_file"] == "/run/secrets/vigil_api_token"
    assert "vigil_api_token" in services["alertmanager"]["secrets"]


def test_compose_environment_uses_real_settings_names() -> None:
    known = _settings_env_names()
    defaults = Settings(_env_file=None)
    for name, service in _vigil_services(_compose()).items():
        environment: dict[str, Any] = service.get("environment", {})
        assert isinstance(environment, dict), name
        unknown = set(environment) - known - FUTURE_ENV
        assert not unknown, f"service {name}: {sorted(unknown)} are not Settings fields or aliases"
        for key, value in environment.items():
            if key.endswith("_PORT"):
                setting = key.removeprefix("VIGIL_").lower()
                assert int(value) == getattr(defaults, setting), f"service {name}: {key}={value}"


def test_compose_ports_match_the_settings_defaults() -> None:
    defaults = Settings(_env_file=None)
    services = _compose()["services"]
    assert defaults.api_port in _published(services["api"])
    assert defaults.console_port in _published(services["console"])
    assert defaults.toyprod_port in _published(services["toyprod"])
    assert _published(services["prometheus"]) == {defaults.prometheus_port: defaults.prometheus_port}
    assert _published(services["alertmanager"]) == {defaults.alertmanager_port: defaults.alertmanager_port}
    assert _published(services["temporal"]) == {defaults.temporal_port: defaults.temporal_port}
    assert _published(services["temporal-ui"]) == {8080: defaults.temporal_ui_port}
    # Inside the network, Alertmanager calls the API on its default port.
    [hook] = _yaml(ALERTMANAGER_CONFIG)["receivers"][0]["webhook_configs"]
    assert hook["url"] == f"http://api:{defaults.api_port}/api/v1/alerts/alertmanager"
    for key, value in services["api"]["environment"].items():
        if key == "TEMPORAL_ADDRESS":
            assert value == f"temporal:{defaults.temporal_port}"


def _resolve_command(argv: list[str]) -> None:
    """Parse `argv` with Vigil's real CLI (without running it): unknown commands or options fail."""
    assert argv[0] == "vigil", argv
    command = typer.main.get_command(app)
    args = argv[1:]
    path = ["vigil"]
    while isinstance(command, TyperGroup):
        assert args, f"{argv}: `{' '.join(path)}` needs a subcommand"
        sub = command.get_command(typer.Context(command), args[0])
        assert sub is not None, f"{argv}: `{args[0]}` is not a subcommand of `{' '.join(path)}`"
        path.append(args[0])
        command, args = sub, args[1:]
    command.make_context(" ".join(path), list(args))


def test_compose_commands_are_real_vigil_commands() -> None:
    services = _vigil_services(_compose())
    commands = {name: service["command"] for name, service in services.items()}
    assert commands["api"] == ["vigil", "api"]
    assert commands["worker-incidents"] == ["vigil", "worker", "incidents"]
    assert commands["toyprod"] == ["vigil", "toyprod"]
    for name, command in commands.items():
        assert isinstance(command, list), name
        _resolve_command(command)


def test_dockerfile_installs_vigil_on_python_311_slim() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    for package in ("vigil", "workflows", "activities", "workers", "api", "ui", "toyprod"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert ".venv" in (REPO_ROOT / ".dockerignore").read_text()


def test_setup_script_installs_the_monitoring_packages() -> None:
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert "prometheus prometheus-alertmanager" in setup
    assert "VIGIL_SKIP_APT" in setup
    assert os.access(REPO_ROOT / "scripts" / "setup.sh", os.R_OK)
