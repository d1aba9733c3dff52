"""Prometheus and Alertmanager for `vigil up`: find the binaries, render per-run configs, build the commands.

The canonical files live in `infra/` and serve docker-compose (service names as hosts). `vigil up` renders a
copy of them into `{state_dir}/monitoring/` with 127.0.0.1, the configured ports and the token file, and
copies the same rule files there. Timings are production values unless overridden (tests) through
`VIGIL_MONITORING_*` environment variables, read by `MonitoringTimings`:

| variable | overrides |
| --- | --- |
| `VIGIL_MONITORING_SCRAPE_INTERVAL` | `global.scrape_interval` (and the scrape timeout, capped to it) |
| `VIGIL_MONITORING_EVALUATION_INTERVAL` | `global.evaluation_interval` |
| `VIGIL_MONITORING_ALERT_FOR` | every alerting rule's `for:` |
| `VIGIL_MONITORING_GROUP_WAIT`, `VIGIL_MONITORING_GROUP_INTERVAL` | Alertmanager's route timings |

Durations are Prometheus durations (`15s`, `1m`, ...).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.settings import Settings

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
"""The repository's infra/ (present in a source checkout or an editable install)."""

PROMETHEUS_BINARIES = ("prometheus",)
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
"""Debian names the Alertmanager binary `prometheus-alertmanager`; upstream tarballs call it `alertmanager`."""

WEBHOOK_PATH = "/api/v1/alerts/alertmanager"
CHAOS_TOKEN_FILE = "chaos-token"
API_TOKEN_FILE = "vigil-api-token"

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_PROD_SCRAPE_TIMEOUT = "10s"

# Hosts of the compose file's scrape targets -> the setting holding the port `vigil up` uses for them.
_TARGET_PORTS = {
    "toyprod": "toyprod_port",
    "api": "api_port",
    "worker-incidents": "incidents_worker_metrics_port",
    "worker-ml": "ml_worker_metrics_port",
    "worker-integrations": "integrations_worker_metrics_port",
    "localhost": "prometheus_port",
    "alertmanager": "alertmanager_port",
}


class MonitoringSetupError(RuntimeError):
    """Monitoring cannot run; the message says why and what to do."""


class MonitoringTimings(BaseSettings):
    """Overrides of the production timings in infra/, for tests and demos (None: keep the file's value)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_MONITORING_", extra="ignore")

    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    alert_for: str | None = None
    group_wait: str | None = None
    group_interval: str | None = None

    @field_validator("*")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not _DURATION.match(value):
            raise ValueError(f"{value!r} is not a Prometheus duration such as 15s or 1m")
        return value


@dataclass(frozen=True)
class MonitoringBinaries:
    prometheus: Path
    alertmanager: Path


@dataclass(frozen=True)
class RenderedMonitoring:
    directory: Path
    prometheus_config: Path
    alertmanager_config: Path
    rules: list[Path]


def _which(names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_binaries() -> MonitoringBinaries:
    """The Prometheus and Alertmanager binaries, or MonitoringSetupError naming what is missing."""
    prometheus = _which(PROMETHEUS_BINARIES)
    alertmanager = _which(ALERTMANAGER_BINARIES)
    missing = [
        name for name, found in (("prometheus", prometheus), ("prometheus-alertmanager", alertmanager)) if found is None
    ]
    if prometheus is None or alertmanager is None:
        raise MonitoringSetupError(
            f"{' and '.join(missing)} not found on PATH; install the Debian package(s) "
            f"{' '.join(missing)} (scripts/setup.sh does when it runs as root or with sudo)"
        )
    return MonitoringBinaries(prometheus, alertmanager)


def write_secret_file(path: Path, value: str) -> None:
    """Write `value` to a file only its owner can read (0600 from the start, not chmod-ed afterwards)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def ensure_chaos_token(settings: Settings) -> Path | None:
    """`{state_dir}/chaos-token` with a random token when VIGIL_CHAOS_TOKEN is unset (kept across runs).

    Returns the file, or None when the token comes from the settings. toyprod and `vigil chaos` read it there.
    """
    if settings.chaos_token is not None:
        return None
    path = settings.state_dir / CHAOS_TOKEN_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except OSError:
        existing = ""
    if existing:
        os.chmod(path, 0o600)
        return path
    write_secret_file(path, secrets.token_urlsafe(32))
    return path


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        data = yaml.safe_load(file)
    if not isinstance(data, dict):
        raise MonitoringSetupError(f"{path} is not a YAML mapping")
    return data


def _dump(path: Path, data: dict[str, Any], header: str) -> None:
    text = yaml.safe_dump(data, sort_keys=False, width=200, allow_unicode=True)
    path.write_text(f"# {header}\n{text}", encoding="utf-8")


def _local_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _target(host_port: str, settings: Settings) -> str:
    host = host_port.rsplit(":", 1)[0]
    setting = _TARGET_PORTS.get(host)
    if setting is None:
        raise MonitoringSetupError(f"infra/prometheus/prometheus.yml: unknown target {host_port!r} for `vigil up`")
    address = _local_host(settings.api_host) if host == "api" else "127.0.0.1"
    return f"{address}:{getattr(settings, setting)}"


