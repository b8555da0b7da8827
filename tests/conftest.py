"""Suite-wide settings: nothing a test writes lands outside its temporary folders, and no process a
test starts outlives the suite."""

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support.processes import MARKER, marked_processes, stop

# The trainer caches reference log-probs under $PREFKIT_CACHE (default ~/.cache/prefkit); keep the
# suite's out of the home folder. Subprocesses inherit it.
os.environ.setdefault("PREFKIT_CACHE", tempfile.mkdtemp(prefix="prefkit-test-cache-"))

# Every process started from this pytest process inherits this marker (xdist workers each set their
# own, replacing the controller's), so whatever is left running at the end is found by it, even
# after it was re-parented to pid 1.
os.environ[MARKER] = f"{os.getpid()}-{uuid.uuid4().hex}"


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """Fail the run when a process a test started is still running at the end (and kill it).

    Set up before every other fixture, so it is torn down after all of them: what runs then has
    leaked. A process that is shutting down gets a few seconds first."""
    yield
    if not Path("/proc/self/environ").exists():
        return  # not Linux: nothing to scan
    mark = os.environ[MARKER]
    deadline = time.time() + 10
    while (left := marked_processes(mark)) and time.time() < deadline:
        time.sleep(0.2)
    if left:
        stop(left)
        listing = "\n".join(f"  pid {pid}: {cmd[:300]}" for pid, cmd in sorted(left.items()))
        pytest.fail(f"{len(left)} process(es) started by the tests outlived them (now killed):\n{listing}")


@pytest.fixture(autouse=True)
def main_module_kept():
    """Streamlit's script runner (AppTest) makes its script `sys.modules["__main__"]` and leaves it
    there; a later test in the same worker that starts a "spawn" process would then run that deleted
    script in the child. Put the real one back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL for the run (tests/support/postgres.py); each test makes its own database."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database of the session's server, for one test."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server on 127.0.0.1 for the run (tests/support/s3.py); make a bucket per test."""
    from tests.support.s3 import S3Server

    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()
