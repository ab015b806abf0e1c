"""The assignment a hub sends an agent: every field of every monitor type survives the trip
(secrets too), the bytes are stable, hub-disk files are skipped, and a bad body is refused
naming the monitor."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from prober.agent.assign import (
    AssignmentError,
    Skipped,
    decode_assignment,
    encode_assignment,
    etag,
)
from prober.config import Config, load_config
from prober.config.monitors import HttpMonitor

FRANKFURT = "3f9c2a7e5b1d4c8f0a6e2b9d7c4f1a3e"
VIRGINIA = "Qm7_xK2pL9vR4tZ8wN3y-A"
CONFIG = f"""\
[settings]
location = "seoul"

[[agents]]
location = "frankfurt"
token = "{FRANKFURT}"

[[agents]]
location = "virginia"
token = "{VIRGINIA}"

[defaults]
interval = "30s"
down_after = 3

[[monitors]]
id = "api"
type = "http"
url = "https://user:${{URL_SECRET}}@api.example.com/health?key=${{URL_SECRET}}"
method = "POST"
headers = {{ Authorization = "Bearer ${{HEADER_SECRET}}", X-Plain = "v" }}
body = '{{"probe": "${{BODY_SECRET}}"}}'
basic_auth = {{ username = "bob", password = "${{PASSWORD}}" }}
expect_status = [200, "2xx", "301-302", "  404  "]
contains = ["ok"]
not_contains = "error"
regex = ['^\\{{.*"status":\\s*"(up|ok)"']
json = ['status == "ok"', "items[0].id exists", "latency_ms < 500.5"]
timeout = "1.25s"
degraded_after = "750ms"
down_after = "2m30s"
up_after = 2
sla_target = 99.95
max_body = "64KiB"
ip_version = 4
notify = []
public = false
public_cause = "API"
locations = ["seoul", "frankfurt"]
quorum = 1
name = "The API"
group = "Backend"
description = "ünïcödé"

[[monitors]]
id = "cert"
type = "tls"
host = "example.com"
warn_days = 20
down_days = 5
interval = "1h"
timeout = "0.001s"

[[monitors]]
id = "smtp"
type = "tcp"
host = "127.0.0.1"
port = 25
send = "EHLO x\\r\\n"
expect = "250"
locations = ["frankfurt", "virginia"]

[[monitors]]
id = "dns"
type = "dns"
query = "example.com"
record = "MX"
expect = ["10 mail.example.com."]
nameservers = ["127.0.0.1:5353", "::1"]
expect_rcode = "NXDOMAIN"

[[monitors]]
id = "seoul-only"
type = "http"
url = "http://127.0.0.1:9/"
locations = ["seoul"]

[[monitors]]
id = "private-ca"
type = "http"
url = "https://intranet.example.com/"
ca_file = "ca.pem"

