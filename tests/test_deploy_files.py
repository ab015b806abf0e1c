"""deploy/prober.service, docker-compose.yml and docs/DEPLOY.md agree with each other, with
the Dockerfile and with the code: the paths, the environment, the commands."""

from __future__ import annotations

import configparser
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from prober.cli import build_parser
from prober.config.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "prober.service"
DEPLOY = (ROOT / "docs" / "DEPLOY.md").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False,  # systemd allows a key twice (SystemCallFilter=): the last one is kept here
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def every_value(key: str) -> list[str]:
    """All assignments of `key` in the unit, in order (configparser keeps only the last)."""
    return re.findall(rf"^{key}=(.*)$", UNIT.read_text(), flags=re.MULTILINE)


def service_env() -> dict[str, str]:
    return dict(w.split("=", 1) for w in shlex.split(unit()["Service"]["Environment"]))


def venv_of_deploy_doc() -> str:
    match = re.search(r"^python3 -m venv (\S+)$", DEPLOY, flags=re.MULTILINE)
    assert match, "DEPLOY.md creates the virtualenv with `python3 -m venv DIR`"
    return match.group(1)


def test_unit_is_hardened() -> None:
    service = unit()["Service"]
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "prober",
        "ConfigurationDirectory": "prober",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "TimeoutStopSec": "30",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "EnvironmentFile": "-/etc/prober/env",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert every_value("SystemCallFilter")[0] == "@system-service"
    assert service.get("User") is None, "DynamicUser makes the user; a fixed one would own files"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_paths_follow_its_directories() -> None:
    service = unit()["Service"]
    env = service_env()
    state, config = service["StateDirectory"], service["ConfigurationDirectory"]
    assert env == {
        "PROBER_DATABASE": f"sqlite:////var/lib/{state}/prober.db",
        "PROBER_CONFIG": f"/etc/{config}/monitors.toml",
    }
    assert service["EnvironmentFile"].removeprefix("-").startswith(f"/etc/{config}/")
    Settings(database=env["PROBER_DATABASE"])  # a database URL prober accepts


def test_exec_start_is_the_virtualenv_of_deploy_doc() -> None:
    venv = venv_of_deploy_doc()
    assert shlex.split(unit()["Service"]["ExecStart"]) == [f"{venv}/bin/prober", "run"]
    assert f"{venv}/bin/pip install /opt/prober/src\n" in DEPLOY
    assert "python3-venv" in DEPLOY


def test_deploy_doc_installs_and_drives_this_unit() -> None:
    assert (
        "install -m 644 /opt/prober/src/deploy/prober.service /etc/systemd/system/prober.service"
        in DEPLOY
    )
    for command in (
        "systemctl daemon-reload",
        "systemctl enable --now prober",
        "systemctl reload prober",
        "journalctl -u prober -f",
        "prober validate",
    ):
        assert command in DEPLOY, command
    # The CLI wrapper sees what the service sees.
    env = service_env()
    wrapper = (
        f"export PROBER_CONFIG={env['PROBER_CONFIG']} PROBER_DATABASE={env['PROBER_DATABASE']}"
    )
    assert wrapper in DEPLOY
    assert f". {unit()['Service']['EnvironmentFile'].removeprefix('-')};" in DEPLOY
    assert f"ExecStart={venv_of_deploy_doc()}/bin/prober" in UNIT.read_text()


def test_deploy_doc_uses_only_commands_that_exist() -> None:
    parser = build_parser()
    choices = next(
        a.choices for a in parser._actions if a.dest == "command" and a.choices is not None
    )
    known = set(choices)
    fenced = re.findall(r"^```\w*\n(.*?)^```", DEPLOY, flags=re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", DEPLOY, flags=re.M | re.S))
    code = re.sub(r"(^|\s)#.*", "", "\n".join(fenced + spans))  # comments are prose
    used = set(re.findall(r"(?<![\w.-])prober (?:-\S+ )*([a-z][a-z-]*)(?=\s|$)", code, re.M))
    used -= {"prober"}  # `docker compose exec prober prober validate`: the service, then the CLI
    assert used <= known, used - known
    assert {"validate", "reload", "backup", "push-urls", "check"} <= used


def test_proxies_reach_the_default_listen_address() -> None:
    listen = Settings().listen
    assert listen == "127.0.0.1:8080"
    assert f"reverse_proxy {listen}\n" in DEPLOY
    assert f"proxy_pass http://{listen};" in DEPLOY
    assert "status.example.com {\n\treverse_proxy 127.0.0.1:8080\n}" in DEPLOY
    assert "gzip off;" in DEPLOY and "proxy_buffering" in DEPLOY
    for port in ("22", "80", "443"):
        assert f"ufw allow {port}/tcp" in DEPLOY
    assert "ufw allow 8080" not in DEPLOY


def test_compose_matches_the_dockerfile_and_the_unit() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "PROBER_CONFIG=/config/monitors.toml" in dockerfile
    assert re.search(r"^\s+- \./config:/config:ro\b", COMPOSE, flags=re.MULTILINE)
    assert re.search(r"^\s+- prober-data:/data\b", COMPOSE, flags=re.MULTILINE)
    assert 'VOLUME ["/data"]' in dockerfile
    assert re.search(r'^\s+- "127\.0\.0\.1:8080:8080"$', COMPOSE, flags=re.MULTILINE)
    assert "EXPOSE 8080" in dockerfile
    for line in (
        "restart: unless-stopped",
        "stop_signal: SIGTERM",
        "stop_grace_period: 30s",
        "mem_limit: 512m",
        "env_file: .env",
    ):
        assert re.search(rf"^\s+{re.escape(line)}$", COMPOSE, flags=re.MULTILINE), line
    assert "healthcheck:" not in COMPOSE, "the image's HEALTHCHECK is inherited"
    service = unit()["Service"]
    assert f"stop_grace_period: {service['TimeoutStopSec']}s" in COMPOSE
    assert service["MemoryMax"].lower() == "512m"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path: pathlib.Path) -> None:
    """systemd's own parser: unknown keys, bad values. ExecStart must exist, so the copy
    points it at this virtualenv's prober."""
    installed = pathlib.Path(sys.executable).parent / "prober"
    assert installed.exists()
    text = UNIT.read_text().replace(f"{venv_of_deploy_doc()}/bin/prober", str(installed))
    copy = tmp_path / "prober.service"
    copy.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in done.stderr.splitlines() if "prober.service" in line]
    assert (done.returncode, complaints) == (0, [])
