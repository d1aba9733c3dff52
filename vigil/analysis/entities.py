"""Entities: the things a log line or an alert talks about, found by their shape and by label keys.

A log line of one service often names another component: a database host, a `host:port` endpoint, an external
API's domain, a broker topic, a bucket, a Kubernetes node or pod, an availability zone, a certificate subject.
This module finds them without word lists of product names:

- by **shape**: IPv4 addresses, `host:port`, URLs (`scheme://host[:port]/path`, `s3://bucket`), DNS names with a
  well-formed top-level label, Kubernetes pod names (`<workload>-<replicaset hash>-<pod hash>`), zones and regions
  (`us-east-1a`, `eu-west-1`, `us-central1-b`), `CN=` certificate subjects, `ip-10-1-2-3` node names;
- by **key**: structured fields and alert labels whose key says what the value is (`instance`, `pod`, `node`,
  `namespace`, `zone`, `db`, `peer`, `upstream`, `topic`, `bucket`, ...), and `key=value` / `key: value` pairs in
  free text with the same keys.

Names are normalised: lower case, trailing dots dropped, a pod becomes its workload, `ip-10-1-2-3(.ec2.internal)`
becomes `10.1.2.3` (the AWS private-DNS convention), a `host:port` endpoint is kept with its host.

Log text is untrusted: it is only matched, never interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel, Field


class EntityKind(StrEnum):
    SERVICE = "service"
    HOST = "host"
    ENDPOINT = "endpoint"
    DOMAIN = "domain"
    DATABASE = "database"
    QUEUE = "queue"
    BUCKET = "bucket"
    NODE = "node"
    POD = "pod"
    NAMESPACE = "namespace"
    ZONE = "zone"
    REGION = "region"
    CERTIFICATE = "certificate"
    VERSION = "version"


class Entity(BaseModel):
    """One thing named by a line or an alert; `name` is normalised, `port` kept when an endpoint gave one."""

    kind: EntityKind
    name: str = Field(max_length=200)
    port: int | None = None
    key: str | None = Field(default=None, description="The label or field key that named it, if any.")

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.port}" if self.port else self.name


# Keys whose value names a thing of a kind. Several spellings per kind (Prometheus, Kubernetes, OpenTelemetry).
LABEL_KINDS: dict[str, EntityKind] = {
    "service": EntityKind.SERVICE,
    "service_name": EntityKind.SERVICE,
    "service.name": EntityKind.SERVICE,
    "job": EntityKind.SERVICE,
    "app": EntityKind.SERVICE,
    "app_kubernetes_io_name": EntityKind.SERVICE,
    "container": EntityKind.SERVICE,
    "deployment": EntityKind.SERVICE,
    "workload": EntityKind.SERVICE,
    "instance": EntityKind.ENDPOINT,
    "peer": EntityKind.ENDPOINT,
    "peer.service": EntityKind.SERVICE,
    "upstream": EntityKind.ENDPOINT,
    "upstream_addr": EntityKind.ENDPOINT,
    "remote": EntityKind.ENDPOINT,
    "remote_addr": EntityKind.ENDPOINT,
    "target": EntityKind.ENDPOINT,
    "destination": EntityKind.ENDPOINT,
    "dest": EntityKind.ENDPOINT,
    "endpoint": EntityKind.ENDPOINT,
    "url": EntityKind.ENDPOINT,
    "addr": EntityKind.ENDPOINT,
    "address": EntityKind.ENDPOINT,
    "host": EntityKind.HOST,
    "hostname": EntityKind.HOST,
    "db_host": EntityKind.HOST,
    "dependency": EntityKind.SERVICE,
    "node": EntityKind.NODE,
    "nodename": EntityKind.NODE,
    "node_name": EntityKind.NODE,
    "kubernetes_node": EntityKind.NODE,
    "k8s.node.name": EntityKind.NODE,
    "pod": EntityKind.POD,
    "pod_name": EntityKind.POD,
    "k8s.pod.name": EntityKind.POD,
    "namespace": EntityKind.NAMESPACE,
    "k8s.namespace.name": EntityKind.NAMESPACE,
    "zone": EntityKind.ZONE,
    "availability_zone": EntityKind.ZONE,
    "topology_kubernetes_io_zone": EntityKind.ZONE,
    "topology.kubernetes.io/zone": EntityKind.ZONE,
    "failure_domain_beta_kubernetes_io_zone": EntityKind.ZONE,
    "region": EntityKind.REGION,
    "db": EntityKind.DATABASE,
    "database": EntityKind.DATABASE,
    "dbname": EntityKind.DATABASE,
    "datname": EntityKind.DATABASE,
    "db.name": EntityKind.DATABASE,
    "cluster": EntityKind.DATABASE,
    "topic": EntityKind.QUEUE,
    "queue": EntityKind.QUEUE,
    "stream": EntityKind.QUEUE,
    "exchange": EntityKind.QUEUE,
    "subject": EntityKind.QUEUE,
    "messaging.destination": EntityKind.QUEUE,
    "bucket": EntityKind.BUCKET,
    "cn": EntityKind.CERTIFICATE,
    "version": EntityKind.VERSION,
}
# Keys in free text (`topic=orders`, `bucket: "invoices"`, `node=ip-10-0-1-5`) that name something.
_TEXT_KEYS = "topic|queue|bucket|node|pod|zone|region|db|database|dbname|upstream|peer|host|instance|cluster|exchange"
_KEYED = re.compile(rf"(?<![\w.-])({_TEXT_KEYS})\s?[=:]\s?[\"']?([A-Za-z0-9][\w./:@-]{{0,120}})", re.IGNORECASE)
_URL = re.compile(r"\b([a-z][a-z0-9+.-]{1,15})://(?:[^\s/@\"'<>]{1,100}@)?([A-Za-z0-9._-]{1,253})(?::(\d{2,5}))?")
_IP = r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}"
_HOSTPORT = re.compile(rf"(?<![\w./-])({_IP}|[A-Za-z](?:[A-Za-z0-9.-]{{0,252}}[A-Za-z0-9])?):(\d{{2,5}})\b")
_IPV4 = re.compile(rf"(?<![\w.]){_IP}(?![\w.]*\d)")
_DOMAIN = re.compile(r"(?<![\w.@/-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}[a-z][a-z0-9-]{1,62})\.?(?![\w-])")
_POD = re.compile(r"(?<![\w.-])([a-z][a-z0-9-]{0,50}?)-(?=[a-z]{0,9}\d)([a-z0-9]{8,10})-([a-z0-9]{5})(?![\w-])")
_AWS_NODE = re.compile(r"\bip-(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})(?:\.[a-z0-9.-]+)?\b")
_ZONE = re.compile(r"(?<![\w-])([a-z]{2}(?:-[a-z]+){1,2}-\d[a-z]|[a-z]+-[a-z]+\d-[a-z])(?![\w-])")
_REGION = re.compile(
    r"(?<![\w-])([a-z]{2}(?:-gov)?-(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-\d)(?![\w-])"
)
_CN = re.compile(r"\bCN\s?=\s?([*A-Za-z0-9.-]{1,200})")
# Top-level labels of DNS names: generic ones and the usual private suffixes. Any other two-letter label is a
# country code, unless it is a file extension (`shop.py`).
_TLDS = frozenset(
    {
        "com",
        "net",
        "org",
        "io",
        "co",
        "ai",
        "dev",
        "app",
        "cloud",
        "biz",
        "info",
        "tech",
        "site",
        "xyz",
        "online",
        "gov",
        "edu",
        "mil",
        "int",
        "internal",
        "local",
        "localhost",
        "lan",
        "corp",
        "home",
        "svc",
        "cluster",
        "example",
        "test",
        "invalid",
    }
)
_NOT_TLDS = frozenset(
    {
        "py",
        "js",
        "ts",
        "go",
        "rb",
        "sh",
        "so",
        "md",
        "cc",
        "hh",
        "pl",
        "pm",
        "rs",
        "kt",
        "jar",
        "db",
        "gz",
        "id",
        "tf",
        "ps",
    }
)
_FILE_SUFFIX = re.compile(
    r"\.(?:py|java|go|js|ts|rb|rs|cs|cpp|c|h|log|json|yaml|yml|xml|txt|conf|ini|sql|sh|html|jar|class)$"
)
_SCHEME_KINDS = {
    "s3": EntityKind.BUCKET,
    "gs": EntityKind.BUCKET,
    "gcs": EntityKind.BUCKET,
    "wasbs": EntityKind.BUCKET,
}
_LOCAL = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})


def normalise_name(name: str) -> str:
    """Lower case, trailing dots and brackets gone; `ip-10-1-2-3[.…]` → `10.1.2.3`."""
    text = name.strip().strip("\"'[]()<>,;").rstrip(".").lower()
    aws = _AWS_NODE.fullmatch(text)
    if aws:
        return ".".join(aws.groups())
    return text


def workload_of(pod: str) -> str:
    """`checkout-7c9f6d8b54-x2kqp` → `checkout`; `kafka-2` (a StatefulSet's) → `kafka`; else unchanged."""
    name = pod.split("/")[-1].split("_")[0].lower()
    m = _POD.fullmatch(name)
    if m:
        return m.group(1)
    m = re.fullmatch(r"([a-z][a-z0-9-]*?)-\d{1,3}", name)
    return m.group(1) if m else name


def _is_domain(name: str) -> bool:
    if _FILE_SUFFIX.search(name) or name.count(".") < 1:
        return False
    tld = name.rsplit(".", 1)[-1]
    if tld in _TLDS:
        return True
    return len(tld) == 2 and tld.isalpha() and tld not in _NOT_TLDS


def _host_entity(host: str, port: int | None, key: str | None) -> Entity | None:
    name = normalise_name(host)
    if not name or name in _LOCAL or len(name) > 200:
        return None
    kind = EntityKind.HOST if (_IPV4.fullmatch(name) or "." in name or port) else EntityKind.SERVICE
    return Entity(kind=kind, name=name, port=port, key=key)


def entity_of_value(key: str, value: str) -> Entity | None:
    """What a label or field `key=value` names, by the key; None when the key names nothing."""
    kind = LABEL_KINDS.get(key.lower())
    text = value.strip()
    if kind is None or not text or len(text) > 300:
        return None
    if kind is EntityKind.ENDPOINT:
        url = _URL.search(text)
        if url:
            return _host_entity(url.group(2), int(url.group(3)) if url.group(3) else None, key)
        host, _, port = text.rpartition(":")
        if host and port.isdigit():
            return _host_entity(host, int(port), key)
        return _host_entity(text, None, key)
    if kind is EntityKind.POD:
        return Entity(kind=EntityKind.POD, name=workload_of(text), key=key)
    if kind in (EntityKind.NODE, EntityKind.HOST):
        return (
            _host_entity(text.split(":")[0], None, key)
            if kind is EntityKind.HOST
            else Entity(kind=kind, name=normalise_name(text.split(":")[0]), key=key)
        )
    return Entity(kind=kind, name=normalise_name(text)[:200], key=key)


def entities_of_labels(labels: Mapping[str, str]) -> list[Entity]:
    out = [entity_of_value(k, v) for k, v in labels.items()]
    return dedupe(e for e in out if e is not None)


def entities_of_text(text: str) -> list[Entity]:
    """Entities named in free text by shape and by `key=value` pairs (see the module docstring)."""
    found: list[Entity] = []
    spans: list[tuple[int, int]] = []

    def taken(start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in spans)

    for m in _URL.finditer(text):
        scheme = m.group(1).lower()
        if scheme in _SCHEME_KINDS:
            found.append(Entity(kind=_SCHEME_KINDS[scheme], name=normalise_name(m.group(2)), key=scheme))
        else:
            entity = _host_entity(m.group(2), int(m.group(3)) if m.group(3) else None, None)
            if entity is not None:
                found.append(entity)
        spans.append(m.span())
    for m in _KEYED.finditer(text):
        key, value = m.group(1).lower(), m.group(2).rstrip(".,;:")
        entity = entity_of_value(key, value)
        if entity is not None:
            found.append(entity)
            spans.append(m.span(2))
    for m in _HOSTPORT.finditer(text):
        if taken(*m.span()):
            continue
        if _FILE_SUFFIX.search(m.group(1).lower()):
            continue
        entity = _host_entity(m.group(1), int(m.group(2)), None)
        if entity is not None and (entity.kind is EntityKind.HOST and ("." in entity.name or entity.port)):
            found.append(entity)
            spans.append(m.span())
    for m in _AWS_NODE.finditer(text):
        found.append(Entity(kind=EntityKind.NODE, name=normalise_name(m.group(0))))
        spans.append(m.span())
    for m in _IPV4.finditer(text):
        if not taken(*m.span()) and m.group(0) not in _LOCAL:
            found.append(Entity(kind=EntityKind.HOST, name=m.group(0)))
    lowered = text.lower()
    for m in _DOMAIN.finditer(lowered):
        if taken(*m.span()) or not _is_domain(m.group(1)):
            continue
        found.append(Entity(kind=EntityKind.DOMAIN, name=m.group(1)))
    for m in _POD.finditer(lowered):
        if not taken(*m.span()):
            found.append(Entity(kind=EntityKind.POD, name=m.group(1)))
    for m in _ZONE.finditer(lowered):
        found.append(Entity(kind=EntityKind.ZONE, name=m.group(1)))
    for m in _REGION.finditer(lowered):
        found.append(Entity(kind=EntityKind.REGION, name=m.group(1)))
    for m in _CN.finditer(text):
        found.append(Entity(kind=EntityKind.CERTIFICATE, name=normalise_name(m.group(1))))
    return dedupe(found)


def entities_of_fields(fields: Mapping[str, str]) -> list[Entity]:
    """Entities of a structured event's fields: by key, then by shape inside the values of the other keys."""
    out = entities_of_labels(fields)
    keyed = {k.lower() for k in fields if k.lower() in LABEL_KINDS}
    for key, value in fields.items():
        if key.lower() not in keyed and isinstance(value, str) and 3 < len(value) < 2000:
            out.extend(entities_of_text(value))
    return dedupe(out)


def dedupe(entities: Iterable[Entity]) -> list[Entity]:
    seen: set[tuple[EntityKind, str, int | None]] = set()
    out: list[Entity] = []
    for e in entities:
        k = (e.kind, e.name, e.port)
        if e.name and k not in seen:
            seen.add(k)
            out.append(e)
    return out


def component_name(entity: Entity, services: Iterable[str]) -> str:
    """The component an entity stands for: a known service when its name (or its first DNS label, or a pod's
    workload) is one, else the normalised name (a host, a domain, a zone...)."""
    known = {s.lower(): s for s in services}
    name = entity.name
    if name in known:
        return known[name]
    if entity.kind in (EntityKind.HOST, EntityKind.DOMAIN) and not _IPV4.fullmatch(name):
        first = name.split(".", 1)[0]
        if first in known:
            return known[first]
    if entity.kind is EntityKind.POD:
        return known.get(workload_of(name), workload_of(name))
    return name
