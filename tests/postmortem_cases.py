"""Small incident bundles shaped after public postmortem narratives, written by hand for Vigil's tests.

Each follows the published story's causal structure (what failed, who noticed, what the logs of the services that
suffered said), in common log shapes; names, hosts and numbers are made up. They are a regression guard for
root-cause localisation, not an accuracy claim: they were written by the same people who wrote the localiser.
They were written after its weights were set and are measured as they are (see `test_localise.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 8, 11, 9, 0, tzinfo=UTC)
Line = Callable[[int], str]


def _at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def _json(minute: float, level: str, msg: str, **extra: Any) -> str:
    return json.dumps({"time": _at(minute).isoformat(), "level": level, "msg": msg, **extra})


def _logfmt(minute: float, level: str, msg: str, **extra: Any) -> str:
    rest = " ".join(f'{k}="{v}"' for k, v in extra.items())
    return f'ts={_at(minute).isoformat()} level={level} msg="{msg}" {rest}'.strip()


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # the public narrative it follows
    component: str  # expected prefix of root_cause.component
    category: str
    bundle: dict[str, Any]


def _steady(service: str, minutes: int = 40, fmt: Callable[..., str] = _json) -> list[dict[str, Any]]:
    return [
        {"ts": _at(m / 2).isoformat(), "service": service, "line": fmt(m / 2, "info", "request ok", status=200)}
        for m in range(minutes * 2)
    ]


def _fail(service: str, start: float, msg: str, fmt: Callable[..., str] = _json, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"ts": _at(m / 2).isoformat(), "service": service, "line": fmt(m / 2, "error", msg, **extra)}
        for m in range(int(start * 2), 80)
    ]


def _alert(name: str, service: str, minute: float) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, "service": service, "severity": "critical"},
        "annotations": {"summary": f"{name} on {service}"},
        "startsAt": _at(minute).isoformat(),
    }


def object_store_outage() -> Case:
    """S3 us-east-1, 2017: the object store's index subsystem went away; every service that reads objects
    failed with 503s from the store's endpoint; the alert fired on the customer-facing site."""
    logs = _steady("web") + _steady("thumbnailer")
    logs += _fail("web", 20, "render failed", error="GET /media/123: upstream thumbnailer returned 503")
    logs += _fail(
        "thumbnailer",
        19,
        "GetObject failed",
        error="s3://media-prod/originals/123.jpg: 503 ServiceUnavailable: Please reduce your request rate "
        "(endpoint s3.us-east-1.amazonaws.com)",
    )
    return Case(
        "object-store-outage",
        "AWS S3 us-east-1 service disruption, Feb 2017",
        "media-prod",
        "dependency",
        {"alerts": [_alert("WebAvailabilityLow", "web", 22)], "logs": logs},
    )


def database_primary_partition() -> Case:
    """GitHub, Oct 2018: a network partition cut the applications from the MySQL primary; the web tier's
    requests failed and queued."""
    logs = _steady("github-web", fmt=_logfmt) + _steady("jobs", fmt=_logfmt)
    logs += _fail(
        "github-web",
        10,
        "query failed",
        fmt=_logfmt,
        error="Mysql2::Error: Lost connection to MySQL server at 'mysql-primary-east.db.internal:3306'",
    )
    logs += _fail(
        "jobs",
        10.5,
        "job failed",
        fmt=_logfmt,
        error="Mysql2::Error::ConnectionError: Can't connect to MySQL server on 'mysql-primary-east.db.internal' (110)",
    )
    return Case(
        "database-primary-partition",
        "GitHub incident of 21 Oct 2018 (network partition, MySQL primary failover)",
        "mysql-primary-east.db.internal",
        "database",
        {"alerts": [_alert("WebErrorRateHigh", "github-web", 12)], "logs": logs},
    )


def expired_root_certificate() -> Case:
    """Let's Encrypt DST Root CA X3 expiry, Sept 2021: clients with old trust stores failed TLS to a partner
    API; the alert fired on the service whose payments failed."""
    logs = _steady("payments")
    logs += _fail(
        "payments",
        14,
        "charge call failed",
        error='Post "https://api.partnerpay.example/v1/charges": x509: certificate signed by unknown authority '
        "(possibly because of expired root)",
    )
    return Case(
        "expired-root-certificate",
        "Let's Encrypt DST Root CA X3 expiry, 30 Sept 2021",
        "api.partnerpay.example",
        "security",
        {"alerts": [_alert("PaymentsFailing", "payments", 16)], "logs": logs},
    )


def service_discovery_overload() -> Case:
    """Roblox, Oct 2021: the service-discovery cluster degraded; every service's calls to it timed out; the
    alert fired on the game join service."""
    logs = _steady("game-join") + _steady("matchmaker")
    for service, start in (("game-join", 8), ("matchmaker", 7.5)):
        logs += _fail(
            service,
            start,
            "service lookup failed",
            error='Get "http://consul.service.internal:8500/v1/health/service/presence": context deadline exceeded',
        )
    return Case(
        "service-discovery-overload",
        "Roblox return to service, Oct 28-31 2021 (Consul)",
        "consul.service.internal",
        "dependency",
        {"alerts": [_alert("GameJoinSuccessLow", "game-join", 10)], "logs": logs},
    )


def dns_resolver_failure() -> Case:
    """A cloud DNS resolver stopped answering (as in several public cloud DNS postmortems): lookups of internal
    names failed from one service; the alert fired on the API gateway behind it."""
    logs = _steady("gateway") + _steady("accounts")
    logs += _fail("gateway", 15, "upstream failed", error="GET http://accounts:8080/v1/me: 502 Bad Gateway")
    logs += _fail(
        "accounts",
        14.5,
        "profile store unreachable",
        error="dial tcp: lookup profiles.db.internal on 10.0.0.2:53: no such host",
    )
    return Case(
        "dns-resolver-failure",
        "cloud DNS resolver outages (public postmortems, several providers)",
        "10.0.0.2",
        "network",
        {"alerts": [_alert("GatewayErrors", "gateway", 17)], "logs": logs},
    )


def bad_config_deploy() -> Case:
    """Fastly, June 2021 / Cloudflare, July 2019: a change shipped minutes before the failures of the service
    that received it; its own errors rose at once."""
    logs = _steady("edge")
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/srv/edge/rules/engine.py", line 311, in evaluate\n'
        "    match = compiled[rule_id].search(path)\n"
        "KeyError: 'waf-942260'"
    )
    logs += [
        {
            "ts": _at(m / 2).isoformat(),
            "service": "edge",
            "line": _json(m / 2, "error", f"rule evaluation failed\n{trace}"),
        }
        for m in range(30, 80)
    ]
    return Case(
        "bad-config-deploy",
        "Fastly 8 June 2021; Cloudflare 2 July 2019",
        "edge/deploy",
        "deployment",
        {
            "alerts": [_alert("EdgeErrorRate", "edge", 17)],
            "logs": logs,
            "deploys": [{"ts": _at(13).isoformat(), "service": "edge", "version": "2021.6.8", "commit": "a1b2c3d"}],
        },
    )


def cases() -> list[Case]:
    return [
        object_store_outage(),
        database_primary_partition(),
        expired_root_certificate(),
        service_discovery_overload(),
        dns_resolver_failure(),
        bad_config_deploy(),
    ]
