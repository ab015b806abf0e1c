"""Operator warnings: a valid config that is still exposed. Each is one line naming the
file, the line and the key, and says what to do; the config loads anyway."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from prober.config import load_config

CANARIES = 'canaries = ["tcp://127.0.0.1:53"]\n'  # no canaries warning in these tests

SECRETS = """\
[settings]
canaries = ["tcp://127.0.0.1:53"]
heartbeat_url = "${HEARTBEAT}"

[defaults]
headers = { Authorization = "Bearer typed-in-defaults" }

[[monitors]]
id = "api"
type = "http"
url = "http://prober:typed-password@127.0.0.1:9/health"
headers = { Accept = "application/json", X-Api-Key = "${API_KEY}" }

[[monitors]]
id = "web"
type = "http"
url = "http://127.0.0.1:9/"

[[monitors]]
id = "job"
type = "push"
period = "1h"
token = "${PUSH_TOKEN:-typed-push-token-0123456789}"

[[notifiers]]
id = "ops"
type = "slack"
url = "${SLACK_URL}"

[[notifiers]]
id = "pd"
type = "pagerduty"
routing_key = "typed-routing-key"
"""
ENV = {
    "HEARTBEAT": "http://127.0.0.1:9/hb-secret",
    "API_KEY": "key-from-env-0123",
    "SLACK_URL": "http://127.0.0.1:9/slack-secret",
}


def _write(tmp_path: pathlib.Path, text: str, mode: int = 0o600) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return path


def _warnings(path: pathlib.Path, env: dict[str, str] | None = None) -> list[str]:
    return list(load_config(path, env=env or {}).warnings)


# --- secrets in a file others can read ------------------------------------------------------


def test_readable_file_with_typed_secrets_names_them_by_line(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, SECRETS, 0o644)
    # ${HEARTBEAT}, ${API_KEY}, ${SLACK_URL} come from the environment: not in the file.
    # ${PUSH_TOKEN:-...} is unset: its default is typed into the file. Accept is no secret.
    assert _warnings(path, ENV) == [
        f"{path}: other users can read this file (mode 0644) and it holds secrets written "
        "in it: defaults.headers.Authorization (line 6), monitors[0].url (line 11), "
        "monitors[2].token (line 23) and 1 more: chmod 600 "
        f"{path}, or write each as ${{VAR}} and set VAR in the prober's environment only"
    ]


def test_group_readable_file_says_its_group(tmp_path: pathlib.Path) -> None:
    (warning,) = _warnings(_write(tmp_path, SECRETS, 0o640), ENV)
    assert "its group can read this file (mode 0640)" in warning


def test_private_file_or_secrets_from_the_environment_are_fine(tmp_path: pathlib.Path) -> None:
    assert _warnings(_write(tmp_path, SECRETS, 0o600), ENV) == []
    only_env = """\
        [settings]
        canaries = ["tcp://127.0.0.1:53"]

        [[monitors]]
        id = "api"
        type = "http"
        url = "http://127.0.0.1:9/health"
        headers = { Authorization = "Bearer ${API_KEY}", Accept = "text/html" }
        body = "${API_KEY}"
        """
    assert _warnings(_write(tmp_path, only_env, 0o644), ENV) == []


# --- listeners --------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080"])
def test_page_on_every_interface_without_a_proxy(tmp_path: pathlib.Path, listen: str) -> None:
    path = _write(tmp_path, f'[settings]\n{CANARIES}listen = "{listen}"\n')
    assert _warnings(path) == [
        f"{path}:3: settings.listen: {listen} listens on every interface and "
        "settings.trusted_proxies is empty: the page faces the internet directly; put it "
        "behind the reverse proxy of docs/DEPLOY.md (which sets trusted_proxies), or ignore "
        "this if intended"
    ]
    behind = f'[settings]\n{CANARIES}listen = "{listen}"\ntrusted_proxies = ["127.0.0.1"]\n'
    assert _warnings(_write(tmp_path, behind)) == []


def test_prober_listen_in_a_container_says_how_to_publish(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, f"[settings]\n{CANARIES}")
    (warning,) = _warnings(path, {"PROBER_LISTEN": "0.0.0.0:8080"})
    assert warning.startswith(f"{path}: settings.listen: PROBER_LISTEN=0.0.0.0:8080 listens on")
    assert "-p 127.0.0.1:8080:8080" in warning
    assert "trusted_proxies" in warning
    assert _warnings(path, {"PROBER_LISTEN": "127.0.0.1:8080"}) == []


def test_metrics_on_every_interface_without_a_token(tmp_path: pathlib.Path) -> None:
    text = f'[settings]\n{CANARIES}\n[settings.metrics]\nlisten = "0.0.0.0:9108"\n'
    path = _write(tmp_path, text)
    assert _warnings(path) == [
        f"{path}:5: settings.metrics.listen: 0.0.0.0:9108 serves /metrics on every interface "
        "with no settings.metrics.token: anyone who reaches it reads every monitor's state, "
        "private ones included (worse than the page, which shows public monitors only); "
        "listen on 127.0.0.1 or set metrics.token"
    ]
    with_token = text + 'token = "${METRICS_TOKEN}"\n'
    assert _warnings(_write(tmp_path, with_token), {"METRICS_TOKEN": "t0ken-t0ken"}) == []


def test_loopback_listeners_say_nothing(tmp_path: pathlib.Path) -> None:
    text = (
        f'[settings]\n{CANARIES}listen = "127.0.0.1:8080"\nmetrics = {{ listen = "[::1]:9108" }}\n'
    )
    assert _warnings(_write(tmp_path, text)) == []


# --- checks aimed at a metadata service --------------------------------------------------------

TARGETS = """\
[settings]
canaries = ["tcp://127.0.0.1:53"]

