"""Which resource a metric series or an alert rule measures, by the words of its names.

One vocabulary of resources (a database, memory, a filesystem, CPU, certificates, the network, quotas, …) serves
both: a series that moved becomes a finding of its resource's category, and an alert whose rule measures a
resource (its name, or the metric names of the expression Prometheus sends in `generatorURL`) votes for that
category. Symptoms every category shares (5xx, latency, a target down, a pod restarting) name no resource, so an
alert on them votes for nothing and its incident keeps a low confidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from vigil.analysis.bundle import Alert
from vigil.analysis.models import Category
from vigil.prometheus import expr_from_generator_url

# First match wins: a filesystem series of a database volume is storage, a memory quota is capacity.
RESOURCE_CATEGORIES: tuple[tuple[Category, re.Pattern[str]], ...] = (
    (Category.DATABASE, re.compile(r"hikari|\bdb_|_db_|database|postgres|\bpg_|mysql|pool_(?:in_use|active|pending)")),
    (Category.CAPACITY, re.compile(r"quota|overcommit|horizontalpodautoscaler|(?:\b|_)hpa(?:\b|_)")),
    (Category.MEMORY, re.compile(r"memory|heap|(?:\b|_)rss(?:\b|_)|oom|(?:\b|_)mem(?:\b|_)")),
    (Category.STORAGE, re.compile(r"filesystem|disk|\bfs_|volume|inode")),
    (Category.COMPUTE, re.compile(r"(?:\b|_)cpu|load\d|throttl")),
    (Category.SECURITY, re.compile(r"cert|ssl|tls")),
    (Category.NETWORK, re.compile(r"network|dns|conntrack|(?:\b|_)tcp_|(?:\b|_)net(?:\b|_)|packet")),
    (Category.CONFIGURATION, re.compile(r"(?:\b|_)config")),
    (Category.DEPENDENCY, re.compile(r"(?:code|status)=429|rate_limit|ratelimit")),
)
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def resource_category(texts: Iterable[str]) -> Category | None:
    """The category of the first text that names a resource."""
    for text in texts:
        lowered = text.lower()
        found = next((category for category, rx in RESOURCE_CATEGORIES if rx.search(lowered)), None)
        if found is not None:
            return found
    return None


def metric_category(name: str, labels: Mapping[str, str]) -> Category | None:
    """By the name first, then by the labels."""
    return resource_category([name, " ".join(f"{k}={v}" for k, v in sorted(labels.items()))])


def snake(name: str) -> str:
    """`HostOutOfMemory` → `host_out_of_memory`, `CoreDNSDown` → `core_dns_down`: the words of an alert name."""
    return "_".join(part.lower() for part in _CAMEL.findall(name))


def rule_category(alert: Alert) -> Category | None:
    """What the alert's rule measures: by its name, else by its expression (without label matchers' values, which
    name instances and jobs rather than what is measured)."""
    extra = alert.model_extra or {}
    expr = expr_from_generator_url(str(extra.get("generatorURL") or extra.get("generator_url") or "")) or ""
    return resource_category([snake(alert.name), re.sub(r"\{[^}]*\}", " ", expr)])