def render_prometheus(
    settings: Settings, timings: MonitoringTimings, out_dir: Path, infra_dir: Path = INFRA_DIR
) -> tuple[Path, list[Path]]:
    """Write `out_dir/prometheus.yml` and `out_dir/rules/*.yml`; returns the config and the rule files."""
    source = infra_dir / "prometheus"
    config = _load(source / "prometheus.yml")
    rules_dir = out_dir / "rules"
    if rules_dir.exists():
        shutil.rmtree(rules_dir)
    rules_dir.mkdir(parents=True)
    rules: list[Path] = []
    for rule_file in sorted((source / "rules").glob("*.yml")):
        data = _load(rule_file)
        if timings.alert_for is not None:
            for group in data.get("groups", []):
                for rule in group.get("rules", []):
                    if "alert" in rule:
                        rule["for"] = timings.alert_for
        target = rules_dir / rule_file.name
        _dump(target, data, f"rendered by `vigil up` from {rule_file}; edit that file instead")
        rules.append(target)

    global_ = config.setdefault("global", {})
    if timings.scrape_interval is not None:
        global_["scrape_interval"] = timings.scrape_interval
        global_["scrape_timeout"] = timings.scrape_interval if _seconds(timings.scrape_interval) < 10 else "10s"
    if timings.evaluation_interval is not None:
        global_["evaluation_interval"] = timings.evaluation_interval
    config["rule_files"] = [str(rules_dir / "*.yml")]
    for manager in config.get("alerting", {}).get("alertmanagers", []):
        for static in manager.get("static_configs", []):
            static["targets"] = [_target(target, settings) for target in static.get("targets", [])]
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            static["targets"] = [_target(target, settings) for target in static.get("targets", [])]
    path = out_dir / "prometheus.yml"
    _dump(path, config, f"rendered by `vigil up` from {source / 'prometheus.yml'}; edit that file instead")
    return path, rules


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[unit] for n, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration))


def render_alertmanager(
    settings: Settings,
    timings: MonitoringTimings,
    out_dir: Path,
    token_file: Path | None,
    infra_dir: Path = INFRA_DIR,
) -> Path:
    """Write `out_dir/alertmanager.yml`: the webhook on this API, with the token file when a token is set."""
    source = infra_dir / "alertmanager" / "alertmanager.yml"
    config = _load(source)
    route = config.setdefault("route", {})
    if timings.group_wait is not None:
        route["group_wait"] = timings.group_wait
    if timings.group_interval is not None:
        route["group_interval"] = timings.group_interval
    url = f"http://{_local_host(settings.api_host)}:{settings.api_port}{WEBHOOK_PATH}"
    hooks = [hook for receiver in config.get("receivers", []) for hook in receiver.get("webhook_configs", [])]
    if not hooks:
        raise MonitoringSetupError(f"{source} has no webhook receiver for Vigil")
    for hook in hooks:
        hook["url"] = url
        if token_file is None:
            hook.pop("http_config", None)
        else:
            hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    path = out_dir / "alertmanager.yml"
    _dump(path, config, f"rendered by `vigil up` from {source}; edit that file instead")
    return path


def render(
    settings: Settings, timings: MonitoringTimings | None = None, infra_dir: Path = INFRA_DIR
) -> RenderedMonitoring:
    """Render both configs into `{state_dir}/monitoring/`; the API token (if any) goes to a 0600 file there."""
    if not (infra_dir / "prometheus" / "prometheus.yml").is_file():
        raise MonitoringSetupError(f"{infra_dir} has no prometheus/prometheus.yml (run from a source checkout)")
    timings = timings if timings is not None else MonitoringTimings()
    out_dir = settings.state_dir / "monitoring"
    out_dir.mkdir(parents=True, exist_ok=True)
    token_file: Path | None = None
    if settings.api_token is not None:
        token_file = out_dir / API_TOKEN_FILE
        write_secret_file(token_file, settings.api_token.get_secret_value())
    else:
        (out_dir / API_TOKEN_FILE).unlink(missing_ok=True)
    prometheus_config, rules = render_prometheus(settings, timings, out_dir, infra_dir)
    alertmanager_config = render_alertmanager(settings, timings, out_dir, token_file, infra_dir)
    return RenderedMonitoring(out_dir, prometheus_config, alertmanager_config, rules)


def prometheus_command(binary: Path, rendered: RenderedMonitoring, settings: Settings) -> list[str]:
    data = rendered.directory / "prometheus-data"
    return [
        str(binary),
        f"--config.file={rendered.prometheus_config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
        f"--web.external-url=http://127.0.0.1:{settings.prometheus_port}/",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=35d",  # the SLO dashboard looks back 30 days
    ]


def alertmanager_command(binary: Path, rendered: RenderedMonitoring, settings: Settings) -> list[str]:
    data = rendered.directory / "alertmanager-data"
    return [
        str(binary),
        f"--config.file={rendered.alertmanager_config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{settings.alertmanager_port}",
        f"--web.external-url=http://127.0.0.1:{settings.alertmanager_port}/",
        # A single instance: no gossip port (the default 0.0.0.0:9094 would collide and listen on every interface).
        "--cluster.listen-address=",
    ]
