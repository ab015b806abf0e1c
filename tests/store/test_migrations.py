"""Schema migrations on real files: a version-1 database (the released schema, dumped in
fixtures/schema_v1.sql) filled with history, upgraded by open_engine; and quick_check."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import pathlib
import random
import re
import shutil
import sqlite3
import threading
from zoneinfo import ZoneInfo

import pytest

from prober import cli
from prober.store import queries, rollups, upkeep
from prober.store.db import (
    DatabaseCorrupt,
    SchemaError,
    check_integrity,
    connect_raw,
    open_engine,
)
from prober.store.migrations import MIGRATIONS, schema_problems, step_1_to_2
from prober.store.tables import SCHEMA_VERSION

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "schema_v1.sql"
V1_TABLES = (
    "monitor",
    "location",
    "result",
    "meta",
    "transition",
    "incident",
    "coverage",
    "monitor_state",
    "rollup_hour",
    "rollup_day",
)
T0 = 1_793_491_200_000  # 2026-11-01T00:00Z in epoch ms
HOUR = 3_600_000


def make_v1(path: pathlib.Path) -> None:
    """A file as version 1 left it: the released schema, WAL, and some history."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(FIXTURE.read_text())
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    fill(conn)
    conn.commit()
    conn.close()


def fill(conn: sqlite3.Connection) -> None:
    """Four monitors at two locations, two hours of results at 60 s, and everything the
    ledger derives from them, written straight in SQL."""
    rng = random.Random(20261123)
    monitors = [(1, "api", "http"), (2, "web", "http"), (3, "db", "tcp"), (4, "dns", "dns")]
    conn.executemany("INSERT INTO monitor VALUES (?, ?, ?)", monitors)
    conn.executemany("INSERT INTO location VALUES (?, ?)", [(1, "default"), (2, "서울")])
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("heartbeat", str(T0 + 2 * HOUR)), ("rollup_until_ms", str(T0 + HOUR))],
    )
    for monitor_id, _, kind in monitors:
        for location_id in (1, 2):
            previous = None
            for k in range(120):
                ts = T0 + k * 60_000
                outcome = rng.choices((1, 2, 3, 0), weights=(80, 8, 10, 2))[0]
                down = outcome == 3
                conn.execute(
                    "INSERT INTO result VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        monitor_id,
                        ts,
                        location_id,
                        outcome,
                        None if outcome == 0 else rng.randrange(1_000, 5_000_000),
                        (503 if down else 200) if kind == "http" else None,
                        'status: saw 503, wanted [200] "quoted" ✓' if down else None,
                        rng.randrange(100, 9_000) if kind == "http" else None,
                        rng.randrange(100, 9_000),
                        rng.randrange(100, 90_000) if kind == "http" else None,
                        rng.randrange(100, 900_000) if kind == "http" else None,
                        1_800_000_000 if kind == "http" else None,
                        json.dumps({"failed": [{"name": "status"}]}) if down else None,
                    ),
                )
                status = {0: "unknown", 1: "up", 2: "up", 3: "down"}[outcome]
                if status != previous:
                    conn.execute(
                        "INSERT INTO transition VALUES (?, ?, ?, ?, ?)",
                        (monitor_id, location_id, ts, previous, status),
                    )
                    previous = status
            conn.executemany(
                "INSERT INTO incident VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (monitor_id, location_id, T0 + 600_000, T0 + 720_000, T0 + 900_000,
                     T0 + 900_000, "connect: refused"),
                    (monitor_id, location_id, T0 + 6_000_000, T0 + 6_120_000, None, None,
                     "status: saw 503"),
                ],
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO coverage VALUES (?, ?, ?, ?)",
                [
                    (monitor_id, location_id, T0, T0 + 1_800_000),
                    (monitor_id, location_id, T0 + 2_400_000, None),
                ],
            )
            conn.execute(
                "INSERT INTO monitor_state VALUES (?, ?, ?, ?)",
                (monitor_id, location_id, T0 + 7_140_000, json.dumps({"status": previous})),
            )
            for hour in range(2):
                conn.execute(
                    "INSERT INTO rollup_hour VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (55, 2, 3, 0, 57, 57_000_000, 1_000, 4_900_000, '{"12":40,"13":17}',
                     monitor_id, location_id, T0 + hour * HOUR),
                )  # fmt: skip
            conn.execute(
                "INSERT INTO rollup_day VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (110, 4, 6, 0, 114, 114_000_000, 1_000, 4_900_000, "{}",
                 monitor_id, location_id, "2026-11-01"),
            )  # fmt: skip


