"""Environment variables that override `[settings]`: PROBER_LISTEN and PROBER_DATABASE.

A container or a systemd unit sets them so one monitors.toml works everywhere; a bad value
is a config error that names the variable, not the file's key alone.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from prober.config import ConfigError, load_config
from tests.support.net import free_port

CONFIG = textwrap.dedent(
    """\
    [settings]
    listen = "127.0.0.1:8080"
    database = "sqlite:///data/prober.db"

    [[monitors]]
    id = "api"
    type = "tcp"
    host = "127.0.0.1"
    port = 1
    """
)


def _write(tmp_path: pathlib.Path, text: str = CONFIG) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("127.0.0.1:9000", "127.0.0.1", 9000),
        ("[::]:8080", "::", 8080),
        ("localhost:1", "localhost", 1),
    ],
)
def test_prober_listen_overrides_the_file(
    tmp_path: pathlib.Path, value: str, host: str, port: int
) -> None:
    config = load_config(_write(tmp_path), env={"PROBER_LISTEN": value})
    assert config.settings.listen == value
    assert config.settings.listen_host_port == (host, port)


def test_prober_listen_overrides_the_default(tmp_path: pathlib.Path) -> None:
    config = load_config(_write(tmp_path, ""), env={"PROBER_LISTEN": "0.0.0.0:8080"})
    assert config.settings.listen_host_port == ("0.0.0.0", 8080)


@pytest.mark.parametrize("env", [{}, {"PROBER_LISTEN": ""}], ids=["unset", "empty"])
def test_unset_or_empty_prober_listen_keeps_the_file(
    tmp_path: pathlib.Path, env: dict[str, str]
) -> None:
    config = load_config(_write(tmp_path), env=env)
    assert config.settings.listen == "127.0.0.1:8080"


def test_prober_listen_leaves_other_settings_alone(tmp_path: pathlib.Path) -> None:
    text = CONFIG.replace("[settings]\n", '[settings]\ntitle = "Acme"\nlanguage = "ko"\n')
    plain = load_config(_write(tmp_path, text), env={})
    overridden = load_config(_write(tmp_path, text), env={"PROBER_LISTEN": "0.0.0.0:80"})
    assert overridden.settings.model_dump(exclude={"listen"}) == plain.settings.model_dump(
        exclude={"listen"}
    )
    assert overridden.database_url == plain.database_url
    assert overridden.monitors == plain.monitors


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.0.0.0", "'0.0.0.0' needs a port, as in \"127.0.0.1:8080\""),
        ("0.0.0.0:http", "'0.0.0.0:http': 'http' is not a port (1-65535)"),
        ("127.0.0.1:70000", "'127.0.0.1:70000': '70000' is not a port (1-65535)"),
        (":8080", "':8080' has no host"),
    ],
)
def test_bad_prober_listen_names_the_variable(
    tmp_path: pathlib.Path, value: str, message: str
) -> None:
    path = _write(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PROBER_LISTEN": value})
    assert caught.value.errors == [f"{path}:2: settings.listen: PROBER_LISTEN: {message}"]


def test_bad_prober_listen_without_a_listen_key_points_at_settings(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, '\n[settings]\ntitle = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PROBER_LISTEN": "nope"})
    assert caught.value.errors == [
        f"{path}:2: settings.listen: PROBER_LISTEN: 'nope' needs a port, as in \"127.0.0.1:8080\""
    ]


def test_both_overrides_bad_are_reported_together_with_file_errors(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, CONFIG.replace("port = 1", "port = 0"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"PROBER_LISTEN": "0.0.0.0", "PROBER_DATABASE": "mysql://db"})
    assert caught.value.errors == [
        f"{path}:2: settings.listen: PROBER_LISTEN: '0.0.0.0' needs a port, as in "
        '"127.0.0.1:8080"',
        f"{path}:3: settings.database: PROBER_DATABASE: 'mysql://db': use "
        '"sqlite:///relative/path.db", "sqlite:////abs/path.db" or '
        '"postgresql://USER:PASSWORD@HOST/NAME"',
        f"{path}:9: monitors[0].port: 0 is not a port (1-65535)",
    ]


def test_both_overrides_together(tmp_path: pathlib.Path) -> None:
    env = {"PROBER_LISTEN": "0.0.0.0:8080", "PROBER_DATABASE": "sqlite:////data/prober.db"}
    config = load_config(_write(tmp_path), env=env)
    assert config.settings.listen == "0.0.0.0:8080"
    assert config.database_url == "sqlite:////data/prober.db"
    assert config.database_path == pathlib.Path("/data/prober.db")


def test_env_defaults_to_os_environ(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBER_LISTEN", "127.0.0.2:8081")
    assert load_config(_write(tmp_path)).settings.listen_host_port == ("127.0.0.2", 8081)


def _prober(*args: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prober", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_validate_prints_the_variable_and_exits_1(tmp_path: pathlib.Path) -> None:
    _write(tmp_path)
    bad = _prober("validate", cwd=tmp_path, env={"PROBER_LISTEN": "0.0.0.0"})
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "monitors.toml:2: settings.listen: PROBER_LISTEN: '0.0.0.0' needs a port, as in \"127.0.0.1:8080\""
    ]
    ok = _prober("validate", cwd=tmp_path, env={"PROBER_LISTEN": "0.0.0.0:8080"})
    assert ok.returncode == 0, ok.stderr


def test_run_listens_where_prober_listen_says(tmp_path: pathlib.Path) -> None:
    """The file says one port, the environment another: `prober run` serves on the latter."""
    port = free_port()
    listen = f'listen = "127.0.0.1:{free_port()}"\nmetrics = {{ listen = "" }}'
    _write(tmp_path, CONFIG.replace('listen = "127.0.0.1:8080"', listen))
    env = {
        **os.environ,
        "PROBER_LISTEN": f"127.0.0.1:{port}",
        "PROBER_DATABASE": f"sqlite:///{tmp_path}/state/p.db",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "prober", "run"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    status = r.status
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"listen=http://127.0.0.1:{port}" in stderr
    assert (tmp_path / "state" / "p.db").exists()
    assert not (tmp_path / "data").exists()
