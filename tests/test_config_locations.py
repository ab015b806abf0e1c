"""Several locations in the config: a hub's [[agents]], monitors' `locations` and `quorum`
(checked, defaulted, resolved once at load), an agent's own config, and the User-Agent
that names the location a check comes from."""

from __future__ import annotations

import logging
import pathlib
import textwrap

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober import __version__
from prober.checks.runner import run_check
from prober.checks.session import open_shared
from prober.config import ConfigError, load_config
from prober.config.agent import load_agent_config
from prober.config.locations import majority
from prober.config.monitors import HttpMonitor, PushMonitor, field_names
from prober.config.types import token_bits
from prober.reload import Reloader
from prober.results import Outcome
from tests.support.monitors import monitor

# Fixed tokens of 128+ bits: 32 hex digits, 22 characters of base64url.
FRANKFURT = "3f9c2a7e5b1d4c8f0a6e2b9d7c4f1a3e"
VIRGINIA = "Qm7_xK2pL9vR4tZ8wN3y-A"
HUB = f"""\
[settings]
location = "seoul"
canaries = ["tcp://127.0.0.1:53"]

[[agents]]
location = "frankfurt"
token = "{FRANKFURT}"

[[agents]]
location = "virginia"
token = "{VIRGINIA}"
"""
HTTP = 'type = "http"\nurl = "http://127.0.0.1:9/"\n'


