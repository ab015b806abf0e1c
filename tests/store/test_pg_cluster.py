"""The tests' throwaway PostgreSQL (tests/support/pg.py): a database URL works with its
password and only with it, databases are separate, the programs never run as root, and
stop leaves no process behind."""

from __future__ import annotations

import os
import pathlib
import pwd
import socket
import tempfile

import psycopg
import pytest

from tests.support import pg
from tests.support.net import free_port
from tests.support.pg import MISSING, Cluster, MissingPostgres, find_bindir, start_cluster


def test_a_url_connects_with_its_password(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        user, dbname = conn.execute("SELECT current_user, current_database()").fetchone() or ()
        conn.execute("CREATE TABLE probe (id integer PRIMARY KEY)")  # the role owns the db
        conn.execute("INSERT INTO probe VALUES (1)")
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'synchronous_commit', 'full_page_writes', 'max_connections',"
                " 'listen_addresses')"
            ).fetchall()
        )
    assert (user, dbname) == ("prober", pg_url.rsplit("/", 1)[1])
    assert settings == {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "listen_addresses": "127.0.0.1",
    }


def test_a_wrong_password_is_refused(pg_cluster: Cluster, pg_url: str) -> None:
    wrong = pg_url.replace(f":{pg_cluster.password}@", ":not-the-password@")
    assert wrong != pg_url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)
    # Over TCP nobody is trusted, the superuser included.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host="127.0.0.1",
            port=pg_cluster.port,
            user="postgres",
            password="",
            dbname="postgres",
            connect_timeout=10,
        )


def test_two_databases_are_separate(pg_cluster: Cluster, pg_url: str) -> None:
    other = pg_cluster.new_database("separate_other")
    try:
        assert other != pg_url
        with psycopg.connect(pg_url) as conn:
            conn.execute("CREATE TABLE only_here (id integer)")
        with psycopg.connect(other) as conn:
            found = conn.execute("SELECT to_regclass('only_here')").fetchone()
        assert found == (None,)
    finally:
        pg_cluster.drop_database("separate_other")


def test_kill_connections_ends_them(pg_cluster: Cluster, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        assert pg_cluster.kill_connections(dbname) == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_the_server_never_runs_as_root(pg_cluster: Cluster) -> None:
    assert pg_cluster.process is not None
    owner = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert _uids(pg_cluster.process.pid) == {owner}
    assert pathlib.Path(pg_cluster.data).stat().st_uid == owner


def test_stop_leaves_no_process_and_no_directory() -> None:
    cluster = start_cluster(pathlib.Path(tempfile.mkdtemp(prefix="prober-pg-")))
    try:
        url = cluster.new_database("stopping")
        conn = psycopg.connect(url)  # a backend, left open on purpose
        assert cluster.process is not None
        postmaster = cluster.process.pid
        processes = {postmaster: _started(postmaster)}
        processes |= {pid: _started(pid) for pid in _children(postmaster)}
        assert len(processes) > 2  # the backend and the server's own workers
    finally:
        cluster.stop()
    conn.close()
    alive = {pid for pid, started in processes.items() if _started(pid) == started}
    assert alive == set()
    assert not cluster.base.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", cluster.port), 5):
        pass
    cluster.stop()  # twice is harmless


def test_a_port_taken_meanwhile_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(pg, "free_port", lambda: next(ports))
        cluster = start_cluster(pathlib.Path(tempfile.mkdtemp(prefix="prober-pg-")))
        try:
            assert cluster.port != taken
            with psycopg.connect(cluster.new_database("retried")) as conn:
                conn.execute("SELECT 1")
            assert "Address already in use" in cluster.log_path.read_text()
        finally:
            cluster.stop()


def test_missing_binaries_name_the_package(tmp_path: pathlib.Path) -> None:
    with pytest.raises(MissingPostgres) as raised:
        find_bindir(tmp_path)
    assert str(raised.value) == MISSING
    assert "apt-get install postgresql" in MISSING


def test_the_newest_version_is_used(tmp_path: pathlib.Path) -> None:
    for version in ("9.6", "15", "16", "17"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for program in ("initdb", "postgres"):
            (bindir / program).touch(mode=0o755)
    (tmp_path / "17" / "bin" / "postgres").unlink()  # a partial install does not count
    assert find_bindir(tmp_path) == tmp_path / "16" / "bin"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...


def _started(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]  # starttime: tells a reused pid apart


def _children(parent: int) -> set[int]:
    children = set()
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                children.add(int(entry.name))
    return children


def _uids(pid: int) -> set[int]:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(uid) for uid in line.split()[1:]}
    raise AssertionError(f"no Uid line for {pid}")
