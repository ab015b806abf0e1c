"""The files prober writes, and the ones it cannot open.

Modes: the database (with its -wal and -shm), the run lock, backups and reports naming a
private monitor are created 0600 even under the common umask 022; an existing file keeps
its mode. Errors: a database that cannot be opened or created is one line naming the path
and why, exit 1, no traceback, from every command; the permission cases run as another
user (nobody, through setpriv, when the tests run as root, since root reads anything).
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import pytest

from prober.config import Config, load_config
from prober.runtime.lock import RunLock
from prober.store.db import connect_raw, open_engine
from tests.support.net import free_port
from tests.support.proc import ProberRun

NOBODY = 65534


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask: a file created without a mode of its own is 0644 under it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def write_config(folder: pathlib.Path, body: str = "", database: str = "data/prober.db") -> Config:
    path = folder / "monitors.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [settings]
            listen = "127.0.0.1:{free_port()}"
            database = "sqlite:///{database}"
            canaries = ["tcp://127.0.0.1:53"]
            metrics = {{ listen = "" }}
            """
        )
        + textwrap.dedent(body)
    )
    path.chmod(0o644)  # no secrets in it; another user must read it
    return load_config(path, env={})


PUSH = """
[[monitors]]
id = "nightly"
type = "push"
period = "1d"
"""


# --- modes ---------------------------------------------------------------------------------------


def test_database_and_its_wal_files_are_created_0600(
    tmp_path: pathlib.Path, umask_022: None
) -> None:
    db = tmp_path / "data" / "prober.db"
    open_engine(db).dispose()
    conn = connect_raw(db)  # WAL: a write makes -wal, any connection -shm
    try:
        conn.execute("INSERT INTO meta (key, value) VALUES ('probe', 'x')")
        modes = {p.name: mode(p) for p in db.parent.iterdir()}
    finally:
        conn.close()
    assert modes == {"prober.db": 0o600, "prober.db-wal": 0o600, "prober.db-shm": 0o600}


def test_an_existing_database_keeps_its_mode(tmp_path: pathlib.Path, umask_022: None) -> None:
    db = tmp_path / "prober.db"
    db.touch(mode=0o640)
    open_engine(db).dispose()
    assert mode(db) == 0o640


def test_run_lock_is_0600(tmp_path: pathlib.Path, umask_022: None) -> None:
    lock = RunLock(tmp_path / "prober.pid")
    lock.acquire(tmp_path / "prober.db")
    try:
        assert mode(lock.path) == 0o600
    finally:
        lock.release()


def test_backups_are_0600(tmp_path: pathlib.Path, umask_022: None) -> None:
    from prober.backup import backup

    config = write_config(tmp_path, PUSH)
    open_engine(config.database_path).dispose()
    made = tmp_path / "copy.db"
    backup(config, made)
    over = tmp_path / "old.db"
    over.write_text("an older backup\n")  # 0644
    backup(config, over, force=True)
    assert (mode(made), mode(over)) == (0o600, 0o600)


