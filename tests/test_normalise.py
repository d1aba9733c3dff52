"""Normalisation: every format SREs meet, detected per line; traces folded; nothing ever dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from eval.logcorpus import corpus
from vigil.analysis.models import Level, LogFormat
from vigil.analysis.normalise import MAX_LINE, normalise, parse_line

JAVA_TRACE = """2026-01-05 08:00:00.123 ERROR 1 --- [nio-8080-exec-1] c.a.shop.OrderService : Order failed
java.lang.IllegalStateException: pool exhausted
\tat com.acme.shop.Pool.borrow(Pool.java:42)
\tat com.acme.shop.OrderService.place(OrderService.java:17)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: java.net.ConnectException: Connection refused
\tat java.net.Socket.connect(Socket.java:600)
\t... 12 more
2026-01-05 08:00:01.000  INFO 1 --- [main] c.a.shop.OrderService : next event""".splitlines()

PYTHON_TRACE = """2026-01-05 08:00:00,123 - app.api - ERROR - request failed
Traceback (most recent call last):
  File "/app/api.py", line 10, in handle
    return charge(order)
  File "/app/payments.py", line 55, in charge
    raise PaymentError("declined")
app.payments.PaymentError: declined
2026-01-05 08:00:01,000 - app.api - INFO - next""".splitlines()


def one(line: str):  # type: ignore[no-untyped-def]
    events = list(normalise([line]))
    assert len(events) == 1
    return events[0]


def test_json_lines() -> None:
    line = json.dumps(
        {
            "@timestamp": "2026-01-05T08:00:00.5Z",
            "level": "warn",
            "message": "slow query",
            "logger": "app.db",
            "duration_ms": 1200,
            "ok": False,
            "http": {"status": 200},
            "tags": ["a"],
        }
    )
    event = one(line)
    assert event.format is LogFormat.JSON
    assert event.message == "slow query"
    assert event.level is Level.WARNING
    assert event.logger == "app.db"
    assert event.ts == datetime(2026, 1, 5, 8, 0, 0, 500000, tzinfo=UTC)
    assert event.fields == {"duration_ms": "1200", "ok": "false", "http.status": "200"}


def test_json_numeric_level_epoch_and_stack_field() -> None:
    line = json.dumps(
        {"time": 1767600000000, "level": 50, "msg": "boom", "stack_trace": "ValueError: bad\n  at x.y(Z.java:1)"}
    )
    event = one(line)
    assert event.level is Level.ERROR
    assert event.ts == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert event.message == "boom"
    assert "stack_trace" not in event.fields or event.fields["stack_trace"]


def test_json_service_from_argument_wins() -> None:
    event = next(normalise(['{"msg": "hi", "service": "cart"}'], service="checkout"))
    assert event.service == "checkout"
    assert one('{"msg": "hi", "service": "cart"}').service == "cart"


def test_logfmt() -> None:
    event = one('ts=2026-01-05T08:00:00Z level=error msg="db connection refused" component=db retries=3')
    assert event.format is LogFormat.LOGFMT
    assert event.message == "db connection refused"
    assert event.level is Level.ERROR
    assert event.logger == "db"
    assert event.fields == {"retries": "3"}
    assert event.ts == datetime(2026, 1, 5, 8, tzinfo=UTC)


def test_syslog_5424() -> None:
    event = one('<165>1 2026-01-05T08:00:00.003Z host1 evntslog 1234 ID47 [exampleSDID@32473 iut="3"] An event')
    assert event.format is LogFormat.SYSLOG_5424
    assert event.level is Level.INFO  # severity 5: notice
    assert event.logger == "evntslog"
    assert event.message == "An event"
    assert event.fields["host"] == "host1"
    assert event.fields["iut"] == "3"
    assert event.ts == datetime(2026, 1, 5, 8, 0, 0, 3000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8", Level.CRITICAL),
        ("Jun 15 04:06:18 combo sshd[1234]: Failed password for root from 10.0.0.1 port 22 ssh2", None),
        ("Jun  5 04:06:18 combo sshd[1234]: Failed password for root from 10.0.0.1 port 22 ssh2", None),
        ("Jun 5 04:06:18 combo sshd[1234]: Failed password for root from 10.0.0.1 port 22 ssh2", None),  # unpadded
    ],
)
def test_syslog_3164(line: str, level: Level | None) -> None:
    event = one(line)
    assert event.format is LogFormat.SYSLOG_3164
    assert event.level is level
    assert event.fields["pid"] in {"230", "1234"}
    assert event.logger in {"su", "sshd"}
    assert event.ts is not None
    assert not event.message.startswith(("su", "sshd"))


def test_access_logs() -> None:
    combined = (
        '10.0.0.1 - frank [10/Oct/2026:13:55:36 -0700] "GET /api/orders/42 HTTP/1.1" 503 2326 '
        '"http://example.com/start" "Mozilla/5.0 (X11)"'
    )
    event = one(combined)
    assert event.format is LogFormat.ACCESS
    assert event.level is Level.ERROR
    assert event.fields["method"] == "GET"
    assert event.fields["path"] == "/api/orders/42"
    assert event.fields["status"] == "503"
    assert event.fields["bytes"] == "2326"
    assert event.fields["referer"] == "http://example.com/start"
    assert event.fields["user_agent"] == "Mozilla/5.0 (X11)"
    assert event.ts is not None
    assert event.ts.utcoffset() is not None
    common = one('10.0.0.2 - - [10/Oct/2026:13:55:36 +0000] "POST /login HTTP/1.0" 404 -')
    assert common.level is Level.WARNING
    assert "bytes" not in common.fields
    assert one('1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 5').level is Level.INFO


def test_kubernetes_cri_prefix_is_stripped() -> None:
    event = one('2026-01-05T08:00:00.123Z stderr F {"level":"error","msg":"payment failed","order":"7"}')
    assert event.format is LogFormat.JSON
    assert event.message == "payment failed"
    assert event.level is Level.ERROR
    assert event.fields["stream"] == "stderr"
    plain = one("2026-01-05T08:00:00.123456789Z stdout F hello world")
    assert plain.message == "hello world"
    assert plain.ts == datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)


def test_docker_json_file_lines_and_traces_inside() -> None:
    lines = [
        json.dumps(
            {
                "log": "2026-01-05 08:00:00,1 ERROR [main] app.Worker: job failed\n",
                "stream": "stderr",
                "time": "2026-01-05T08:00:00.1Z",
            }
        ),
        json.dumps({"log": "java.lang.RuntimeException: boom\n", "stream": "stderr", "time": "2026-01-05T08:00:00.1Z"}),
        json.dumps({"log": "\tat a.b.C.d(C.java:1)\n", "stream": "stderr", "time": "2026-01-05T08:00:00.1Z"}),
    ]
    events = list(normalise(lines))
    assert len(events) == 1
    event = events[0]
    assert event.message == "job failed"
    assert event.logger == "app.Worker"
    assert event.level is Level.ERROR
    assert event.line_count == 3
    assert event.exception_type == "java.lang.RuntimeException"
    assert event.frames == ["C.java:a.b.C.d"]


def test_java_trace_is_folded() -> None:
    events = list(normalise(JAVA_TRACE))
    assert [e.line for e in events] == [1, 9]
    event = events[0]
    assert event.message == "Order failed"
    assert event.line_count == 8
    assert event.level is Level.ERROR
    assert event.logger == "c.a.shop.OrderService"
    assert event.fields["thread"] == "nio-8080-exec-1"
    assert event.exception_type == "java.lang.IllegalStateException"
    assert event.exception_message == "pool exhausted"
    # innermost last, the frames of the thrown exception (not of its cause)
    assert event.frames == [
        "Thread.java:java.base/java.lang.Thread.run",
        "OrderService.java:com.acme.shop.OrderService.place",
        "Pool.java:com.acme.shop.Pool.borrow",
    ]
    assert "Caused by: java.net.ConnectException" in event.fields["stack_trace"]
    assert events[1].message == "next event"


def test_python_trace_is_folded() -> None:
    events = list(normalise(PYTHON_TRACE))
    assert len(events) == 2
    event = events[0]
    assert event.message == "request failed"
    assert event.logger == "app.api"
    assert event.level is Level.ERROR
    assert event.line_count == 7
    assert event.exception_type == "app.payments.PaymentError"
    assert event.exception_message == "declined"
    assert event.frames == ["/app/api.py:handle", "/app/payments.py:charge"]
    assert events[1].line == 8


def test_bare_python_traceback_and_chained_exceptions() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in <module>',
        "KeyError: 'x'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "b.py", line 2, in main',
        "RuntimeError: wrapped",
        "plain line after",
    ]
    events = list(normalise(lines))
    assert len(events) == 2
    assert events[0].exception_type == "RuntimeError"
    assert events[0].exception_message == "wrapped"
    assert events[0].frames == ["b.py:main"]
    assert events[0].line_count == 9
    assert events[1].message == "plain line after"


@pytest.mark.parametrize(
    ("line", "level", "logger", "message"),
    [
        (
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
            Level.INFO,
            "dfs.DataNode$PacketResponder",
            "PacketResponder 1 terminating",
        ),
        ("17/06/09 20:10:40 WARN executor.Executor: Lost task", Level.WARNING, "executor.Executor", "Lost task"),
        ("WARNING:root:disk almost full", Level.WARNING, "root", "disk almost full"),
        ("[2026-01-05 08:00:00] [error] something broke", Level.ERROR, None, "something broke"),
        ("2026/01/05 08:00:00 [error] 12#0: *5 connect() failed", Level.ERROR, None, "*5 connect() failed"),
        (
            "2026-01-05 08:00:00.123 UTC [42] ERROR:  relation x does not exist",
            Level.ERROR,
            None,
            "relation x does not exist",
        ),
        (
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
            Level.DEBUG,
            "WindowManager",
            "printFreezingDisplayLogs",
        ),
        (
            'E0105 08:00:00.123456    1234 kubelet.go:42] "Probe failed" pod="x"',
            Level.ERROR,
            "kubelet.go:42",
            '"Probe failed" pod="x"',
        ),
        ("2026-01-05 08:00:00,1 - INFO  [main:QuorumPeer@913] - LOOKING", Level.INFO, None, "LOOKING"),
        ("2026-01-05T08:00:00+02:00 DEBUG cache hit", Level.DEBUG, None, "cache hit"),
    ],
)
def test_plain_headers_found_automatically(line: str, level: Level, logger: str | None, message: str) -> None:
    event = one(line)
    assert event.format is LogFormat.PLAIN
    assert event.level is level
    assert event.logger == logger
    assert event.message == message


def test_plain_timestamps_are_parsed() -> None:
    assert one("2026-01-05T08:00:00+02:00 DEBUG x").ts == datetime(2026, 1, 5, 6, tzinfo=UTC)
    assert one("081109 203615 148 INFO a.B: x").ts == datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC)
    assert one("[Sun Dec 04 04:47:44 2005] [notice] x").ts == datetime(2005, 12, 4, 4, 47, 44, tzinfo=UTC)


def test_line_without_header_is_kept_untouched() -> None:
    event = one("  just some text: with colon")
    assert event.message == "  just some text: with colon"
    assert event.level is None
    assert event.ts is None


def test_garbage_and_broken_input_never_raise_and_never_drop() -> None:
    lines = [
        "\x00\x01\x02\xff\ufffd binary",
        '{"broken": json',
        "{not json at all}",
        "[]",
        "<999>not syslog",
        "x" * (MAX_LINE * 2),
        "",
        "   ",
        'level=info msg="unterminated',
        "2026-13-45 99:99:99 ERROR impossible date",
        '{"log": 5, "stream": "stdout"}',
    ]
    events = list(normalise(lines))
    assert sum(e.line_count for e in events) == len(lines)
    assert events[0].message.endswith("binary")
    assert events[1].message == '{"broken": json'
    assert events[1].format is LogFormat.PLAIN
    long = next(e for e in events if e.fields.get("truncated"))
    assert len(long.message) == MAX_LINE
    impossible = next(e for e in events if "impossible" in e.message)
    assert impossible.ts is None


def test_numbers_and_line_counts_cover_every_input_line() -> None:
    lines = [*PYTHON_TRACE, *JAVA_TRACE, "", "tail"]
    events = list(normalise(lines))
    covered = [n for e in events for n in range(e.line, e.line + e.line_count)]
    assert covered == list(range(1, len(lines) + 1))


def test_parse_line() -> None:
    assert parse_line("2026-01-05 08:00:00 INFO a.b: hi").message == "hi"


def test_generated_corpus_headers_are_removed() -> None:
    """The raw lines of the labelled corpus normalise to their message (Loghub's Content)."""
    lines = corpus(300)
    exact = {
        "HDFS",
        "Hadoop",
        "Spark",
        "Zookeeper",
        "Linux",
        "Apache",
        "Nginx",
        "Kubernetes",
        "PostgreSQL",
        "JavaApp",
        "PythonApp",
        "Android",
        "JSONService",
    }
    for name in exact:
        items = lines[name]
        events = list(normalise([item.raw for item in items]))
        assert [e.message for e in events] == [item.message for item in items], name
        assert all(e.ts is not None for e in events), name


def test_cri_partial_lines_are_joined() -> None:
    lines = [
        "2026-01-05T08:00:00.1Z stdout P 2026-01-05 08:00:00 ERROR app.X: very long ",
        "2026-01-05T08:00:00.1Z stdout P message split by ",
        "2026-01-05T08:00:00.1Z stdout F the runtime",
        "2026-01-05T08:00:00.2Z stdout F next",
        "2026-01-05T08:00:00.3Z stdout P dangling partial",
    ]
    events = list(normalise(lines))
    assert [(e.line, e.line_count) for e in events] == [(1, 3), (4, 1), (5, 1)]
    assert events[0].message == "very long message split by the runtime"
    assert events[0].level is Level.ERROR
    assert events[0].logger == "app.X"
    assert events[2].message == "dangling partial"
