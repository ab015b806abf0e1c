"""A valid, complete monitors.toml loads into the values the rest of the prober relies on."""

from __future__ import annotations

import datetime as dt
import pathlib
import textwrap

import pytest
from pydantic import SecretStr

from prober.config import Config, ConfigError, load_config
from prober.config.conditions import JsonAssertion
from prober.config.monitors import DnsMonitor, HttpMonitor, PushMonitor, TcpMonitor, TlsMonitor
from prober.config.settings import (
    DiscordNotifier,
    EmailNotifier,
    NtfyNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    TelegramNotifier,
    WebhookNotifier,
)
from prober.config.types import DownAfter

ENV = {
    "API_TOKEN": "tok-api-0123456789",
    "BASIC_PASSWORD": "basic-pw-4321",
    "SLACK_URL": "http://127.0.0.1:9/slack/T000-secret-path",
    "WEBHOOK_SECRET": "whsec-hmac-key-77",
    "BOT_TOKEN": "123456:telegram-bot-token",
    "SMTP_PASSWORD": "smtp-pass-9876",
    "NTFY_TOKEN": "tk_ntfy_abcdef",
    "PD_KEY": "pd-routing-key-0000",
    "PUSH_TOKEN": "push-token-0123456789abcdef",
    "HEARTBEAT": "http://127.0.0.1:9/heartbeat/hb-secret-42",
    "EMPTY": "",
}
SECRETS = [
    "tok-api-0123456789",
    "basic-pw-4321",
    "/slack/T000-secret-path",
    "whsec-hmac-key-77",
    "telegram-bot-token",
    "smtp-pass-9876",
    "tk_ntfy_abcdef",
    "pd-routing-key-0000",
    "push-token-0123456789abcdef",
    "hb-secret-42",
    "discord-hook-secret",
    "hook-header-secret",
    "request-body-secret",
]

FULL = """\
[settings]
title = "Acme Status"
public_url = "http://127.0.0.1:8080/"
listen = "127.0.0.1:8080"
database = "sqlite:///data/prober.db"
timezone = "Asia/Seoul"
language = "ko"
sla_target = 99
retention_days = 30
history_days = 60
location = "seoul-1"
canaries = ["tcp://127.0.0.1:53", "http://127.0.0.1:8080/healthz"]
alert_group_wait = "45s"
public_reports = true
heartbeat_url = "${HEARTBEAT}"

[defaults]
interval = "30s"
timeout = "5s"
down_after = 3
up_after = 2
notify = ["ops"]
verify_tls = false
max_body = "64KiB"

[[monitors]]
id = "api"
name = "API"
group = "Backend"
type = "http"
url = "http://127.0.0.1:8080/api/health"
method = "POST"
headers = { Authorization = "Bearer ${API_TOKEN}", Accept = "application/json" }
body = '{"probe": "request-body-secret", "literal": "$${NOT_A_VAR}"}'
basic_auth = { username = "prober", password = "${BASIC_PASSWORD}" }
expect_status = [200, "3xx", "404-410"]
contains = "healthy"
not_contains = ["unhealthy", "degraded"]
regex = ['version: \\d+']
json = [
  'status == "healthy"',
  'services.database.response_time_ms < 500',
  'items[0].id exists',
]
degraded_after = "500ms"
follow_redirects = false
max_redirects = 2
ca_file = "ca.pem"
ip_version = 4
down_after = "90s"
public = false

[[monitors]]
id = "cert"
type = "tls"
host = "127.0.0.1"
port = 8443
server_name = "localhost"
warn_days = 21
down_days = 7
depends_on = ["port"]

[[monitors]]
id = "port"
type = "tcp"
host = "127.0.0.1"
port = 8080
send = "PING\\r\\n"
expect = "PONG"
interval = "1m"
timeout = "${TCP_TIMEOUT:-2s}"

[[monitors]]
id = "dns"
type = "dns"
query = "example.test"
record = "MX"
expect = ["10 mail.example.test."]
nameservers = ["127.0.0.1:5353", "::1", "[::1]:5353"]
expect_rcode = "NXDOMAIN"
description = "${EMPTY:-fallback description}"

[[monitors]]
id = "backup"
type = "push"
cron = "0 3 * * *"
timezone = "Asia/Seoul"
grace = "30m"
token = "${PUSH_TOKEN}"

[[monitors]]
id = "heartbeat"
type = "push"
period = "5m"

[[notifiers]]
id = "ops"
type = "slack"
url = "${SLACK_URL}"
repeat = "1h"

[[notifiers]]
id = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "${WEBHOOK_SECRET}"
headers = { X-Api-Key = "hook-header-secret" }
events = ["opened", "resolved"]

[[notifiers]]
id = "discord"
type = "discord"
url = "http://127.0.0.1:9/discord/discord-hook-secret"

[[notifiers]]
id = "tg"
type = "telegram"
bot_token = "${BOT_TOKEN}"
chat_id = "-100123"
api_url = "http://127.0.0.1:9"

[[notifiers]]
id = "mail"
type = "email"
host = "127.0.0.1"
port = 2525
username = "prober"
password = "${SMTP_PASSWORD}"
from = "prober@example.test"
to = ["ops@example.test", "oncall@example.test"]
security = "none"

[[notifiers]]
id = "ntfy"
type = "ntfy"
url = "http://127.0.0.1:9/alerts"
token = "${NTFY_TOKEN}"
priority = 4

[[notifiers]]
id = "pd"
type = "pagerduty"
routing_key = "${PD_KEY}"
api_url = "http://127.0.0.1:9/v2/enqueue"

[[maintenance]]
title = "DB upgrade"
monitors = ["api", "port"]
start = "2026-12-01T02:00:00+09:00"
end = 2026-12-01T03:00:00Z

[[maintenance]]
title = "Weekly reboot"
monitors = ["*"]
cron = "0 3 * * sun"
duration = "30m"
"""


