"""Log output: key=value text or one JSON object per line, never a configured secret."""

from __future__ import annotations

import json
import logging
import pathlib
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from prober import logs
from prober.config import Config, load_config
from prober.logs import pairs
from prober.redact import Redactor
from tests.support.net import free_port
from tests.support.proc import ProberRun

TOKEN = "tok-7c1e9a55d0b34f2e"  # from the environment, like a real deployment's
HEADER = f"Bearer {TOKEN}"  # a header's whole value is the secret
HOOK_SECRET = "whsec-0f9e8d7c6b5a"
PASSWORD = 'pa"ss\\word-99'  # JSON-special characters: redacted before encoding
SECRETS = (HEADER, HOOK_SECRET, PASSWORD)


@pytest.fixture
def config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    path = tmp_path / "monitors.toml"
    path.write_text(
        textwrap.dedent(
            """
            [settings]
            database = "sqlite:///prober.db"

            [[notifiers]]
            id = "hook"
            type = "webhook"
            url = "http://127.0.0.1:9/prober"
            secret = "${HOOK_SECRET}"

            [[monitors]]
            id = "api"
            type = "http"
            url = "http://127.0.0.1:1/health"
            headers = { Authorization = "Bearer ${API_TOKEN}" }
            basic_auth = { username = "ops", password = 'pa"ss\\word-99' }
            notify = ["hook"]
            """
        )
    )
    loaded = load_config(path)
    assert set(SECRETS) <= loaded.secret_values()
    return loaded


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit_everything() -> None:
    """Log lines carrying the secrets every way code might: in arguments, in the message
    itself, in an exception's text and its traceback, in a URL's password."""
    log = logging.getLogger("prober.runtime.probe")
    log.info(
        'monitor=%s type=%s outcome=%s latency_ms=%.0f error="%s"',
        "api",
        "http",
        "down",
        5003.4,
        f'saw "401" for Authorization: {HEADER}',
    )
    log.warning(f"alert failed notifier=hook secret={HOOK_SECRET} password={PASSWORD}")
    try:
        raise RuntimeError(f"request to https://ops:{PASSWORD}@127.0.0.1:9/ ({HOOK_SECRET})")
    except RuntimeError:
        log.exception("monitor=%s check raised (a prober bug)", "api")
    log.info("url=https://user:hunter2-pw@127.0.0.1:9/x done=1", stack_info=True)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_configured_secret_reaches_the_output(
    log_format: logs.LogFormat, config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(Redactor(config.secret_values()), logging.INFO, log_format=log_format)
    emit_everything()
    out = capsys.readouterr()
    assert out.out == ""
    text = out.err
    assert text.count("***") >= 6
    for secret in (*SECRETS, TOKEN, "hunter2-pw"):
        assert secret not in text
        if log_format == "json":  # nor in the decoded values
            for line in text.splitlines():
                assert secret not in json.dumps(json.loads(line), ensure_ascii=False)


def test_json_lines_parse_with_their_fields(
    config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.setup(Redactor(config.secret_values()), logging.INFO, log_format="json")
    emit_everything()
    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 4  # one line per record, a traceback included

    result = entries[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", result["ts"])
    assert result == {
        "ts": result["ts"],
        "level": "INFO",
        "logger": "prober.runtime.probe",
        "msg": 'monitor=api type=http outcome=down latency_ms=5003 error="saw "401" for'
        ' Authorization: ***"',
        "monitor": "api",
        "type": "http",
        "outcome": "down",
        "latency_ms": "5003",
        "error": 'saw "401" for Authorization: ***',
    }
    assert entries[1]["level"] == "WARNING"
    assert (entries[1]["secret"], entries[1]["password"]) == ("***", "***")
    crash = entries[2]
    assert (crash["level"], crash["monitor"]) == ("ERROR", "api")
    assert crash["exc"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: request to https://ops:***@127.0.0.1:9/ (***)" in crash["exc"]
    assert entries[3]["url"] == "https://user:***@127.0.0.1:9/x"
    assert entries[3]["stack"].startswith("Stack (most recent call last):")


def test_text_lines_keep_their_shape(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(Redactor(config.secret_values()), logging.INFO)
    logging.getLogger("prober.runtime.probe").info("stopped results_committed=%d", 12)
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO prober\.runtime\.probe: stopped results_committed=12",
        line,
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("prober running monitors=3 listen=http://127.0.0.1:8080", {"monitors": "3", "listen": "http://127.0.0.1:8080"}),
        ('monitor=api error="keyword "ok" not found" next=1', {"monitor": "api", "error": 'keyword "ok" not found', "next": "1"}),
        ('error="" rows=0', {"error": "", "rows": "0"}),
        ("url=http://h/?a=b&c=d seconds=0.25", {"url": "http://h/?a=b&c=d", "seconds": "0.25"}),
        ("incident state restored, replayed_results=4", {"replayed_results": "4"}),
        ("no pairs here: a = b", {}),
    ],
)  # fmt: skip
def test_pairs(message: str, expected: dict[str, str]) -> None:
    assert dict(pairs(message)) == expected


def test_run_writes_json_lines(tmp_path: pathlib.Path) -> None:
    """`prober run --log-format json`, as a user starts it: every line parses."""
    port = free_port()
    (tmp_path / "monitors.toml").write_text(
        textwrap.dedent(
            f"""
            [settings]
            listen = "127.0.0.1:{port}"
            metrics = {{ listen = "" }}
            database = "sqlite:///prober.db"

            [[monitors]]
            id = "closed"
            type = "tcp"
            host = "127.0.0.1"
            port = 1
            interval = "1s"
            timeout = "500ms"
            """
        )
    )
    run = ProberRun(["run", "--log-format", "json"], tmp_path)
    run.wait_for('"outcome": "down"')  # the closed port's first result is logged
    assert run.stop() == 0, run.log
    stderr = run.log
    # Config warnings are printed as plain lines before logging starts (cli._load).
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    entries = [json.loads(line) for line in lines]
    by_msg = {e["msg"].split(" ")[0]: e for e in entries}
    assert by_msg["prober"]["monitors"] == "1"
    assert by_msg["prober"]["logger"] == "prober.runtime.probe"
    down = next(e for e in entries if e.get("monitor") == "closed")
    assert (down["level"], down["outcome"]) == ("INFO", "down")
    assert "results_committed" in entries[-1]

    bad = subprocess.run(
        [sys.executable, "-m", "prober", "run", "--log-format", "xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "invalid choice: 'xml'" in bad.stderr
