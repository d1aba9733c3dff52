"""Entity extraction (`vigil.analysis.entities`): found by shape and by label keys, normalised."""

from __future__ import annotations

import pytest

from vigil.analysis.entities import (
    Entity,
    EntityKind,
    component_name,
    entities_of_fields,
    entities_of_labels,
    entities_of_text,
    normalise_name,
    workload_of,
)


def found(text: str) -> set[tuple[str, str]]:
    return {(e.kind.value, e.ref) for e in entities_of_text(text)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'connection to server at "db.toyprod.internal" (10.0.3.7), port 5432 failed: Connection refused',
            {("domain", "db.toyprod.internal"), ("host", "10.0.3.7")},
        ),
        ("dial tcp 10.0.5.12:5432: connect: connection refused", {("host", "10.0.5.12:5432")}),
        ("upstream api.stripe.com rate limit exceeded", {("domain", "api.stripe.com")}),
        ('Post "https://pay.partner-bank.example/v2/charge": x509', {("host", "pay.partner-bank.example")}),
        ("producer error topic=orders.v1 broker kafka-2:9092", {("queue", "orders.v1"), ("host", "kafka-2:9092")}),
        ("PutObject s3://invoices-prod/2024/05.pdf: SlowDown", {("bucket", "invoices-prod")}),
        ("node ip-10-1-2-3.ec2.internal NotReady", {("node", "10.1.2.3")}),
        ("zone us-east-1a impaired, region eu-west-1 fine", {("zone", "us-east-1a"), ("region", "eu-west-1")}),
        ("certificate CN=accounts.shop.internal has expired", {("certificate", "accounts.shop.internal")}),
    ],
)
def test_entities_by_shape(text: str, expected: set[tuple[str, str]]) -> None:
    assert expected <= found(text)


@pytest.mark.parametrize(
    "text",
    [
        'File "/app/toyprod/shop.py", line 91, in products',
        "at com.shop.checkout.PriceCalculator.subtotal(PriceCalculator.java:88)",
        "2026-05-14T09:15:03Z request took 12ms",
        "java.lang.NullPointerException in com.zaxxer.hikari.pool",
        "version 1.4.2 rolled out",
    ],
)
def test_code_paths_times_and_versions_are_not_entities(text: str) -> None:
    kinds = {k for k, _ in found(text)}
    assert not kinds & {"host", "domain"}, found(text)


def test_pods_become_workloads() -> None:
    assert workload_of("checkout-7c9f6d8b54-x2kqp") == "checkout"
    assert workload_of("shop/recommender-7c9f6d8b54-x2kqp") == "recommender"
    assert workload_of("kafka-2") == "kafka"
    assert workload_of("recommender-7c9f6d8b54-x2kqp_shop") == "recommender"
    assert ("pod", "recommender") in found('Killing container pod="shop/recommender-7c9f6d8b54-x2kqp"')


def test_labels_and_fields_by_key() -> None:
    labels = {"instance": "10.0.3.7:9187", "node": "ip-10-0-1-5", "zone": "us-east-1b", "db": "orders", "job": "pg"}
    got = {(e.kind, e.ref) for e in entities_of_labels(labels)}
    assert (EntityKind.HOST, "10.0.3.7:9187") in got
    assert (EntityKind.NODE, "10.0.1.5") in got
    assert (EntityKind.ZONE, "us-east-1b") in got
    assert (EntityKind.DATABASE, "orders") in got
    assert (EntityKind.SERVICE, "pg") in got
    fields = {"upstream": "https://rates.carrier.example:8443/v1", "msg": "quote failed for api.carrier.example"}
    refs = {e.ref for e in entities_of_fields(fields)}
    assert {"rates.carrier.example:8443", "api.carrier.example"} <= refs


def test_names_are_normalised() -> None:
    assert normalise_name("DB-1.Internal.") == "db-1.internal"
    assert normalise_name("ip-10-1-2-3") == "10.1.2.3"


def test_component_names_map_to_known_services() -> None:
    services = ["orders", "frontend"]
    assert component_name(Entity(kind=EntityKind.HOST, name="orders", port=8080), services) == "orders"
    assert component_name(Entity(kind=EntityKind.DOMAIN, name="orders.shop.svc.cluster.local"), services) == "orders"
    assert component_name(Entity(kind=EntityKind.DOMAIN, name="api.stripe.com"), services) == "api.stripe.com"
    assert component_name(Entity(kind=EntityKind.POD, name="frontend-6d9f7c8b4d-abcde"), services) == "frontend"


def test_hostile_text_is_only_matched() -> None:
    text = "x" * 50_000 + " 10.0.0.1:5432 " + "a." * 5_000 + "com"
    assert ("host", "10.0.0.1:5432") in found(text)
