"""Incidents written by people: the files (good, each kind of bad, with the message a user
sees), `prober incident new|update|resolve` as a user runs it, hostile text written and read
back exactly, and a running prober showing a new file after the CLI wrote it."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import signal
import subprocess
import sys
import tomllib
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober import notice_files, notices
from prober.config import ConfigError, load_config
from prober.notices import ComponentStatus, Impact, Notice, Progress, Update
from tests.support.net import free_port
from tests.support.proc import ProberRun, until

CONFIG = """
[settings]
database = "sqlite:///data/prober.db"
timezone = "Asia/Seoul"
listen = "127.0.0.1:{port}"
metrics = {{ listen = "" }}

[[monitors]]
id = "api"
type = "tcp"
host = "127.0.0.1"
port = {target}
interval = "2s"

[[monitors]]
id = "web"
type = "tcp"
host = "127.0.0.1"
port = {target}
interval = "2s"
"""

GOOD = """\
# incidents/2026-12-02-api-errors.toml
title = "Elevated API errors"
impact = "major"                      # none | minor | major | critical
components = { api = "partial_outage", web = "degraded_performance" }
detected = "api"
[[updates]]
at = "2026-12-02T17:40:00+09:00"
status = "investigating"
body = "We are looking into elevated error rates."
notify = true