[[monitors]]
id = "aws"
type = "http"
url = "http://169.254.169.254/latest/meta-data/"

[[monitors]]
id = "mapped"
type = "http"
url = "https://[::ffff:a9fe:a9fe]/"

[[monitors]]
id = "gce"
type = "tcp"
host = "Metadata.Google.Internal."
port = 80

[[monitors]]
id = "alibaba"
type = "tls"
host = "100.100.100.200"

[[monitors]]
id = "resolver"
type = "dns"
query = "metadata.google.internal"
nameservers = ["127.0.0.1", "fe80::1"]

[[monitors]]
id = "allowed"
type = "tcp"
host = "169.254.169.254"
port = 80
allow_link_local = true

[[monitors]]
id = "fine"
type = "http"
url = "http://127.0.0.1:9/"
"""


def test_metadata_and_link_local_targets(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, TARGETS)
    refused = "checks refuse it unless allow_link_local = true"
    # The DNS check's query name is only asked about; its nameservers are connected to.
    assert _warnings(path) == [
        f"{path}:7: monitors[0].url: 169.254.169.254 is a cloud metadata/link-local "
        f"address: {refused}",
        f"{path}:12: monitors[1].url: ::ffff:a9fe:a9fe is a cloud metadata/link-local "
        f"address: {refused}",
        f"{path}:17: monitors[2].host: Metadata.Google.Internal. names a cloud metadata "
        f"service: {refused}",
        f"{path}:23: monitors[3].host: 100.100.100.200 is a cloud metadata/link-local "
        f"address: {refused}",
        f"{path}:29: monitors[4].nameservers[1]: fe80::1 is a cloud metadata/link-local "
        f"address: {refused}",
    ]


def test_allow_link_local_from_defaults_silences_it(tmp_path: pathlib.Path) -> None:
    text = TARGETS.replace("[[monitors]]", "[defaults]\nallow_link_local = true\n\n[[monitors]]", 1)
    assert _warnings(_write(tmp_path, text)) == []


# --- the file itself -----------------------------------------------------------------------------


def test_a_config_that_cannot_be_read_is_one_line(tmp_path: pathlib.Path) -> None:
    from prober.config import ConfigError

    folder = tmp_path / "monitors.toml"
    folder.mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(folder, env={})
    assert caught.value.errors == [f"{folder}: cannot read the config: is a directory"]
