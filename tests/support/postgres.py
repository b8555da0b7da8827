"""A real PostgreSQL server for the queue tests: Debian's binaries, a throw-away cluster in a
temporary folder, TCP on a free port of 127.0.0.1 with password (SCRAM) authentication.

The tests run as root and PostgreSQL refuses root, so the cluster belongs to the `postgres` system
user (Debian's package makes it) or, where that is missing, to one made here. Durability is off
(fsync, synchronous_commit): the cluster is gone after the run anyway, and it keeps start-up near a
second. The server inherits the test run's process marker, so a leak is caught like any other."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.browser import free_port

BIN = Path(os.environ.get("PREFKIT_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "prefkit"  # the database role the tests connect as (a superuser of this cluster only)
PASSWORD = "queue-test-secret"


def _os_user() -> str:
    """A non-root system user to own the cluster: `postgres`, else one made for the purpose."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "prefkit-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "prefkit-pg"], check=True
    )
    return "prefkit-pg"


class PostgresServer:
    def __init__(self, folder: Path, port: int, os_user: str):
        self.folder, self.port, self.os_user = folder, port, os_user
        self.data = folder / "data"
        self._dbs = 0

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresServer:
        """`durable`: fsync and synchronous commits on, as a production server runs (the benchmarks)."""
        if not (BIN / "initdb").exists():
            pytest.fail(f"{BIN}/initdb is missing: apt-get install -y postgresql (make system-packages)")
        # not under pytest's tmp_path: that folder is root's alone (0700) and the server runs as another user
        folder = Path(tempfile.mkdtemp(prefix="prefkit-pg-"))
        os_user = _os_user()
        server = cls(folder, free_port(), os_user)
        pwfile = folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            info = pwd.getpwnam(os_user)
            os.chown(folder, info.pw_uid, info.pw_gid)
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        server._as_owner(
            [
                BIN / "initdb",
                "-D",
                server.data,
                "--username",
                USER,
                "--pwfile",
                pwfile,
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        fast = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        options = (
            f"-p {server.port} -c listen_addresses=127.0.0.1 -k {server.data} {fast}"
            "-c max_connections=400 -c shared_buffers=64MB"
        )
        server._as_owner([BIN / "pg_ctl", "-D", server.data, "-l", folder / "log", "-o", options, "-w", "start"])
        return server

    def _as_owner(self, cmd: list) -> None:
        prefix = ["runuser", "-u", self.os_user, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *map(str, cmd)], cwd=self.folder, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            raise RuntimeError(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}")

    def url(self, database: str = "postgres", *, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL. One per test keeps the tests' queues apart."""
        import psycopg

        self._dbs += 1
        name = name or f"q{os.getpid()}_{self._dbs}_{int(time.time() * 1000) % 10**8}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._as_owner([BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
