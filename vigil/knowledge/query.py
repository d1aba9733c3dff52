"""The retrieval query for an alert: what it is called, what it says, and where it fires."""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Labels that say where an alert fires; other labels (instance, pod, fingerprint-ish ids) are mostly noise.
USEFUL_LABELS = (
    "service",
    "job",
    "namespace",
    "container",
    "deployment",
    "statefulset",
    "daemonset",
    "app",
    "component",
    "queue",
    "database",
    "device",
    "mountpoint",
    "reason",
)
#: Annotations that describe the problem; `runbook_url` and dashboards would only match themselves.
TEXT_ANNOTATIONS = ("summary", "description", "message")
_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)
#: The `VALUE = ... LABELS = map[...]` footer of awesome-prometheus-alerts' descriptions: a number and the labels
#: again, which would only add noise.
_VALUE_FOOTER = re.compile(r"\s*\bVALUE\s*=.*\Z", re.DOTALL)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def split_identifier(name: str) -> str:
    """`KubePodCrashLooping` -> `Kube Pod Crash Looping`; `node_down` -> `node down`."""
    return " ".join(_CAMEL.findall(name))


def _clean(text: str) -> str:
    """Annotation text without Go template markup (rules that were never rendered), the punctuation it leaves
    behind (`{{ $labels.namespace }}/{{ $labels.pod }}`) and runs of spaces."""
    text = _VALUE_FOOTER.sub("", _TEMPLATE.sub(" ", text))
    return " ".join(word for word in text.split() if any(c.isalnum() for c in word))


def query_for_alert(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """Alert name (split into words, and as is), summary, description and where-labels, never `runbook_url`."""
    parts: list[str] = []
    name = labels.get("alertname", "").strip()
    if name:
        words = split_identifier(name)
        parts.append(f"{words} ({name})." if " " in words else f"{name}.")
    for key in TEXT_ANNOTATIONS:
        text = _clean(annotations.get(key, "")).rstrip(".")
        if text and f"{text}." not in parts:
            parts.append(f"{text}.")
    where = [f"{key} {labels[key]}" for key in USEFUL_LABELS if labels.get(key, "").strip()]
    if where:
        parts.append(", ".join(where) + ".")
    return " ".join(parts)
