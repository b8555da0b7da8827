"""Annotator sessions run in child processes by the concurrency test (importable by name, as
`spawn` needs)."""

from __future__ import annotations

import threading

from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board

from tests.annotate.app.conftest import make_project


def label(store_path: str, logins: list[str], per_annotator: int, k: int, errors: list[str]) -> None:
    """One app process: one Board shared by several sessions (threads), as Streamlit runs them."""
    board = Board(store_path, make_project(overlap=k))

    def session(login: str) -> None:
        try:
            for _ in range(per_annotator):
                shown = board.show(login, "pairwise")
                if shown is None:
                    raise RuntimeError(f"{login} ran out of items")
                board.submit(shown, submit.pairwise(board.project, shown, "A"))
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(f"{login}: {exc!r}")

    threads = [threading.Thread(target=session, args=(login,)) for login in logins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_process(store_path: str, logins: list[str], per_annotator: int, k: int, queue) -> None:
    errors: list[str] = []
    try:
        label(store_path, logins, per_annotator, k, errors)
    except BaseException as exc:  # the parent must always hear back, or it would wait forever
        errors.append(repr(exc))
    queue.put(errors)