def _write(folder: pathlib.Path, text: str) -> pathlib.Path:
    path = folder / "monitors.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: pathlib.Path) -> Config:
    (tmp_path / "ca.pem").write_text("not checked at load\n")
    path = _write(tmp_path, FULL)
    path.chmod(0o600)  # it types a few secrets in: readable by others, that is a warning
    return load_config(path, env=ENV)


def test_settings(config: Config) -> None:
    s = config.settings
    assert s.title == "Acme Status"
    assert s.public_url == "http://127.0.0.1:8080"  # trailing slash removed
    assert s.listen_host_port == ("127.0.0.1", 8080)
    assert s.timezone == "Asia/Seoul"
    assert s.language == "ko"
    assert s.sla_target == 99.0
    assert isinstance(s.sla_target, float)
    assert (s.retention_days, s.history_days, s.location) == (30, 60, "seoul-1")
    assert s.alert_group_wait == 45.0
    assert s.public_reports is True
    assert s.heartbeat_url.get_secret_value() == ENV["HEARTBEAT"]
    assert config.warnings == ()


def test_every_monitor_type_in_order(config: Config) -> None:
    kinds = [type(m) for m in config.monitors]
    assert kinds == [HttpMonitor, TlsMonitor, TcpMonitor, DnsMonitor, PushMonitor, PushMonitor]
    assert [m.id for m in config.monitors] == ["api", "cert", "port", "dns", "backup", "heartbeat"]
    assert config.monitor("dns") is config.monitors[3]
    assert config.monitor("nope") is None


def test_http_monitor(config: Config, tmp_path: pathlib.Path) -> None:
    api = config.monitor("api")
    assert isinstance(api, HttpMonitor)
    assert (api.name, api.group, api.display_name, api.public) == ("API", "Backend", "API", False)
    assert api.method == "POST"
    assert api.headers["Authorization"].get_secret_value() == "Bearer tok-api-0123456789"
    assert api.headers["Accept"].get_secret_value() == "application/json"
    assert api.body is not None
    assert api.body.get_secret_value() == (
        '{"probe": "request-body-secret", "literal": "${NOT_A_VAR}"}'
    )
    assert api.basic_auth is not None
    assert api.basic_auth.username == "prober"
    assert api.basic_auth.password.get_secret_value() == "basic-pw-4321"
    assert api.contains == ["healthy"]  # a lone string becomes a list
    assert api.not_contains == ["unhealthy", "degraded"]
    assert [r.pattern for r in api.regex] == [r"version: \d+"]
    assert api.regex[0].search("app version: 42")
    assert api.degraded_after == 0.5
    assert (api.follow_redirects, api.max_redirects) == (False, 2)
    assert api.ca_file == str(tmp_path / "ca.pem")  # relative to the config's folder
    assert api.ip_version == 4
    assert api.needs_body


