"""`prefkit app --queue postgresql://…` on bad input: an unreachable server, a wrong password, a
missing database, a URL of another kind. One line naming what to fix, exit 1, the password never
printed, and nothing written: the check runs before Streamlit starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefkit.annotate.app.queue_pg import VERSION, PostgresQueue, migrate

from prefkit.cli import main
from tests.annotate.app.conftest import make_store
from tests.support.browser import free_port
from tests.support.postgres import PASSWORD

ROOT = Path(__file__).resolve().parents[3]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _app(store: Path, queue: str, capsys) -> tuple[int, list[str]]:
    code = main(["app", "--store", str(store), "--queue", queue, "--port", str(free_port())])
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before "serving store …" is printed
    return code, captured.err.strip().splitlines()


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store", n_prompts=2).root


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("unreachable", "cannot reach the PostgreSQL queue"),
        ("password", "refused the password"),
        ("database", "database 'nowhere' does not exist"),
    ],
)
def test_a_bad_queue_is_one_line_and_nothing_is_written(store, capsys, postgres_server, what, expected):  # noqa: F811
    queue = {
        "unreachable": postgres_server.url(port=free_port()),  # nothing listens there
        "password": postgres_server.url(password="not-the-password"),
        "database": postgres_server.url("nowhere"),
    }[what]
    before = _snapshot(store)
    code, lines = _app(store, queue, capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("prefkit app: error: ") and expected in lines[0], lines[0]
    assert "--queue" in lines[0] and "$PREFKIT_QUEUE" in lines[0] or "createdb" in lines[0]
    assert "not-the-password" not in lines[0] and PASSWORD not in lines[0]
    assert _snapshot(store) == before


def test_a_queue_url_of_another_kind_is_one_line(store, capsys):
    code, lines = _app(store, "mysql://u:hunter2@db/x", capsys)
    assert code == 1 and len(lines) == 1 and "postgresql://" in lines[0] and "hunter2" not in lines[0]


def test_the_queue_comes_from_the_environment(store, postgres_server):  # noqa: F811
    """$PREFKIT_QUEUE is --queue's default: a wrong password there is refused the same way."""
    env = dict(os.environ, PREFKIT_QUEUE=postgres_server.url(password="wrong"))
    done = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "app", "--store", str(store), "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "refused the password" in done.stderr


def test_schema_is_made_once_when_servers_start_together(postgres_server):  # noqa: F811
    """Eight app processes opening a new queue at the same moment: one migration, one version row."""
    import psycopg

    url = postgres_server.create_database()
    code = (
        "import sys, time; from prefkit.annotate.app.queue_pg import PostgresQueue; "
        "time.sleep(max(0, float(sys.argv[2]) - time.time())); PostgresQueue(sys.argv[1]).close()"
    )
    import time

    at = str(time.time() + 4)  # every process waits for the same moment after its imports
    procs = [subprocess.Popen([sys.executable, "-c", code, url, at], cwd=ROOT) for _ in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    with psycopg.connect(url) as con:
        assert con.execute("SELECT version FROM prefkit_schema").fetchall() == [(VERSION,)]
        assert migrate(con) == VERSION  # and again is a no-op
        assert con.execute("SELECT count(*) FROM prefkit_schema").fetchone()[0] == 1


def test_a_queue_from_a_newer_prefkit_is_refused(postgres_server):  # noqa: F811
    import psycopg
    from prefkit.annotate.app.queue import QueueError

    url = postgres_server.create_database()
    PostgresQueue(url).close()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("INSERT INTO prefkit_schema (version) VALUES (%s)", (VERSION + 1,))
    with pytest.raises(QueueError, match="upgrade prefkit"):
        PostgresQueue(url)
