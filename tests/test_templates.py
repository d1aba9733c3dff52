"""Template mining: masking, stable ids, persistence, `match`, accuracy on the labelled corpus, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eval.logcorpus import SYSTEMS, corpus, generate, grouping_accuracy
from vigil.analysis.masking import mask
from vigil.analysis.templates import TemplateMiner, template_id_for
from vigil.cli import app


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        (
            "Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6",
            "Received block <*> of size <*> from <*>",
        ),
        ("Connection from 192.168.1.20:5432 refused (errno 111)", "Connection from <*> refused (errno <*>)"),
        ("Task 3f2a9c1e-8d6b-4a1e-9f7d-2b3c4d5e6f70 failed", "Task <*> failed"),
        ('user=alice id=42 msg="hello world" ok', "user=<*> id=<*> msg=<*> ok"),
        ("GET https://api.example.com/v1/x?id=3 took 12.5ms", "GET <*> took <*>"),
        ("Loaded /etc/app/config.yaml for bob@example.com", "Loaded <*> for <*>"),
        ("Checkpoint at 2026-01-05 08:00:00,123", "Checkpoint at <*>"),
        ("hash 0xdeadbeef at [12ms], node-7: done.", "hash <*> at [<*>], <*>: done."),
        ("opened 'my file 7' ok", "opened 'my file <*>' ok"),
        ("opened 'a long file name 7' ok", "opened '<*>' ok"),
        ('"SyncLoop ADD" source="api"', '"SyncLoop ADD" source=<*>'),
        ("plain   words  only", "plain words only"),
    ],
)
def test_masking(message: str, masked: str) -> None:
    assert mask(message) == masked


def test_ids_are_stable_and_kept_when_a_template_generalises() -> None:
    miner = TemplateMiner()
    first = miner.add("Invalid user admin from 10.0.0.1")
    assert first.template_id == template_id_for("Invalid user admin from <*>")
    assert first.template == "Invalid user admin from <*>"
    assert miner.add("Invalid user admin from 10.0.0.2").template_id == first.template_id
    # the same first line gives the same id in another miner, whatever else it learnt before
    other = TemplateMiner()
    other.add("something else entirely")
    assert other.add("Invalid user admin from 10.9.9.9").template_id == first.template_id
    # a word variable becomes <*> once three distinct, rarely repeated words share the slot (decided with
    # hindsight: `add` returns the template matched at the time, `resolve` the consolidated one); the oldest id
    # survives
    miner.add("Invalid user oracle from 10.0.0.3")
    third = miner.add("Invalid user test from 10.0.0.4")
    assert miner.resolve(third.template_id) == first.template_id
    assert miner.template(third.template_id) == "Invalid user <*> from <*>"
    assert miner.add("Invalid user guest from 10.0.0.5").template_id == first.template_id
    assert len(miner) == 1
    # every id ever returned resolves to the surviving one
    assert {miner.resolve(t.template_id) for t in miner.templates()} == {first.template_id}
    assert miner.template(first.template_id) == "Invalid user <*> from <*>"


def test_two_alternatives_stay_two_templates() -> None:
    miner = TemplateMiner()
    a = miner.add("cupsd startup succeeded")
    b = miner.add("cupsd shutdown succeeded")
    assert a.template_id != b.template_id
    assert miner.add("cupsd startup succeeded").template_id == a.template_id


def test_one_constant_word_apart_stays_apart() -> None:
    """The issue's failure mode: a few words each seen many times in one slot are constants, not a variable
    (OpenStack's VM lifecycle events, HPC's commands), while many rarely repeated words are one."""
    miner = TemplateMiner()
    states = ("Started", "Paused", "Resumed", "Stopped")
    lifecycle = [
        miner.add(f"[instance: 6d{i:03d}a-11] VM {state} (Lifecycle Event)").template_id
        for i in range(30)
        for state in states
    ]
    commands = [
        miner.add(f"{verb}  (command {1900 + i})").template_id for i in range(30) for verb in ("boot", "wait", "halt")
    ]
    assert len({miner.resolve(t) for t in lifecycle}) == len(states)
    assert len({miner.resolve(t) for t in commands}) == 3
    users = [
        miner.add(f"Invalid user {name}{chr(97 + i)} from 10.0.0.{i}").template_id
        for i, name in enumerate(["ann", "bob", "cy", "dan", "eve"])
    ]
    assert len({miner.resolve(t) for t in users}) == 1


def test_dates_units_and_http_methods_in_masking() -> None:
    """Dates and unit words inside a variable do not split a template; GET and POST do."""
    assert mask("connection from 10.1.2.3 at Fri Jun 17 07:07:00 2005") == mask(
        "connection from 10.9.9.9 at Sat Jul 2 10:00:01 2005"
    )
    short = "proxy:5070 close, 0 bytes sent, 0 bytes received, lifetime <1 sec"
    long = "proxy:5070 close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 KB) received, lifetime 00:02"
    assert mask(short) == mask(long) == "<*> close, <*> sent, <*> received, lifetime <*>"
    assert mask("stored (estimated size 5.2 KB, free 5.2 KB)") == mask("stored (estimated size 93.0 B, free 317.1 KB)")
    get = mask('10.11.10.1 "GET /v2/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829')
    post = mask('10.11.10.1 "POST /v2/os-events HTTP/1.1" status: 200 len: 380 time: 0.0913219')
    assert get != post
    assert '"GET' in get
    assert '"POST' in post
    assert mask("ws=WorkSource{10113}, uid=1000") == mask("ws=null, uid=1000") == "ws=<*>, uid=<*>"
    assert mask("(uid=0)") == "(uid=<*>)"


def test_match_does_not_learn() -> None:
    miner = TemplateMiner()
    assert miner.match("Accepted password for root from 10.0.0.1 port 22 ssh2") is None
    assert len(miner) == 0
    learnt = miner.add("Accepted password for root from 10.0.0.1 port 22 ssh2")
    found = miner.match("Accepted password for root from 10.1.1.1 port 2222 ssh2")
    assert found == learnt
    assert miner.match("Totally new message") is None
    assert len(miner) == 1
    assert miner.templates()[0].count == 1


def test_save_and_load_keep_ids(tmp_path: Path) -> None:
    lines = [line.message for system in SYSTEMS[:6] for line in generate(system, 400)]
    miner = TemplateMiner()
    online = [miner.add(m).template_id for m in lines]
    before = [miner.resolve(t) for t in online]
    path = tmp_path / "state" / "miner.json"
    miner.save(path)
    loaded = TemplateMiner.load(path)
    assert loaded.templates() == miner.templates()
    matched = [loaded.match(m) for m in lines]
    assert [m.template_id if m else None for m in matched] == before
    assert [loaded.resolve(loaded.add(m).template_id) for m in lines] == before
    assert len(loaded) == len(miner)
    assert [loaded.resolve(t) for t in online] == before


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(ValueError, match="not a template miner state"):
        TemplateMiner.load(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not a template miner state"):
        TemplateMiner.load(bad)


def test_garbage_messages() -> None:
    miner = TemplateMiner()
    for message in ["", "   ", "\x00\xff", "x" * 100_000, "{{{{", '"unterminated']:
        assert miner.add(message).template_id.startswith("t")
        assert miner.match(message) is not None


def test_grouping_accuracy_helper() -> None:
    assert grouping_accuracy([], []) == 1.0
    assert grouping_accuracy(["a", "a", "b"], [1, 1, 2]) == 1.0
    # over-merging: nothing is correct; splitting 'a': only 'b' is correct
    assert grouping_accuracy(["a", "a", "b"], [1, 1, 1]) == 0.0
    assert grouping_accuracy(["a", "a", "b"], [1, 2, 3]) == pytest.approx(1 / 3)
    # labels are only names: a permutation changes nothing
    assert grouping_accuracy(["x", "y", "y", "z"], ["q", "r", "r", "s"]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        grouping_accuracy(["a"], [])


def test_grouping_accuracy_on_the_generated_corpus() -> None:
    """The accuracy target with the default configuration; a regression must fail CI."""
    systems = corpus(2000)
    scores: dict[str, float] = {}
    mixed_truth: list[str] = []
    mixed: TemplateMiner = TemplateMiner()
    mixed_ids: list[str] = []
    for name, lines in systems.items():
        miner = TemplateMiner()
        ids = [miner.add(line.message).template_id for line in lines]
        scores[name] = grouping_accuracy([line.label for line in lines], [miner.resolve(t) for t in ids])
        for line in lines:
            mixed_truth.append(line.label)
            mixed_ids.append(mixed.add(line.message).template_id)
    assert len(scores) >= 12
    overall = sum(scores.values()) / len(scores)
    assert overall >= 0.95, scores
    # 0.85, not 0.9: up to four words in one slot are kept as constant alternatives (VM Paused / Resumed on real
    # logs), which the generated PythonApp's four error kinds pay for (0.90)
    assert min(scores.values()) >= 0.85, scores
    # one miner for every source at once
    assert grouping_accuracy(mixed_truth, [mixed.resolve(t) for t in mixed_ids]) >= 0.95


def test_corpus_is_reproducible() -> None:
    assert [line.raw for line in generate(SYSTEMS[0], 50)] == [line.raw for line in generate(SYSTEMS[0], 50)]
    assert [line.raw for line in generate(SYSTEMS[0], 50, seed=1)] != [line.raw for line in generate(SYSTEMS[0], 50)]


SAMPLE = [
    "2026-01-05 08:00:00,001 INFO [main] app.Api: user 7 logged in",
    "2026-01-05 08:00:01,002 INFO [main] app.Api: user 8 logged in",
    "2026-01-05 08:00:02,003 ERROR [main] app.Api: payment failed",
    "java.lang.IllegalStateException: declined",
    "\tat a.b.C.d(C.java:1)",
    '{"level": "info", "msg": "user 9 logged in"}',
]


def _records(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_cli_logs_parse(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("\n".join(SAMPLE) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["logs", "parse", str(log)])
    assert result.exit_code == 0, result.output
    records = _records(result.stdout)
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["template"] == "user <*> logged in"
    assert records[0]["template_id"] == records[1]["template_id"] == records[5]["template_id"]
    # the folded trace lines get their event's template
    assert records[2]["template"] == "payment failed"
    assert records[2]["template_id"] == records[3]["template_id"] == records[4]["template_id"]


def test_cli_logs_parse_message_format_stdin_and_state(tmp_path: Path) -> None:
    runner = CliRunner()
    state = tmp_path / "miner.json"
    result = runner.invoke(
        app, ["logs", "parse", "-", "--format", "message", "--state", str(state)], input="\n".join(SAMPLE) + "\n"
    )
    assert result.exit_code == 0, result.output
    records = _records(result.stdout)
    assert len(records) == len(SAMPLE)
    # bare messages: the header is part of the message, so the two INFO lines share a template, the ERROR not
    assert records[0]["template_id"] == records[1]["template_id"] != records[2]["template_id"]
    assert state.exists()
    again = runner.invoke(
        app, ["logs", "parse", "-", "--format", "message", "--state", str(state)], input=SAMPLE[0] + "\n"
    )
    assert _records(again.stdout)[0]["template_id"] == records[0]["template_id"]


def test_cli_logs_parse_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["logs", "parse", str(tmp_path / "nope.log")])
    assert result.exit_code == 2


def test_variable_first_word_and_later_absorption() -> None:
    miner = TemplateMiner()
    ids = [miner.add(f"{name} logged in from 10.0.0.{i}").template_id for i, name in enumerate(["ann", "bob", "cy"])]
    assert len({miner.resolve(t) for t in ids}) == 1
    assert miner.match("dave logged in from 10.0.0.9") == miner.add("eve logged in from 10.0.0.10")
    # templates learnt before a slot became variable are absorbed once they fit the general template
    miner = TemplateMiner()
    early = miner.add("export of orders by ann").template_id
    for table in ("users", "carts", "audit"):
        miner.add(f"export of {table} by bob")
    for user in ("cy", "dan"):
        miner.add(f"export of users by {user}")
    assert len(miner) == 1
    assert miner.resolve(early) == miner.templates()[0].template_id
    assert miner.templates()[0].template == "export of <*> by <*>"


def test_many_unique_messages_each_get_a_template() -> None:
    words = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(26)]
    miner = TemplateMiner()
    messages = [" ".join(words[(i * k * 7 + k) % len(words)] for k in range(1, 7)) for i in range(1500)]
    ids = [miner.add(m).template_id for m in messages]
    assert all(miner.match(m) is not None for m in messages)
    assert len({miner.resolve(t) for t in ids}) == len(miner)


def test_cli_writes_final_ids_after_merges(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(f"Invalid user {u} from 10.0.0.{i}\n" for i, u in enumerate(["ann", "bob", "cy", "dan"])))
    records = _records(CliRunner().invoke(app, ["logs", "parse", str(log), "--format", "message"]).stdout)
    assert len({r["template_id"] for r in records}) == 1
    assert records[0]["template"] == "Invalid user <*> from <*>"