def dump(path: pathlib.Path) -> dict[str, list[dict[str, object]]]:
    """Every row of every version-1 table, by column name (version 2 reorders the rollup
    tables' columns), in a stable order."""
    conn = sqlite3.connect(path)
    tables = {}
    for table in V1_TABLES:
        names = sorted(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
        columns = ", ".join(f'"{name}"' for name in names)
        rows = conn.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}").fetchall()
        tables[table] = [dict(zip(names, row, strict=True)) for row in rows]
    conn.close()
    return tables


def schema(path: pathlib.Path) -> set[tuple[str, str, str]]:
    """(type, name, sql without whitespace) of every table and index."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    conn.close()
    return {(kind, name, re.sub(r"\s+", "", sql or "")) for kind, name, sql in rows}


def version(path: pathlib.Path) -> str:
    conn = sqlite3.connect(path)
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    return str(value)


def without_version(tables: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    return {
        name: [row for row in rows if row.get("key") != "schema_version"]
        for name, rows in tables.items()
    }


def test_version_1_is_upgraded_in_place_after_a_backup(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prober.db"
    make_v1(path)
    before = dump(path)
    assert sum(len(rows) for rows in before.values()) > 1000
    assert len(before["result"]) == 960

    with caplog.at_level(logging.INFO, logger="prober.store.migrations"):
        engine = open_engine(path)

    assert SCHEMA_VERSION == 7
    assert version(path) == "7"
    # The backup: beside the file, named for the old version, the database as it was.
    (backup,) = tmp_path.glob("prober.db.v1-*.bak")
    assert re.fullmatch(r"prober\.db\.v1-\d{8}T\d{6}Z\.bak", backup.name)
    check_integrity(backup)
    assert version(backup) == "1"
    assert dump(backup) == before
    assert {name for _, name, _ in schema(backup)} >= set(V1_TABLES)
    assert "alert" not in {name for _, name, _ in schema(backup)}
    assert list(tmp_path.glob("*.partial")) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"database upgraded from version 1 to 7, backup at {backup}"
    ]
    # Every row as it was but the histograms, in version 3's buckets; the version moved.
    after = dump(path)
    expected = {name: [dict(row) for row in rows] for name, rows in before.items()}
    for table in ("rollup_hour", "rollup_day"):
        for row in expected[table]:
            row["hist"] = {'{"12":40,"13":17}': "[963,40,15,17]", "{}": "[]"}[str(row["hist"])]
    # ... and the end of the converted hours, for upkeep to roll up again.
    expected["meta"].append({"key": upkeep.REROLL_UNTIL_KEY, "value": str(T0 + 2 * HOUR)})
    expected["meta"].sort(key=lambda row: (str(row["key"]), str(row["value"])))
    assert without_version(after) == without_version(expected)
    # What version 2 added.
    names = {(kind, name) for kind, name, _ in schema(path)}
    assert {("table", "alert"), ("table", "push_token")} <= names
    # What version 4 added: email subscriptions.
    assert {("table", "subscriber"), ("table", "subscriber_token"), ("table", "announced")} <= names
    # What version 5 added: remediation attempts; version 6, their command's process.
    assert {("table", "remediation"), ("index", "remediation_monitor")} <= names
    # What version 7 added: the inbox of several hubs on one PostgreSQL database.
    assert ("table", "inbox") in names
    assert {
        ("index", "alert_pending"),
        ("index", "alert_incident"),
        ("index", "incident_open"),
    } <= names
    # The rollup tables lead with their key, and quick_check (3.40's too) finds nothing.
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(rollup_hour)")]
    assert columns[:3] == ["monitor_id", "location_id", "hour_ms"]
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    conn.close()
    # The same schema as a database created new by this version.
    fresh = tmp_path / "fresh.db"
    open_engine(fresh).dispose()
    assert schema(path) == schema(fresh)
    # The engine reads it, and the new tables take rows.
    assert queries.count_results(engine) == 960
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO push_token VALUES ('api', 'x' * 32)")
    conn.execute(
        "INSERT INTO alert (key, notifier, kind, monitor, incident, created_ms, due_ms, state,"
        " attempts, silenced, data) VALUES ('k', 'ops', 'opened', 'api', 'i', 1, 1, 'pending',"
        " 0, 0, '{}')"
    )
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM incident WHERE location_id = 1 AND end_ms IS NULL"
    ).fetchall()
    conn.commit()
    conn.close()
    assert "incident_open" in str(plan)

    # Opening it again is a no-op: no second backup, nothing logged, nothing changed.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="prober.store.migrations"):
        open_engine(path).dispose()
    assert list(tmp_path.glob("*.bak")) == [backup]
    assert caplog.records == []
    assert version(path) == str(SCHEMA_VERSION)


def test_a_new_file_gets_the_current_schema_without_steps_or_backup(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "new" / "prober.db"
    open_engine(path).dispose()
    assert version(path) == str(SCHEMA_VERSION)
    assert list(path.parent.iterdir()) == [path]
    conn = sqlite3.connect(path)
    assert schema_problems(conn) == []
    conn.close()


def _v2_bucket_ms(latency_us: int) -> int:
    """Version 2's histogram key: whole ms below 100 ms, else its first 2 digits."""
    ms = latency_us // 1000
    return ms if ms < 100 else ms - ms % 10 ** (len(str(ms)) - 2)


