"""Remediation in alerts (issue 16, item 2): the `remediated` event ("recovered
automatically") to notifiers asking for it, the attempt in the webhook JSON, and held
openings judged as soon as their attempt has a verdict. The plan's rules as a table, exact
payloads, then the real writer and dispatcher (the rig) on a SQLite file with a loopback
sink; attempts are written to the `remediation` table as prober.remediation writes them."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from prober.alerts.channels import discord, email, ntfy, pagerduty, slack, telegram, webhook
from prober.alerts.message import Event, Kind, Message, Remediation
from prober.alerts.outbox import PENDING, Row
from prober.alerts.plan import REMEDIATED, Remedy, Situation, plan
from prober.config import Config, ConfigError, load_config
from prober.config.settings import DiscordNotifier, SlackNotifier, WebhookNotifier
from prober.store import remediations
from prober.store.db import connect_raw
from tests.alerts.rig import Rig, settle, write_config
from tests.alerts.test_payloads import DISCORD, EMAIL, NTFY, PAGERDUTY, SLACK, TELEGRAM, only, parts
from tests.support.proc import until_async as until
from tests.support.sink import Received, Sink, running_sink

# -- the rules, as a table --------------------------------------------------------------

NOW = 10_000_000
INCIDENT = "here/api/100"


def held_opening(id_: int = 1, notifier: str = "hook") -> Row:
    """Held for its remediation until a minute from now."""
    return Row(id_, f"{INCIDENT}/opened/{notifier}", notifier, Kind.OPENED, "api", INCIDENT,
               NOW - 5000, NOW + 60_000, PENDING, 0, None, None, True, None,
               {"since_ms": 100})  # fmt: skip


def decide(rows: list[Row], result: str) -> tuple[list[list[int]], list[int], list[str], list[int]]:
    s = Situation(
        now_ms=NOW,
        open_incidents={"api": INCIDENT},
        parents={},
        in_maintenance=lambda _monitor, _at: None,
        openings={},
        remedies={INCIDENT: Remedy(result, NOW + 60_000)},
    )
    got = plan(rows, s)
    return (
        [[r.id for r in batch] for batch in got.send],
        [r.id for r, _ in got.hold],
        [why for _, why in got.drop],
        [r.id for r in got.remediated],
    )


def test_a_held_opening_is_dropped_as_soon_as_its_remediation_is_verified() -> None:
    assert decide([held_opening(1), held_opening(2, "chat")], "verified") == (
        [], [], [REMEDIATED, REMEDIATED], [1, 2],
    )  # fmt: skip


def test_a_held_opening_goes_out_as_soon_as_its_remediation_failed() -> None:
    """Not at the hold's end (the command's timeout plus `verify` intervals)."""
    assert decide([held_opening()], "failed") == ([[1]], [], [], [])


def test_a_held_opening_still_waits_for_a_running_remediation() -> None:
    assert decide([held_opening()], "running") == ([], [], [], [])


# -- words and payloads -----------------------------------------------------------------

SINCE = dt.datetime(2026, 11, 23, 4, 5, tzinfo=dt.UTC)
VERIFIED = Remediation(
    result="verified",
    action="restart-api",
    started=SINCE + dt.timedelta(minutes=1),
    ended=SINCE + dt.timedelta(minutes=1, seconds=4),
    exit_code=0,
    timed_out=False,
    output_tail="api.service restarted <@here> *bold*",
)
FAILED = Remediation(
    result="failed",
    action="restart-api",
    started=SINCE + dt.timedelta(minutes=1),
    ended=SINCE + dt.timedelta(minutes=1, seconds=2),
    exit_code=3,
    timed_out=False,
    output_tail="permission denied",
)
RECOVERED = Message(
    Kind.REMEDIATED,
    (
        Event(
            Kind.REMEDIATED,
            "api",
            "API",
            SINCE,
            cause="status 503 not in [200]",
            until=SINCE + dt.timedelta(minutes=2, seconds=30),
            incident_key="inc-api-1",
            attempt=VERIFIED,
        ),
    ),
    key="inc-api-1/remediated/hook",
)
RECOVERED_LINE = (
    "API recovered automatically: down since 2026-11-23 04:05 UTC (status 503 not in [200]), "
    "restart-api ran at 2026-11-23 04:06 UTC, verified 2m 30s after it went down. No down "
    "alert was sent. Its last output: api.service restarted <@here> *bold*"
)
HOOK = WebhookNotifier(id="hook", type="webhook", url="https://hooks.example.com/in")  # type: ignore[arg-type]


def test_the_words_of_a_recovery_by_remediation() -> None:
    assert RECOVERED.title == "RECOVERED AUTOMATICALLY: API"
    assert RECOVERED.lines == [RECOVERED_LINE]


def test_webhook_remediated_payload() -> None:
    [request] = webhook.build_payload(RECOVERED, HOOK)
    assert request.payload() == {
        "idempotency_key": "inc-api-1/remediated/hook",
        "kind": "remediated",
        "test": False,
        "title": "RECOVERED AUTOMATICALLY: API",
        "text": f"RECOVERED AUTOMATICALLY: API\n{RECOVERED_LINE}",
        "events": [
            {
                "kind": "remediated",
                "monitor": "api",
                "name": "API",
                "since": "2026-11-23T04:05:00+00:00",
                "until": "2026-11-23T04:07:30+00:00",
                "duration_s": 150,
                "cause": "status 503 not in [200]",
                "link": None,
                "dependents": [],
                "cert_expires": None,
                "incident": "inc-api-1",
                "remediation": {
                    "result": "verified",
                    "action": "restart-api",
                    "exit_code": 0,
                    "timed_out": False,
                    "started": "2026-11-23T04:06:00+00:00",
                    "ended": "2026-11-23T04:06:04+00:00",
                    "output_tail": "api.service restarted <@here> *bold*",
                },
            }
        ],
    }


def test_webhook_opening_after_a_failed_attempt_carries_it() -> None:
    words = "Automatic remediation failed with exit code 3; its last output: permission denied"
    event = Event(Kind.OPENED, "api", "API", SINCE, remediation=words, attempt=FAILED)
    [request] = webhook.build_payload(Message(Kind.OPENED, (event,), "k"), HOOK)
    body = request.payload()
    assert isinstance(body, dict)
    assert body["events"][0]["remediation"] == {
        "result": "failed",
        "action": "restart-api",
        "exit_code": 3,
        "timed_out": False,
        "started": "2026-11-23T04:06:00+00:00",
        "ended": "2026-11-23T04:06:02+00:00",
        "output_tail": "permission denied",
    }
    assert body["text"] == f"DOWN: API\nAPI is down since 2026-11-23 04:05 UTC. {words}"


def test_chat_channels_show_a_recovery_as_good_news_and_escape_the_output() -> None:
    chat = SlackNotifier(id="chat", type="slack", url="https://hooks.slack.test/x")  # type: ignore[arg-type]
    [request] = slack.build_payload(RECOVERED, chat)
    text = str(request.payload())
    assert "<@here>" not in text and "&lt;@here&gt;" in text
    room = DiscordNotifier(id="room", type="discord", url="https://discord.test/x")  # type: ignore[arg-type]
    assert discord.color(RECOVERED) == discord.GREEN
    sent = discord.build_payload(RECOVERED, room)[0].payload()
    assert isinstance(sent, dict)
    assert "\\*bold\\*" in sent["embeds"][0]["description"]
    assert (ntfy.priority(RECOVERED), ntfy.tags(RECOVERED)) == (3, ["white_check_mark"])


def rendered(message: Message) -> dict[str, str]:
    """What each channel a person reads sends for `message`, as text."""
    plain, rich = parts(email.build_payload(message, EMAIL))
    return {
        "slack": str(only(slack.build_payload(message, SLACK)).payload()),
        "discord": str(only(discord.build_payload(message, DISCORD)).payload()),
        "telegram": str(only(telegram.build_payload(message, TELEGRAM)).payload()),
        "ntfy": only(ntfy.build_payload(message, NTFY)).body.decode(),
        "email": plain + rich,
    }


def test_every_channel_tells_the_attempt_and_the_recovery() -> None:
    words = "Automatic remediation failed with exit code 3; its last output: permission denied"
    opened = Event(Kind.OPENED, "api", "API", SINCE, remediation=words, attempt=FAILED)
    for channel, text in rendered(Message(Kind.OPENED, (opened,), "k")).items():
        assert "failed with exit code 3" in text and "permission denied" in text, channel
    for channel, text in rendered(RECOVERED).items():
        assert "RECOVERED AUTOMATICALLY: API" in text, channel
        assert "restart-api ran at" in text and "verified 2m 30s after" in text, channel
    assert pagerduty.build_payload(RECOVERED, PAGERDUTY) == []  # refused by the config anyway


# -- the config -------------------------------------------------------------------------


def load(tmp_path: pathlib.Path, body: str) -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(body)
    return load_config(path, {})


@pytest.mark.parametrize(
    ("notifier", "why"),
    [
        ('type = "pagerduty"\nrouting_key = "R0UTING"', "PagerDuty would open an incident for it"),
        ('type = "alertmanager"\nurl = "http://127.0.0.1:9093"',
         "Alertmanager takes alerts, not news of one averted"),
    ],
)  # fmt: skip
def test_pagers_refuse_remediated(tmp_path: pathlib.Path, notifier: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f'[[notifiers]]\nid = "p"\n{notifier}\nevents = ["opened", "remediated"]\n')
    path = tmp_path / "monitors.toml"
    assert caught.value.errors == [
        f"{path}:5: notifiers[0].events: this notifier type does not take 'remediated': {why}"
    ]


def test_escalate_without_notify_is_refused(tmp_path: pathlib.Path) -> None:
    """Its steps count from the opening alert, which never goes out: nothing would escalate."""
    body = (
        '[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
        'escalate = [{ after = "1m", notify = ["pager"] }]\n\n'
        '[[notifiers]]\nid = "pager"\ntype = "webhook"\nurl = "http://127.0.0.1:9/p"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    [error] = caught.value.errors
    assert error.startswith(f"{tmp_path / 'monitors.toml'}:5: monitors[0].escalate: the steps")
    assert "with notify = [] none is sent" in error


# -- the real writer and dispatcher -----------------------------------------------------

MONITORS = """
[defaults]
down_after = 1
notify = ["hook", "fyi"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "{url}"

[[notifiers]]
id = "fyi"
type = "webhook"
url = "{url}-fyi"
events = ["opened", "resolved", "remediated"]

[[notifiers]]
id = "other"
type = "webhook"
url = "{url}-other"
events = ["opened", "resolved", "remediated"]

[[notifiers]]
id = "pager"
type = "webhook"
url = "{url}-pager"

[[monitors]]
id = "api"
name = "API"
type = "http"
url = "http://127.0.0.1:9/"
remediate = {{ command = ["/usr/local/bin/restart-api", "--token=hunter2-secret"], after = 1, verify = 1 }}
escalate = [{{ after = "1s", notify = ["pager"] }}]

[[monitors]]
id = "web"
type = "http"
url = "http://127.0.0.1:9/"
escalate = [{{ after = "1s", notify = ["pager"] }}]
"""


def config(tmp_path: pathlib.Path, sink: Sink) -> Config:
    body = MONITORS.format(url=sink.url)
    return write_config(tmp_path, body, alert_group_wait='"50ms"', allow_commands="true")


def told(sink: Sink) -> list[tuple[str, str, str]]:
    """(notifier, kind, monitor) per event received, in order."""
    names = {"/hook": "hook", "/hook-fyi": "fyi", "/hook-other": "other", "/hook-pager": "pager"}
    return [
        (names[r.path], str(e["kind"]), str(e["monitor"]))
        for r in sink.received
        for e in r.json()["events"]  # type: ignore[attr-defined]
    ]


def arrived(sink: Sink, notifier: str, kind: str) -> list[Received]:
    path = "/hook" if notifier == "hook" else f"/hook-{notifier}"
    return [r for r in sink.received if r.path == path and r.json()["kind"] == kind]


def incident_of(cfg: Config, monitor: str) -> str:
    conn = sqlite3.connect(cfg.database_path, timeout=5)
    try:
        (incident,) = conn.execute(
            "SELECT DISTINCT incident FROM alert WHERE monitor = ? AND kind = 'opened'", (monitor,)
        ).fetchone()
        return str(incident)
    finally:
        conn.close()


def attempt(cfg: Config, monitor: str, result: str, code: int, output: str) -> None:
    """An attempt for the monitor's open incident, as prober.remediation records one that
    ran and was judged (`result`)."""
    incident = incident_of(cfg, monitor)
    conn = connect_raw(cfg.database_path)
    try:
        now = round(dt.datetime.now(dt.UTC).timestamp() * 1000)
        row = remediations.start(conn, monitor, incident, now - 2000)
        remediations.finish(conn, row, now - 1000, result="running", exit_code=code,
                            timed_out=False, output_tail=output)  # fmt: skip
        remediations.settle(conn, row, result)
    finally:
        conn.close()


def held(cfg: Config, monitor: str) -> bool:
    conn = sqlite3.connect(cfg.database_path, timeout=5)
    try:
        rows = conn.execute(
            "SELECT silenced FROM alert WHERE monitor = ? AND kind = 'opened'", (monitor,)
        ).fetchall()
        return bool(rows) and all(s for (s,) in rows)
    finally:
        conn.close()


def states(cfg: Config, kind: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(cfg.database_path, timeout=5)
    try:
        rows = conn.execute(
            "SELECT notifier, state FROM alert WHERE kind = ? ORDER BY id", (kind,)
        ).fetchall()
        return [(str(n), str(s)) for n, s in rows]
    finally:
        conn.close()


async def test_a_verified_remediation_tells_those_asking_once_across_restarts(
    tmp_path: pathlib.Path,
) -> None:
    """api's notifiers: hook (default events, no `remediated`) and fyi (asks for it);
    `other` asks for it but is not api's. Only fyi hears, once, through two restarts; the
    pager is not woken (its opening was dropped: nothing escalates)."""
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("api")
            attempt(cfg, "api", "verified", 0, "api.service restarted")
            rig.dispatcher.wake()
            await until(lambda: arrived(sink, "fyi", "remediated"))
            await settle(1.5)  # past the escalation step's delay, the incident still open
        async with Rig(cfg) as rig:
            await rig.up("api")
            await until(lambda: [s for _, s in states(cfg, "resolved")] == ["suppressed"] * 2)
        async with Rig(cfg) as rig:
            await settle(0.5)
    assert told(sink) == [("fyi", "remediated", "api")]
    assert states(cfg, "opened") == [("hook", "suppressed"), ("fyi", "suppressed")]
    assert states(cfg, "resolved") == [("hook", "suppressed"), ("fyi", "suppressed")]
    [received] = arrived(sink, "fyi", "remediated")
    body = received.json()
    assert body["idempotency_key"] == f"{incident_of(cfg, 'api')}/remediated/fyi"
    assert received.headers["Idempotency-Key"] == body["idempotency_key"]
    assert body["title"] == "[Status] RECOVERED AUTOMATICALLY: API"
    [event] = body["events"]  # type: ignore[misc]
    assert event["remediation"]["result"] == "verified"
    assert event["remediation"]["action"] == "restart-api"
    assert event["remediation"]["exit_code"] == 0
    assert event["remediation"]["output_tail"] == "api.service restarted"
    assert event["duration_s"] is not None
    assert "hunter2" not in received.body.decode()  # arguments are never told


async def test_the_webhook_json_carries_the_attempt(tmp_path: pathlib.Path) -> None:
    """web has no remediation: null. api's attempt failed with exit code 3: its opening goes
    out at once (not at the end of its hold), with the attempt."""
    async with running_sink() as sink:
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("web")
            await until(lambda: arrived(sink, "hook", "opened"))
            await rig.down("api")
            await until(lambda: held(cfg, "api"))  # for its remediation: a minute at most
            attempt(cfg, "api", "failed", 3, "restart-api: permission denied")
            rig.dispatcher.wake()
            await until(lambda: len(arrived(sink, "hook", "opened")) == 2, within=30)
    web, api = (r.json()["events"][0] for r in arrived(sink, "hook", "opened"))  # type: ignore[index]
    assert (web["monitor"], web["remediation"]) == ("web", None)
    assert api["monitor"] == "api"
    assert api["remediation"] == {
        "result": "failed",
        "action": "restart-api",
        "exit_code": 3,
        "timed_out": False,
        "started": api["remediation"]["started"],
        "ended": api["remediation"]["ended"],
        "output_tail": "restart-api: permission denied",
    }
    text = str(arrived(sink, "hook", "opened")[1].json()["text"])
    assert "Automatic remediation failed with exit code 3" in text
    assert not arrived(sink, "fyi", "remediated")


async def test_an_opening_failed_for_good_still_escalates(tmp_path: pathlib.Path) -> None:
    """web's opening to hook is refused (HTTP 400: failed for good) and fyi's too: the
    pager is woken its delay after the first attempt."""
    async with running_sink() as sink:
        sink.answers = [(400, {}), (400, {})]
        cfg = config(tmp_path, sink)
        async with Rig(cfg) as rig:
            await rig.down("web")
            await until(lambda: arrived(sink, "pager", "opened"))
    assert states(cfg, "opened")[:2] == [("hook", "failed"), ("fyi", "failed")]
    assert told(sink)[2:] == [("pager", "opened", "web")]
    conn = sqlite3.connect(cfg.database_path, timeout=5)
    try:
        (first_try,) = conn.execute("SELECT min(first_try_ms) FROM alert").fetchone()
        (escalated,) = conn.execute(
            "SELECT created_ms FROM alert WHERE key LIKE '%/escalated/pager'"
        ).fetchone()
    finally:
        conn.close()
    assert escalated - first_try >= 1000  # never before its delay
    assert "Escalated after 1s" in str(arrived(sink, "pager", "opened")[0].json()["text"])