@pytest.mark.parametrize(("public", "expected"), [(False, 0o600), (True, 0o644)])
def test_monthly_reports_naming_a_private_monitor_are_0600(
    tmp_path: pathlib.Path, umask_022: None, public: bool, expected: int
) -> None:
    from prober import history
    from prober.report import monthly

    config = write_config(
        tmp_path,
        f"""
        [[monitors]]
        id = "api"
        type = "tcp"
        host = "127.0.0.1"
        port = 9
        public = {str(public).lower()}
        """,
    )
    csv = tmp_path / "history.csv"
    csv.write_text(
        "monitor,timestamp,outcome,latency_ms,error\n"
        "api,2026-10-10T00:00:00Z,up,1,\napi,2026-10-10T00:01:00Z,up,1,\n"
    )
    history.import_results(config, csv, now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    written = monthly.write_monthly(config, now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    assert len(written) == 3
    assert {mode(p) for p in written} == {expected}


def test_report_output_naming_a_private_monitor_is_0600(
    tmp_path: pathlib.Path, umask_022: None
) -> None:
    config = write_config(tmp_path, PUSH + "public = false\n")
    open_engine(config.database_path).dispose()
    done = prober("report", "--month", "2026-11", "-o", "out/2026-11.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "out" / "2026-11.json") == 0o600


def test_a_running_prober_keeps_its_files_private(tmp_path: pathlib.Path, umask_022: None) -> None:
    write_config(tmp_path, PUSH)
    run = ProberRun(["run"], tmp_path)
    try:
        run.wait_for("prober running")
        data = tmp_path / "data"
        modes = {p.name: mode(p) for p in data.iterdir() if p.is_file()}
    finally:
        assert run.stop() == 0, run.log
    assert modes == {
        "prober.db": 0o600,
        "prober.db-wal": 0o600,
        "prober.db-shm": 0o600,
        "prober.pid": 0o600,
    }


def test_a_readable_database_with_push_tokens_is_a_warning_at_start(
    tmp_path: pathlib.Path, umask_022: None
) -> None:
    """Made by an older prober, 0644: its mode stays (the owner's choice), but `run` says."""
    config = write_config(tmp_path, PUSH)
    config.database_path.parent.mkdir()
    config.database_path.touch(mode=0o644)
    assert prober("push-urls", cwd=tmp_path).returncode == 0  # makes the push token
    run = ProberRun(["run"], tmp_path)
    try:
        run.wait_for("prober running")
    finally:
        assert run.stop() == 0, run.log
    warned = [line for line in run.log.splitlines() if "push tokens" in line]
    assert len(warned) == 1, run.log
    assert "chmod 600 data/prober.db*" in warned[0]
    assert "mode=0644" in warned[0]
    assert mode(config.database_path) == 0o644


# --- one-line errors -----------------------------------------------------------------------------


def prober(
    *args: str, cwd: pathlib.Path, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "prober", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def refusal(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if not line.startswith("warning:")]


COMMANDS = [
    ("run",),
    ("push-urls",),
    ("import-results", "history.csv"),
    ("export-static", "out"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_database_under_a_file_is_one_line(tmp_path: pathlib.Path, command: tuple[str]) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    write_config(tmp_path, PUSH, database="notes.txt/prober.db")
    (tmp_path / "history.csv").write_text(
        "monitor,timestamp,outcome,latency_ms,error\nnightly,2026-11-01T00:00:00Z,up,1,\n"
    )
    assert refusal(prober(*command, cwd=tmp_path)) == [
        "prober: cannot open the database notes.txt/prober.db: notes.txt is a file, not a folder"
    ]


@pytest.fixture
def other_user() -> int:
    """A user without root's power to read and write anything: nobody, when tests run as
    root (setpriv drops to it), else the user running them."""
    if os.geteuid() != 0:
        return os.geteuid()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to be another user")
    return NOBODY


@pytest.fixture
def shared_folder() -> Iterator[pathlib.Path]:
    """A folder another user can enter (tmp_path's parents are private to the tester)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="prober-files-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):  # give back what a test took away
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(folder)


def _as(user: int, cwd: pathlib.Path, *args: str) -> list[str]:
    return refusal(prober(*args, cwd=cwd, user=None if user == os.geteuid() else user))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] != "export-static"], ids=str)
def test_a_folder_it_cannot_write_is_one_line(
    shared_folder: pathlib.Path, other_user: int, command: tuple[str]
) -> None:
    write_config(shared_folder, PUSH)
    (shared_folder / "history.csv").write_text(
        "monitor,timestamp,outcome,latency_ms,error\nnightly,2026-11-01T00:00:00Z,up,1,\n"
    )
    (shared_folder / "data").mkdir(mode=0o555)
    (shared_folder / "data").chmod(0o555)
    assert _as(other_user, shared_folder, *command) == [
        f"prober: cannot open the database data/prober.db: the folder data is not writable "
        f"by this user (uid {other_user}); the database, its -wal and -shm files and the "
        "lock file are created there"
    ]


def test_a_folder_it_cannot_create_is_one_line(
    shared_folder: pathlib.Path, other_user: int
) -> None:
    write_config(shared_folder, PUSH, database="data/deeper/prober.db")
    (shared_folder / "data").mkdir(mode=0o555)
    (shared_folder / "data").chmod(0o555)
    assert _as(other_user, shared_folder, "run") == [
        "prober: cannot open the database data/deeper/prober.db: cannot create the folder "
        "data/deeper: permission denied"
    ]


@pytest.mark.parametrize("command", ["run", "report", "prune", "push-urls"])
def test_a_database_it_cannot_read_is_one_line(
    shared_folder: pathlib.Path, other_user: int, command: str
) -> None:
    config = write_config(shared_folder, PUSH)
    open_engine(config.database_path).dispose()
    (shared_folder / "data").chmod(0o777)  # the folder is not the problem here
    config.database_path.chmod(0o000)
    owner = config.database_path.stat().st_uid
    args = ("report", "--month", "2026-11") if command == "report" else (command,)
    assert _as(other_user, shared_folder, *args) == [
        f"prober: cannot open the database data/prober.db: data/prober.db (owner uid {owner}, "
        f"mode 0000) is not readable and writable by this user (uid {other_user})"
    ]


def test_a_config_it_cannot_read_is_one_line(shared_folder: pathlib.Path, other_user: int) -> None:
    write_config(shared_folder)
    (shared_folder / "monitors.toml").chmod(0o000)
    assert _as(other_user, shared_folder, "validate") == [
        "monitors.toml: cannot read the config: permission denied"
    ]


def test_an_unwritable_report_output_is_one_line(
    shared_folder: pathlib.Path, other_user: int
) -> None:
    config = write_config(shared_folder, PUSH)
    open_engine(config.database_path).dispose()
    (shared_folder / "data").chmod(0o777)
    config.database_path.chmod(0o666)
    (shared_folder / "out").mkdir(mode=0o555)
    (shared_folder / "out").chmod(0o555)
    done = _as(other_user, shared_folder, "report", "--month", "2026-11", "-o", "out/r.json")
    assert done == ["prober: cannot write out/r.json: permission denied"]