def _v2_json(counts: collections.Counter[int]) -> str:
    """Version 2's histogram text: {"12":3,"120":1}."""
    return json.dumps({str(k): n for k, n in sorted(counts.items())}, separators=(",", ":"))


def test_version_2_histograms_move_to_the_middle_of_their_buckets(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: version 2 reported 270 ms for an exact 279 (a bucket's lower edge). An
    upgraded file keeps its old resolution but reads each old bucket at its middle, and a
    day stays the sum of its hours."""
    path = tmp_path / "prober.db"
    make_v1(path)
    conn = sqlite3.connect(path)
    step_1_to_2(conn)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("DELETE FROM rollup_hour")
    conn.execute("DELETE FROM rollup_day")
    rng = random.Random(17)
    hours = [
        [279_000] * 40 + [459_000] * 20,
        [rng.randrange(0, 100_000) for _ in range(60)],
        [rng.randrange(0, 30_000_000) for _ in range(60)],
        [],  # no latency (every check failed)
    ]
    day: collections.Counter[int] = collections.Counter()
    for h, latencies in enumerate(hours):
        v2 = collections.Counter(map(_v2_bucket_ms, latencies))
        day.update(v2)
        conn.execute(
            "INSERT INTO rollup_hour (monitor_id, location_id, hour_ms, up, degraded, down,"
            " unknown, lat_count, lat_sum_us, lat_min_us, lat_max_us, hist)"
            " VALUES (1, 1, ?, ?, 0, 0, 0, ?, ?, ?, ?, ?)",
            (T0 + h * HOUR, len(latencies), len(latencies), sum(latencies),
             min(latencies, default=None), max(latencies, default=None), _v2_json(v2)),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO rollup_day (monitor_id, location_id, day, up, degraded, down, unknown,"
        " lat_count, lat_sum_us, hist) VALUES (1, 1, '2026-11-01', ?, 0, 0, 0, ?, 0, ?)",
        (day.total(), day.total(), _v2_json(day)),
    )
    conn.commit()
    conn.close()

    with caplog.at_level(logging.INFO, logger="prober.store.migrations"):
        open_engine(path).dispose()
    (backup,) = tmp_path.glob("prober.db.v2-*.bak")
    assert [r.getMessage() for r in caplog.records] == [
        f"database upgraded from version 2 to {SCHEMA_VERSION}, backup at {backup}"
    ]
    conn = sqlite3.connect(path)
    stored = rollups.read_hours(conn, [1], T0, T0 + 4 * HOUR)
    (stored_day,) = rollups.read_days(conn, [1], *[dt.date(2026, 11, 1)] * 2)
    conn.close()
    for hour, latencies in zip(stored, hours, strict=True):
        middles = rollups.Histogram()
        for latency in latencies:
            ms = _v2_bucket_ms(latency)
            width = 1 if ms < 100 else 10 ** (len(str(ms)) - 2)
            middles.add(rollups.bucket(ms * 1000 + width * 500))
        assert hour.hist == middles
    assert stored[-1].hist == rollups.Histogram()
    assert stored_day.hist == rollups.combine(stored).hist
    p50, p95 = stored[0].hist.percentiles(50, 95)  # exact: 279 and 459; version 2: 270, 450
    assert (p50, p95) == (pytest.approx(275, rel=1 / 256), pytest.approx(455, rel=1 / 256))


@pytest.mark.parametrize(
    ("chunk", "budget_s", "passes"),
    [
        (upkeep.CHUNK, 3600.0, 1),  # everything in one pass
        (2, 0.0, 5),  # one transaction per pass: 2 spans of a day x 2 chunks of monitors
    ],
)
def test_hours_with_raw_results_are_rolled_up_again_after_the_upgrade(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    budget_s: float,
    passes: int,
) -> None:
    """A version 2 file with 30 hours of raw results and an hour whose results were pruned,
    its rollups in version 2's buckets: after the upgrade, upkeep passes roll up again every
    hour with raw results, and the local days, as a fresh roll-up would; the pruned hour
    keeps its converted histogram, and its day counts it."""
    monkeypatch.setattr(upkeep, "CHUNK", chunk)
    monkeypatch.setattr(upkeep, "REROLL_BUDGET_S", budget_s)
    tz = ZoneInfo("Europe/Berlin")  # 2026-11-01 local is T0 - 1 h .. T0 + 23 h
    end = T0 + 30 * HOUR
    path = tmp_path / "prober.db"
    make_v1(path)  # results in the first 2 hours
    conn = sqlite3.connect(path)
    step_1_to_2(conn)
    rng = random.Random(33)
    conn.executemany(
        "INSERT INTO result (monitor_id, ts_ms, location_id, outcome, latency_us)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (monitor_id, ts, location_id, rng.choice((1, 1, 1, 2, 3)),
             rng.randrange(100_000, 3_000_000))
            for monitor_id in (1, 2, 3, 4)
            for location_id in (1, 2)
            for ts in range(T0 + 2 * HOUR, end, 300_000)
        ],
    )  # fmt: skip
    conn.commit()
    conn.close()
    # Rollups as version 2 made them: today's counts, version 2's histograms.
    conn = connect_raw(path)
    conn.execute("DELETE FROM rollup_hour")
    conn.execute("DELETE FROM rollup_day")
    for monitor_id in (1, 2, 3, 4):
        for location_id in (1, 2):
            rollups.rollup_span(conn, monitor_id, location_id, T0, end, tz)
    pruned = (1, 1, T0 - HOUR)
    conn.execute(
        "INSERT INTO rollup_hour (monitor_id, location_id, hour_ms, up, degraded, down,"
        " unknown, lat_count, lat_sum_us, lat_min_us, lat_max_us, hist)"
        " VALUES (?, ?, ?, 7, 0, 0, 0, 7, 2610000, 270000, 459000, '[]')",
        pruned,
    )
    rollups.rollup_days(conn, 1, 1, [dt.date(2026, 11, 1)], tz)  # counts the pruned hour
    v2_hours = {pruned: collections.Counter({270: 5, 450: 2})}
    for key in conn.execute("SELECT monitor_id, location_id, hour_ms FROM rollup_hour"):
        if key != pruned:
            latencies = conn.execute(
                "SELECT latency_us FROM result WHERE monitor_id = ? AND location_id = ?"
                f" AND ts_ms >= ? AND ts_ms < ? AND outcome IN {rollups.TIMED_CODES}"
                " AND latency_us IS NOT NULL",
                (*key[:2], key[2], key[2] + HOUR),
            )
            v2_hours[key] = collections.Counter(_v2_bucket_ms(us) for (us,) in latencies)
    v2_days: dict[tuple[int, int, str], collections.Counter[int]] = {}
    for (monitor_id, location_id, hour_ms), counts in v2_hours.items():
        day = dt.datetime.fromtimestamp(hour_ms / 1000, tz).date().isoformat()
        v2_days.setdefault((monitor_id, location_id, day), collections.Counter()).update(counts)
    conn.executemany(
        "UPDATE rollup_hour SET hist = ? WHERE monitor_id = ? AND location_id = ? AND hour_ms = ?",
        [(_v2_json(counts), *key) for key, counts in v2_hours.items()],
    )
    conn.executemany(
        "UPDATE rollup_day SET hist = ? WHERE monitor_id = ? AND location_id = ? AND day = ?",
        [(_v2_json(counts), *key) for key, counts in v2_days.items()],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [("schema_version", "2"), ("rollup_until_ms", str(end)), ("pruned_before_ms", str(T0))],
    )
    conn.close()

    open_engine(path).dispose()
    conn = connect_raw(path)
    monitors = [1, 2, 3, 4]
    days = (dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    converted = rollups.read_hours(conn, monitors, T0 - HOUR, end)
    assert conn.execute(
        "SELECT value FROM meta WHERE key = ?", (upkeep.REROLL_UNTIL_KEY,)
    ).fetchone() == (str(end),)

    job = upkeep.Upkeep(1, monitors, tz, grace_s=0, retention_days=3650)
    for _ in range(passes):
        assert conn.execute("SELECT 1 FROM meta WHERE key LIKE 'rollup_reroll%'").fetchone()
        job.run(conn, now_ms=end)
    assert conn.execute("SELECT 1 FROM meta WHERE key LIKE 'rollup_reroll%'").fetchone() is None
    hours = rollups.read_hours(conn, monitors, T0 - HOUR, end)
    day_rows = rollups.read_days(conn, monitors, *days)

    # What rolling up the same raw results afresh gives (the pruned hour: as stored).
    for monitor_id in monitors:
        for location_id in (1, 2):
            rollups.rollup_span(conn, monitor_id, location_id, T0, end, tz)
    fresh = rollups.read_hours(conn, monitors, T0 - HOUR, end)
    assert len(hours) == 8 * 30 + 1
    assert hours == fresh
    assert day_rows == rollups.read_days(conn, monitors, *days)
    assert hours[0] == converted[0]  # the pruned hour, converted
    assert (hours[0].monitor_id, hours[0].location_id, hours[0].hour_ms) == pruned
    assert hours[0].hist.percentiles(50, 95) == [
        pytest.approx(275, rel=1 / 256),
        pytest.approx(455, rel=1 / 256),
    ]
    assert sum(h.hist != c.hist for h, c in zip(hours, converted, strict=True)) > 200
    assert day_rows[0].hist == rollups.combine(hours[:24]).hist  # the pruned hour's day
    conn.close()


def test_every_version_has_a_step() -> None:
    assert sorted(MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


def test_a_newer_version_is_refused_and_left_alone(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "prober.db"
    open_engine(path).dispose()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError) as caught:
        open_engine(path)
    assert str(caught.value) == (
        f"{path}: the database has schema version 99; this prober knows versions up to "
        f"{SCHEMA_VERSION}: run a newer prober (or restore a backup made before the upgrade)"
    )
    assert version(path) == "99"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prober.db"]
    # A command says so in one line, no traceback.
    config = tmp_path / "monitors.toml"
    config.write_text('[settings]\ndatabase = "sqlite:///prober.db"\n')
    assert cli.main(["prune", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"prober: {caught.value}\n" in err
    assert "Traceback" not in err


def test_version_1_from_a_development_build_keeps_its_alerts(tmp_path: pathlib.Path) -> None:
    """Development builds of version 1 created the alert and push_token tables already."""
    path = tmp_path / "prober.db"
    make_v1(path)
    conn = sqlite3.connect(path)
    step_1_to_2(conn)
    conn.execute("INSERT INTO push_token VALUES ('api', 'secret-token-value')")
    conn.commit()
    conn.close()
    open_engine(path).dispose()
    assert version(path) == str(SCHEMA_VERSION)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT * FROM push_token").fetchall() == [("api", "secret-token-value")]
    conn.close()


def test_an_upgrade_that_does_not_reach_the_schema_changes_nothing(tmp_path: pathlib.Path) -> None:
    """An `alert` table of another shape (an early development build) is not papered over:
    the whole upgrade rolls back, and the message says what differs."""
    path = tmp_path / "prober.db"
    make_v1(path)
    conn = sqlite3.connect(path)
    conn.execute(
        'CREATE TABLE alert (id INTEGER PRIMARY KEY, "key" TEXT, notifier TEXT, incident TEXT,'
        " state TEXT, due_ms INTEGER)"
    )
    conn.commit()
    conn.close()
    before = dump(path)
    with pytest.raises(
        SchemaError, match=rf"the schema differs from version {SCHEMA_VERSION}'s: alert is"
    ) as caught:
        open_engine(path)
    assert "nothing was changed" in str(caught.value)
    assert version(path) == "1"
    assert dump(path) == before
    names = {name for _, name, _ in schema(path)}
    assert "push_token" not in names and "incident_open" not in names
    (backup,) = tmp_path.glob("prober.db.v1-*.bak")
    assert str(backup) in str(caught.value)


def test_two_processes_opening_an_old_file_upgrade_it_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "prober.db"
    make_v1(path)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        start.wait()
        try:
            open_engine(path).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert version(path) == str(SCHEMA_VERSION)
    assert len(list(tmp_path.glob("*.bak"))) == 1


def _damage(source: pathlib.Path, dest: pathlib.Path) -> None:
    """A copy of `source` with one page in the middle of the file (not page 1) overwritten."""
    shutil.copyfile(source, dest)
    conn = sqlite3.connect(dest)
    conn.execute("VACUUM")  # the upgrade dropped the old rollup tables: no free pages left
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # every page in use
    conn.close()
    assert pages >= 8
    with dest.open("r+b") as f:
        f.seek(page_size * (pages // 2))
        f.write(random.Random(1).randbytes(page_size))


def test_quick_check_refuses_a_damaged_file_with_a_clear_message(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "prober.db"
    make_v1(path)
    open_engine(path).dispose()  # all connections closed: the WAL is folded into the file
    assert not (tmp_path / "prober.db-wal").exists()
    check_integrity(path)  # sound
    open_engine(path, check=True).dispose()

    damaged = tmp_path / "damaged.db"
    _damage(path, damaged)
    with pytest.raises(DatabaseCorrupt) as caught:
        check_integrity(damaged)
    message = str(caught.value)
    assert message.startswith(f"{damaged}: the database is damaged: SQLite's integrity check")
    assert "PRAGMA quick_check" in message
    assert message.endswith("restore from a backup: see docs/DEPLOY.md")
    assert isinstance(caught.value, SchemaError)  # the CLI prints it in one line
    with pytest.raises(DatabaseCorrupt, match="restore from a backup"):
        open_engine(damaged, check=True)

    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("these are not the pages you are looking for\n" * 200)
    with pytest.raises(DatabaseCorrupt, match="file is not a database"):
        check_integrity(not_a_database)
    with pytest.raises(DatabaseCorrupt, match="file is not a database"):
        open_engine(not_a_database)
    check_integrity(tmp_path / "missing.db")  # nothing to check yet: a new file


def test_quick_check_sees_through_sqlite_3_40s_false_null_reports(tmp_path: pathlib.Path) -> None:
    """SQLite 3.40.0-3.41.0 (Debian 12's 3.40.1) reports "NULL value in rollup_day.up" on
    every row of version 1's rollup tables. The check must pass such a file (it is how
    an upgrade starts) and still report a NULL that is really there."""
    path = tmp_path / "prober.db"
    make_v1(path)
    conn = sqlite3.connect(path)
    raw = [row[0] for row in conn.execute("PRAGMA quick_check")]
    conn.close()
    if sqlite3.sqlite_version_info[:2] in ((3, 40), (3, 41)):
        assert raw[0].startswith("NULL value in rollup_")  # the filter is exercised here
    check_integrity(path)

    real = tmp_path / "real-null.db"
    conn = sqlite3.connect(real)
    conn.execute(
        "CREATE TABLE t (up INTEGER, hist VARCHAR NOT NULL, m INTEGER NOT NULL,"
        " d INTEGER NOT NULL, PRIMARY KEY (m, d)) WITHOUT ROWID"
    )
    conn.executemany("INSERT INTO t VALUES (?, '{}', 1, ?)", [(None, 1), (5, 2)])
    conn.execute("PRAGMA writable_schema = ON")  # now declare `up` NOT NULL after the fact
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, 'up INTEGER', 'up INTEGER NOT NULL')")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseCorrupt, match=r"NULL value in t\.up"):
        check_integrity(real)
