"""Which metric series the diagnosis asks Prometheus for: the alert rule's expression, without its threshold."""

from __future__ import annotations

import pytest

from vigil.prometheus import expr_from_generator_url, measured


def test_expression_comes_from_the_generator_url() -> None:
    url = (
        "http://127.0.0.1:9090/graph?g0.expr=sum%28rate%28toyprod_http_requests_total%7Bstatus%3D~%225..%22%7D"
        "%5B1m%5D%29%29+%3E+0.05&g0.tab=1"
    )
    assert expr_from_generator_url(url) == 'sum(rate(toyprod_http_requests_total{status=~"5.."}[1m])) > 0.05'
    assert expr_from_generator_url("http://prometheus.example/graph") is None
    assert expr_from_generator_url(None) is None
    assert expr_from_generator_url("http://x/graph?g0.expr=+") is None


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("sum(rate(a[1m])) / sum(rate(b[1m])) > 0.05", "sum(rate(a[1m])) / sum(rate(b[1m]))"),
        ("toyprod_disk_usage_ratio >= 9e-1", "toyprod_disk_usage_ratio"),
        ("up == 0", "up"),
        ("x > bool 1", "x"),
        # not a single trailing threshold: kept whole
        ("(a > 1) and (b > 2)", "(a > 1) and (b > 2)"),
        ("rate(x[5m])", "rate(x[5m])"),
        ("a > b", "a > b"),
    ],
)
def test_threshold_is_removed_only_when_it_is_the_whole_tail(expr: str, value: str) -> None:
    assert measured(expr) == value
