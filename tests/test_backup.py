"""`prober backup FILE` while results are being committed, restore from the copy, and
every way it refuses: an existing file, a missing folder, the live file, a damaged one."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
import random
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from prober import cli
from prober.results import CheckResult, Outcome
from prober.store import queries
from prober.store.db import check_integrity, open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
BULK = 300_000  # about 8 MB: a copy of two steps of 1024 pages (4 MB each)


def write_config(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "monitors.toml"
    path.write_text(
        '[settings]\ndatabase = "sqlite:///data/prober.db"\ncanaries = ["tcp://127.0.0.1:1"]\n\n'
        '[[monitors]]\nid = "api"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 1\n'
    )
    return path


def count(path: pathlib.Path) -> int:
    conn = sqlite3.connect(path)
    (n,) = conn.execute("SELECT count(*) FROM result").fetchone()
    conn.close()
    return int(n)


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backup(*args: str) -> int:
    return cli.main(["backup", *args])


@pytest.fixture
def database(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(config, database): a database with history of a monitor no longer configured."""
    config = write_config(tmp_path)
    path = tmp_path / "data" / "prober.db"
    open_engine(path).dispose()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO monitor (slug, type) VALUES ('old', 'http')")
    conn.execute("INSERT INTO location (name) VALUES ('default')")
    t0 = int(T0.timestamp() * 1000) - 400 * 86_400_000
    rng = random.Random(3)
    conn.executemany(
        "INSERT INTO result (monitor_id, ts_ms, location_id, outcome, latency_us) VALUES (1, ?, 1, 1, ?)",
        ((t0 + k * 60_000, rng.randrange(1_000, 900_000)) for k in range(BULK)),
    )
    conn.commit()
    conn.close()
    return config, path


class Feeder:
    """A ResultWriter committing a result every millisecond or so, as `run` does."""

    def __init__(self, path: pathlib.Path) -> None:
        self.writer = ResultWriter(path, "default", [TrackSpec.plain("api")], linger=0.001)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def __enter__(self) -> Feeder:
        self.writer.start()
        self._thread.start()
        deadline = time.monotonic() + 10
        while self.writer.committed < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def _feed(self) -> None:
        k = 0
        while not self._stop.is_set():
            at = T0 + dt.timedelta(seconds=k)
            outcome = Outcome.DOWN if k % 97 < 5 else Outcome.UP
            self.writer.submit(Observation("api", at, CheckResult(outcome, 3.0, error=None)))
            k += 1
            time.sleep(0.0005)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.writer.flush(30)
        self.writer.close()


def test_backup_while_results_are_committed_then_restore(
    database: tuple[pathlib.Path, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, live = database
    dest = tmp_path / "backups" / "prober-2026-11-23.db"
    dest.parent.mkdir()
    with Feeder(live) as feeder:
        committed_before = count(live)  # everything committed before the backup starts
        commits_at_start = feeder.writer.committed
        assert backup("-c", str(config), str(dest)) == 0
        commits_during = feeder.writer.committed - commits_at_start
        assert feeder.writer.healthy()
    assert commits_during > 0  # the writer kept committing while the copy was made

    out = capsys.readouterr().out.strip()
    match = re.fullmatch(r"backed up ([\d,]+) results \(([\d.]+) MB\) to (.+) in ([\d.]+) s", out)
    assert match, out
    copied = int(match[1].replace(",", ""))
    assert match[3] == str(dest)
    assert float(match[2]) == pytest.approx(dest.stat().st_size / 1e6, abs=0.05)
    assert float(match[2]) > 4.2  # more than one step of 1024 pages

    check_integrity(dest)
    assert count(dest) == copied
    assert committed_before <= copied <= count(live)
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no -wal, no .partial
    conn = sqlite3.connect(dest)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
    conn.close()

    # Restore: the prober is stopped (the feeder closed); put the copy in place of the
    # database and its -wal / -shm, start again.
    lost_after_backup = count(live) - copied
    for side in ("", "-wal", "-shm"):
        live.with_name(live.name + side).unlink(missing_ok=True)
    shutil.copyfile(dest, live)
    engine = open_engine(live, check=True)
    assert queries.count_results(engine) == copied
    engine.dispose()
    assert lost_after_backup >= 0
    assert cli.main(["report", "-c", str(config), "--month", "2026-11"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["id"] for m in report["monitors"]] == ["api"]


def test_an_existing_file_is_kept_unless_forced(
    database: tuple[pathlib.Path, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = database
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"yesterday's backup")
    assert backup("-c", str(config), str(dest)) == 1
    assert capsys.readouterr().err.endswith(
        f"prober: {dest} exists: pass --force to overwrite it\n"
    )
    assert dest.read_bytes() == b"yesterday's backup"

    assert backup("-c", str(config), str(dest), "--force") == 0
    assert count(dest) == BULK
    check_integrity(dest)
    assert list(tmp_path.glob("*.partial")) == []


def test_refusals_leave_nothing_behind(
    database: tuple[pathlib.Path, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, live = database
    before = sorted(tmp_path.rglob("*"))

    missing = tmp_path / "no" / "such" / "folder" / "copy.db"
    assert backup("-c", str(config), str(missing)) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"prober: {missing}: the folder {missing.parent} does not exist\n")
    assert "Traceback" not in err

    assert backup("-c", str(config), str(live)) == 1
    assert f"{live} is the live database" in capsys.readouterr().err
    assert backup("-c", str(config), str(live.parent / "prober.db-wal"), "--force") == 1
    assert "is the live database" in capsys.readouterr().err

    assert backup("-c", str(config), str(tmp_path)) == 1
    assert "is a folder: name the file to write" in capsys.readouterr().err

    assert sorted(tmp_path.rglob("*")) == before
    check_integrity(live)


def test_a_damaged_database_is_not_passed_off_as_a_backup(
    database: tuple[pathlib.Path, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, live = database
    conn = sqlite3.connect(live)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    conn.close()
    assert not live.with_name("prober.db-wal").exists()
    with live.open("r+b") as f:  # one page in the middle overwritten
        f.seek(page_size * (pages // 2))
        f.write(random.Random(1).randbytes(page_size))

    dest = tmp_path / "copy.db"
    assert backup("-c", str(config), str(dest)) == 1
    err = capsys.readouterr().err
    assert f"prober: the copy of {live} failed SQLite's integrity check" in err
    assert "restore from a backup: see docs/DEPLOY.md" in err
    assert err.rstrip().endswith(f"nothing was written to {dest}")
    assert not dest.exists()
    assert list(tmp_path.glob("copy.db*")) == []  # the .partial copy was removed


def test_no_database_yet(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert backup("-c", str(config), str(tmp_path / "copy.db")) == 1
    assert "no database there to back up" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # not created by asking


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