def _write(tmp_path: pathlib.Path, text: str, name: str = "monitors.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return path


def _errors(path: pathlib.Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    return caught.value.errors


def _agent_errors(path: pathlib.Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path, env=env or {})
    return caught.value.errors


# --- the hub: declared locations, defaults, resolution ---------------------------------------


def test_locations_and_quorum_resolved_from_defaults_and_per_monitor(
    tmp_path: pathlib.Path,
) -> None:
    path = _write(
        tmp_path,
        HUB
        + f"""
[defaults]
locations = ["seoul", "frankfurt"]
quorum = 1

[[monitors]]
id = "inherits"
{HTTP}
[[monitors]]
id = "own"
{HTTP}locations = ["virginia", "frankfurt", "seoul"]
quorum = 3

[[monitors]]
id = "own-locations-default-quorum"
{HTTP}locations = ["virginia"]

[[monitors]]
id = "job"
type = "push"
period = "1h"
""",
    )
    config = load_config(path, env={})
    got = {m.id: (m.locations, m.quorum) for m in config.monitors}
    assert got == {
        "inherits": (("seoul", "frankfurt"), 1),
        "own": (("virginia", "frankfurt", "seoul"), 3),
        "own-locations-default-quorum": (("virginia",), 1),  # quorum 1 from [defaults]
        "job": (("seoul",), 1),  # pushes arrive at the hub; [defaults] does not apply
    }
    assert config.locations == ("seoul", "frankfurt", "virginia")
    assert [(a.location, a.token.get_secret_value()) for a in config.agents] == [
        ("frankfurt", FRANKFURT),
        ("virginia", VIRGINIA),
    ]


@pytest.mark.parametrize(("count", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_default_is_every_declared_location_and_a_majority(
    tmp_path: pathlib.Path, count: int, quorum: int
) -> None:
    agents = "".join(
        f'[[agents]]\nlocation = "a{n}"\ntoken = "{FRANKFURT[:-1]}{n}"\n' for n in range(count - 1)
    )
    path = _write(
        tmp_path, f'[settings]\nlocation = "hub"\n{agents}\n[[monitors]]\nid = "m"\n{HTTP}'
    )
    (resolved,) = load_config(path, env={}).monitors
    assert resolved.locations == ("hub", *(f"a{n}" for n in range(count - 1)))
    assert resolved.quorum == quorum == majority(count)


def test_a_single_prober_keeps_its_one_location(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, f'[[monitors]]\nid = "m"\n{HTTP}')
    (resolved,) = load_config(path, env={}).monitors
    assert (resolved.locations, resolved.quorum) == (("default",), 1)


def test_undeclared_locations_are_named_with_file_and_line(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        HUB
        + f"""
[defaults]
locations = ["seoul", "frnkfurt"]

[[monitors]]
id = "a"
{HTTP}
[[monitors]]
id = "b"
{HTTP}
[[monitors]]
id = "c"
{HTTP}locations = ["seoul", "paris"]
""",
    )
    declared = "declared: seoul, frankfurt, virginia"
    # the [defaults] mistake is reported once, where it is written, not for each monitor
    assert _errors(path) == [
        f"{path}:14: defaults.locations: no hub or [[agents]] entry declares location "
        f"'frnkfurt' (did you mean 'frankfurt'?); {declared}",
        f"{path}:30: monitors[2].locations: no hub or [[agents]] entry declares location "
        f"'paris'; {declared}",
    ]


def test_quorum_bounds(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        HUB
        + f"""
[defaults]
quorum = 2

[[monitors]]
id = "zero"
{HTTP}quorum = 0

[[monitors]]
id = "over"
{HTTP}locations = ["seoul", "virginia"]
quorum = 3

[[monitors]]
id = "inherited-over"
{HTTP}locations = ["virginia"]

[[monitors]]
id = "empty"
{HTTP}locations = []

[[monitors]]
id = "twice"
{HTTP}locations = ["seoul", "seoul"]
""",
    )
    assert _errors(path) == [  # an inherited quorum is reported at the [defaults] line
        f"{path}:14: monitors[2].quorum: must be at most 1, the number of this monitor's "
        "locations; got 2 (never reachable); quorum comes from [defaults]",
        f"{path}:20: monitors[0].quorum: must be at least 1; got 0",
        f"{path}:27: monitors[1].quorum: must be at most 2, the number of this monitor's "
        "locations; got 3 (never reachable)",
        f"{path}:39: monitors[3].locations: needs at least one location (leave the key out "
        "for all of them)",
        f"{path}:45: monitors[4].locations: 'seoul' listed more than once",
    ]


def test_a_defaults_quorum_above_every_location_is_reported_once(
    tmp_path: pathlib.Path,
) -> None:
    path = _write(
        tmp_path,
        HUB + f'\n[defaults]\nquorum = 4\n\n[[monitors]]\nid = "a"\n{HTTP}\n'
        f'[[monitors]]\nid = "b"\n{HTTP}',
    )
    assert _errors(path) == [
        f"{path}:14: defaults.quorum: must be at most 3, the number of declared locations; "
        "got 4 (never reachable)"
    ]


def test_wrong_kinds_of_value(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        '[defaults]\nlocations = "default"\nquorum = true\n\n[[monitors]]\nid = "a"\n'
        f'{HTTP}locations = ["default", 3]\n',
    )
    assert _errors(path) == [
        f'{path}:2: defaults.locations: expected an array of location names, as in ["seoul", '
        '"frankfurt"]',
        f"{path}:3: defaults.quorum: expected an integer, got a boolean",
        f"{path}:9: monitors[0].locations[1]: expected a string, got an integer",
    ]


def test_push_monitors_refuse_locations_and_quorum(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        HUB + '\n[[monitors]]\nid = "job"\ntype = "push"\nperiod = "1h"\n'
        'locations = ["seoul"]\nquorum = 1\n',
    )
    why = "a push monitor is not probed from any location: its pushes arrive at the hub, which"
    assert _errors(path) == [
        f"{path}:17: monitors[0].locations: {why} judges them; locations applies to http, "
        "tls, tcp and dns monitors",
        f"{path}:18: monitors[0].quorum: {why} judges them; quorum applies to http, tls, "
        "tcp and dns monitors",
    ]


# --- [[agents]] ------------------------------------------------------------------------------


def test_agent_entries_are_checked_and_no_token_appears_in_any_error(
    tmp_path: pathlib.Path,
) -> None:
    weak = "short-token-12"
    path = _write(
        tmp_path,
        f"""\
[settings]
location = "seoul"

[[agents]]
location = "seoul"
token = "{FRANKFURT}"

[[agents]]
location = "virginia"
token = "{FRANKFURT}"

[[agents]]
location = "virginia"
token = "{VIRGINIA}"

[[agents]]
location = "tokyo"
token = "{weak}"

[[agents]]
location = "osaka"
token = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

[[agents]]
location = "Sapporo"
""",
    )
    errors = _errors(path)
    how = "make one with `openssl rand -hex 16` (32 hex digits; or 22+ characters of base64url)"
    assert errors == [
        f"{path}:5: agents[0].location: 'seoul' is this hub's own settings.location; an agent "
        "probes from elsewhere and needs a name of its own",
        f"{path}:10: agents[1].token: the same token as agents[0]: each agent needs its own "
        "(a token tells the hub which location sent a result)",
        f"{path}:13: agents[2].location: 'virginia' is already used by agents[1]",
        f"{path}:18: agents[3].token: too weak for a token: 14 characters give at most 73 of "
        f"the 128 random bits it needs; {how}",
        f"{path}:22: agents[4].token: too weak for a token: fewer than 8 distinct characters; "
        f"{how}",
        f"{path}:24: agents[5].token: is required",
        f"{path}:25: agents[5].location: 'Sapporo' is not a slug: use lowercase letters, "
        "digits, '_' and '-'",
    ]
    for secret in (FRANKFURT, weak, "aaaaaaaa"):
        assert not any(secret in line for line in errors)


def test_agent_token_from_the_environment(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        '[settings]\nlocation = "seoul"\n\n[[agents]]\nlocation = "frankfurt"\n'
        'token = "${FRANKFURT_TOKEN}"\n',
    )
    config = load_config(path, env={"FRANKFURT_TOKEN": VIRGINIA})
    assert config.agents[0].token.get_secret_value() == VIRGINIA
    assert VIRGINIA in config.secret_values()  # redacted from every log line
    assert VIRGINIA not in repr(config.agents)
    # unset: that alone is the error (not "too weak" about the "${...}" text)
    assert _errors(path) == [
        f"{path}:6: agents[0].token: environment variable FRANKFURT_TOKEN is not set "
        "(use ${FRANKFURT_TOKEN:-default})"
    ]
    weak = "weak-but-from-env"
    errors = _errors(path, env={"FRANKFURT_TOKEN": weak})
    assert len(errors) == 1 and "agents[0].token: too weak for a token" in errors[0]
    assert weak not in errors[0]


def test_a_literal_agent_token_in_a_readable_file_is_warned_about(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        HUB.replace(f'"{VIRGINIA}"', '"${VIRGINIA_TOKEN}"') + f'\n[[monitors]]\nid = "m"\n{HTTP}',
    )
    assert load_config(path, env={"VIRGINIA_TOKEN": VIRGINIA}).warnings == ()  # mode 0600
    path.chmod(0o640)
    assert load_config(path, env={"VIRGINIA_TOKEN": VIRGINIA}).warnings == (
        f"{path}: its group can read this file (mode 0640) and it holds secrets written in "
        f"it: agents[0].token (line 7): chmod 600 {path}, or write each as ${{VAR}} and set "
        "VAR in the prober's environment only",
    )


@pytest.mark.parametrize(
    ("token", "enough"),
    [
        ("Qm7_xK2pL9vR4tZ8wN3y-A", True),  # 22 base64url
        ("Qm7_xK2pL9vR4tZ8wN3y-", False),  # 21
        ("3f9c2a7e5b1d4c8f0a6e2b9d7c4f1a3e", True),  # 32 hex digits
        ("3f9c2a7e5b1d4c8f0a6e2b9d7c4f1a3", False),  # 31
        ("3F9C2A7E5B1D4C8F0A6E2B9D7C4F1A3", False),  # 31, upper case
        ("Tr0ub4dor&3xyzABCDEF", True),  # 20 characters, four classes
        ("correcthorse", False),
        ("passwordpasswordpasswordpassword", False),  # 7 distinct characters
        ("", False),
    ],
)
def test_token_strength(token: str, enough: bool) -> None:
    assert (token_bits(token) >= 128) is enough


# --- an agent's own config -------------------------------------------------------------------


AGENT = """\
[settings]
location = "frankfurt"
database = "sqlite:///data/agent.db"

[hub]
url = "https://status.example.com/"
token = "${HUB_TOKEN}"
"""


def test_agent_config_loads(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, AGENT, "agent.toml")
    agent = load_agent_config(path, env={"HUB_TOKEN": FRANKFURT})
    assert agent.settings.location == "frankfurt"
    assert agent.hub.url == "https://status.example.com"
    assert agent.hub.token.get_secret_value() == FRANKFURT
    assert agent.database_path == tmp_path / "data" / "agent.db"
    assert agent.secret_values() == {FRANKFURT}
    assert agent.warnings == ()
    moved = load_agent_config(
        path, env={"HUB_TOKEN": FRANKFURT, "PROBER_DATABASE": "sqlite:////var/lib/agent.db"}
    )
    assert moved.database_path == pathlib.Path("/var/lib/agent.db")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.8.9.10/", "http://[::1]:8080", "http://localhost:8080"],
)
def test_agent_may_reach_a_loopback_hub_over_http(tmp_path: pathlib.Path, url: str) -> None:
    path = _write(tmp_path, AGENT.replace("https://status.example.com/", url), "agent.toml")
    assert load_agent_config(path, env={"HUB_TOKEN": FRANKFURT}).hub.url == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["http://status.example.com", "http://10.0.0.5:8080", "http://[::ffff:10.0.0.1]/"]
)
def test_agent_refuses_plain_http_to_any_other_hub(tmp_path: pathlib.Path, url: str) -> None:
    path = _write(tmp_path, AGENT.replace("https://status.example.com/", url), "agent.toml")
    assert _agent_errors(path, env={"HUB_TOKEN": FRANKFURT}) == [
        f"{path}:6: hub.url: {url!r} must be https://: the token and the monitors' secrets "
        "(headers, URLs) travel over it; http:// is allowed only to a hub on loopback "
        "(127.0.0.1, ::1, localhost)"
    ]


def test_agent_config_refuses_monitors_and_hub_settings(tmp_path: pathlib.Path) -> None:
    weak = "hub-token-too-short"
    path = _write(
        tmp_path,
        f"""\
[settings]
location = "frankfurt"
title = "Agent"
databse = "sqlite:///x.db"

[hub]
url = "https://user:pw@status.example.com"
token = "{weak}"

[defaults]
interval = "30s"

[[monitors]]
id = "api"
{HTTP}""",
        "agent.toml",
    )
    errors = _agent_errors(path)
    from_hub = (
        "an agent's config has no {}: monitors (and their notifiers, maintenance and "
        "defaults) come from the hub at hub.url; [[agents]] belongs in the hub's"
    )
    assert errors == [
        f"{path}:3: settings.title: is a hub setting; an agent takes only location, database, "
        "canaries, heartbeat_url, max_concurrency, overload_threshold",
        f"{path}:4: settings.databse: unknown key (did you mean 'database'?)",
        f"{path}:7: hub.url: 'https://user:***@status.example.com' holds credentials; the "
        "agent sends hub.token instead",
        f"{path}:8: hub.token: too weak for a token: 19 characters give at most 91 of the 128 "
        "random bits it needs; make one with `openssl rand -hex 16` (32 hex digits; or 22+ "
        "characters of base64url)",
        f"{path}:10: defaults: " + from_hub.format("defaults"),
        f"{path}:13: monitors[0]: " + from_hub.format("monitors"),
    ]
    assert not any(weak in line or ":pw@" in line for line in errors)


def test_agent_config_needs_a_hub_and_a_location(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, '[settings]\ndatabase = "sqlite:///q.db"\n', "agent.toml")
    assert _agent_errors(path) == [
        f"{path}:1: settings.location: is required",
        f'{path}:1: hub: [hub] is required: url = "https://…" and token = "${{HUB_TOKEN}}"',
    ]


def test_agent_token_unset_or_literal(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, AGENT, "agent.toml")
    assert _agent_errors(path) == [
        f"{path}:7: hub.token: environment variable HUB_TOKEN is not set (use "
        "${HUB_TOKEN:-default})"
    ]
    literal = _write(tmp_path, AGENT.replace("${HUB_TOKEN}", FRANKFURT), "agent.toml")
    literal.chmod(0o644)
    assert load_agent_config(literal, env={}).warnings == (
        f"{literal}: other users can read this file (mode 0644) and it holds secrets written "
        f"in it: hub.token (line 7): chmod 600 {literal}, or write each as ${{VAR}} and set "
        "VAR in the prober's environment only",
    )


# --- reload ----------------------------------------------------------------------------------


async def test_reload_refuses_a_change_of_agents_and_applies_a_monitors_quorum(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitors = f'\n[[monitors]]\nid = "m"\n{HTTP}'
    path = _write(tmp_path, HUB + monitors)
    applied: list[object] = []
    reloader = Reloader(load_config(path), applied.append)

    path.write_text(HUB.replace(VIRGINIA, VIRGINIA[::-1]) + monitors)  # a rotated token
    with caplog.at_level(logging.ERROR, logger="prober.reload"):
        assert await reloader.reload() is False
    assert "reload refused, the running config stays: [[agents]] changed; restart" in caplog.text
    assert applied == []
    assert reloader.config.agents[1].token.get_secret_value() == VIRGINIA

    path.write_text(HUB + monitors + "quorum = 1\n")
    assert await reloader.reload() is True
    (resolved,) = reloader.config.monitors
    assert (resolved.quorum, len(applied)) == (1, 1)


# --- User-Agent ------------------------------------------------------------------------------


async def test_http_checks_name_their_location_in_the_user_agent() -> None:
    seen: list[list[str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.getall("User-Agent"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", record)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        open_shared(location="frankfurt") as shared,
    ):
        url = str(server.make_url("/"))
        for headers in ({}, {"User-Agent": "mine/1"}, {"user-agent": "mine/2"}):
            spec: HttpMonitor = monitor("http", url=url, headers=headers)
            assert (await run_check(spec, shared)).outcome is Outcome.UP
    assert seen == [[f"prober/{__version__} (location=frankfurt)"], ["mine/1"], ["mine/2"]]


def test_push_monitors_inherit_no_location_keys_from_defaults() -> None:
    assert {"locations", "quorum"} <= field_names(HttpMonitor)
    assert not {"locations", "quorum"} & field_names(PushMonitor)
