"""Serving the labelling app: the Streamlit command, the demo store's working copy, and the checks
made before anything starts (project file, store, who may write, open mode on a network address)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prefkit.annotate.app.board import open_store
from prefkit.annotate.app.learn import find_runs, metrics_path
from prefkit.annotate.app.project import Project, load_project
from prefkit.annotate.app.queue import open_queue
from prefkit.annotate.app.queue_pg import where
from prefkit.annotate.app.supervise import run_supervised
from prefkit.annotate.ids import content_hash

from prefkit import files

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
DEMO_STORE = ROOT / "data" / "demo"
DEMO_PROJECT = ROOT / "data" / "demo-project.yaml"
DEMO_COPY = Path(".prefkit") / "demo-store"
RECORDED_RUNS = ROOT / "data" / "demo-source" / "recorded-run"  # one real `prefkit demo` run, recorded
DEMO_RUNS_COPY = Path(".prefkit") / "demo-runs"


class AppError(RuntimeError):
    """The app cannot start (missing demo store, app.py, project file)."""


def demo_store(copy: Path = DEMO_COPY, source: Path = DEMO_STORE, echo: Callable[[str], None] | None = None) -> Path:
    """A working copy of the bundled demo store (the bundled one is never written); see `_copy_once`."""
    return _copy_once(source, copy, "demo store", echo)


def demo_runs(
    own: Path, copy: Path = DEMO_RUNS_COPY, source: Path = RECORDED_RUNS, echo: Callable[[str], None] | None = None
) -> Path:
    """The runs folder `prefkit app --demo` shows: `own` (where `prefkit demo` writes runs) once it
    holds a run, else a working copy of the bundled recorded run, so the Training runs page has
    curves and disputed pairs (the demo store holds that run's score-pairs rows) from the first start."""
    return own if find_runs(own) else _copy_once(source, copy, "recorded demo run", echo)


BUNDLED = "bundled-from.txt"  # in a working copy: the fingerprint of the bundled files it was made from


def fingerprint(source: Path) -> str:
    """What the bundled files are: every file's path and size (a rebuilt demo has new part names)."""
    listing = sorted(
        (str(p.relative_to(source)), p.stat().st_size) for p in source.rglob("*") if p.is_file() and p.name != BUNDLED
    )
    return content_hash([list(item) for item in listing])


def _copy_once(source: Path, copy: Path, what: str, echo: Callable[[str], None] | None = None) -> Path:
    """`copy` of `source`, made once and then used as it is (people's labels go into it). When the
    bundled files have changed since (a newer prefkit), the old copy is kept beside under a dated name
    and a fresh one is made, so a new demo is never hidden behind an old copy."""
    if not source.is_dir():
        if copy.is_dir():
            return copy
        raise AppError(f"the bundled {what} {source} is missing; reinstall prefkit from a full checkout")
    wanted = fingerprint(source)
    if copy.is_dir():
        made_from = copy / BUNDLED
        if made_from.is_file() and made_from.read_text().strip() == wanted:
            return copy
        kept = copy.with_name(f"{copy.name}-before-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            copy.rename(kept)
        except OSError:
            pass  # another app starting at the same time moved it first
        else:
            if echo:
                echo(f"the bundled {what} changed: a fresh copy is made, your earlier copy is kept at {kept}")
    copy.parent.mkdir(parents=True, exist_ok=True)
    files.clean_leftovers(copy.parent)  # a copy a killed app left half made
    try:
        with files.atomic_dir(copy, replace=False) as tmp:
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("app", ".*.tmp", ".*.old"), dirs_exist_ok=True)
            (tmp / BUNDLED).write_text(wanted + "\n")
    except FileExistsError:
        pass  # another app starting at the same time made the copy first: keep it, it may be in use
    return copy


def streamlit_command(port: int, host: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
        # a crash shows visitors a generic message; the traceback stays in the server's log
        "--client.showErrorDetails",
        "none",
    ]


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (a host name may resolve to anything)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def who_can_write(project: Project, url: str) -> str:
    """The line `prefkit app` prints so the operator knows who may write to the store."""
    if project.open_mode:
        return f"open mode (no logins): everyone who can reach {url} labels as {project.open_user!r}, an admin"
    logins = ", ".join(f"{u.login} ({u.role})" for u in project.users[:10])
    more = f" and {len(project.users) - 10} more" if len(project.users) > 10 else ""
    return f"{len(project.users)} login(s) may write, after a password: {logins}{more}"


def serve(
    store: str | Path | None,
    project: str | Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    runs: Path,
    run_dir: Path | None = None,
    demo: bool = False,
    open_to_network: bool = False,
    queue: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Check everything that can be checked here, then run Streamlit until it stops; its exit status.
    `demo` serves a working copy of the bundled demo store (and its project, unless one is given).
    `queue` is a PostgreSQL URL shared by several app servers (None: the store's own SQLite queue)."""
    if not APP.is_file():
        raise AppError(f"{APP} not found: `prefkit app` runs from a checkout of the prefkit repository")
    if demo:
        store = demo_store(echo=echo or print)
        project = project or str(DEMO_PROJECT)
    proj = load_project(project)  # fail here, with the file and field named, rather than in the browser
    opened = open_store(store)  # the same for a missing store, or a file given as one
    if queue:  # an unreachable server or a wrong password is said here, in one line, not in the browser
        open_queue(queue, opened).close()
    url = f"http://{host}:{port}"
    if proj.open_mode and not is_loopback(host) and not open_to_network:
        raise AppError(
            f"open mode on {host}: everyone who can reach {url} would label as an admin, without a "
            "password. List users in a project file (docs/security.md), or pass --open-to-network if you mean it"
        )
    env = dict(os.environ, PREFKIT_STORE=str(store), PREFKIT_RUNS=str(runs), PREFKIT_QUEUE=queue or "")
    if project:
        env["PREFKIT_PROJECT"] = str(project)
    if run_dir:
        env["PREFKIT_RUN_DIR"] = str(metrics_path(runs, run_dir).parent)
    echo = echo or (lambda line: print(line, flush=True))  # seen before Streamlit's own output
    echo(f"prefkit app: serving store {store} at {url}  (Ctrl+C stops)")
    if queue:
        echo(f"prefkit app: task queue in PostgreSQL {where(queue)}")
    echo(f"prefkit app: {who_can_write(proj, url)}")
    return run_supervised(streamlit_command(port, host), env)
