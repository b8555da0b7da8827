"""`prefkit app`: serve the labelling app (Streamlit) on a store, and `prefkit hash-password`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from prefkit.annotate.app.learn import RunPathError
from prefkit.annotate.app.project import ProjectError, hash_password
from prefkit.annotate.app.queue import QueueError
from prefkit.annotate.app.serve import AppError, demo_runs, serve
from prefkit.annotate.store import StoreError
from prefkit.cli import add_command, add_store_option, store_path
from prefkit.demo import OUT as DEMO_OUT

ERRORS: tuple[type[BaseException], ...] = (AppError, ProjectError, StoreError, RunPathError, QueueError)


def runs_folder(args: argparse.Namespace) -> Path:
    """The folder the Training runs page may read: --runs, else --run-dir's parent, else where the
    runs are by default: with --demo `prefkit demo`'s (a copy of the bundled recorded run until
    `prefkit demo` has run), ./runs otherwise (as in `prefkit train`'s examples)."""
    if args.runs:
        return Path(args.runs).resolve()
    if args.run_dir:
        return Path(args.run_dir).resolve().parent
    return (demo_runs(DEMO_OUT / "runs", echo=print) if args.demo else Path("runs")).resolve()


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the labelling app in the browser (Streamlit).

    People log in (users and roles come from the project file), label items one at a time with
    the keyboard, and every answer is written to the store as a judgement. Leads watch the
    dashboard; reviewers settle disputes. --demo serves a copy of the bundled demo store in
    single-user open mode. The store must exist (`prefkit import` creates one). Open mode is
    refused on an address other machines can reach unless --open-to-network says so.

    Task leases and progress live in SQLite inside the store (one machine). Several app servers,
    on one machine or many, share one PostgreSQL queue instead: --queue postgresql://… (or
    $PREFKIT_QUEUE); prefkit creates its tables there. docs/scaling.md shows the deployment.

    Example:
      prefkit app --demo
      prefkit app --store my-store --project project.yaml --port 8501
      prefkit app --store my-store --project project.yaml --queue postgresql://prefkit:secret@db:5432/labels"""

    return serve(
        None if args.demo else store_path(args),
        args.project,
        host=args.host,
        port=args.port,
        runs=runs_folder(args),
        run_dir=Path(args.run_dir).resolve() if args.run_dir else None,
        demo=args.demo,
        open_to_network=args.open_to_network,
        queue=args.queue,
    )


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print the password hash to put in a project file's users list.

    Example:
      prefkit hash-password
      echo 's3cret' | prefkit hash-password --stdin"""

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not password:
        raise AppError("empty password")
    print(hash_password(password))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "app", cmd_app)
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
    p.add_argument(
        "--queue",
        default=os.environ.get("PREFKIT_QUEUE") or None,
        help="task queue shared by several app servers: postgresql://user:password@host:port/db "
        "(default $PREFKIT_QUEUE, else SQLite in the store)",
    )
    p.add_argument(
        "--runs",
        help="the folder the 'Training runs' page lists runs from (default ./runs; with --demo, prefkit demo's)",
    )
    p.add_argument("--run-dir", help="training run folder the 'Training runs' page opens with (inside --runs)")

    p = add_command(subparsers, "hash-password", cmd_hash_password)
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
