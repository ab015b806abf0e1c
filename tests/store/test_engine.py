"""prober.store.engine: the SQLite dialect as PostgreSQL takes it (each form the store uses,
translated and then run on both engines for the same answer), psycopg's errors as sqlite3's,
a URL shown without its password, loosely typed parameters, a reader's snapshot."""

from __future__ import annotations

import json
import pathlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from prober.store.db import open_database
from prober.store.engine import Connection, Database, PgConnection, connect, statement, translate
from tests.support.pg import Cluster

# --- the translation -------------------------------------------------------------------


def test_placeholders_become_percent_s() -> None:
    found = statement("SELECT a FROM t WHERE b = ? AND c IN (?, ?)")
    assert found.sql == "SELECT a FROM t WHERE b = %s AND c IN (%s, %s)"
    assert found.order is None
    assert found.bind((1, 2, 3)) == (1, 2, 3)


def test_numbered_placeholders_may_take_one_value_twice() -> None:
    found = statement("SELECT ?2 FROM t WHERE a = ?1 AND b = ?1 AND c > ?2")
    assert found.sql == "SELECT %s FROM t WHERE a = %s AND b = %s AND c > %s"
    assert found.order == (1, 0, 0, 1)
    assert found.bind(("x", 7)) == [7, "x", "x", 7]


def test_percent_signs_are_doubled_and_question_marks_in_literals_kept() -> None:
    sql = "SELECT ts_ms % 60, 'what?' FROM r WHERE e LIKE 'certificate expires in %' AND x = ?"
    assert translate(sql) == (
        "SELECT ts_ms %% 60, 'what?' FROM r WHERE e LIKE 'certificate expires in %%' AND x = %s"
    )
    # quotes inside literals and quoted names
    assert translate("SELECT 'it''s ?', \"a?b\" FROM t WHERE c = ?") == (
        "SELECT 'it''s ?', \"a?b\" FROM t WHERE c = %s"
    )


def test_insert_or_ignore_does_nothing_on_a_conflict_before_returning() -> None:
    assert translate("INSERT OR IGNORE INTO location (name) VALUES (?)") == (
        "INSERT INTO location (name) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert translate("insert or ignore into alert (key) values (?) RETURNING id;") == (
        "INSERT INTO alert (key) values (%s) ON CONFLICT DO NOTHING RETURNING id"
    )


def test_insert_or_replace_upserts_on_the_primary_key() -> None:
    assert translate("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)") == (
        'INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "value"'
        ' = EXCLUDED."value"'
    )
    sql = (
        "INSERT OR REPLACE INTO monitor_state (monitor_id, location_id, state, as_of_ms)"
        " VALUES (?, ?, ?, ?) RETURNING as_of_ms"
    )
    assert translate(sql) == (
        "INSERT INTO monitor_state (monitor_id, location_id, state, as_of_ms)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (monitor_id, location_id) DO UPDATE SET"
        ' "state" = EXCLUDED."state", "as_of_ms" = EXCLUDED."as_of_ms" RETURNING as_of_ms'
    )
    # every column in the key: nothing to update
    assert translate("INSERT OR REPLACE INTO announced (key) VALUES (?)").endswith(
        "ON CONFLICT (key) DO NOTHING"
    )
    with pytest.raises(KeyError, match="not a table"):
        translate("INSERT OR REPLACE INTO nowhere (a) VALUES (?)")


def test_group_concat_becomes_string_agg_of_text() -> None:
    assert translate("SELECT group_concat(l.name) FROM x") == (
        "SELECT string_agg((l.name)::text, ',') FROM x"
    )
    assert translate("SELECT GROUP_CONCAT(coalesce(a, (b + 1))), group_concat(c) FROM x") == (
        "SELECT string_agg((coalesce(a, (b + 1)))::text, ','), string_agg((c)::text, ',') FROM x"
    )


def test_json_each_of_an_array() -> None:
    # of text values (slugs)
    assert translate("SELECT id FROM monitor WHERE slug IN (SELECT value FROM json_each(?))") == (
        "SELECT id FROM monitor WHERE slug IN"
        " (SELECT value FROM json_array_elements_text(%s::json) AS each(value))"
    )
    # of integers, and of pairs of integers read with ->> N
    assert translate("SELECT j.value FROM json_each(?) AS j") == (
        "SELECT (j.value #>> '{}')::bigint FROM json_array_elements(%s::json) AS j(value)"
    )
    assert translate("SELECT j.value ->> 0, j.value ->> 1 FROM json_each(?) AS j") == (
        "SELECT (j.value ->> 0)::bigint, (j.value ->> 1)::bigint"
        " FROM json_array_elements(%s::json) AS j(value)"
    )