def test_durations_are_seconds_and_down_after_is_count_or_seconds(config: Config) -> None:
    api, _cert, port, _dns, backup, heartbeat = config.monitors
    assert isinstance(port, TcpMonitor)
    assert isinstance(api, HttpMonitor)
    assert (api.interval, api.timeout) == (30.0, 5.0)  # from [defaults]
    assert (port.interval, port.timeout) == (60.0, 2.0)  # own, and ${VAR:-default}
    assert api.down_after == DownAfter(seconds=90.0)  # own duration beats the default count
    assert port.down_after == DownAfter(count=3)  # the default count
    assert port.down_after.count == 3
    assert port.down_after.seconds is None
    assert backup.down_after == DownAfter(count=3)
    assert isinstance(heartbeat, PushMonitor)
    assert heartbeat.period == 300.0
    assert heartbeat.expected_every == 300.0


def test_status_set_membership(config: Config) -> None:
    api = config.monitor("api")
    assert isinstance(api, HttpMonitor)
    codes = api.expect_status
    for status in (200, 300, 301, 399, 404, 407, 410):
        assert status in codes
    for status in (201, 299, 400, 403, 411, 500):
        assert status not in codes
    assert codes.text == "[200, 3xx, 404-410]"
    assert api.status_set is codes


def test_json_assertions_are_compiled(config: Config) -> None:
    api = config.monitor("api")
    assert isinstance(api, HttpMonitor)
    checks = api.json_
    assert all(isinstance(c, JsonAssertion) for c in checks)
    assert [(c.path, c.op, c.expected) for c in checks] == [
        (("status",), "==", "healthy"),
        (("services", "database", "response_time_ms"), "<", 500),
        (("items", 0, "id"), "exists", None),
    ]
    good = {
        "status": "healthy",
        "services": {"database": {"response_time_ms": 12}},
        "items": [{"id": 1}],
    }
    assert [c.judge(good).ok for c in checks] == [True, True, True]
    bad = {"status": "sick", "services": {"database": {"response_time_ms": 900}}, "items": []}
    assert [c.judge(bad).ok for c in checks] == [False, False, False]


def test_defaults_apply_only_to_types_that_have_the_key(config: Config) -> None:
    api, cert, port, _dns, backup, heartbeat = config.monitors
    assert isinstance(api, HttpMonitor)
    assert isinstance(port, TcpMonitor)
    assert api.verify_tls is False
    assert port.verify_tls is False
    assert not hasattr(cert, "verify_tls")
    assert api.max_body == 64 * 1024
    assert not hasattr(port, "max_body")
    for push in (backup, heartbeat):
        assert not hasattr(push, "interval")
        assert not hasattr(push, "timeout")
        assert push.notify == ["ops"]
        assert push.up_after == 2
    for monitor in config.monitors:
        assert monitor.notify == ["ops"]


def test_tls_tcp_dns_push_fields(config: Config) -> None:
    _api, cert, port, dns, backup, _heartbeat = config.monitors
    assert isinstance(cert, TlsMonitor)
    assert (cert.host, cert.port, cert.server_name) == ("127.0.0.1", 8443, "localhost")
    assert (cert.warn_days, cert.down_days, cert.depends_on) == (21, 7, ["port"])
    assert isinstance(port, TcpMonitor)
    assert (port.host, port.port, port.send, port.expect) == ("127.0.0.1", 8080, "PING\r\n", "PONG")
    assert port.tls is False
    assert isinstance(dns, DnsMonitor)
    assert (dns.query, dns.record, dns.expect_rcode) == ("example.test", "MX", "NXDOMAIN")
    assert dns.expect == ["10 mail.example.test."]
    assert dns.nameservers == ["127.0.0.1:5353", "::1", "[::1]:5353"]
    assert dns.description == "fallback description"  # ${EMPTY:-...} with EMPTY set to ""
    assert isinstance(backup, PushMonitor)
    assert (backup.cron, backup.timezone, backup.grace, backup.period) == (
        "0 3 * * *",
        "Asia/Seoul",
        1800.0,
        None,
    )
    assert backup.token is not None
    assert backup.token.get_secret_value() == ENV["PUSH_TOKEN"]


