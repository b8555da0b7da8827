"""`prefkit app`: serve the labelling app (Streamlit) on a store, and `prefkit hash-password`."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import shutil
import sys
from pathlib import Path

from prefkit.annotate.app.board import open_store
from prefkit.annotate.app.learn import RunPathError, metrics_path
from prefkit.annotate.app.project import Project, ProjectError, hash_password, load_project
from prefkit.annotate.app.supervise import run_supervised
from prefkit.annotate.store import StoreError

from prefkit.cli import add_command, add_store_option, store_path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
DEMO_STORE = ROOT / "data" / "demo"
DEMO_PROJECT = ROOT / "data" / "demo-project.yaml"
DEMO_COPY = Path(".prefkit") / "demo-store"


class AppError(RuntimeError):
    """The app cannot start (missing demo store, app.py, project file)."""


ERRORS: tuple[type[BaseException], ...] = (AppError, ProjectError, StoreError, RunPathError)


def demo_store(copy: Path = DEMO_COPY, source: Path = DEMO_STORE) -> Path:
    """A working copy of the bundled demo store (made once; the bundled one is never written)."""
    if copy.is_dir():
        return copy
    if not source.is_dir():
        raise AppError(f"the bundled demo store {source} is missing; reinstall prefkit from a full checkout")
    copy.parent.mkdir(parents=True, exist_ok=True)
    tmp = copy.with_name(copy.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("app", ".*.tmp"))
    os.replace(tmp, copy)
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


def runs_folder(args: argparse.Namespace) -> Path:
    """The folder the Training run page may read: --runs, else --run-dir's parent, else ./runs."""
    if args.runs:
        return Path(args.runs).resolve()
    return Path(args.run_dir).resolve().parent if args.run_dir else Path("runs").resolve()


def cmd_app(args: argparse.Namespace) -> int:
    if not APP.is_file():
        raise AppError(f"{APP} not found: `prefkit app` runs from a checkout of the prefkit repository")
    if args.demo:
        store = demo_store()
        project = args.project or str(DEMO_PROJECT)
    else:
        store, project = store_path(args), args.project
    proj = load_project(project)  # fail here, with the file and field named, rather than in the browser
    open_store(store)  # the same for a missing store, or a file given as one
    url = f"http://{args.host}:{args.port}"
    if proj.open_mode and not is_loopback(args.host) and not args.open_to_network:
        raise AppError(
            f"open mode on {args.host}: everyone who can reach {url} would label as an admin, without a "
            "password. List users in a project file (docs/security.md), or pass --open-to-network if you mean it"
        )
    runs = runs_folder(args)
    env = dict(os.environ, PREFKIT_STORE=str(store), PREFKIT_RUNS=str(runs))
    if project:
        env["PREFKIT_PROJECT"] = str(project)
    if args.run_dir:
        env["PREFKIT_RUN_DIR"] = str(metrics_path(runs, Path(args.run_dir).resolve()).parent)
    print(f"prefkit app: serving store {store} at {url}  (Ctrl+C stops)", flush=True)
    print(f"prefkit app: {who_can_write(proj, url)}", flush=True)
    return run_supervised(streamlit_command(args.port, args.host), env)


def cmd_hash_password(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not password:
        raise AppError("empty password")
    print(hash_password(password))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "app",
        cmd_app,
        """Serve the labelling app in the browser (Streamlit).

        People log in (users and roles come from the project file), label items one at a time with
        the keyboard, and every answer is written to the store as a judgement. Leads watch the
        dashboard; reviewers settle disputes. --demo serves a copy of the bundled demo store in
        single-user open mode. The store must exist (`prefkit import` creates one). Open mode is
        refused on an address other machines can reach unless --open-to-network says so.

        Example:
          prefkit app --demo
          prefkit app --store my-store --project project.yaml --port 8501""",
    )
    add_store_option(p)
    p.add_argument("--project", help="project file (users, tasks, overlap k, guidelines); none = open mode")
    p.add_argument("--demo", action="store_true", help="serve a copy of the demo store (.prefkit/demo-store)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a team)")
    p.add_argument(
        "--open-to-network",
        action="store_true",
        help="allow open mode (no logins: everyone is admin) on an address other machines can reach",
    )
    p.add_argument("--runs", help="the folder the 'Training run' page may read runs from (default ./runs)")
    p.add_argument("--run-dir", help="training run folder the 'Training run' page opens with (inside --runs)")

    p = add_command(
        subparsers,
        "hash-password",
        cmd_hash_password,
        """Print the password hash to put in a project file's users list.

        Example:
          prefkit hash-password
          echo 's3cret' | prefkit hash-password --stdin""",
    )
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