[[updates]]
at = 2026-12-02T09:10:00Z              # a TOML date-time works too
status = "identified"
body = \"\"\"
The cause is a *bad deploy*.
Rolling back.\"\"\"
notify = false
"""

SEOUL = dt.timezone(dt.timedelta(hours=9))


def _config(tmp_path: pathlib.Path, port: int = 0, target: int = 9) -> pathlib.Path:
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG.format(port=port or free_port(), target=target))
    return path


def _incident(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    folder = tmp_path / "incidents"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _errors(config: pathlib.Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    return caught.value.errors


def prober(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prober", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def test_a_good_file_is_read_with_its_updates_in_order(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path)
    _incident(tmp_path, "2026-12-02-api-errors.toml", GOOD)
    (tmp_path / "incidents" / "README.txt").write_text("not an incident")
    loaded = load_config(config, env={})
    assert loaded.incidents_path == tmp_path / "incidents"
    assert loaded.notices == (
        Notice(
            id="2026-12-02-api-errors",
            title="Elevated API errors",
            impact=Impact.MAJOR,
            components=(
                ("api", ComponentStatus.PARTIAL_OUTAGE),
                ("web", ComponentStatus.DEGRADED_PERFORMANCE),
            ),
            detected="api",
            updates=(
                Update(
                    dt.datetime(2026, 12, 2, 17, 40, tzinfo=SEOUL),
                    Progress.INVESTIGATING,
                    "We are looking into elevated error rates.",
                ),
                Update(
                    dt.datetime(2026, 12, 2, 9, 10, tzinfo=dt.UTC),
                    Progress.IDENTIFIED,
                    "The cause is a *bad deploy*.\nRolling back.",
                    notify=False,
                ),
            ),
        ),
    )
    assert loaded.notices[0].status is Progress.IDENTIFIED
    assert not loaded.notices[0].resolved


def test_no_folder_is_no_incidents_and_the_folder_is_relative_to_the_config(
    tmp_path: pathlib.Path,
) -> None:
    config = _config(tmp_path)
    assert load_config(config, env={}).notices == ()
    elsewhere = tmp_path / "people" / "written"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.toml").write_text(GOOD)
    text = config.read_text().replace("[settings]", '[settings]\nincidents_dir = "people/written"')
    config.write_text(text)
    cwd = os.getcwd()
    os.chdir(elsewhere)  # relative to the config's folder, not to where prober runs
    try:
        assert [n.id for n in load_config(config, env={}).notices] == ["a"]
    finally:
        os.chdir(cwd)
    config.write_text(text.replace('"people/written"', f'"{elsewhere}"'))
    assert [n.id for n in load_config(config, env={}).notices] == ["a"]
    config.write_text(CONFIG.format(port=1, target=9))  # the Docker image's: env wins
    moved = load_config(config, env={"PROBER_INCIDENTS_DIR": "people/written"})
    assert moved.incidents_path == elsewhere
    assert [n.id for n in moved.notices] == ["a"]


BAD = [
    pytest.param(
        "x.toml",
        GOOD.replace("impact = ", "colour = 1\nimpact = "),
        ["3: colour: unknown key"],
        id="unknown-key",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('status = "identified"', 'status = "identifed"'),
        [
            "14: updates[1].status: must be one of investigating, identified, monitoring, "
            "resolved; got 'identifed' (did you mean 'identified'?)"
        ],
        id="bad-status",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('"major"', '"huge"'),
        ["3: impact: must be one of none, minor, major, critical; got 'huge'"],
        id="bad-impact",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('"partial_outage"', '"down"'),
        [
            "4: components.api: must be one of operational, under_maintenance, "
            "degraded_performance, partial_outage, major_outage; got 'down'"
        ],
        id="bad-component-status",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace("{ api =", "{ apj ="),
        ["4: components.apj: no monitor has id 'apj' (did you mean 'api'?)"],
        id="unknown-component",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('detected = "api"', 'detected = "db"'),
        ["5: detected: no monitor has id 'db'"],
        id="unknown-detected",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('"2026-12-02T17:40:00+09:00"', '"2026-12-02T17:40:00"'),
        [
            "7: updates[0].at: 2026-12-02T17:40:00 has no offset: write one, "
            "as in 2026-12-02T17:40:00+09:00"
        ],
        id="no-offset",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace("2026-12-02T09:10:00Z", "2026-12-02T08:39:59Z"),
        [
            "13: updates[1].at: 2026-12-02T08:39:59+00:00 is before the previous update's "
            "2026-12-02T17:40:00+09:00: updates go oldest first"
        ],
        id="out-of-order",
    ),
    pytest.param(
        "x.toml",
        'title = "Down"\nimpact = "minor"\n',
        ["1: (file): needs at least one [[updates]]"],
        id="no-updates",
    ),
    pytest.param(
        "API Errors.toml",
        GOOD,
        [
            "1: (file): the file name 'API Errors' is not a slug: use a-z, 0-9, - and _ only",
        ],
        id="stem-not-a-slug",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('"Elevated API errors"', '"  "'),
        ["2: title: must not be empty"],
        id="empty-title",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace(
            '"We are looking into elevated error rates."', '"' + "a" * (notices.MAX_BODY + 1) + '"'
        ),
        ["9: updates[0].body: is 20,001 characters long; at most 20,000"],
        id="body-too-long",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace("notify = false", 'notify = "no"'),
        ["18: updates[1].notify: expected true or false, got a string"],
        id="notify-not-bool",
    ),
    pytest.param(
        "x.toml",
        GOOD.replace('title = "Elevated API errors"', 'title = "Elevated'),
        ["2: syntax: Illegal character '\\n' (column 18)"],
        id="syntax",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD)
def test_each_kind_of_bad_file_is_reported_at_its_line(
    tmp_path: pathlib.Path, name: str, text: str, expected: list[str]
) -> None:
    config = _config(tmp_path)
    path = _incident(tmp_path, name, text)
    assert _errors(config) == [f"{path}:{line}" for line in expected]


def test_validate_and_run_refuse_a_bad_incident_file(tmp_path: pathlib.Path) -> None:
    _config(tmp_path)
    _incident(tmp_path, "ok.toml", GOOD)
    assert prober("validate", "-c", "monitors.toml", cwd=tmp_path).returncode == 0
    _incident(tmp_path, "bad.toml", GOOD.replace('"major"', '"huge"'))
    message = (
        "incidents/bad.toml:3: impact: must be one of none, minor, major, critical; got 'huge'\n"
    )
    checked = prober("validate", "-c", "monitors.toml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (1, "")
    assert checked.stderr.endswith(message)
    run = prober("run", "-c", "monitors.toml", cwd=tmp_path)
    assert run.returncode == 1
    assert message in run.stderr
    assert not (tmp_path / "data" / "prober.pid").exists()


HOSTILE = [
    'Quotes "double" and \'single\', """ and \'\'\' and a backslash \\ and \\"',
    "Line one\n\nline three\twith a tab\r\nand a CR LF, unicode 한국어 ✓ 🚒",
    '<script>alert("x")</script> [x](javascript:alert(1)) ends with a quote"',
    '\nstarts with a newline and ends with two quotes""',
]