def test_every_notifier_type(config: Config) -> None:
    kinds = [type(n) for n in config.notifiers]
    assert kinds == [
        SlackNotifier,
        WebhookNotifier,
        DiscordNotifier,
        TelegramNotifier,
        EmailNotifier,
        NtfyNotifier,
        PagerDutyNotifier,
    ]
    slack, hook, _discord, tg, mail, ntfy, pd = config.notifiers
    assert isinstance(slack, SlackNotifier)
    assert slack.url.get_secret_value() == ENV["SLACK_URL"]
    assert slack.repeat == 3600.0
    assert slack.events == ["opened", "resolved", "reminder", "cert_expiring", "prober_network"]
    assert isinstance(hook, WebhookNotifier)
    assert hook.repeat is None
    assert hook.events == ["opened", "resolved"]
    assert hook.headers["X-Api-Key"].get_secret_value() == "hook-header-secret"
    assert isinstance(tg, TelegramNotifier)
    assert (tg.chat_id, tg.api_url) == ("-100123", "http://127.0.0.1:9")
    assert isinstance(mail, EmailNotifier)
    assert (mail.host, mail.port, mail.username, mail.security) == (
        "127.0.0.1",
        2525,
        "prober",
        "none",
    )
    assert mail.sender == "prober@example.test"
    assert mail.to == ["ops@example.test", "oncall@example.test"]
    assert isinstance(ntfy, NtfyNotifier)
    assert ntfy.priority == 4
    assert isinstance(pd, PagerDutyNotifier)
    assert pd.routing_key.get_secret_value() == ENV["PD_KEY"]


def test_one_off_and_recurring_maintenance(config: Config) -> None:
    one_off, recurring = config.maintenance
    assert one_off.title == "DB upgrade"
    assert one_off.monitors == ["api", "port"]
    assert one_off.start == dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)
    assert one_off.start is not None
    assert one_off.start.utcoffset() == dt.timedelta(hours=9)
    assert one_off.end == dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
    assert (one_off.cron, one_off.duration) == (None, None)
    assert recurring.monitors == ["*"]
    assert (recurring.cron, recurring.duration) == ("0 3 * * sun", 1800.0)
    assert (recurring.start, recurring.end) == (None, None)


def test_secrets_never_show_in_repr_or_str(config: Config) -> None:
    texts = [repr(config), str(config)]
    texts += [repr(m) for m in config.monitors] + [str(m) for m in config.monitors]
    texts += [repr(n) for n in config.notifiers] + [str(n) for n in config.notifiers]
    texts += [repr(config.settings), str(config.settings)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_secret_values_lists_every_secret(config: Config) -> None:
    values = config.secret_values()
    for secret in SECRETS:
        assert any(secret in value for value in values), secret
    assert "Bearer tok-api-0123456789" in values
    assert ENV["SLACK_URL"] in values
    assert "application/json" in values  # header values are secrets: any could be a key
    assert "prober" not in values  # basic_auth.username is not a secret


def test_secret_values_skips_very_short_values(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        """\
        [settings]
        canaries = ["tcp://127.0.0.1:53"]

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:8080/"
        headers = { X-A = "abc", X-B = "abcd" }
        """,
    )
    assert load_config(path, env={}).secret_values() == {"abcd"}


MINIMAL = """\
[settings]
database = "sqlite:///data/prober.db"

[[monitors]]
id = "api"
type = "http"
url = "http://127.0.0.1:8080/"
"""


def test_database_path_is_relative_to_the_config_folder(tmp_path: pathlib.Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), env={})
    assert config.database_url == "sqlite:///data/prober.db"
    assert config.database_path == tmp_path / "data" / "prober.db"


def test_database_path_absolute(tmp_path: pathlib.Path) -> None:
    text = MINIMAL.replace("sqlite:///data/prober.db", f"sqlite:///{tmp_path}/abs.db")
    config = load_config(_write(tmp_path, text), env={})
    assert config.database_path == tmp_path / "abs.db"


def test_database_path_relative_config_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    _write(tmp_path / "conf", MINIMAL)
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/monitors.toml", env={})
    assert config.database_path.resolve() == tmp_path / "conf" / "data" / "prober.db"


