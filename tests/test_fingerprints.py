"""Error fingerprints and the timeline: pure functions over LogEvents built here."""

from __future__ import annotations

from datetime import timedelta

from tests.support import T0
from tests.support import log_event as ev
from vigil.analysis.detectors import DeployMarker, detect
from vigil.analysis.fingerprints import (
    default_template_of,
    fingerprint_errors,
    fingerprint_id,
    normalise_exception_type,
    normalise_frame,
)
from vigil.analysis.models import Level
from vigil.analysis.timeline import timeline

DB_FRAMES = ["app/routes.py:checkout", "app/db.py:connect"]


def test_default_template_masks_variable_parts() -> None:
    a = default_template_of('user 1234 from 10.0.0.5:5432 order 3f2c9a1b-8d7e-4c6b-9a1f-0123456789ab "Bob" took 12ms')
    b = default_template_of("user 98 from 192.168.1.20:80 order 00000000-1111-2222-3333-444444444444 'Al' took 7ms")
    assert a == b
    assert "1234" not in a
    assert "Bob" not in a
    assert default_template_of("object at 0x7f3a2c and hash deadbeef42") == "object at <*> and hash <*>"
    assert default_template_of("first line 1\n  second line") == "first line <*>"


def test_normalisation_of_types_and_frames() -> None:
    assert normalise_exception_type("builtins.KeyError") == "KeyError"
    assert normalise_exception_type("java.util.List<String>") == "java.util.List"
    assert normalise_exception_type(None) is None
    assert normalise_frame("/srv/a/.venv/lib/python3.12/site-packages/sqlalchemy/pool.py:connect") == (
        "sqlalchemy/pool.py:connect"
    )
    assert normalise_frame("/home/ci/build/app/db.py:connect:120") == "app/db.py:connect"
    assert normalise_frame("db.py:88") == "db.py"


def test_same_error_groups_across_values_and_services() -> None:
    events = [
        ev(
            "POST /checkout failed",
            at=i,
            service=svc,
            exc="psycopg.OperationalError",
            exc_msg=f'connection to server at "db-{i}" (10.0.3.{i}), port 5432 failed: Connection refused',
            frames=DB_FRAMES,
            line=i + 1,
        )
        for i, svc in enumerate(["checkout", "orders", "checkout"])
    ]
    events.append(ev("GET /health 200", at=10, level=Level.INFO, line=9))  # not an error
    fps = fingerprint_errors(events)
    assert len(fps) == 1
    fp = fps[0]
    assert fp.count == 3
    assert fp.services == ["checkout", "orders"]
    assert fp.exception_type == "psycopg.OperationalError"
    assert fp.frame == "app/db.py:connect"
    assert fp.first_seen == T0
    assert fp.last_seen == T0 + timedelta(seconds=2)
    assert fp.id.startswith("error:")
    assert len(fp.id) == len("error:") + 8
    assert "Connection refused" in fp.sample


def test_different_frames_types_and_messages_split() -> None:
    base = {"exc": "ValueError", "exc_msg": "bad price 12"}
    events = [
        ev("x", frames=["a.py:f"], **base),  # type: ignore[arg-type]
        ev("x", frames=["a.py:g"], **base),  # type: ignore[arg-type]
        ev("x", frames=["a.py:f"], exc="TypeError", exc_msg="bad price 12"),
        ev("x", frames=["a.py:f"], exc="ValueError", exc_msg="price missing"),
        ev("disk quota 91% used", level=Level.CRITICAL),  # no exception: level alone makes it an error
        ev("warned", level=Level.WARNING, exc="DeprecationWarning", exc_msg="old api"),  # exception at warning
    ]
    fps = fingerprint_errors(events)
    assert len(fps) == 6
    assert len({f.id for f in fps}) == 6


def test_ids_are_stable_and_ordering_is_count_then_first_seen() -> None:
    events = [
        ev("late but frequent", at=50, exc="KeyError", exc_msg="'a'", frames=["x.py:f"]),
        ev("late but frequent", at=51, exc="KeyError", exc_msg="'b'", frames=["x.py:f"]),
        ev("rare second", at=20),
        ev("rare first", at=10),
    ]
    fps = fingerprint_errors(events)
    assert [f.count for f in fps] == [2, 1, 1]
    assert fps[1].template == "rare first"
    again = fingerprint_errors(list(reversed(events)))
    assert [f.id for f in again] == [f.id for f in fps]
    assert fps[0].id == fingerprint_id(("KeyError", "x.py:f", "<*>"))


def test_custom_template_of_and_sample_truncation() -> None:
    long = "boom " + "y" * 1000
    fps = fingerprint_errors([ev(long), ev("boom other")], template_of=lambda m: m.split()[0])
    assert len(fps) == 1
    assert len(fps[0].sample) <= 300


def test_timeline_orders_first_occurrences() -> None:
    events = [
        ev("svc started", at=0, level=Level.INFO, line=1),
        ev("deadlock detected", at=30, service="orders", line=2),
        ev("x509: certificate has expired or is not yet valid", at=60, line=3),
        ev("deadlock detected", at=90, service="orders", line=4),
        ev("ok", at=120, level=Level.INFO, line=5),
    ]
    fps = fingerprint_errors(events)
    findings = detect(events, fingerprints=fps)
    deploy = DeployMarker(ts=T0 + timedelta(seconds=20), service="orders", version="v2.3.1")
    entries = timeline(events, fps, findings, deploys=[deploy])
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)
    assert entries[0].kind == "window-start"
    assert entries[-1].kind == "window-end"
    kinds = [(e.kind, e.evidence_id) for e in entries[1:-1]]
    assert kinds[0] == ("deploy", "deploy:v2.3.1")
    assert ("finding", "detector:db-deadlock") in kinds
    assert ("finding", "detector:tls-failures") in kinds
    assert {eid for kind, eid in kinds if kind == "error"} == {f.id for f in fps}
    deadlock = next(e for e in entries if e.evidence_id == "detector:db-deadlock")
    assert deadlock.ts == T0 + timedelta(seconds=30)