def test_json_extract_arrow_and_ifnull() -> None:
    assert translate("SELECT json_extract(s.state, '$.alias_ms') FROM s") == (
        "SELECT (s.state::json #>> '{alias_ms}') FROM s"
    )
    assert translate("SELECT json_extract(state, '$.tracker.run') FROM s") == (
        "SELECT (state::json #>> '{tracker,run}') FROM s"
    )
    assert translate("SELECT 1 FROM a WHERE json_extract(data, '$.' || ?) IS NOT NULL") == (
        "SELECT 1 FROM a WHERE (data::json ->> %s) IS NOT NULL"
    )
    assert translate("SELECT details ->> '$.push' FROM r") == (
        "SELECT (details::json #>> '{push}') FROM r"
    )
    assert translate("SELECT ifnull(end_ms, '') FROM i") == (
        "SELECT coalesce((end_ms)::text, '') FROM i"
    )
    assert translate("SELECT IFNULL(a, 0) FROM i") == "SELECT coalesce(a, 0) FROM i"


def test_statements_are_translated_once() -> None:
    sql = "SELECT ? FROM meta WHERE key = 'translated once'"
    assert statement(sql) is statement(sql)


# --- on both engines ---------------------------------------------------------------------


@pytest.fixture
def engines(tmp_path: pathlib.Path, pg_url: str) -> Iterator[dict[str, Connection]]:
    """The store's schema in a SQLite file and in a PostgreSQL database, a connection to
    each (autocommit)."""
    found: dict[str, Connection] = {}
    for name, db in (
        ("sqlite", Database.of("sqlite:///p.db", tmp_path)),
        ("postgresql", Database.of(pg_url, tmp_path)),
    ):
        open_database(db)
        found[name] = connect(db)
    yield found
    for conn in found.values():
        conn.close()


def _both(engines: dict[str, Connection], sql: str, parameters: Any = ()) -> list[Any]:
    """The rows of `sql` on each engine, which must agree (values and types)."""
    rows = {name: conn.execute(sql, parameters).fetchall() for name, conn in engines.items()}
    lite, pg = (
        [tuple(r) for r in rows["sqlite"]],
        [tuple(r) for r in rows["postgresql"]],
    )
    assert lite == pg, sql
    assert repr(lite) == repr(pg), f"{sql}: the same values, of different types"
    return lite


def _each(engines: dict[str, Connection], sql: str, parameters: Any = ()) -> None:
    for conn in engines.values():
        conn.execute(sql, parameters)


def test_every_form_answers_the_same_on_both(engines: dict[str, Connection]) -> None:
    for slug in ("api", "web", "db"):
        _each(engines, "INSERT INTO monitor (slug, type) VALUES (?, 'http')", (slug,))
    _each(engines, "INSERT OR IGNORE INTO location (name) VALUES (?)", ("hub",))
    _each(engines, "INSERT OR IGNORE INTO location (name) VALUES (?)", ("hub",))
    rows = [
        (1, 60_000, 1, 3, 5000, "status 50% of ?", '{"push":"missed"}'),
        (1, 120_000, 1, 1, 7000, None, None),
        (2, 60_000, 1, 1, 8001, None, '{"push":"ping"}'),
    ]
    for conn in engines.values():
        conn.executemany(
            "INSERT OR IGNORE INTO result (monitor_id, ts_ms, location_id, outcome, latency_us,"
            " error, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [*rows, rows[0]],
        )
    assert _both(engines, "SELECT count(*) FROM result") == [(3,)]
    assert _both(
        engines,
        "SELECT monitor_id, count(*), count(error), sum(latency_us), min(latency_us),"
        " max(ts_ms) FROM result GROUP BY monitor_id ORDER BY monitor_id",
    ) == [(1, 2, 1, 12000, 5000, 120_000), (2, 1, 0, 8001, 8001, 60_000)]
    assert _both(
        engines, "SELECT sum(latency_us) / 2.0, ts_ms % 7 FROM result GROUP BY ts_ms ORDER BY ts_ms"
    ) == [(6500.5, 60_000 % 7), (3500.0, 120_000 % 7)]
    assert _both(
        engines,
        "SELECT ts_ms FROM result WHERE monitor_id = ?1 AND ts_ms > ?2 - 60000"
        " AND ts_ms <= ?2 ORDER BY ts_ms",
        (1, 120_000),
    ) == [(120_000,)]
    assert _both(engines, "SELECT '100%', 7 % 4") == [("100%", 3)]  # no parameters
    assert _both(
        engines,
        "SELECT error FROM result WHERE error LIKE 'status 50% of ?' AND monitor_id = ?",
        (1,),
    ) == [("status 50% of ?",)]
    assert _both(
        engines,
        "SELECT r.ts_ms, ifnull(details ->> '$.push', '') FROM result r"
        " WHERE ifnull(r.details ->> '$.push', '') != 'missed' ORDER BY r.monitor_id, r.ts_ms",
    ) == [(120_000, ""), (60_000, "ping")]
    assert _both(
        engines,
        "SELECT m.slug, group_concat(r.ts_ms) FROM monitor m JOIN result r ON r.monitor_id = m.id"
        " WHERE m.id = ? GROUP BY m.slug",
        (2,),
    ) == [("web", "60000")]
    assert _both(
        engines,
        "SELECT id FROM monitor WHERE slug IN (SELECT value FROM json_each(?)) ORDER BY id",
        ('["db", "api", "nope"]',),
    ) == [(1,), (3,)]
    assert _both(
        engines,
        "SELECT j.value, (SELECT max(ts_ms) FROM result WHERE monitor_id = j.value)"
        " FROM json_each(?) AS j ORDER BY j.value",
        ("[3, 1]",),
    ) == [(1, 120_000), (3, None)]
    assert _both(
        engines,
        "SELECT m, (SELECT count(*) FROM result WHERE monitor_id = m AND location_id = l)"
        " FROM (SELECT j.value ->> 0 AS m, j.value ->> 1 AS l FROM json_each(?) AS j) AS p"
        " ORDER BY m",
        ("[[2, 1], [1, 1]]",),
    ) == [(1, 2), (2, 1)]


