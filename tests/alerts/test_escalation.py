"""`escalate` steps (issue 16, item 3): while an incident stays open, each step tells more
notifiers its delay after the opening alert went out; cancelled by resolution; `resolved`
reaches everyone told, once each. The plan's rules as a table, the words, then the real
writer and dispatcher (the rig) with a loopback sink."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
from collections.abc import Mapping

from prober.alerts.message import Event, Kind, Message, short
from prober.alerts.outbox import ESCALATED, PENDING, SENT, Row
from prober.alerts.plan import Recovery, Situation, plan
from prober.config import Config
from tests.alerts.rig import Rig, settle, write_config
from tests.support.proc import until_async as until
from tests.support.sink import Received, Sink, running_sink

# -- the rules, as a table --------------------------------------------------------------

NOW = 10_000_000
INCIDENT = "here/api/100"
END = NOW + 600_000  # the end of a maintenance window


def escalation(id_: int = 1, notifier: str = "pager") -> Row:
    data = {"since_ms": 100, "cause": "boom", ESCALATED: 900_000}
    return Row(id_, f"{INCIDENT}/escalated/{notifier}", notifier, Kind.OPENED, "api", INCIDENT,
               NOW, NOW, PENDING, 0, None, None, False, None, data)  # fmt: skip


def opening(id_: int, notifier: str = "pager") -> Row:
    return Row(id_, f"{INCIDENT}/opened/{notifier}", notifier, Kind.OPENED, "api", INCIDENT,
               NOW - 5000, NOW - 1000, PENDING, 0, None, None, False, None, {"since_ms": 100})  # fmt: skip


def resolution(id_: int, notifier: str = "pager") -> Row:
    data = {"since_ms": 100, "until_ms": NOW - 10}
    return Row(id_, f"{INCIDENT}/resolved/{notifier}", notifier, Kind.RESOLVED, "api", INCIDENT,
               NOW - 10, NOW - 10, PENDING, 0, None, None, False, None, data)  # fmt: skip


def decide(
    rows: list[Row],
    *,
    still_open: bool = True,
    window: int | None = None,
    openings: Mapping[tuple[str, str], str] | None = None,
    recoveries: Mapping[str, Recovery] | None = None,
) -> tuple[list[list[int]], list[tuple[int, int]], list[tuple[int, str]]]:
    s = Situation(
        now_ms=NOW,
        open_incidents={"api": INCIDENT} if still_open else {},
        parents={},
        in_maintenance=lambda _monitor, _at: window,
        openings=dict(openings or {}),
        recoveries=dict(recoveries or {}),
    )
    got = plan(rows, s)
    return (
        [[r.id for r in batch] for batch in got.send],
        [(r.id, until) for r, until in got.hold],
        [(r.id, why) for r, why in got.drop],
    )


def test_a_due_escalation_of_an_open_incident_is_sent() -> None:
    assert decide([escalation()]) == ([[1]], [], [])


def test_an_incident_that_ended_before_its_escalation_went_out_drops_it() -> None:
    why = "the incident ended before its escalation went out"
    assert decide([escalation()], still_open=False) == ([], [], [(1, why)])


def test_its_resolution_is_dropped_with_it() -> None:
    got = decide([escalation(1), resolution(2)], still_open=False)
    assert got[0] == [] and [i for i, _ in got[2]] == [1, 2]


def test_the_resolution_of_a_sent_escalation_goes_out() -> None:
    got = decide([resolution(2)], still_open=False, openings={(INCIDENT, "pager"): SENT})
    assert got == ([[2]], [], [])


def test_maintenance_holds_an_escalation_as_it_holds_an_opening() -> None:
    assert decide([escalation()], window=END) == ([], [(1, END)], [])


def test_an_escalation_is_not_held_for_a_parents_recovery() -> None:
    """Its incident was announced already: the dependent's next check decides nothing."""
    waiting = Recovery(NOW - 500, NOW - 2000, True, 60_000, 1)
    assert decide([escalation()], recoveries={"api": waiting}) == ([[1]], [], [])


def test_an_escalation_travels_apart_from_plain_openings() -> None:
    got = decide([opening(1), escalation(2), escalation(3)])
    assert sorted(got[0]) == [[1], [2, 3]]


def test_the_words_say_it_is_an_escalation() -> None:
    since = dt.datetime(2026, 12, 3, 13, 0, tzinfo=dt.UTC)
    event = Event(Kind.OPENED, "api", "API", since, cause="boom",
                  escalated_after=dt.timedelta(minutes=15))  # fmt: skip
    message = Message(Kind.OPENED, (event,), "k")
    assert message.title == "ESCALATED: API"
    assert message.lines == ["Escalated after 15m: API is down since 2026-12-03 13:00 UTC: boom"]
    plain = Message(Kind.OPENED, (Event(Kind.OPENED, "api", "API", since),), "k")
    assert plain.title == "DOWN: API"
    assert [short(dt.timedelta(seconds=s)) for s in (2, 90, 3600, 5400)] == [
        "2s", "1m 30s", "1h", "1h 30m",
    ]  # fmt: skip


# -- the real writer and dispatcher, results by hand ------------------------------------

MONITORS = """
[defaults]
down_after = 1
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{url}"

[[notifiers]]
id = "pager"
type = "webhook"
url = "{url}-pager"

[[notifiers]]
id = "boss"
type = "webhook"
url = "{url}-boss"

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"
escalate = {escalate}

[[monitors]]
id = "web"
type = "http"
url = "http://127.0.0.1:9/"
escalate = {escalate}
{web_extra}
"""

ONE_STEP = '[{ after = "1s", notify = ["pager"] }]'