def test_cli_round_trip_keeps_hostile_text_exactly(tmp_path: pathlib.Path) -> None:
    _config(tmp_path)
    title = 'The "API" <b>is</b> \\ down \'\'\' """'
    made = prober(
        "incident", "new", "-c", "monitors.toml", "--title", title, "--impact", "critical",
        "--component", "api=major_outage", "--component", "web=degraded_performance",
        "--detected", "api", "--status", "investigating", "--body", HOSTILE[0],
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = tmp_path / made.stdout.strip()
    assert path.parent == tmp_path / "incidents"
    assert path.name.endswith("-the-api-b-is-b-down.toml")
    assert "no running prober" in made.stderr
    written = path.read_text()
    for i, body in enumerate(HOSTILE[1:]):
        status = ("identified", "monitoring")[i % 2]
        updated = prober(
            "incident", "update", "-c", "monitors.toml", str(path), "--status", status,
            "--body", body, cwd=tmp_path,
        )  # fmt: skip
        assert updated.returncode == 0, updated.stderr
        assert updated.stdout.strip() == str(path)
    resolved = prober(
        "incident", "resolve", "-c", "monitors.toml", path.stem, "--body", "Fixed.", cwd=tmp_path
    )
    assert resolved.returncode == 0, resolved.stderr
    assert path.read_text().startswith(written)  # appended, never re-dumped

    (notice,) = load_config(tmp_path / "monitors.toml", env={}).notices
    assert notice.id == path.stem
    assert notice.title == title
    assert notice.impact is Impact.CRITICAL
    assert notice.components == (
        ("api", ComponentStatus.MAJOR_OUTAGE),
        ("web", ComponentStatus.DEGRADED_PERFORMANCE),
    )
    assert notice.detected == "api"
    assert [u.body for u in notice.updates] == [*HOSTILE, "Fixed."]
    assert [u.status for u in notice.updates] == [
        Progress.INVESTIGATING, Progress.IDENTIFIED, Progress.MONITORING,
        Progress.IDENTIFIED, Progress.RESOLVED,
    ]  # fmt: skip
    assert notice.resolved
    for update in notice.updates:
        assert update.at.utcoffset() == dt.timedelta(hours=9)  # settings.timezone's
        assert update.notify


def test_new_names_are_unique_and_comments_survive_an_update(tmp_path: pathlib.Path) -> None:
    _config(tmp_path)
    args = ["--impact", "minor", "--status", "investigating", "--body", "Looking."]
    first = prober(
        "incident", "new", "-c", "monitors.toml", "--title", "Slow API", *args, cwd=tmp_path
    )
    second = prober(
        "incident", "new", "-c", "monitors.toml", "--title", "Slow API", *args, cwd=tmp_path
    )
    korean = prober(
        "incident", "new", "-c", "monitors.toml", "--title", "결제 지연", *args, cwd=tmp_path
    )
    days = {dt.datetime.now(SEOUL).date() - dt.timedelta(days=d) for d in (0, 1)}  # midnight
    names = [pathlib.Path(p.stdout.strip()).name for p in (first, second, korean)]
    assert names[0] in {f"{day}-slow-api.toml" for day in days}  # settings.timezone's date
    assert names[1] == names[0].replace(".toml", "-2.toml")
    assert names[2] == names[0].replace("slow-api", "incident")

    hand = _incident(tmp_path, "hand.toml", GOOD)
    updated = prober(
        "incident", "update", "-c", "monitors.toml", "hand", "--status", "monitoring",
        "--body", "Watching.", cwd=tmp_path,
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    text = hand.read_text()
    assert text.startswith(GOOD)  # comments and layout as the person wrote them
    assert tomllib.loads(text)["updates"][-1]["body"] == "Watching."


def test_cli_refuses_what_would_not_validate_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    _config(tmp_path)
    base = ["incident", "new", "-c", "monitors.toml", "--title", "T", "--status", "identified"]
    unknown = prober(
        *base, "--impact", "minor", "--component", "apj=major_outage", "--body", "b", cwd=tmp_path
    )
    assert unknown.returncode == 1
    assert "components.apj: no monitor has id 'apj' (did you mean 'api'?)" in unknown.stderr
    assert "nothing written" in unknown.stderr
    empty = prober(*base, "--impact", "minor", "--body", " ", cwd=tmp_path)
    assert empty.returncode == 1
    assert "updates[0].body: must not be empty" in empty.stderr
    assert list((tmp_path / "incidents").glob("*.toml")) == []

    usage = prober(*base, "--impact", "huge", "--body", "b", cwd=tmp_path)
    assert usage.returncode == 2
    shape = prober(*base, "--impact", "minor", "--component", "api", "--body", "b", cwd=tmp_path)
    assert shape.returncode == 2
    assert "write ID=STATUS" in shape.stderr
    missing = prober(
        "incident",
        "update",
        "-c",
        "monitors.toml",
        "nope",
        "--status",
        "identified",
        "--body",
        "b",
        cwd=tmp_path,
    )
    assert missing.returncode == 1
    assert "nope: no such incident file" in missing.stderr

    # An update dated before the file's last one (a hand-written future time) is refused.
    path = _incident(
        tmp_path, "future.toml", GOOD.replace("2026-12-02T09:10:00Z", "2999-01-01T00:00:00Z")
    )
    before = path.read_text()
    late = prober(
        "incident", "resolve", "-c", "monitors.toml", str(path), "--body", "Done.", cwd=tmp_path
    )
    assert late.returncode == 1
    assert f"{path.relative_to(tmp_path)}:" in late.stderr or f"{path}:" in late.stderr
    assert "updates[2].at:" in late.stderr and "updates go oldest first" in late.stderr
    assert path.read_text() == before


def test_cli_resolves_once_and_speaks_only_of_the_incident(tmp_path: pathlib.Path) -> None:
    """A second `resolve` (a slip: subscribers would get "Resolved" twice) is refused; a bad
    --component is a usage error of `prober incident new`, not of `prober`; the config's own
    warnings (no canaries, here) belong to `validate` and `run`, not to each incident."""
    _config(tmp_path)
    made = prober(
        *("incident", "new", "-c", "monitors.toml", "--title", "Queue backlog"),
        *("--impact", "minor", "--status", "identified", "--body", "Draining."),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "warning:" not in made.stderr
    path = tmp_path / made.stdout.strip()
    resolve = ("incident", "resolve", "-c", "monitors.toml", path.stem, "--body", "Drained.")
    first = prober(*resolve, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    once = path.read_text()
    again = prober(*resolve, cwd=tmp_path)
    assert again.returncode == 1
    assert "resolved already" in again.stderr and "warning:" not in again.stderr
    assert path.read_text() == once
    # a later update still may (a correction, or reopening it)
    reopened = prober(
        *("incident", "update", "-c", "monitors.toml", path.stem),
        *("--status", "investigating", "--body", "It is back."),
        cwd=tmp_path,
    )
    assert reopened.returncode == 0, reopened.stderr

    shape = prober(
        *("incident", "new", "-c", "monitors.toml", "--title", "T", "--impact", "minor"),
        *("--status", "identified", "--component", "api", "--body", "b"),
        cwd=tmp_path,
    )
    assert shape.returncode == 2
    assert "usage: prober incident new" in shape.stderr
    assert "argument --component: 'api': write ID=STATUS" in shape.stderr
    assert "warning:" not in shape.stderr


@given(st.text() | st.text(alphabet="\"'\\\n\r\t a\x00\x1f\x7f\u2028한"))
def test_toml_strings_read_back_exactly(text: str) -> None:
    assert tomllib.loads(f"a = {notice_files.basic_string(text)}")["a"] == text
    assert tomllib.loads(f"a = {notice_files.multiline_string(text)}")["a"] == text


def _page(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def test_a_running_prober_shows_what_the_cli_writes(tmp_path: pathlib.Path) -> None:
    port = free_port()
    _config(tmp_path, port=port)
    run = ProberRun(["run", "-c", "monitors.toml"], cwd=tmp_path)
    try:
        run.wait_for("prober running")
        assert "Rollback &amp; retry" not in _page(port)
        made = prober(
            "incident", "new", "-c", "monitors.toml", "--title", "Rollback & retry",
            "--impact", "major", "--component", "api=major_outage", "--status",
            "investigating", "--body", "We **roll back**.", cwd=tmp_path,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "reload requested" in made.stderr
        until(lambda: "Rollback &amp; retry" in _page(port), within=60, every=0.25)
        assert "<strong>roll back</strong>" in _page(port)

        # A bad file is refused like a bad config: logged, and the page keeps what it had.
        mark = run.lines()
        _incident(tmp_path, "bad.toml", GOOD.replace('"major"', '"huge"'))
        assert prober("reload", "-c", "monitors.toml", cwd=tmp_path).returncode == 1
        os.kill(
            int((tmp_path / "data" / "prober.pid").read_text()), signal.SIGHUP
        )  # SIGHUP, as an editor's hook would
        run.wait_for(
            "reload refused, the running config stays: incidents/bad.toml:3: impact:", after=mark
        )
        assert "Rollback &amp; retry" in _page(port)
    finally:
        assert run.stop() == 0