def test_json_of_stored_state_and_upserts(engines: dict[str, Connection]) -> None:
    state = '{"alias_ms": 1796035803000, "tracker": {"run": 3}, "regional": null}'
    for conn in engines.values():
        conn.execute("INSERT INTO monitor (slug, type) VALUES ('web', 'http')")
        conn.execute("INSERT INTO location (name) VALUES ('*')")
        for as_of in (1, 2):  # the second replaces the first
            conn.execute(
                "INSERT OR REPLACE INTO monitor_state (monitor_id, location_id, state, as_of_ms)"
                " VALUES (?, ?, ?, ?)",
                (1, 1, state, as_of),
            )
    # a number is an integer on SQLite, text on PostgreSQL: the store reads it through int()
    for conn in engines.values():
        (alias, run, none, missing, as_of) = conn.execute(
            "SELECT json_extract(state, '$.alias_ms'), json_extract(state, '$.tracker.run'),"
            " json_extract(state, '$.regional'), json_extract(state, '$.missing'), as_of_ms"
            " FROM monitor_state"
        ).fetchone()
        assert (int(alias), int(run), none, missing, as_of) == (1796035803000, 3, None, None, 2)
    # an object is its JSON text on both
    for conn in engines.values():
        conn.execute("UPDATE monitor_state SET state = ?", ('{"regional": {"told": true}}',))
    for conn in engines.values():
        (regional,) = conn.execute(
            "SELECT json_extract(state, '$.regional') FROM monitor_state"
        ).fetchone()
        assert json.loads(regional) == {"told": True}
    for conn in engines.values():
        conn.execute(
            "INSERT OR IGNORE INTO alert (key, notifier, kind, monitor, incident, created_ms,"
            " due_ms, state, attempts, silenced, data) VALUES (?, 'n', 'opened', 'web', 'i',"
            " 1, 1, 'pending', 0, ?, ?)",
            ("k1", True, '{"escalated_after_ms": 300000}'),
        )
    assert _both(
        engines,
        "SELECT key, silenced FROM alert WHERE json_extract(data, '$.' || ?) IS NOT NULL",
        ("escalated_after_ms",),
    ) == [("k1", 1)]


def test_insert_or_ignore_returning_gives_a_row_only_when_inserted(
    engines: dict[str, Connection],
) -> None:
    sql = "INSERT OR IGNORE INTO location (name) VALUES (?) RETURNING name"
    for conn in engines.values():
        assert conn.execute(sql, ("a",)).fetchall() == [("a",)]
        assert conn.execute(sql, ("a",)).fetchall() == []
        assert (
            conn.execute("INSERT OR IGNORE INTO location (name) VALUES (?)", ("a",)).rowcount == 0
        )


def test_ints_and_bools_go_into_text_and_flag_columns(engines: dict[str, Connection]) -> None:
    for conn in engines.values():
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("count", 5))
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("big", 1 << 40))
        conn.execute(
            "INSERT INTO remediation (monitor, incident, started_ms, result, timed_out,"
            " output_tail) VALUES (?, ?, ?, ?, ?, '')",
            ("api", "i", 1, "running", False),
        )
        conn.execute("UPDATE remediation SET timed_out = ? WHERE monitor = ?", (True, "api"))
    assert _both(
        engines, "SELECT key, value FROM meta WHERE key IN ('count', 'big') ORDER BY key"
    ) == [("big", str(1 << 40)), ("count", "5")]
    assert _both(engines, "SELECT timed_out FROM remediation WHERE timed_out = ?", (True,)) == [
        (1,)
    ]
    assert _both(
        engines, "SELECT CAST(value AS INTEGER) + 1 FROM meta WHERE key = ?", ("count",)
    ) == [(6,)]


