"""Unit tests of alert intake normalisation (vigil.alerts): pure functions, no services needed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from vigil.alerts import (
    MAX_ALERTS_PER_PAYLOAD,
    AlertPayloadError,
    group_key,
    group_labels,
    incident_id_for,
    label_fingerprint,
    normalise_severity,
    parse_alertmanager,
    parse_grafana,
    parse_vigil,
)
from vigil.models import Alert, AlertSource, AlertStatus, Severity

Parser = Callable[..., list[Alert]]

GROUP_BY = ["alertname", "service|job", "namespace"]
RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# What Alertmanager 0.27 posts to a webhook receiver (kube-prometheus rules): one firing, one resolved alert.
ALERTMANAGER_PAYLOAD: dict[str, Any] = {
    "receiver": "vigil",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "KubePodCrashLooping",
                "container": "checkout",
                "job": "kube-state-metrics",
                "namespace": "shop",
                "pod": "checkout-7d9f8b6c5-x2x9q",
                "prometheus": "monitoring/k8s",
                "severity": "warning",
            },
            "annotations": {
                "description": (
                    'Pod shop/checkout-7d9f8b6c5-x2x9q (checkout) is in waiting state (reason: "CrashLoopBackOff").'
                ),
                "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
                "summary": "Pod is crash looping.",
            },
            "startsAt": "2024-05-01T11:52:31.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=max_over_time%28kube_pod%29&g0.tab=1",
            "fingerprint": "5f1a3c2b9e8d7f60",
        },
        {
            "status": "resolved",
            "labels": {
                "alertname": "HighErrorRate",
                "job": "checkout",
                "namespace": "shop",
                "severity": "critical",
            },
            "annotations": {"description": "5xx ratio above 5%\nfor 10 minutes"},
            "startsAt": "2024-05-01T11:40:00+02:00",
            "endsAt": "2024-05-01T11:58:00.5+02:00",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate%28http_5xx%29",
            "fingerprint": "0a1b2c3d4e5f6789",
        },
    ],
    "groupLabels": {"namespace": "shop"},
    "commonLabels": {"namespace": "shop"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.example:9093",
    "version": "4",
    "groupKey": '{}/{severity=~"warning|critical"}:{namespace="shop"}',
    "truncatedAlerts": 0,
}

# The shape of Grafana's documented webhook notification (unified alerting, version "1").
GRAFANA_PAYLOAD: dict[str, Any] = {
    "receiver": "vigil-webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://runbooks.example/memory",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://grafana.example/alerting/silence/new?matchers=alertname%3DT2",
            "dashboardURL": "",
            "panelURL": "",
            "values": {"B": 44.23943737541908, "C": 1},
            "valueString": "[ var='B' labels={} value=44.23943737541908 ]",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1", "job": "node"},
            "annotations": {},
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "2021-10-12T10:06:03+02:00",
            "generatorURL": "https://grafana.example/alerting/d1rdpdv7k/edit",
            "fingerprint": "",
            "silenceURL": "https://grafana.example/alerting/silence/new?matchers=alertname%3DT1",
            "dashboardURL": "",
            "panelURL": "",
            "values": None,
            "valueString": "",
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://grafana.example/",
    "version": "1",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "title": "[FIRING:1, RESOLVED:1]  (blue)",
    "state": "alerting",
    "message": "**Firing**\n\nValue: B=44.2\nLabels:\n - alertname = High memory usage\n",
}


def _am_alert(**overrides: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "Down", "job": "api"},
        "annotations": {},
        "startsAt": "2024-05-01T11:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    alert.update(overrides)
    return alert


def _am_payload(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    return {"version": version, "status": "firing", "alerts": list(alerts) or [_am_alert()]}


def test_alertmanager_firing_and_resolved() -> None:
    firing, resolved = parse_alertmanager(ALERTMANAGER_PAYLOAD, group_by=GROUP_BY, received_at=RECEIVED_AT)

    assert firing.source is AlertSource.ALERTMANAGER
    assert firing.status is AlertStatus.FIRING
    assert firing.fingerprint == "5f1a3c2b9e8d7f60"
    assert firing.labels["pod"] == "checkout-7d9f8b6c5-x2x9q"
    assert firing.annotations["runbook_url"].startswith("https://runbooks.prometheus-operator.dev/")
    assert firing.starts_at == datetime(2024, 5, 1, 11, 52, 31, 123456, tzinfo=UTC)
    assert firing.ends_at is None
    assert firing.severity is Severity.WARNING
    assert firing.service == "kube-state-metrics"  # no `service` label: `job` comes next
    assert firing.summary == "Pod is crash looping."
    assert firing.generator_url == ALERTMANAGER_PAYLOAD["alerts"][0]["generatorURL"]
    assert firing.group_key == "alertname=KubePodCrashLooping,namespace=shop,service=kube-state-metrics"
    assert firing.received_at == RECEIVED_AT

    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.fingerprint == "0a1b2c3d4e5f6789"
    assert resolved.starts_at == datetime(2024, 5, 1, 9, 40, tzinfo=UTC)
    assert resolved.ends_at == datetime(2024, 5, 1, 9, 58, 0, 500000, tzinfo=UTC)
    assert resolved.severity is Severity.CRITICAL
    assert resolved.summary == "5xx ratio above 5%"  # first line of the description
    assert resolved.group_key == "alertname=HighErrorRate,namespace=shop,service=checkout"


def test_grafana_payload() -> None:
    memory, cpu = parse_grafana(GRAFANA_PAYLOAD, group_by=GROUP_BY, received_at=RECEIVED_AT)

    assert memory.source is AlertSource.GRAFANA
    assert memory.fingerprint == "c6eadffa33fcdf37"
    assert memory.starts_at == datetime(2021, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert memory.ends_at is None
    assert memory.summary == "This alert was triggered for zone us-1"
    assert memory.service is None
    assert memory.severity is Severity.WARNING
    assert memory.group_key == "alertname=High memory usage"
    assert memory.generator_url == "https://grafana.example/alerting/1afz29v7z/edit"

    assert cpu.status is AlertStatus.RESOLVED
    assert cpu.fingerprint == label_fingerprint(cpu.labels)  # empty fingerprint: computed from the labels
    assert cpu.ends_at == datetime(2021, 10, 12, 8, 6, 3, tzinfo=UTC)
    assert cpu.summary == "High CPU usage"  # no annotations: the alertname
    assert cpu.group_key == "alertname=High CPU usage,service=node"


def test_grafana_alertname_falls_back_to_rule_title_then_notification_title() -> None:
    payload = copy.deepcopy(GRAFANA_PAYLOAD)
    payload["alerts"][0]["labels"] = {"__alert_rule_title__": "Memory rule", "team": "blue"}
    payload["alerts"][1]["labels"] = {"team": "blue"}

    by_rule, by_title = parse_grafana(payload, group_by=GROUP_BY, received_at=RECEIVED_AT)

    assert by_rule.labels["alertname"] == "Memory rule"
    assert by_title.labels["alertname"] == "[FIRING:1, RESOLVED:1]  (blue)"
    assert by_title.group_key == "alertname=[FIRING:1\\, RESOLVED:1]  (blue)"


def test_vigil_single_alert() -> None:
    payload = {
        "name": "Checkout latency",
        "severity": "P2",
        "service": "checkout",
        "labels": {"region": "eu-west-1", "namespace": "shop"},
        "summary": "p99 latency above 2s",
        "description": "Since the 11:50 deploy.",
        "starts_at": "2024-05-01T11:50:00",  # naive: taken as UTC
        "generator_url": "https://grafana.example/d/latency",
        "extra": {"senders": "add fields"},
    }

    [alert] = parse_vigil(payload, group_by=GROUP_BY, received_at=RECEIVED_AT)

    assert alert.source is AlertSource.VIGIL
    assert alert.status is AlertStatus.FIRING
    assert alert.labels == {
        "alertname": "Checkout latency",
        "severity": "P2",
        "service": "checkout",
        "region": "eu-west-1",
        "namespace": "shop",
    }
    assert alert.annotations == {"summary": "p99 latency above 2s", "description": "Since the 11:50 deploy."}
    assert alert.severity is Severity.HIGH
    assert alert.service == "checkout"
    assert alert.summary == "p99 latency above 2s"
    assert alert.starts_at == datetime(2024, 5, 1, 11, 50, tzinfo=UTC)
    assert alert.fingerprint == label_fingerprint(alert.labels)
    assert alert.group_key == "alertname=Checkout latency,namespace=shop,service=checkout"
    assert alert.generator_url == "https://grafana.example/d/latency"


def test_vigil_list_form_and_defaults() -> None:
    payload = {
        "alerts": [
            {"name": "Disk full", "labels": {"host": "db-1"}},
            {"name": "Disk full", "status": "resolved", "fingerprint": "mine", "ends_at": "2024-05-01T12:00:00Z"},
        ]
    }
    received_naive = datetime(2024, 5, 1, 12, 30)

    first, second = parse_vigil(payload, group_by=GROUP_BY, received_at=received_naive)

    assert first.status is AlertStatus.FIRING
    assert first.starts_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)  # defaults to received_at
    assert first.received_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert first.severity is Severity.WARNING
    assert first.summary == "Disk full"
    assert first.fingerprint == label_fingerprint({"alertname": "Disk full", "host": "db-1"})
    assert second.status is AlertStatus.RESOLVED
    assert second.fingerprint == "mine"
    assert second.ends_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert first.group_key == second.group_key == "alertname=Disk full"


def test_label_fingerprint_is_stable_under_label_order() -> None:
    labels = {"alertname": "Down", "job": "api", "instance": "10.0.0.1:9100"}
    reordered = dict(reversed(list(labels.items())))

    fingerprint = label_fingerprint(labels)

    assert list(reordered) != list(labels)
    assert label_fingerprint(reordered) == fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert label_fingerprint({**labels, "job": "web"}) != fingerprint
    # label boundaries matter: moving text between a name and its value is a different label set
    assert label_fingerprint({"ab": "c"}) != label_fingerprint({"a": "bc"})


def test_alertmanager_fingerprint_is_preserved_or_computed() -> None:
    given, missing, blank = parse_alertmanager(
        _am_payload(_am_alert(fingerprint="abcdef0123456789"), _am_alert(), _am_alert(fingerprint="")),
        group_by=GROUP_BY,
        received_at=RECEIVED_AT,
    )

    assert given.fingerprint == "abcdef0123456789"
    assert missing.fingerprint == label_fingerprint({"alertname": "Down", "job": "api"})
    assert blank.fingerprint == missing.fingerprint


def test_ends_at_zero_time_means_unset() -> None:
    zero, naive = parse_alertmanager(
        _am_payload(_am_alert(endsAt="0001-01-01T00:00:00Z"), _am_alert(endsAt="2024-05-01T11:30:00")),
        group_by=GROUP_BY,
        received_at=RECEIVED_AT,
    )

    assert zero.ends_at is None
    assert naive.ends_at == datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    assert naive.ends_at.tzinfo is not None


def test_long_annotations_are_clipped_not_refused() -> None:
    long_text = "x" * 5000
    [alert] = parse_alertmanager(
        _am_payload(_am_alert(annotations={"description": long_text})),
        group_by=GROUP_BY,
        received_at=RECEIVED_AT,
    )

    assert len(alert.annotations["description"]) == 1024
    assert alert.annotations["description"].endswith("…")
    assert len(alert.summary) == 300


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "A", "service": "checkout", "job": "kubelet"}, {"alertname": "A", "service": "checkout"}),
        (
            {"alertname": "A", "job": "kubelet", "namespace": "ops"},
            {"alertname": "A", "service": "kubelet", "namespace": "ops"},
        ),
        ({"alertname": "A", "service": "", "job": "kubelet"}, {"alertname": "A", "service": "kubelet"}),
        ({"alertname": "A"}, {"alertname": "A"}),
    ],
)
def test_group_labels_service_or_job(labels: dict[str, str], expected: dict[str, str]) -> None:
    assert group_labels(labels, GROUP_BY) == expected


def test_group_key_falls_back_to_alertname() -> None:
    labels = {"alertname": "Down", "job": "api"}

    assert group_labels(labels, ["cluster", "region"]) == {"alertname": "Down"}
    assert group_key(labels, ["cluster", "region"]) == "alertname=Down"
    assert group_key({"alertname": "Down", "job": "api"}, ["service|job"]) == "service=api"


def test_group_key_is_sorted_and_order_independent() -> None:
    labels = {"namespace": "shop", "alertname": "Down", "service": "api"}

    assert group_key(labels, GROUP_BY) == "alertname=Down,namespace=shop,service=api"
    assert group_key(labels, list(reversed(GROUP_BY))) == group_key(labels, GROUP_BY)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"alertname": "a,b=c"}, {"alertname": "a", "b": "c"}),
        ({"alertname": "a", "b": "c,d=e"}, {"alertname": "a", "b": "c", "d": "e"}),
        ({"alertname": "a\\", "b": "c"}, {"alertname": "a\\,b=c"}),
        ({"alertname": "a=b"}, {"alertname": "a\\=b"}),
    ],
)
def test_group_key_is_injective(left: dict[str, str], right: dict[str, str]) -> None:
    group_by = ["alertname", "b", "d"]

    assert group_labels(left, group_by) != group_labels(right, group_by)
    assert group_key(left, group_by) != group_key(right, group_by)


def test_incident_id_is_url_safe_and_stable() -> None:
    key = group_key({"alertname": "High Error-Rate!", "service": "Check/Out", "namespace": "prod,eu"}, GROUP_BY)

    incident_id = incident_id_for(key)

    assert incident_id == incident_id_for(key)
    assert re.fullmatch(r"incident-high-error-rate-prod-eu-check-out-[0-9a-f]{10}", incident_id)
    assert quote(incident_id, safe="") == incident_id


@pytest.mark.parametrize(
    "key",
    ["", "alertname=", "alertname=日本語", "alertname=" + "Very Long Name " * 20, "alertname=a\\,b\\=c"],
)
def test_incident_id_for_any_key_is_short_and_safe(key: str) -> None:
    incident_id = incident_id_for(key)

    assert re.fullmatch(r"incident-([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{10}", incident_id)
    assert len(incident_id) <= 80


def test_incident_ids_differ_when_slugs_collide() -> None:
    first, second = incident_id_for("alertname=Disk Full"), incident_id_for("alertname=disk-full")

    assert first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0] == "incident-disk-full"
    assert first != second


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Severity.CRITICAL),
        ("CRITICAL", Severity.CRITICAL),
        ("page", Severity.CRITICAL),
        ("P1", Severity.CRITICAL),
        ("sev1", Severity.CRITICAL),
        ("SEV-1", Severity.CRITICAL),
        ("fatal", Severity.CRITICAL),
        ("emergency", Severity.CRITICAL),
        ("error", Severity.HIGH),
        ("high", Severity.HIGH),
        ("Major", Severity.HIGH),
        ("p2", Severity.HIGH),
        ("sev2", Severity.HIGH),
        ("warning", Severity.WARNING),
        ("warn", Severity.WARNING),
        ("medium", Severity.WARNING),
        ("minor", Severity.WARNING),
        ("p3", Severity.WARNING),
        ("sev3", Severity.WARNING),
        ("info", Severity.INFO),
        ("Low", Severity.INFO),
        ("none", Severity.INFO),
        ("ok", Severity.INFO),
        ("p4", Severity.INFO),
        ("p5", Severity.INFO),
        ("sev4", Severity.INFO),
        ("sev5", Severity.INFO),
        ("informational", Severity.INFO),
        (" Critical ", Severity.CRITICAL),
        ("bogus", Severity.WARNING),
        ("", Severity.WARNING),
        (None, Severity.WARNING),
    ],
)
def test_normalise_severity(value: str | None, expected: Severity) -> None:
    assert normalise_severity(value) is expected


def test_severity_from_priority_label_when_no_severity() -> None:
    [alert] = parse_alertmanager(
        _am_payload(_am_alert(labels={"alertname": "Down", "priority": "P1"})),
        group_by=GROUP_BY,
        received_at=RECEIVED_AT,
    )

    assert alert.severity is Severity.CRITICAL


def _many_alerts() -> dict[str, Any]:
    return _am_payload(*[_am_alert()] * (MAX_ALERTS_PER_PAYLOAD + 1))


@pytest.mark.parametrize(
    ("parser", "payload", "expected"),
    [
        pytest.param(parse_alertmanager, ["not", "a", "dict"], "payload: must be a JSON object", id="am-list"),
        pytest.param(parse_alertmanager, None, "payload: must be a JSON object", id="am-none"),
        pytest.param(parse_grafana, "text", "payload: must be a JSON object", id="grafana-str"),
        pytest.param(parse_vigil, 42, "payload: must be a JSON object", id="vigil-int"),
        pytest.param(parse_alertmanager, {"version": "4"}, "alerts: required field missing", id="missing-alerts"),
        pytest.param(
            parse_alertmanager, {"version": "4", "alerts": {"a": 1}}, "alerts: must be a list", id="alerts-not-list"
        ),
        pytest.param(parse_vigil, {"alerts": "x"}, "alerts: must be a list", id="vigil-alerts-not-list"),
        pytest.param(parse_alertmanager, _am_payload() | {"alerts": []}, "alerts: no alerts in payload", id="empty"),
        pytest.param(parse_grafana, {"alerts": []}, "alerts: no alerts in payload", id="grafana-empty"),
        pytest.param(parse_vigil, {"alerts": []}, "alerts: no alerts in payload", id="vigil-empty"),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(), _am_alert(labels={"alertname": "Down", "code": 500})),
            "alerts[1].labels.code: must be a string",
            id="label-value-int",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(labels=["alertname", "Down"])),
            "alerts[0].labels: must be an object",
            id="labels-not-object",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(labels={"alertname": "Down", "": "x"})),
            "alerts[0].labels: keys must be strings of 1 to 128 characters",
            id="empty-label-name",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(labels={"alertname": "Down", "big": "x" * 2000})),
            "alerts[0].labels.big: longer than 1024 characters",
            id="label-value-too-long",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(annotations={"runbook url": None})),
            'alerts[0].annotations["runbook url"]: must be a string',
            id="annotation-not-string",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(startsAt="yesterday")),
            "alerts[0].startsAt: invalid datetime",
            id="bad-datetime",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(endsAt="0001-01-01T00:00:00+01:00")),
            "alerts[0].endsAt: datetime out of range",
            id="datetime-out-of-range",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(status="pending")),
            "alerts[0].status: must be 'firing' or 'resolved'",
            id="bad-status",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(version="3"),
            "version: unsupported Alertmanager webhook version '3'; supported: '4'",
            id="am-version",
        ),
        pytest.param(
            parse_alertmanager,
            {"alerts": [_am_alert()]},
            "version: required field missing",
            id="am-version-missing",
        ),
        pytest.param(
            parse_alertmanager,
            _am_payload(_am_alert(), _am_alert(labels={"job": "api"})),
            "alerts[1].labels.alertname: required label missing",
            id="am-missing-alertname",
        ),
        pytest.param(
            parse_grafana,
            {"alerts": [_am_alert(labels={"alertname": ""})]},
            "alerts[0].labels.alertname: required label missing",
            id="grafana-missing-alertname",
        ),
        pytest.param(parse_vigil, {"severity": "P1"}, "name: required field missing", id="vigil-missing-name"),
        pytest.param(parse_vigil, {"name": "  "}, "name: must not be empty", id="vigil-blank-name"),
        pytest.param(
            parse_vigil,
            {"alerts": [{"name": "ok"}, {"name": "x", "starts_at": "soon"}]},
            "alerts[1].starts_at: invalid datetime",
            id="vigil-bad-datetime",
        ),
        pytest.param(
            parse_alertmanager,
            _many_alerts(),
            f"alerts: {MAX_ALERTS_PER_PAYLOAD + 1} alerts in one payload; at most {MAX_ALERTS_PER_PAYLOAD}",
            id="too-many-alerts",
        ),
        pytest.param(
            parse_vigil,
            {"alerts": [{"name": "x"}] * (MAX_ALERTS_PER_PAYLOAD + 1)},
            f"at most {MAX_ALERTS_PER_PAYLOAD} are accepted",
            id="vigil-too-many-alerts",
        ),
    ],
)
def test_malformed_payloads_are_refused_with_their_location(parser: Parser, payload: object, expected: str) -> None:
    with pytest.raises(AlertPayloadError) as caught:
        parser(payload, group_by=GROUP_BY, received_at=RECEIVED_AT)

    assert expected in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_all_problems_are_listed_but_capped() -> None:
    bad = _am_alert(startsAt="never")
    payload = _am_payload(*[bad] * 15)

    with pytest.raises(AlertPayloadError) as caught:
        parse_alertmanager(payload, group_by=GROUP_BY, received_at=RECEIVED_AT)

    reason = caught.value.reason
    assert "alerts[0].startsAt" in reason
    assert "alerts[9].startsAt" in reason
    assert "alerts[10].startsAt" not in reason
    assert reason.endswith("and 5 more problems")


def test_group_labels_first_entry_for_a_name_wins() -> None:
    labels = {"alertname": "A", "app": "web", "job": "node"}

    assert group_labels(labels, ["service|app", "service|job"]) == {"service": "web"}


def test_group_labels_needs_some_label_to_group_by() -> None:
    with pytest.raises(ValueError, match="no alertname"):
        group_labels({"job": "api"}, ["cluster"])
