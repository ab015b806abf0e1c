"""How `import-results` stores what it read: the rows themselves, and the rollups, which a
big import rolls up half in a forked process (prober.history._roll_up_aside)."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
import textwrap
from collections.abc import Iterator

import pytest

from prober import history, importcsv
from prober.config import Config, load_config

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
HEADER = "monitor,timestamp,outcome,latency_ms,error\n"
MONITORS = ("api", "web", "db")


def _config(root: pathlib.Path) -> Config:
    root.mkdir(parents=True, exist_ok=True)
    monitors = "".join(
        f'[[monitors]]\nid = "{m}"\ntype = "tcp"\nhost = "127.0.0.1"\nport = 9\n\n'
        for m in MONITORS
    )
    (root / "monitors.toml").write_text(
        textwrap.dedent(
            """
            [settings]
            timezone = "Asia/Kolkata"
            database = "sqlite:///data/prober.db"
            retention_days = 365

            """
        )
        + monitors
    )
    return load_config(str(root / "monitors.toml"))


def _rows(monitors: tuple[str, ...], start: dt.datetime, minutes: int) -> Iterator[str]:
    """One result a minute each: up with varied latencies, a down stretch with a cause, an
    unknown one without latency."""
    for i in range(minutes):
        at = (start + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for n, monitor in enumerate(monitors):
            phase = (i + 97 * n) % 600
            if phase < 7:
                yield f"{monitor},{at},down,{10_000 + phase},refused\n"
            elif phase < 10:
                yield f"{monitor},{at},unknown,,canaries failing\n"
            else:
                yield f"{monitor},{at},up,{(i * 7 + n) % 300 + 0.25 * (i % 4)},\n"


def _write(path: pathlib.Path, rows: Iterator[str]) -> pathlib.Path:
    path.write_text(HEADER + "".join(rows))
    return path


def _derived(config: Config) -> dict[str, list[tuple[object, ...]]]:
    """What an import derives (meta without the `rewrites` counter)."""
    queries = {
        table: f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        for table in ("rollup_hour", "rollup_day", "incident", "coverage")
    }
    queries["meta"] = "SELECT * FROM meta WHERE key != 'rewrites' ORDER BY key"
    conn = sqlite3.connect(config.database_path)
    try:
        return {table: conn.execute(query).fetchall() for table, query in queries.items()}
    finally:
        conn.close()


def _import_twice(root: pathlib.Path) -> dict[str, list[tuple[object, ...]]]:
    """Two days, then rows that reach back into hours already rolled up (day edges in
    +05:30 included) and on past them, as a second file."""
    config = _config(root)
    first = _write(
        root / "first.csv", _rows(MONITORS, dt.datetime(2026, 11, 10, tzinfo=dt.UTC), 2880)
    )
    history.import_results(config, first, now=NOW)
    later = _write(
        root / "later.csv",
        _rows(MONITORS[1:], dt.datetime(2026, 11, 11, 17, 45, tzinfo=dt.UTC), 3000),
    )
    history.import_results(config, later, now=NOW + dt.timedelta(days=1))
    return _derived(config)


@pytest.fixture
def one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "ROLL_UP_ASIDE_MIN_ROWS", 1 << 62)


@pytest.fixture
def aside(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every import rolls up beside itself; returns the monitor ids whose copies came back."""
    monkeypatch.setattr(history, "ROLL_UP_ASIDE_MIN_ROWS", 0)
    monkeypatch.setattr(history, "_cores", lambda: 2)
    put: list[list[int]] = []
    real = history._put_copies

    def spy(conn: sqlite3.Connection, location_id: int, ids: list[int], copies: object) -> None:
        put.append(sorted(ids))
        real(conn, location_id, ids, copies)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "_put_copies", spy)
    return put


@pytest.fixture
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[object, ...]]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(history, "ROLL_UP_ASIDE_MIN_ROWS", 1 << 62)
        return _import_twice(tmp_path_factory.mktemp("single"))


