"""Every command with `database = "postgresql://..."` (DESIGN.md: "`database` takes
`sqlite:///...` or `postgresql://...` for every command"), run as a user runs it: real
`python -m prober` processes against the session's throwaway PostgreSQL (tests/support/pg.py).

Where a command's output does not name the database, the same import into SQLite must give
the same bytes: those runs share one frozen wall clock (libfaketime, as
tests/test_agent_clock.py uses it; monotonic time left alone), since reports and the page
say when they were made and count windows up to now.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import http.server
import json
import pathlib
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.net import free_port
from tests.support.pg import Cluster
from tests.support.proc import ProberRun, until
from tests.test_cli import http_target, prober, write_config  # noqa: F401  (a fixture)

NOW = "2026-11-03 12:00:00"  # UTC, the frozen wall clock of the compared runs
AGENT_TOKEN = "9f1c2b7a4e6d8c0b1a3f5e7d9c2b4a6f"
T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
# an error text with what COPY and CSV escape: a tab, a backslash, quotes, a line break
ERROR = 'HTTP 503: saw "a\tb\\c"\n서울'
QUOTED_ERROR = '"' + ERROR.replace('"', '""') + '"'


@pytest.fixture(autouse=True)
def no_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's $STATE_DIRECTORY, where a PostgreSQL config's pid file would go: unset, so
    the commands use data/ beside the config unless a test sets it."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("libfaketime is missing: apt-get install faketime (scripts/check does)")
    return found[0]


def frozen() -> dict[str, str]:
    """The environment of a process whose wall clock stands still at NOW."""
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": NOW,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def config_text(database: str, *, extra: str = "") -> str:
    """A hub (seoul) with one agent (frankfurt): `api` probed from both (quorum 2), `web`
    from seoul only; every 5 minutes, as the imported files are."""
    return f"""
        [settings]
        database = "{database}"
        location = "seoul"
        timezone = "Asia/Seoul"
        retention_days = 30
        {extra}

        [[agents]]
        location = "frankfurt"
        token = "{AGENT_TOKEN}"

        [[monitors]]
        id = "api"
        type = "tcp"
        host = "127.0.0.1"
        port = 1
        interval = "5m"
        locations = ["seoul", "frankfurt"]
        quorum = 2

        [[monitors]]
        id = "web"
        type = "tcp"
        host = "127.0.0.1"
        port = 2
        interval = "5m"
        locations = ["seoul"]
        """


def history_csv(path: pathlib.Path, *, days: int, located: bool, start: dt.datetime = T0) -> int:
    """Results every 5 minutes: with the `location` column, `api` at seoul and frankfurt
    (an outage at both, regional failures at frankfurt, a gap); without it, `web` (at the
    hub's location). Returns the rows written."""
    lines = ["monitor,timestamp,outcome,latency_ms,error" + (",location" if located else "")]
    for step in range(days * 24 * 12):
        ts = (start + dt.timedelta(minutes=5 * step)).isoformat().replace("+00:00", "Z")
        if 1000 <= step % 2000 < 1030:
            continue  # two and a half hours without results: unknown time
        if located:
            for place in ("seoul", "frankfurt"):
                down = step % 500 in range(10, 16) or (place == "frankfurt" and step % 300 < 4)
                outcome, error = ("down", QUOTED_ERROR) if down else ("up", "")
                lines.append(f"api,{ts},{outcome},{10 + step % 37},{error},{place}")
        else:
            outcome, error = ("down", "timed out") if step % 700 < 3 else ("up", "")
            degraded = outcome == "up" and step % 90 == 7
            lines.append(f"web,{ts},{'degraded' if degraded else outcome},{5 + step % 11},{error}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the config's warnings."""
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def digest(url: str) -> dict[str, str]:
    """Every table a command may write, as a digest of its sorted rows."""
    out = {}
    for table in ("result", "transition", "incident", "coverage", "monitor_state", "meta"):
        rows = sorted(map(repr, query(url, f"SELECT * FROM {table}")))
        out[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


def password(url: str) -> str:
    secret = urllib.parse.urlsplit(url).password
    assert secret
    return secret


def shown(url: str) -> str:
    """The URL as messages name the database: without its password."""
    return url.replace(f":{password(url)}@", "@", 1)


def dbname(url: str) -> str:
    return urllib.parse.urlsplit(url).path.strip("/")


def files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- validate ------------------------------------------------------------------------


def test_validate_takes_a_postgresql_url_and_refuses_a_broken_one_without_its_password(
    tmp_path: pathlib.Path, pg_url: str
) -> None:
    write_config(tmp_path, config_text(pg_url))
    good = ok(prober("validate", cwd=tmp_path))
    assert good.stdout == "monitors.toml: ok (2 monitors, 0 notifiers, 0 maintenance windows)\n"

    secret = "s3cret-pw"
    refused = {
        f"postgresql://prober:{secret}@/prober": "a postgresql:// URL needs a host: "
        "postgresql://USER:PASSWORD@HOST/NAME",
        f"postgresql://prober:{secret}@127.0.0.1:5432/": "a postgresql:// URL needs a "
        "database name: .../NAME",
        f"postgres://prober:{secret}@127.0.0.1": "a postgresql:// URL needs a database "
        "name: .../NAME",
        f"postgresql://prober:{secret}@127.0.0.1:99999/prober": "not a PostgreSQL URL libpq "
        "takes: Port out of range 0-65535",
        f"postgresql://prober:{secret}@127.0.0.1/prober?colour=blue": "not a PostgreSQL URL "
        'libpq takes: invalid URI query parameter: "colour"',
        # libpq quotes the token it cannot decode: here, the password
        f"postgresql://prober:{secret}%zz@127.0.0.1/prober": "not a PostgreSQL URL libpq "
        'takes: invalid percent-encoded token: "***"',
    }
    for url, why in refused.items():
        write_config(tmp_path, config_text(url))
        bad = prober("validate", cwd=tmp_path)
        assert bad.returncode == 1, url
        assert said(bad) == [f"monitors.toml:3: settings.database: {why}"], url
        assert secret not in bad.stdout + bad.stderr

        write_config(tmp_path, config_text(pg_url))  # the file is fine; the variable is not
        env = prober("validate", cwd=tmp_path, env={"PROBER_DATABASE": url})
        assert env.returncode == 1, url
        assert said(env) == [f"monitors.toml:3: settings.database: PROBER_DATABASE: {why}"]
        assert secret not in env.stdout + env.stderr


# --- import-results, report, export-static: the same as SQLite ----------------------


def test_import_report_and_export_give_what_sqlite_gives(
    tmp_path: pathlib.Path, pg_url: str
) -> None:
    located, plain = tmp_path / "api.csv", tmp_path / "web.csv"
    rows = history_csv(located, days=20, located=True) + history_csv(plain, days=20, located=False)
    outputs: dict[str, dict[str, bytes]] = {}
    for name, database in (("sqlite", "sqlite:///data/prober.db"), ("postgresql", pg_url)):
        folder = tmp_path / name
        folder.mkdir()
        write_config(folder, config_text(database))
        imported = [
            ok(prober("import-results", str(csv), cwd=folder, env=frozen()))
            for csv in (located, plain)
        ]
        assert sum(int(r.stdout.split()[1].replace(",", "")) for r in imported) == rows
        out = folder / "out"
        for fmt in ("json", "csv", "html"):
            ok(prober("report", "--month", "2026-10", "--format", fmt, "-o", f"out/report.{fmt}",
                      cwd=folder, env=frozen()))  # fmt: skip
        ok(prober("report", "--month", "2026-10", "--public", "-o", "out/public.json",
                  cwd=folder, env=frozen()))  # fmt: skip
        ok(prober("export-static", "out/site", cwd=folder, env=frozen()))
        outputs[name] = files(out)

    assert outputs["postgresql"].keys() == outputs["sqlite"].keys()
    for path, body in outputs["sqlite"].items():
        assert outputs["postgresql"][path] == body, path
    assert not (tmp_path / "postgresql" / "data").exists()  # nothing written beside the config

    # what was compared says something: incidents, regional time, each location's figures
    report = json.loads(outputs["postgresql"]["report.json"])
    api, web = report["monitors"]
    assert api["id"] == "api" and set(api["locations"]) == {"seoul", "frankfurt"}
    assert api["incidents"] and web["incidents"]
    assert 0 < api["downtime_seconds"] < api["locations"]["frankfurt"]["downtime_seconds"]
    assert api["unknown_seconds"] > 0
    status = json.loads(outputs["postgresql"]["site/api/v1/status.json"])
    assert {m["id"] for m in status["monitors"]} == {"api", "web"}


def test_importing_twice_adds_nothing_and_a_bad_file_imports_nothing(
    tmp_path: pathlib.Path, pg_url: str
) -> None:
    csv = tmp_path / "api.csv"
    rows = history_csv(csv, days=3, located=True)
    # the config names SQLite; $PROBER_DATABASE wins
    write_config(tmp_path, config_text("sqlite:///data/prober.db"))
    first = ok(prober("import-results", str(csv), cwd=tmp_path, env={"PROBER_DATABASE": pg_url}))
    assert first.stdout.startswith(f"imported {rows:,} new results of {rows:,} rows for 1 monitor")
    assert not (tmp_path / "data").exists()
    stored = digest(pg_url)
    assert query(pg_url, "SELECT count(*) FROM result") == [(rows,)]
    assert query(pg_url, "SELECT DISTINCT error FROM result WHERE outcome = 3") == [(ERROR,)]

    write_config(tmp_path, config_text(pg_url))
    again = ok(prober("import-results", str(csv), cwd=tmp_path))
    assert again.stdout.startswith(f"imported 0 new results of {rows:,} rows for 1 monitor")
    assert digest(pg_url) == {**stored, "meta": digest(pg_url)["meta"]}  # meta.rewrites moved

    stored = digest(pg_url)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "monitor,timestamp,outcome,latency_ms,error,location\n"
        "web,2026-10-05T00:00:00Z,up,5,,seoul\n"
        "api,2026-10-05T00:00:00Z,up,5,,tokyo\n"
        "web,2026-10-05T00:05:00Z,down,5,HTTP 500,seoul\n"
    )
    refused = prober("import-results", str(bad), cwd=tmp_path)
    assert refused.returncode == 1
    assert said(refused)[-1] == "nothing imported: 1 row has errors"
    assert said(refused)[0].startswith(f"{bad}:3: ")
    assert digest(pg_url) == stored


def test_an_import_cut_inside_its_transaction_leaves_nothing(
    tmp_path: pathlib.Path, pg_url: str, pg_cluster: Cluster
) -> None:
    """PostgreSQL is transactional: an import whose connection dies after it has inserted
    results (here: ended by the server while it waits for a row the test holds) leaves no
    result, and says so in one line."""
    write_config(tmp_path, config_text(pg_url))
    before = tmp_path / "before.csv"
    history_csv(before, days=1, located=False)
    ok(prober("import-results", str(before), cwd=tmp_path))  # creates meta.rewrites
    stored = digest(pg_url)
    later = tmp_path / "later.csv"
    history_csv(later, days=1, located=True, start=T0 + dt.timedelta(days=2))
    with psycopg.connect(pg_url) as holder:  # a transaction holding the row rebuild() bumps
        holder.execute("SELECT value FROM meta WHERE key = 'rewrites' FOR UPDATE")
        run = ProberRun(["import-results", str(later)], cwd=tmp_path)

        def waiting() -> list[tuple[object, ...]]:
            return query(
                pg_url,
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type ="
                " 'Lock' AND query LIKE 'INSERT INTO meta%%'",
                dbname(pg_url),
            )

        until(waiting)
        (pid,) = waiting()[0]
        query(pg_url, "SELECT pg_terminate_backend(%s)", pid)
        run.proc.wait(60)  # on its own: stop() would SIGTERM it otherwise
        code = run.stop()
        holder.rollback()
    lines = [line for line in run.log.splitlines() if not line.startswith("warning: ")]
    assert code == 1, run.log
    assert "Traceback" not in run.log
    assert len(lines) == 1, run.log
    assert lines[0].startswith(f"prober: import-results: {shown(pg_url)}: "), lines
    assert lines[0].endswith("; nothing imported"), lines
    assert digest(pg_url) == stored


# --- the other commands --------------------------------------------------------------


class Sink(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        Sink.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[int]:
    """A webhook receiver on loopback: answers 200 to every POST."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_prune_push_urls_check_notify_test_and_incident(
    tmp_path: pathlib.Path,
    pg_url: str,
    http_target: int,  # noqa: F811  (the fixture imported above)
    sink: int,
) -> None:
    sqlite_dir = tmp_path / "sqlite"
    sqlite_dir.mkdir()
    extra = f"""
        [[monitors]]
        id = "nightly"
        type = "push"
        period = "1d"

        [[monitors]]
        id = "home"
        type = "http"
        url = "http://127.0.0.1:{http_target}/ok"

        [[notifiers]]
        id = "ops"
        type = "webhook"
        url = "http://127.0.0.1:{sink}/hook"
        """
    write_config(tmp_path, config_text(pg_url) + extra)
    write_config(sqlite_dir, config_text("sqlite:///data/prober.db") + extra)
    csv = tmp_path / "old.csv"
    history_csv(csv, days=10, located=False, start=T0 - dt.timedelta(days=30))
    pruned = []
    for folder in (tmp_path, sqlite_dir):
        ok(prober("import-results", str(csv), cwd=folder, env=frozen()))
        pruned.append(ok(prober("prune", cwd=folder, env=frozen())).stdout)
    assert pruned[0] == pruned[1]
    assert pruned[0].startswith("pruned ") and not pruned[0].startswith("pruned 0 ")
    count = int(pruned[0].split()[1].replace(",", ""))
    (left,) = query(pg_url, "SELECT count(*) FROM result")
    assert (left[0], count) == (len(csv.read_text().splitlines()) - 1 - count, count)

    urls = ok(prober("push-urls", cwd=tmp_path)).stdout
    (token,) = query(pg_url, "SELECT token FROM push_token WHERE monitor = %s", "nightly")
    assert urls.startswith(f"nightly  http://127.0.0.1:8080/push/{token[0]}")
    assert ok(prober("push-urls", cwd=tmp_path)).stdout == urls  # the stored token again

    checked = prober("check", "--all", "--json", cwd=tmp_path)
    assert checked.returncode == 1, checked.stderr  # api and web: ports 1 and 2, refused
    outcomes = {o["id"]: o["outcome"] for o in map(json.loads, checked.stdout.splitlines())}
    assert outcomes == {"api": "down", "web": "down", "nightly": "unknown", "home": "up"}

    sent = ok(prober("notify-test", "ops", cwd=tmp_path))
    assert sent.stdout.startswith("ops (webhook): sent")
    assert len(Sink.bodies) == 1

    new = ok(
        prober("incident", "new", "--title", "Slow database", "--impact", "minor",
               "--status", "investigating", "--body", "Looking.", cwd=tmp_path)
    )  # fmt: skip
    (written,) = new.stdout.splitlines()
    assert pathlib.Path(tmp_path, written).is_file()
    pid_file = f"data/prober-{dbname(pg_url)}.pid"
    assert said(new) == [
        f"prober: no running prober found ({pid_file} is missing): with PostgreSQL, `prober "
        "run` writes its pid file in $STATE_DIRECTORY, or else in data/ beside its config; "
        "reload on the hub's machine, with its config and environment; the page shows it "
        "from the next start"
    ]


def test_reload_finds_the_run_of_a_postgresql_config(tmp_path: pathlib.Path, pg_url: str) -> None:
    extra = f'listen = "127.0.0.1:{free_port()}"\nmetrics = {{ listen = "" }}'
    write_config(tmp_path, config_text(pg_url, extra=extra))
    pid_file = tmp_path / "data" / f"prober-{dbname(pg_url)}.pid"
    missing = prober("reload", cwd=tmp_path)
    assert missing.returncode == 1
    assert said(missing) == [
        f"prober: no running prober found (data/prober-{dbname(pg_url)}.pid is missing): with "
        "PostgreSQL, `prober run` writes its pid file in $STATE_DIRECTORY, or else in data/ "
        "beside its config; reload on the hub's machine, with its config and environment"
    ]
    state = tmp_path / "state"
    elsewhere = prober("reload", cwd=tmp_path, env={"STATE_DIRECTORY": str(state)})
    assert said(elsewhere)[0].startswith(
        f"prober: no running prober found ({state}/prober-{dbname(pg_url)}.pid is missing)"
    )

    run = ProberRun(["run"], cwd=tmp_path)
    try:
        run.wait_for("prober running")
        assert pid_file.read_text() == f"{run.proc.pid}\n"
        mark = run.lines()
        sent = ok(prober("reload", cwd=tmp_path))
        assert sent.stdout == (
            f"reload requested (pid {run.proc.pid}); the running prober logs what changed\n"
        )
        run.wait_for("config reloaded", after=mark)
    finally:
        assert run.stop() == 0, run.log
    # the name the pid file is made from is never a database
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []
    assert not pid_file.with_suffix(".db").exists()


def test_backup_of_postgresql_points_to_pg_dump(tmp_path: pathlib.Path, pg_url: str) -> None:
    write_config(tmp_path, config_text(pg_url))
    refused = prober("backup", "copy.db", cwd=tmp_path)
    assert refused.returncode == 1
    assert said(refused) == [
        f"prober: {shown(pg_url)} is a PostgreSQL database: back it up with pg_dump (pg_dump "
        f"--format=custom --file=copy.db '{shown(pg_url)}') or your provider's snapshots; `prober "
        "backup` copies SQLite files"
    ]
    assert password(pg_url) not in refused.stderr
    assert not (tmp_path / "copy.db").exists()


# --- a database that cannot be used ---------------------------------------------------


@pytest.mark.parametrize("command", ["run", "report", "import-results"])
@pytest.mark.parametrize("fault", ["closed port", "wrong password"])
def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: pathlib.Path, pg_url: str, command: str, fault: str
) -> None:
    parts = urllib.parse.urlsplit(pg_url)
    if fault == "closed port":
        url = pg_url.replace(f":{parts.port}/", f":{free_port()}/")
        why = "Connection refused"
    else:
        url = pg_url.replace(f":{password(pg_url)}@", ":not-the-password@")
        why = 'password authentication failed for user "prober"'
    extra = f'listen = "127.0.0.1:{free_port()}"\nmetrics = {{ listen = "" }}' * (command == "run")
    write_config(tmp_path, config_text(url, extra=extra))
    csv = tmp_path / "web.csv"
    history_csv(csv, days=1, located=False)
    args = {"run": ["run"], "report": ["report"], "import-results": ["import-results", str(csv)]}
    failed = prober(*args[command], cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    (line,) = said(failed)
    assert line.startswith(f"prober: cannot open the database {shown(url)}: "), line
    assert why in line
    assert password(pg_url) not in failed.stdout + failed.stderr
    assert "not-the-password" not in failed.stdout + failed.stderr


def test_a_database_of_a_newer_prober_is_refused(tmp_path: pathlib.Path, pg_url: str) -> None:
    from prober.store.tables import SCHEMA_VERSION

    listen = f'listen = "127.0.0.1:{free_port()}"\nmetrics = {{ listen = "" }}'
    write_config(tmp_path, config_text(pg_url, extra=listen))
    ok(prober("report", cwd=tmp_path))  # creates the schema
    query(pg_url, "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    csv = tmp_path / "web.csv"
    history_csv(csv, days=1, located=False)
    for args in (
        ["run"],
        ["report"],
        ["import-results", str(csv)],
        ["prune"],
        ["export-static", "x"],
    ):
        refused = prober(*args, cwd=tmp_path)
        assert refused.returncode == 1, (args, refused.stderr)
        assert said(refused) == [
            f"prober: {shown(pg_url)}: the database has schema version 999; this prober knows versions"
            f" up to {SCHEMA_VERSION}: run a newer prober (or restore a backup made before the "
            "upgrade)"
        ], args
    assert query(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("999",)]
    assert query(pg_url, "SELECT count(*) FROM result") == [(0,)]
