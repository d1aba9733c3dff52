"""Prometheus metrics of the API process, registered once per process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOK_REQUESTS = Counter(
    "vigil_webhook_requests_total", "Alert webhook requests by source and outcome.", ["source", "outcome"]
)
ALERTS_RECEIVED = Counter("vigil_alerts_received_total", "Alerts accepted, by source and status.", ["source", "status"])
WEBHOOK_REJECTED = Counter(
    "vigil_webhook_rejected_total", "Rejected alert webhook requests, by source and reason.", ["source", "reason"]
)
WEBHOOK_LATENCY = Histogram(
    "vigil_webhook_duration_seconds",
    "Alert webhook latency, from request to durable hand-off to Temporal.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SIGNALS_SENT = Counter(
    "vigil_incident_signals_total", "Alert batches signalled into incident workflows (after group commit)."
)
API_ERRORS = Counter(
    "vigil_api_errors_total",
    "REST API requests answered with an error, by route and status.",
    [
        "route",
        "status",
    ],
)
LOG_LINES_RECEIVED = Counter(
    "vigil_log_lines_received_total",
    "Log lines received, by push format and outcome (accepted, rejected).",
    ["format", "outcome"],
)
LOG_REQUESTS = Counter(
    "vigil_log_requests_total",
    "Log push requests by format and outcome: accepted, partial (some lines rejected), or the reason refused.",
    ["format", "outcome"],
)
DEPLOY_EVENTS = Counter(
    "vigil_deploy_events_total",
    "Deploy event requests by outcome: stored, duplicate, or the reason refused.",
    ["outcome"],
)
HTTP_REJECTED = Counter(
    "vigil_http_rejected_total",
    "Requests refused by the app-wide checks, by reason: too_large, too_deep, invalid_request (parameters or body "
    "failing validation), database_unavailable, unauthorized (no or wrong token), forbidden (role too low), "
    "users_file_unreadable.",
    ["reason"],
)
SLACK_INTERACTIONS = Counter(
    "vigil_slack_interactions_total",
    "Slack interactions by action (approve, reject, reject_submit, ack, resolve, mention, command, malformed) and "
    "outcome (done, refused, not_approver, error).",
    ["action", "outcome"],
)
SPANS_RECEIVED = Counter(
    "vigil_spans_received_total",
    "Spans received on OTLP/HTTP /v1/traces, by format (otlp_json, otlp_protobuf) and outcome (accepted, rejected).",
    ["format", "outcome"],
)
TRACE_REQUESTS = Counter(
    "vigil_trace_requests_total",
    "OTLP trace export requests by format and outcome: accepted, partial (some spans rejected), or the reason refused.",
    ["format", "outcome"],
)