# --- errors, URLs, transactions ----------------------------------------------------------


def test_a_unique_violation_is_sqlite3s_integrity_error(engines: dict[str, Connection]) -> None:
    for name, conn in engines.items():
        conn.execute("INSERT INTO location (name) VALUES ('hub')")
        with pytest.raises(sqlite3.IntegrityError) as caught:
            conn.execute("INSERT INTO location (name) VALUES ('hub')")
        if name == "postgresql":
            assert "duplicate key" in str(caught.value)
        conn.execute("SELECT 1")  # the connection goes on


def test_other_errors_are_sqlite3_errors(engines: dict[str, Connection]) -> None:
    for name, conn in engines.items():
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("SELECT nope FROM location")
        conn.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError if name == "sqlite" else sqlite3.DatabaseError):
            conn.execute("INSERT INTO nowhere VALUES (1)")
        conn.execute("ROLLBACK")
        assert not conn.in_transaction


def test_a_dead_server_is_an_operational_error(pg_cluster: Cluster, pg_url: str) -> None:
    conn = PgConnection(pg_url)
    try:
        conn.execute("SELECT 1")
        assert pg_cluster.kill_connections(pg_url.rsplit("/", 1)[1]) == 1
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    refused = pg_url.replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(sqlite3.OperationalError) as caught:
        PgConnection(refused)
    assert pg_cluster.password not in str(caught.value)
    wrong = pg_url.replace(f":{pg_cluster.password}@", ":wrong@")
    with pytest.raises(sqlite3.OperationalError, match="password authentication failed"):
        PgConnection(wrong)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://prober:s3cret@db.internal/prober", "postgresql://prober@db.internal/prober"),
        (
            "postgres://prober:s3cret@10.0.0.5:6543/prober?sslmode=require&password=s3cret",
            "postgres://prober@10.0.0.5:6543/prober",
        ),
        ("postgresql://prober:s3c%40r%3At@[::1]:5432/p", "postgresql://prober@[::1]:5432/p"),
        ("postgresql://db.internal/prober?password=s3cret", "postgresql://db.internal/prober"),
        ("postgresql://:s3cret@db.internal/prober", "postgresql://db.internal/prober"),
        ("postgresql:///prober?host=/run/postgresql&password=s3cret", "postgresql:///prober"),
    ],
)
def test_shown_never_shows_the_password(url: str, shown: str) -> None:
    db = Database.of(url, pathlib.Path("/etc/prober"))
    assert db.kind == "postgresql"
    assert db.shown() == shown
    assert "s3c" not in db.shown()


def test_shown_of_a_sqlite_file_is_its_path() -> None:
    db = Database.of("sqlite:///data/p.db", pathlib.Path("/etc/prober"))
    assert (db.kind, db.shown()) == ("sqlite", "/etc/prober/data/p.db")


def test_a_readers_transaction_sees_one_snapshot(
    engines: dict[str, Connection], pg_url: str, tmp_path: pathlib.Path
) -> None:
    """What a page build reads in one BEGIN stays as it was when it began, whatever the
    writer commits meanwhile (SQLite's read transaction; PostgreSQL's repeatable read)."""
    writers = {
        "sqlite": connect(Database.of("sqlite:///p.db", tmp_path)),
        "postgresql": connect(Database.of(pg_url, tmp_path)),
    }
    try:
        for name, reader in engines.items():
            writer = writers[name]
            writer.execute("INSERT INTO location (name) VALUES ('one')")
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM location").fetchone()[0] == 1
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO location (name) VALUES ('two')")
            writer.execute("COMMIT")
            assert reader.execute("SELECT count(*) FROM location").fetchone()[0] == 1, name
            reader.execute("ROLLBACK")
            assert reader.execute("SELECT count(*) FROM location").fetchone()[0] == 2
    finally:
        for conn in writers.values():
            conn.close()


def test_a_write_lock_not_had_in_time_leaves_no_transaction(pg_url: str) -> None:
    """BEGIN IMMEDIATE waits lock_timeout for the store's write lock; past it, an error and,
    as with SQLite, no transaction left open (an aborted one would refuse every statement
    after it)."""
    from prober.store.engine import WRITE_LOCK

    conn = connect(Database(pg_url))
    assert isinstance(conn, PgConnection)
    try:
        with psycopg.connect(pg_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
            conn.raw.execute("SET lock_timeout = 100")
            with pytest.raises(sqlite3.OperationalError):
                conn.execute("BEGIN IMMEDIATE")
            assert not conn.in_transaction
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        conn.close()
