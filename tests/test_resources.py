"""What an alert's own rule measures (`vigil.analysis.resources`), and what that vote does to a diagnosis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from eval.alertcategory import evaluate
from vigil.analysis.bundle import Alert, parse_bundle
from vigil.analysis.classify import default_classifier
from vigil.analysis.models import Category
from vigil.analysis.report import analyze
from vigil.analysis.resources import metric_category, rule_category, snake


def alert(name: str, expr: str | None = None, **labels: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', 'host-1')}"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    if expr is not None:
        body["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote(expr)}&g0.tab=1"
    return body


def test_alert_names_split_into_words() -> None:
    assert snake("HostOutOfMemory") == "host_out_of_memory"
    assert snake("CoreDNSDown") == "core_dns_down"
    assert snake("KubeHpaMaxedOut") == "kube_hpa_maxed_out"
    assert snake("NodeLoad15High") == "node_load_15_high"


@pytest.mark.parametrize(
    ("name", "expr", "expected"),
    [
        ("HostOutOfMemory", None, Category.MEMORY),
        ("PostgresqlDown", "pg_up == 0", Category.DATABASE),
        (
            "NodeSystemSaturation",
            'node_load1{job="node"} / count without (cpu, mode) (node_cpu_seconds_total) > 2',
            Category.COMPUTE,
        ),
        ("SomethingUnusual", "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1", Category.STORAGE),
        ("BlackboxSslCertificateWillExpireSoon", None, Category.SECURITY),
        ("NodeNetworkReceiveErrs", None, Category.NETWORK),
        ("KubeQuotaExceeded", 'kube_resourcequota{type="used"} > 1', Category.CAPACITY),
        ("PrometheusConfigurationReloadFailure", None, Category.CONFIGURATION),
        # Symptoms name no resource, and a label matcher's value (an instance, a job) is not what is measured.
        ("TargetDown", 'up{job="postgres-exporter"} == 0', None),
        ("KubePodCrashLooping", 'kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"} >= 1', None),
        ("HighErrorRate", None, None),
    ],
)
def test_the_rule_names_the_resource_it_measures(name: str, expr: str | None, expected: Category | None) -> None:
    assert rule_category(Alert.model_validate(alert(name, expr))) is expected


def test_a_metric_is_named_by_its_name_before_its_labels() -> None:
    assert metric_category("node_filesystem_avail_bytes", {"mountpoint": "/var/lib/postgresql"}) is Category.STORAGE
    assert metric_category("http_requests_total", {"database": "orders"}) is Category.DATABASE
    assert metric_category("http_requests_total", {"route": "/"}) is None


def test_an_alert_alone_is_a_hypothesis_and_a_symptom_alone_says_little() -> None:
    memory = analyze(parse_bundle({"alerts": [alert("HostOutOfMemory")]}), classifier=default_classifier())
    assert memory.category is Category.MEMORY
    assert 0.35 <= memory.confidence <= 0.7
    [evidence] = [e for e in memory.evidence if e.kind == "alert"]
    assert evidence.data["measures"] == "memory"
    for name in ("HighErrorRate", "HighLatency", "KubePodCrashLooping"):
        symptom = analyze(parse_bundle({"alerts": [alert(name)]}), classifier=default_classifier())
        assert symptom.confidence < 0.35, name
    resolved = alert("HostOutOfMemory")
    resolved["status"] = "resolved"
    gone = analyze(parse_bundle({"alerts": [resolved]}), classifier=default_classifier())
    assert gone.confidence < memory.confidence  # a resolved alert votes for nothing


def test_published_rules_evaluation_reports_both_parts() -> None:
    outcomes = [evaluate.diagnose(*case) for case in evaluate.load()]
    assert len(outcomes) == 156
    figures = {p: evaluate.summary([o for o in outcomes if o.part == p]) for p in ("tune", "held-out")}
    assert figures["held-out"]["named"] == 32
    for part in figures.values():
        assert part["accuracy"] > part["baseline_accuracy"]
        assert part["mean_confidence_symptoms"] < part["mean_confidence_named"]
        assert part["confident_on_symptoms"] <= 0.1
    assert json.loads(json.dumps(figures)) == figures


def test_a_host_the_rule_names_is_a_suspect_named_by_the_rule_not_by_errors() -> None:
    expr = "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.1"
    bundle = {"alerts": [alert("HostOutOfMemory", expr, instance="10.0.3.7:9100", job="node")]}
    report = analyze(parse_bundle(bundle), classifier=default_classifier())
    assert report.category is Category.MEMORY
    assert report.suspects[0].component == "10.0.3.7"
    assert "named by the alert rule of node" in report.suspects[0].reasons
    assert not any("errors" in reason for reason in report.suspects[0].reasons)