def config(
    tmp_path: pathlib.Path, sink: Sink, escalate: str = ONE_STEP, web_extra: str = ""
) -> Config:
    body = MONITORS.format(url=sink.url, escalate=escalate, web_extra=web_extra)
    return write_config(tmp_path, body, alert_group_wait='"50ms"')


def told(sink: Sink) -> list[tuple[str, str, str]]:
    """(notifier, kind, monitor) per event received, in order."""
    names = {"/hook": "hook", "/hook-pager": "pager", "/hook-boss": "boss"}
    return [
        (names[r.path], str(e["kind"]), str(e["monitor"]))
        for r in sink.received
        for e in r.json()["events"]  # type: ignore[attr-defined]
    ]


def arrived(sink: Sink, notifier: str, kind: str = "opened") -> list[Received]:
    path = "/hook" if notifier == "hook" else f"/hook-{notifier}"
    return [r for r in sink.received if r.path == path and r.json()["kind"] == kind]


def sent_ms(db: pathlib.Path, key_part: str) -> list[int]:
    conn = sqlite3.connect(db, timeout=5)
    try:
        rows = conn.execute(
            "SELECT sent_ms FROM alert WHERE key LIKE ? AND state = 'sent' ORDER BY id",
            (f"%{key_part}%",),
        )
        return [int(t) for (t,) in rows]
    finally:
        conn.close()


async def test_a_step_is_sent_its_delay_after_the_opening_went_out(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await until(lambda: arrived(sink, "pager"))
    assert told(sink) == [("hook", "opened", "api"), ("pager", "opened", "api")]
    [opened], [escalated] = (
        sent_ms(cfg.database_path, "/opened/"),
        sent_ms(cfg.database_path, "/escalated/"),
    )
    assert escalated - opened >= 1000  # never before its delay
    body = arrived(sink, "pager")[0].json()
    assert body["title"] == "[Status] ESCALATED: API"
    assert "Escalated after 1s: API is down since" in str(body["text"])


async def test_resolved_before_the_step_is_due_cancels_it(tmp_path: pathlib.Path) -> None:
    """api recovers before its step; web, down as long as api would have needed, escalates:
    by then api's escalation would have gone out too."""
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await until(lambda: arrived(sink, "hook"))
            await rig.up("api")
            await until(lambda: arrived(sink, "hook", "resolved"))
            await rig.down("web")
            await until(lambda: arrived(sink, "pager"))
            await settle(0.5)
    assert [t for t in told(sink) if t[0] == "pager"] == [("pager", "opened", "web")]


async def test_resolved_reaches_everyone_told_once_each(tmp_path: pathlib.Path) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await until(lambda: arrived(sink, "pager"))
            await rig.up("api")
            await until(
                lambda: arrived(sink, "hook", "resolved") and arrived(sink, "pager", "resolved")
            )
            await settle(0.5)
    assert sorted(told(sink)) == [
        ("hook", "opened", "api"),
        ("hook", "resolved", "api"),
        ("pager", "opened", "api"),
        ("pager", "resolved", "api"),
    ]


async def test_two_steps_and_a_notifier_named_twice_is_told_once(tmp_path: pathlib.Path) -> None:
    """Step 1 names hook (already told: the monitor's own) and pager; step 2 names pager
    again and boss."""
    steps = '[{ after = "1s", notify = ["hook", "pager"] }, { after = "2s", notify = ["pager", "boss"] }]'
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, steps)
        async with Rig(cfg) as rig:
            await rig.down("api")
            await until(lambda: arrived(sink, "boss"))
            await rig.up("api")
            await until(lambda: len(arrived(sink, "boss", "resolved")) == 1)
            await settle(0.5)
    assert told(sink)[:3] == [
        ("hook", "opened", "api"),
        ("pager", "opened", "api"),
        ("boss", "opened", "api"),
    ]
    assert sorted(told(sink)[3:]) == [
        ("boss", "resolved", "api"),
        ("hook", "resolved", "api"),
        ("pager", "resolved", "api"),
    ]
    [opened] = sent_ms(cfg.database_path, "/opened/")
    pager, boss = sent_ms(cfg.database_path, "/escalated/")
    assert pager - opened >= 1000 and boss - opened >= 2000
    assert "Escalated after 2s" in str(arrived(sink, "boss")[0].json()["text"])


async def test_a_dispatcher_restart_between_opening_and_step_sends_it_once(
    tmp_path: pathlib.Path,
) -> None:
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, '[{ after = "3s", notify = ["pager"] }]')
        async with Rig(cfg) as rig:
            await rig.down("api")
            await until(lambda: arrived(sink, "hook"))
        assert not arrived(sink, "pager")  # stopped before the step was due
        async with Rig(cfg) as rig:
            await until(lambda: arrived(sink, "pager"))
        async with Rig(cfg) as rig:  # once more, past the step: nothing again
            await rig.down("api")
            await settle(0.5)
            await rig.up("api")
            await until(lambda: arrived(sink, "pager", "resolved"))
            await settle(0.5)
    assert sorted(told(sink)) == [
        ("hook", "opened", "api"),
        ("hook", "resolved", "api"),
        ("pager", "opened", "api"),
        ("pager", "resolved", "api"),
    ]


async def test_an_opening_held_by_its_parent_starts_no_clock(tmp_path: pathlib.Path) -> None:
    """web depends on api: both down, only api is announced, so only api escalates."""
    async with running_sink() as sink:
        cfg = config(tmp_path, sink, web_extra='depends_on = ["api"]')
        async with Rig(cfg) as rig:
            await rig.down("api", "web")
            await until(lambda: arrived(sink, "pager"))
            await settle(1.0)
    assert told(sink) == [("hook", "opened", "api"), ("pager", "opened", "api")]