[[monitors]]
id = "backup"
type = "push"
period = "1d"
"""
ENV = {
    "URL_SECRET": "url-secret-4711",
    "HEADER_SECRET": "header-secret-0815",
    "BODY_SECRET": "body-secret-42",
    "PASSWORD": "pass word ü",
}


@pytest.fixture
def config(tmp_path: pathlib.Path) -> Config:
    (tmp_path / "ca.pem").write_text("not read here\n")
    path = tmp_path / "monitors.toml"
    path.write_text(textwrap.dedent(CONFIG))
    path.chmod(0o600)
    return load_config(path, env=ENV)


def test_every_field_of_every_type_survives_the_trip(config: Config) -> None:
    sent = [m for m in config.monitors if "frankfurt" in m.locations and m.id != "private-ca"]
    assert [m.id for m in sent] == ["api", "cert", "smtp", "dns"]
    got = decode_assignment(encode_assignment(config, "frankfurt"))
    assert got.location == "frankfurt"
    assert [m.id for m in got.monitors] == ["api", "cert", "smtp", "dns"]
    for theirs, ours in zip(sent, got.monitors, strict=True):
        assert type(ours) is type(theirs)
        for name in type(theirs).model_fields:  # one by one, to name a field that differs
            assert getattr(ours, name) == getattr(theirs, name), (theirs.id, name)
        assert ours == theirs
    api = got.monitors[0]
    assert isinstance(api, HttpMonitor)
    assert api.url == "https://user:url-secret-4711@api.example.com/health?key=url-secret-4711"
    assert api.headers["Authorization"].get_secret_value() == "Bearer header-secret-0815"
    assert api.body is not None and "body-secret-42" in api.body.get_secret_value()
    assert api.basic_auth is not None
    assert api.basic_auth.password.get_secret_value() == "pass word ü"
    assert api.expect_status.text == "[200, 2xx, 301-302, 404]"
    assert api.regex[0].search('{"status": "ok"}')
    assert [a.text for a in api.json_] == [
        'status == "ok"',
        "items[0].id exists",
        "latency_ms < 500.5",
    ]
    assert (api.interval, api.timeout, api.degraded_after) == (30.0, 1.25, 0.75)
    assert str(api.down_after) == "150.0s"
    assert got.monitors[1].down_after.count == 3
    assert got.monitors[1].timeout == 0.001


def test_monitors_that_need_a_file_on_the_hub_are_skipped_with_a_reason(config: Config) -> None:
    got = decode_assignment(encode_assignment(config, "virginia"))
    assert [m.id for m in got.monitors] == ["cert", "smtp", "dns"]
    (skipped,) = got.skipped
    assert skipped.monitor == "private-ca"
    assert skipped.why.startswith("ca_file names a file on the hub's disk")
    assert "ca.pem" not in skipped.why  # the hub's paths stay on the hub


def test_only_this_locations_probing_monitors(config: Config) -> None:
    seoul = decode_assignment(encode_assignment(config, "seoul"))
    assert [m.id for m in seoul.monitors] == ["api", "cert", "dns", "seoul-only"]  # no push
    nowhere = decode_assignment(encode_assignment(config, "tokyo"))
    assert (nowhere.monitors, nowhere.skipped) == ((), ())


def test_the_bytes_are_stable_and_change_with_the_assignment(
    config: Config, tmp_path: pathlib.Path
) -> None:
    body = encode_assignment(config, "frankfurt")
    again = load_config(config.path, env=ENV)
    assert encode_assignment(again, "frankfurt") == body
    assert etag(body) == etag(encode_assignment(again, "frankfurt"))
    assert etag(body).startswith('"') and len(etag(body)) == 66
    config.path.write_text(config.path.read_text().replace('interval = "1h"', 'interval = "2h"'))
    changed = load_config(config.path, env=ENV)
    assert etag(encode_assignment(changed, "frankfurt")) != etag(body)
    assert etag(encode_assignment(changed, "seoul")) != etag(encode_assignment(config, "seoul"))
    rotated = load_config(config.path, env={**ENV, "HEADER_SECRET": "another-secret"})
    assert encode_assignment(rotated, "frankfurt") != encode_assignment(changed, "frankfurt")


def _body(*monitors: object, **extra: object) -> bytes:
    doc = {"version": 1, "location": "frankfurt", "monitors": list(monitors), "skipped": []}
    return json.dumps(doc | extra).encode()


GOOD = {"id": "web", "type": "http", "url": "http://127.0.0.1:9/", "interval": "10s"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "assignment is not JSON"),
        (b"[]", "assignment is not a JSON object"),
        (_body(version=2), "assignment version 2; this agent reads 1"),
        (_body(GOOD, {**GOOD, "id": "x", "url": "ftp://x/"}), "monitors[1] (x): url: "),
        (_body({**GOOD, "timeout": 5}), "monitors[0] (web): timeout: "),
        (_body({**GOOD, "colour": "red"}), "monitors[0] (web): colour: "),
        (_body({**GOOD, "type": "push", "period": "1h"}), "monitors[0] (web): type 'push'"),
        (_body({**GOOD, "type": "smoke"}), "monitors[0] (web): type 'smoke'"),
        (_body(["web"]), "monitors[0]: expected an object"),
        (_body(GOOD, GOOD), "assignment lists monitor 'web' twice"),
        (_body(skipped=[{"monitor": "x"}]), "skipped[0]: expected"),
        (_body(monitors="web"), "assignment needs a location (string) and monitors (array)"),
    ],
)
def test_a_bad_assignment_is_refused_naming_the_monitor(body: bytes, message: str) -> None:
    with pytest.raises(AssignmentError) as caught:
        decode_assignment(body)
    assert str(caught.value).startswith(message), str(caught.value)


def test_errors_never_echo_the_value(config: Config) -> None:
    secret = {**GOOD, "headers": {"X-Key": 12345}, "body": "hunter2-secret"}
    with pytest.raises(AssignmentError) as caught:
        decode_assignment(_body(secret))
    assert "12345" not in str(caught.value)
    assert "headers.X-Key" in str(caught.value)


def test_skipped_entries_read_back(config: Config) -> None:
    got = decode_assignment(_body(skipped=[{"monitor": "x", "why": "because"}]))
    assert got.skipped == (Skipped("x", "because"),)