def test_prober_database_overrides_the_file(tmp_path: pathlib.Path) -> None:
    env = {"PROBER_DATABASE": f"sqlite:///{tmp_path}/other/p.db"}
    config = load_config(_write(tmp_path, MINIMAL), env=env)
    assert config.database_url == env["PROBER_DATABASE"]
    assert config.settings.database == "sqlite:///data/prober.db"
    assert config.database_path == tmp_path / "other" / "p.db"


def test_prober_database_empty_is_ignored(tmp_path: pathlib.Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL), env={"PROBER_DATABASE": ""})
    assert config.database_url == "sqlite:///data/prober.db"


def test_bad_prober_database_is_an_error(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PROBER_DATABASE": "mysql://db/prober"})
    assert caught.value.errors == [
        f"{path}:2: settings.database: PROBER_DATABASE: 'mysql://db/prober': use "
        '"sqlite:///relative/path.db", "sqlite:////abs/path.db" or '
        '"postgresql://USER:PASSWORD@HOST/NAME"'
    ]


def test_warning_when_canaries_are_empty(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, MINIMAL)
    config = load_config(path, env={})
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"{path}: settings.canaries is empty")
    assert "unknown" in config.warnings[0]


def test_no_warning_with_canaries(tmp_path: pathlib.Path) -> None:
    text = MINIMAL.replace("[settings]\n", '[settings]\ncanaries = ["tcp://127.0.0.1:53"]\n')
    assert load_config(_write(tmp_path, text), env={}).warnings == ()


def test_empty_file_is_a_valid_config_with_defaults(tmp_path: pathlib.Path) -> None:
    config = load_config(_write(tmp_path, ""), env={})
    assert config.monitors == ()
    assert config.settings.timezone == "UTC"
    assert config.settings.language == "en"
    assert config.database_url == "sqlite:///data/prober.db"


def test_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", env={})
    assert caught.value.errors == [
        f"{tmp_path / 'nope.toml'}: no such file (set -c FILE or $PROBER_CONFIG)"
    ]


def test_not_utf8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "monitors.toml"
    path.write_bytes(b'[settings]\ntitle = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.errors[0].startswith(f"{path}:1: (file): not UTF-8 text")


def test_env_defaults_to_os_environ(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBER_TEST_TOKEN", "from-os-environ")
    monkeypatch.delenv("PROBER_DATABASE", raising=False)
    text = MINIMAL + 'headers = { Authorization = "${PROBER_TEST_TOKEN}" }\n'
    monitor = load_config(_write(tmp_path, text)).monitor("api")
    assert isinstance(monitor, HttpMonitor)
    assert monitor.headers["Authorization"] == SecretStr("from-os-environ")


def test_missing_variable_in_a_secret_names_the_variable_not_a_value(
    tmp_path: pathlib.Path,
) -> None:
    text = MINIMAL + 'headers = { Authorization = "Bearer ${API_TOKEN}" }\n'
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"OTHER": "x"})
    assert caught.value.errors == [
        f"{path}:8: monitors[0].headers.Authorization: environment variable API_TOKEN is not "
        "set (use ${API_TOKEN:-default})"
    ]


def test_config_is_frozen(config: Config) -> None:
    api = config.monitors[0]
    with pytest.raises(ValueError, match="frozen"):
        api.interval = 1.0  # type: ignore[misc]


def test_the_default_timeout_fits_a_short_interval(tmp_path: pathlib.Path) -> None:
    """10s is the default timeout, but never one an interval cannot hold: an interval of
    5s without a timeout gets 4s (80%); a timeout written anywhere is checked as written."""
    path = _write(
        tmp_path,
        """\
        [defaults]
        interval = "5s"

        [[monitors]]
        id = "short"
        type = "tcp"
        host = "127.0.0.1"
        port = 1

        [[monitors]]
        id = "long"
        type = "tcp"
        host = "127.0.0.1"
        port = 1
        interval = "1m"
        """,
    )
    short, long = load_config(path, env={}).monitors
    assert isinstance(short, TcpMonitor) and isinstance(long, TcpMonitor)
    assert (short.interval, short.timeout) == (5.0, 4.0)
    assert (long.interval, long.timeout) == (60.0, 10.0)
    written = _write(tmp_path, MINIMAL + 'interval = "5s"\ntimeout = "5s"\n')
    with pytest.raises(ConfigError, match=r"timeout: must be shorter than interval"):
        load_config(written, env={})
