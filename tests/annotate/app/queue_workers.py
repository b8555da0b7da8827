"""App processes for the queue tests, run as `spawn` children (importable by name): each builds its
own Board on the shared store and queue, as an app server does, and runs sessions as threads."""

from __future__ import annotations

import os
import signal
import threading
import time

from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board

from tests.annotate.app.conftest import make_project


def _board(store: str, queue: str | None, k: int, lease_minutes: float) -> Board:
    return Board(store, make_project(overlap=k, lease_minutes=lease_minutes), queue)


def claim_together(store, queue, logins, k, lease_minutes, ready, go, out) -> None:
    """Every login asks for an item at the same moment (after `go`); reports (login, key or None)."""
    try:
        board = _board(store, queue, k, lease_minutes)
        got: list = []

        def ask(login: str) -> None:
            go.wait(60)
            shown = board.show(login, "pairwise")
            got.append((login, shown and shown.item.key))

        threads = [threading.Thread(target=ask, args=(login,)) for login in logins]
        for t in threads:
            t.start()
        ready.put(os.getpid())
        for t in threads:
            t.join()
        out.put(("ok", got))
    except BaseException as exc:  # the parent must always hear back
        out.put(("error", repr(exc)))


def label_all(store, queue, logins, k, lease_minutes, out) -> None:
    """Sessions label until nothing is left for them; reports every acknowledged (login, key, id)."""
    try:
        board = _board(store, queue, k, lease_minutes)
        done: list = []
        errors: list = []

        def session(login: str) -> None:
            try:
                while (shown := board.show(login, "pairwise")) is not None:
                    judgements = submit.pairwise(board.project, shown, "A")
                    board.submit(shown, judgements)
                    done.append((login, shown.item.key, judgements[0].judgement_id))
            except Exception as exc:
                errors.append(f"{login}: {exc!r}")

        threads = [threading.Thread(target=session, args=(login,)) for login in logins]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.put(("error", errors) if errors else ("ok", done))
    except BaseException as exc:
        out.put(("error", repr(exc)))


def hold_and_die(store, queue, logins, k, lease_minutes, out) -> None:
    """Lease one item per login, say which, then die as a crashed server does (no clean-up at all)."""
    try:
        board = _board(store, queue, k, lease_minutes)
        out.put(("ok", [(login, board.show(login, "pairwise").item.key) for login in logins]))
    except BaseException as exc:
        out.put(("error", repr(exc)))
    time.sleep(0.2)  # let the queue's feeder thread hand the message over
    os.kill(os.getpid(), signal.SIGKILL)