def test_rolling_up_beside_the_import_gives_the_same_rollups(
    tmp_path: pathlib.Path,
    aside: list[list[int]],
    single: dict[str, list[tuple[object, ...]]],
) -> None:
    got = _import_twice(tmp_path)
    assert len(aside) == 2 and all(aside)  # both imports: a share came back from the fork
    assert len(single["rollup_hour"]) > 100 and len(single["rollup_day"]) >= 4
    assert got == single


def test_a_failing_process_aside_leaves_the_rollups_to_the_importer(
    tmp_path: pathlib.Path,
    aside: list[list[int]],
    single: dict[str, list[tuple[object, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("the process aside broke")

    monkeypatch.setattr(history, "_roll_up_aside", fail)  # the fork inherits it
    assert _import_twice(tmp_path) == single
    assert aside == []


def test_small_imports_roll_up_in_one_process(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "_roll_up_aside", None)  # called, it would fail the test
    monkeypatch.setattr(history, "_cores", lambda: 2)
    rows = _rows(MONITORS, dt.datetime(2026, 11, 10, tzinfo=dt.UTC), 60)
    config = _config(tmp_path)
    history.import_results(config, _write(tmp_path / "small.csv", rows), now=NOW)
    assert len(_derived(config)["rollup_hour"]) == 3


def test_rows_are_stored_as_read_and_a_stored_time_keeps_its_row(
    tmp_path: pathlib.Path, one_process: None
) -> None:
    config = _config(tmp_path)
    first = _write(
        tmp_path / "first.csv",
        iter(
            [
                "api,2026-11-10T00:00:00Z,up,12.5,\n",
                "api,2026-11-10T00:01:00Z,down,10000,HTTP 503\n",
                "api,2026-11-10T00:02:00Z,unknown,,canaries failing\n",
                "api,2026-11-10T00:03:00Z,up,12.5,\n",
                "web,2026-11-10T00:00:00Z,degraded,0.0004,slow\n",
            ]
        ),
    )
    summary = history.import_results(config, first, now=NOW)
    assert (summary.rows, summary.added) == (5, 5)
    again = _write(
        tmp_path / "again.csv",
        iter(
            [
                "api,2026-11-10T00:01:00Z,up,1,\n",  # stored already: the stored row stays
                "api,2026-11-10T00:04:00Z,down,,timed out\n",
                "api,2026-11-10T00:05:00Z,up,7,\n",
            ]
        ),
    )
    summary = history.import_results(config, again, now=NOW)
    assert (summary.rows, summary.added) == (3, 2)
    conn = sqlite3.connect(config.database_path)
    try:
        stored = conn.execute(
            "SELECT m.slug, r.ts_ms % 3600000 / 60000, r.outcome, r.latency_us, r.error,"
            " r.status_code, r.details FROM result AS r JOIN monitor AS m ON m.id = r.monitor_id"
            " ORDER BY 1, 2"
        ).fetchall()
    finally:
        conn.close()
    assert stored == [
        ("api", 0, 1, 12_500, None, None, None),
        ("api", 1, 3, 10_000_000, "HTTP 503", None, None),
        ("api", 2, 0, None, "canaries failing", None, None),
        ("api", 3, 1, 12_500, None, None, None),
        ("api", 4, 3, None, "timed out", None, None),
        ("api", 5, 1, 7_000, None, None, None),
        ("web", 0, 2, 0, "slow", None, None),
    ]


def test_a_remembered_latency_does_not_let_bad_ones_through(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path / "latency.csv",
        iter(
            [
                "api,2026-11-10T00:00:00Z,up,12,\n",
                "api,2026-11-10T00:01:00Z,up,12,\n",
                "api,2026-11-10T00:02:00Z,up,-12,\n",
                "api,2026-11-10T00:03:00Z,up,nan,\n",
                "api,2026-11-10T00:04:00Z,up,12 ,\n",
                "api,2026-11-10T00:05:00Z,up,1e13,\n",
                "api,2026-11-10T00:06:00Z,up,0.0015,\n",
            ]
        ),
    )
    parsed = importcsv.parse(path, ["api"])
    assert [(e.line, e.message.split(":")[0]) for e in parsed.errors] == [
        (4, "latency_ms"),
        (5, "latency_ms"),
        (7, "latency_ms"),
    ]
    assert list(parsed.rows["api"].latency_us) == [12_000, 12_000, 12_000, 2]
