"""A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` binaries, a fresh
data directory, a free port on 127.0.0.1, durability off (fsync, synchronous commit, full
page writes: nothing here has to survive a crash of the machine).

Run as root, the cluster belongs to the `postgres` user and its programs run as that user
(PostgreSQL refuses root); otherwise they run as ourselves. The superuser `postgres`
connects only over the Unix socket inside the cluster's directory (trust); over TCP every
role needs its password (scram), so the `prober` role's URL really carries one."""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO

import psycopg
from psycopg import sql

from tests.support.net import free_port

MISSING = "Debian's postgresql is missing; scripts/check installs it (apt-get install postgresql)"
ROLE = "prober"
SUPERUSER = "postgres"
READY_WITHIN = 30.0
STOP_WITHIN = 30.0
PORT_TRIES = 5
SOCKET_PATH_MAX = 107  # sun_path, with its terminating NUL

# Appended to postgresql.conf (the last setting wins), so a restart keeps them.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "password_encryption": "scram-sha-256",
}

HBA = """\
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


class MissingPostgres(RuntimeError):
    pass


def find_bindir(root: pathlib.Path = pathlib.Path("/usr/lib/postgresql")) -> pathlib.Path:
    """The newest ROOT/VERSION/bin holding initdb and postgres (Debian's layout)."""
    found = [
        path.parent
        for path in root.glob("*/bin/initdb")
        if os.access(path, os.X_OK) and os.access(path.parent / "postgres", os.X_OK)
    ]
    if not found:
        raise MissingPostgres(MISSING)
    return max(found, key=lambda bindir: _version(bindir.parent.name))


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class Cluster:
    """A running cluster in `base` (data/, run/ for the socket, postgres.log). Start it with
    `start_cluster`; `stop()` ends it and removes `base`."""

    def __init__(self, base: pathlib.Path, bindir: pathlib.Path) -> None:
        self.base = base
        self.bindir = bindir
        self.data = base / "data"
        self.socket_dir = base / "run"
        self.log_path = base / "postgres.log"
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A superuser connection (Unix socket, autocommit)."""
        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            yield conn

    def new_database(self, name: str) -> str:
        """An empty database owned by the `prober` role; returns its URL."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending whatever is still connected to it."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def kill_connections(self, dbname: str) -> int:
        """End every connection to `dbname` (pg_terminate_backend); returns how many."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        return len(rows)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as e:
            return f"(no server log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT: the postmaster ends its backends and waits for
        them), then remove the directory. Safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.base, ignore_errors=True)

    def _initdb(self) -> None:
        result = subprocess.run(
            _as_owner(
                [
                    str(self.bindir / "initdb"),
                    f"--pgdata={self.data}",
                    f"--username={SUPERUSER}",
                    "--auth=trust",  # pg_hba.conf is replaced below
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            cwd=self.base,
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stderr[-3000:]}")
        settings = {**SETTINGS, "unix_socket_directories": str(self.socket_dir)}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/support/pg.py: a throwaway cluster\n")
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")
        (self.data / "pg_hba.conf").write_text(HBA)

    def _start(self) -> None:
        """Start the postmaster on a free port, retrying when another process took it."""
        for _ in range(PORT_TRIES):
            self.port = free_port()
            socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
            if len(str(socket_path)) > SOCKET_PATH_MAX:
                raise ValueError(f"{socket_path}: too long for a Unix socket; use a shorter base")
            self._log = self.log_path.open("ab")
            before = self._log.tell()
            self.process = subprocess.Popen(
                _as_owner(
                    [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)],
                    on_parent_death=True,
                ),
                cwd=self.base,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready():
                return
            self._log.close()
            self._log = None
            with self.log_path.open("rb") as log:
                log.seek(before)
                said = log.read().decode(errors="replace")
            if "Address already in use" not in said:
                raise RuntimeError(
                    f"postgres exited ({self.process.returncode}):\n{self.log_tail()}"
                )
        raise RuntimeError(f"postgres found no free port in {PORT_TRIES} tries:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        """True once the superuser connects; False when the postmaster exited first."""
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        while True:
            try:
                with self.admin() as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError as e:
                if self.process.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready within {READY_WITHIN} s ({e}):\n{self.log_tail()}"
                    ) from e
                time.sleep(0.05)

    def _create_role(self) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(self.password)
                )
            )


def start_cluster(base: pathlib.Path) -> Cluster:
    """initdb into `base` (missing or empty; when we are root, somewhere the `postgres`
    user can reach, e.g. under /tmp: pytest's tmp_path is private to root) and start it.
    Start it from the main thread: the postmaster gets SIGQUIT when the thread that
    started it ends, so a killed test run leaves no cluster behind."""
    bindir = find_bindir()
    base.mkdir(parents=True, exist_ok=True)
    if any(base.iterdir()):
        raise ValueError(f"{base}: not empty")
    cluster = Cluster(base, bindir)
    cluster.socket_dir.mkdir()
    if os.geteuid() == 0:
        owner = _postgres_user()
        _check_reachable(base, owner)
        for path in (base, cluster.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    try:
        cluster._initdb()
        cluster._start()
        cluster._create_role()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _as_owner(command: list[str], on_parent_death: bool = False) -> list[str]:
    """`command` as the cluster's owner: the `postgres` user when we are root."""
    prefix = ["setpriv"]
    if os.geteuid() == 0:
        prefix += ["--reuid=postgres", "--regid=postgres", "--init-groups"]
    if on_parent_death and threading.current_thread() is threading.main_thread():
        prefix.append("--pdeathsig=QUIT")  # set after the user change, which clears it
    return [*prefix, "--", *command] if len(prefix) > 1 else command


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise MissingPostgres(f"{MISSING} (no 'postgres' user)") from None


def _check_reachable(base: pathlib.Path, owner: pwd.struct_passwd) -> None:
    """Every directory above `base` lets the `postgres` user through."""
    for parent in base.resolve().parents:
        st = parent.stat()
        if st.st_uid == owner.pw_uid:
            through = st.st_mode & stat.S_IXUSR
        elif st.st_gid == owner.pw_gid:
            through = st.st_mode & stat.S_IXGRP
        else:
            through = st.st_mode & stat.S_IXOTH
        if not through:
            raise ValueError(
                f"{base}: the postgres user cannot reach it ({parent} is mode "
                f"{stat.filemode(st.st_mode)}); use a directory under /tmp"
            )
