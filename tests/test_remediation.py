"""Remediation commands (prober.remediation): real subprocesses, real files, a real SQLite
database; the config's refusals with the messages a user reads."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober.cli import main
from prober.config import ConfigError, load_config
from prober.config.load import Config
from prober.redact import Redactor
from prober.remediation import (
    TAIL_BYTES,
    Decision,
    Remediator,
    command_env,
    run_command,
    should_remediate,
)
from prober.results import Outcome as Verdict
from prober.store import remediations as rows
from prober.store.db import open_engine
from tests.support.proc import until

ENV = command_env("api", "API", "HTTP 503", 1_796_300_000_000)


def script(tmp_path: pathlib.Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o700)
    return str(path)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody reaped yet (it runs nothing)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


async def test_exit_codes_and_output(tmp_path: pathlib.Path) -> None:
    ok = await run_command([script(tmp_path, "ok", "echo restarted\n")], ENV, 30, str)
    assert (ok.exit_code, ok.signal, ok.timed_out, ok.succeeded) == (0, None, False, True)
    assert ok.output_tail == "restarted\n"
    bad = await run_command(
        [script(tmp_path, "bad", "echo to stdout; echo to stderr >&2; exit 3\n")], ENV, 30, str
    )
    assert (bad.exit_code, bad.timed_out, bad.succeeded) == (3, False, False)
    assert bad.output_tail == "to stdout\nto stderr\n"  # merged, in order
    assert bad.describe() == "exit code 3"
    missing = await run_command([str(tmp_path / "nothing-here")], ENV, 30, str)
    assert missing.exit_code == 127 and "cannot run" in missing.output_tail


async def test_a_hanging_command_dies_with_its_whole_group(tmp_path: pathlib.Path) -> None:
    pids = tmp_path / "pids"
    hostile = (  # a child in the background, one that ignores SIGTERM, and the leader
        f"sleep 300 & echo $! >> {pids}; (trap '' TERM; exec sleep 301) & echo $! >> {pids};"
        f" echo $$ >> {pids}; sleep 300"
    )
    outcome = await run_command(["/bin/sh", "-c", hostile], ENV, 2.0, str)
    assert outcome.timed_out and not outcome.succeeded and outcome.exit_code is None
    assert outcome.describe().startswith("timed out, its process group killed after")
    found = [int(line) for line in pids.read_text().split()]
    assert len(found) == 3
    until(lambda: all(gone(pid) for pid in found), within=10)


async def test_ten_megabytes_of_output_keep_4_kib(tmp_path: pathlib.Path) -> None:
    loud = script(tmp_path, "loud", "head -c 10485760 /dev/zero | tr '\\0' a\necho; echo END\n")
    tracemalloc.start()
    try:
        outcome = await run_command([loud], ENV, 120, str)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.exit_code == 0
    assert outcome.output_tail.endswith("\nEND\n")
    assert len(outcome.output_tail.encode()) <= TAIL_BYTES
    assert peak < 1024 * 1024, peak  # a 10 MB output never held: a few chunks at most


async def test_hostile_names_and_causes_reach_the_command_only_as_values(
    tmp_path: pathlib.Path,
) -> None:
    marker = tmp_path / "marker"
    victim = tmp_path / "victim"
    victim.mkdir()
    name = f"$(touch {marker}) `touch {marker}` ; rm -rf {victim}\nnext line"
    cause = f"HTTP 503; rm -rf {victim} && touch {marker} | `touch {marker}` $HOME"
    record = tmp_path / "record"
    spy = script(
        tmp_path, "spy", f'/usr/bin/env -0 > {record}.env\nprintf "%s\\0" "$@" > {record}.argv\n'
    )
    config = write_config(
        tmp_path,
        f"""\
        [settings]
        allow_commands = true
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        name = {toml_string(name)}
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = {{ command = ["{spy}", "--fixed"], timeout = "30s" }}
        """,
    )
    remediator = started(config)
    try:
        attempted = await remediator.attempt(config.monitors[0], "default/api/1000", cause, 1000)
    finally:
        remediator.close()
    assert attempted.outcome.exit_code == 0
    env = dict(
        item.split("=", 1) for item in (tmp_path / "record.env").read_text().split("\0") if item
    )
    assert env["PROBER_MONITOR_NAME"] == name
    assert env["PROBER_CAUSE"] == cause
    assert env["PROBER_MONITOR_ID"] == "api"
    assert env["PROBER_INCIDENT_START"] == "1970-01-01T00:00:01Z"
    assert set(env) <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_"} | {
        "PROBER_MONITOR_ID",
        "PROBER_MONITOR_NAME",
        "PROBER_CAUSE",
        "PROBER_INCIDENT_START",
    }  # nothing else of the prober's environment (sh adds PWD, SHLVL, _)
    assert (tmp_path / "record.argv").read_text().split("\0")[:-1] == ["--fixed"]
    assert not marker.exists()
    assert victim.is_dir()


async def test_secrets_are_redacted_from_the_output(tmp_path: pathlib.Path) -> None:
    teller = script(tmp_path, "teller", 'echo "token=$1 hook=$2 db=postgres://u:dbpass@h/x"\n')
    env = {"API_TOKEN": "tok-env-0123456789", "HOOK_URL": "http://127.0.0.1:9/hook-secret-42"}
    config = write_config(
        tmp_path,
        f"""\
        [settings]
        allow_commands = true
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = {{ command = ["{teller}", "${{API_TOKEN}}", "${{HOOK_URL}}"] }}

        [[notifiers]]
        id = "hook"
        type = "webhook"
        url = "${{HOOK_URL}}"
        """,
        env,
    )
    remediator = started(config)
    try:
        attempted = await remediator.attempt(config.monitors[0], "default/api/1", "down", 1)
    finally:
        remediator.close()
    tail = attempted.outcome.output_tail
    assert tail == "token=*** hook=*** db=postgres://u:***@h/x\n"
    stored = sqlite3.connect(tmp_path / "prober.db").execute("SELECT output_tail FROM remediation")
    assert [t for (t,) in stored] == [tail]
    # run_command on its own redacts with what it is given, and leaves the rest
    plain = await run_command([teller, "abc-secret-1", "x"], ENV, 30, Redactor({"abc-secret-1"}))
    assert plain.output_tail == "token=*** hook=x db=postgres://u:***@h/x\n"


async def test_the_budget_holds_across_a_restart(tmp_path: pathlib.Path) -> None:
    ok = script(tmp_path, "ok", "exit 0\n")
    config = write_config(
        tmp_path,
        f"""\
        [settings]
        allow_commands = true
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = {{ command = ["{ok}"], after = 2, attempts = 1, within = "1h" }}
        """,
    )
    api = config.monitors[0]
    now = [1_796_300_000.0]
    remediator = started(config, clock=lambda: now[0])
    try:
        assert (
            await remediator.decide(api, "default/api/1", down_streak=1, verdict=Verdict.DOWN)
            is Decision.WAIT
        )
        assert (
            await remediator.decide(api, "default/api/1", verdict=Verdict.DOWN, down_streak=2)
            is Decision.RUN
        )
        attempted = await remediator.attempt(api, "default/api/1", "HTTP 503", 1)
        await remediator.settle("api", attempted.attempt, verified=True)
        assert (
            await remediator.decide(api, "default/api/1", verdict=Verdict.DOWN, down_streak=2)
            is Decision.TRIED
        )
    finally:
        remediator.close()

    now[0] += 1800  # a restart, half an hour later, and a new incident
    again = started(config, clock=lambda: now[0])
    try:
        assert await again.recover() == []
        assert (
            await again.decide(api, "default/api/2", verdict=Verdict.DOWN, down_streak=2)
            is Decision.BUDGET
        )
        assert (
            await again.decide(api, "default/api/2", verdict=Verdict.DOWN, down_streak=3)
            is Decision.BUDGET
        )
        now[0] += 1801  # the first attempt is now more than an hour old
        assert (
            await again.decide(api, "default/api/2", verdict=Verdict.DOWN, down_streak=2)
            is Decision.RUN
        )
    finally:
        again.close()
    assert sample(again, "api", "skipped_budget") == 1.0  # counted once per incident
    assert sample(remediator, "api", "verified") == 1.0
    conn = sqlite3.connect(tmp_path / "prober.db")
    assert conn.execute("SELECT result, exit_code, ended_ms FROM remediation").fetchall() == [
        ("verified", 0, 1_796_300_000_000)
    ]


async def test_a_kill_9_mid_remediation_leaves_an_interrupted_attempt(
    tmp_path: pathlib.Path,
) -> None:
    pidfile = tmp_path / "pid"
    hang = script(tmp_path, "hang", f"echo $$ > {pidfile}\nexec sleep 300\n")
    config = write_config(
        tmp_path,
        f"""\
        [settings]
        allow_commands = true
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = {{ command = ["{hang}"], timeout = "5m", attempts = 5 }}
        """,
    )
    started(config).close()  # the schema
    code = textwrap.dedent(
        f"""\
        import asyncio, pathlib
        from prober.config import load_config
        from prober.remediation import Remediator
        config = load_config({str(config.path)!r}, {{}})
        remediator = Remediator(config.database_path, str)
        asyncio.run(remediator.attempt(config.monitors[0], "default/api/7", "down", 7))
        """
    )
    prober = subprocess.Popen([sys.executable, "-c", code])
    try:
        until(lambda: pidfile.exists() and pidfile.read_text().strip(), within=30)
    finally:
        prober.send_signal(signal.SIGKILL)
        prober.wait()
    command = int(pidfile.read_text())
    os.kill(command, signal.SIGKILL)  # the orphaned command: its own session, not ours

    remediator = started(config)
    try:
        (found,) = await remediator.recover()
        assert (found.monitor, found.incident, found.result) == (
            "api",
            "default/api/7",
            "interrupted",
        )
        assert found.ended_ms is not None
        api = config.monitors[0]
        assert (
            await remediator.decide(api, "default/api/7", verdict=Verdict.DOWN, down_streak=2)
            is Decision.TRIED
        )
        assert (
            await remediator.decide(api, "default/api/8", verdict=Verdict.DOWN, down_streak=2)
            is Decision.RUN
        )
        assert await remediator.recover() == []  # once
    finally:
        remediator.close()
    assert sample(remediator, "api", "interrupted") == 1.0
    conn = sqlite3.connect(tmp_path / "prober.db")
    assert [r.result for r in rows.for_incident(conn, "api", "default/api/7")] == ["interrupted"]


async def test_a_webhook_remediation_is_signed_and_judged_by_its_answer(
    tmp_path: pathlib.Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []
    status = [200]

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(status=status[0], text="restarting")

    app = web.Application()
    app.router.add_post("/restart", hook)
    server = await aiohttp_server(app)
    config = write_config(
        tmp_path,
        f"""\
        [settings]
        database = "sqlite:///prober.db"

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        remediate = {{ webhook = "ops" }}

        [[notifiers]]
        id = "ops"
        type = "webhook"
        url = "{server.make_url("/restart")}"
        secret = "hmac-secret-1"
        """,
    )
    open_engine(config.database_path).dispose()
    async with aiohttp.ClientSession() as session:
        remediator = Remediator(
            config.database_path,
            Redactor(config.secret_values()),
            session=session,
            notifiers=config.notifiers,
        )
        try:
            ok = await remediator.attempt(config.monitors[0], "default/api/5", "HTTP 503", 5000)
            status[0] = 503
            bad = await remediator.attempt(config.monitors[0], "default/api/6", "HTTP 503", 6000)
        finally:
            remediator.close()
    assert (ok.outcome.exit_code, ok.outcome.output_tail) == (0, "HTTP 200: restarting")
    assert (bad.outcome.exit_code, bad.outcome.output_tail) == (1, "HTTP 503: restarting")
    headers, body = seen[0]
    digest = hmac.new(b"hmac-secret-1", body, hashlib.sha256).hexdigest()
    assert headers["X-Prober-Signature"] == f"sha256={digest}"
    assert headers["Idempotency-Key"] == f"remediate/default/api/5/{ok.attempt}"
    assert json.loads(body) == {
        "kind": "remediate",
        "idempotency_key": f"remediate/default/api/5/{ok.attempt}",
        "monitor": "api",
        "name": "api",
        "cause": "HTTP 503",
        "incident": "default/api/5",
        "incident_start": "1970-01-01T00:00:05Z",
    }
    conn = sqlite3.connect(tmp_path / "prober.db")
    assert conn.execute("SELECT result, exit_code FROM remediation ORDER BY id").fetchall() == [
        ("running", 0),  # until its verification settles it
        ("failed", 1),
    ]


@pytest.mark.parametrize(
    ("facts", "decision"),
    [
        ({}, Decision.RUN),
        ({"down_streak": 1}, Decision.WAIT),
        ({"verdict": Verdict.UP, "down_streak": 0}, Decision.WAIT),
        ({"verdict": Verdict.UNKNOWN}, Decision.VERDICT),
        ({"regional": True}, Decision.VERDICT),
        ({"in_maintenance": True}, Decision.MAINTENANCE),
        ({"parent_down": True}, Decision.PARENT_DOWN),
        ({"tried_this_incident": True}, Decision.TRIED),
        ({"attempts_in_window": 2}, Decision.BUDGET),
        ({"attempts_in_window": 1}, Decision.RUN),
    ],
)
def test_should_remediate(facts: dict[str, object], decision: Decision) -> None:
    base: dict[str, object] = {
        "down_streak": 2,
        "after": 2,
        "verdict": Verdict.DOWN,
        "regional": False,
        "in_maintenance": False,
        "parent_down": False,
        "tried_this_incident": False,
        "attempts_in_window": 0,
        "attempts": 2,
    }
    assert should_remediate(**(base | facts)) is decision  # type: ignore[arg-type]


REFUSED = [
    (
        'remediate = { command = ["/usr/local/bin/restart-api"] }',
        False,
        "monitors.toml:8: monitors[0].remediate.command: settings.allow_commands is false: a "
        "remediation command runs a program on this host; set allow_commands = true in "
        "[settings] to allow it",
    ),
    (
        'remediate = { command = ["restart-api"] }',
        True,
        "monitors.toml:8: monitors[0].remediate.command: 'restart-api' is not an absolute "
        "path: the program is run as written, never looked up in PATH nor through a shell",
    ),
    (
        "remediate = { command = [] }",
        True,
        "monitors.toml:8: monitors[0].remediate.command: needs the program and its arguments, "
        'e.g. ["/usr/local/bin/x"]',
    ),
    (
        'remediate = { command = ["/bin/true"], webhook = "hook" }',
        True,
        "monitors.toml:8: monitors[0].remediate: needs exactly one of command (an argv list) "
        "or webhook (a notifier id)",
    ),
    (
        'up_after = 3\nremediate = { command = ["/bin/true"], verify = 2 }',
        True,
        "monitors.toml:9: monitors[0].remediate: verify (2) must be at least up_after (3): a "
        "remediation is verified by as many successes as end an incident",
    ),
    (
        'remediate = { command = ["/bin/true"], timeout = "11m" }',
        True,
        "monitors.toml:8: monitors[0].remediate.timeout: must be at most 10m; got 660s (the "
        "opening alert waits for it)",
    ),
    (
        'remediate = { command = ["/bin/true"], timeout = "0s" }',
        True,
        "monitors.toml:8: monitors[0].remediate.timeout: must be longer than 0s",
    ),
    (
        'remediate = { command = ["/bin/true"], attempts = 0 }',
        True,
        "monitors.toml:8: monitors[0].remediate.attempts: must be at least 1; got 0",
    ),
    (
        'remediate = { webhook = "chat" }',
        False,
        "monitors.toml:8: monitors[0].remediate.webhook: notifier 'chat' is of type 'slack'; "
        "remediate needs a webhook one",
    ),
    (
        'remediate = { webhook = "nobody" }',
        False,
        "monitors.toml:8: monitors[0].remediate.webhook: no notifier has id 'nobody'",
    ),
    (
        'escalate = [{ after = "15m", notify = ["pager"] }]',
        False,
        "monitors.toml:8: monitors[0].escalate[0].notify: no notifier has id 'pager'",
    ),
    (
        'escalate = [{ after = "15m", notify = ["hook"] }, { after = "5m", notify = ["chat"] }]',
        False,
        "monitors.toml:8: monitors[0].escalate: steps must be in increasing `after`: 300s "
        "comes after 900s",
    ),
    (
        'escalate = [{ after = "0s", notify = ["hook"] }]',
        False,
        "monitors.toml:8: monitors[0].escalate[0].after: must be longer than 0s",
    ),
]


@pytest.mark.parametrize(("line", "allow", "message"), REFUSED)
def test_config_refusals(tmp_path: pathlib.Path, line: str, allow: bool, message: str) -> None:
    path = tmp_path / "monitors.toml"
    path.write_text(
        f"[settings]\nallow_commands = {str(allow).lower()}\n\n"
        f'[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n{line}\n'
        'notify = ["hook"]\n\n'
        '[[notifiers]]\nid = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\n\n'
        '[[notifiers]]\nid = "chat"\ntype = "slack"\nurl = "http://127.0.0.1:9/s"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.errors == [message.replace("monitors.toml", str(path))]


@pytest.mark.parametrize("key", ["remediate", "escalate"])
def test_defaults_refuse_remediate_and_escalate(tmp_path: pathlib.Path, key: str) -> None:
    value = {
        "remediate": '{ webhook = "hook" }',
        "escalate": '[{ after = "1m", notify = ["hook"] }]',
    }
    path = tmp_path / "monitors.toml"
    path.write_text(
        f"[defaults]\n{key} = {value[key]}\n\n"
        '[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n\n'
        '[[notifiers]]\nid = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    reason = {
        "remediate": "names one service's remediation; set it on the monitor it restarts",
        "escalate": "is one service's escalation; set it on each monitor that needs it",
    }[key]
    assert caught.value.errors == [
        f"{path}:2: defaults.{key}: cannot be set in [defaults]: it {reason}"
    ]


def test_validate_exits_1_when_commands_are_not_allowed(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "monitors.toml"
    body = (
        '[[monitors]]\nid = "api"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
        'remediate = { command = ["/usr/local/bin/restart-api", "--graceful"] }\n'
    )
    path.write_text(body)
    assert main(["validate", "-c", str(path)]) == 1
    assert f"{path}:5: monitors[0].remediate.command: settings.allow_commands is false" in (
        capsys.readouterr().err
    )
    path.write_text("[settings]\nallow_commands = true\n\n" + body)
    assert main(["validate", "-c", str(path)]) == 0


def test_a_valid_remediation_and_escalation_load(tmp_path: pathlib.Path) -> None:
    config = write_config(
        tmp_path,
        """\
        [settings]
        allow_commands = true

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/"
        up_after = 2
        remediate = { command = ["/usr/local/bin/restart-api", "--graceful"], timeout = "60s", after = 2, attempts = 2, within = "1h", verify = 2 }
        escalate = [{ after = "15m", notify = ["pager"] }, { after = "1h", notify = ["hook"] }]
        notify = ["hook"]

        [[notifiers]]
        id = "pager"
        type = "webhook"
        url = "http://127.0.0.1:9/p"

        [[notifiers]]
        id = "hook"
        type = "webhook"
        url = "http://127.0.0.1:9/h"
        """,
    )
    api = config.monitors[0]
    assert api.remediate is not None
    assert api.remediate.command == ["/usr/local/bin/restart-api", "--graceful"]
    assert (api.remediate.timeout, api.remediate.within, api.remediate.verify) == (60, 3600, 2)
    assert [(s.after, s.notify) for s in api.escalate] == [(900, ["pager"]), (3600, ["hook"])]
    assert "restart-api" not in repr(api)  # the argv may carry secrets
    assert [w for w in config.warnings if ".remediate:" in w] == []


# -- helpers ----------------------------------------------------------------------------


def write_config(tmp_path: pathlib.Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "monitors.toml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, env or {})


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def started(config: Config, clock: object = None) -> Remediator:
    """A Remediator on the config's database (created with its schema)."""
    open_engine(config.database_path).dispose()
    redact = Redactor(config.secret_values())
    if clock is None:
        return Remediator(config.database_path, redact)
    return Remediator(config.database_path, redact, clock=clock)  # type: ignore[arg-type]


def sample(remediator: Remediator, monitor: str, result: str) -> float | None:
    for metric in remediator.counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels == {"monitor": monitor, "result": result}:
                return s.value
    return None
