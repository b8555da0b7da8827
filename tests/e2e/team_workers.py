"""The team test's annotators, each in its own process: the library's board interface against the
shared queue and store, labelling until the test says stop. One parent reads the store once and
forks them (each then opens its own store handle and queue connections), so 58 processes start in
seconds, not in 58 reads of the bucket. No torch is imported anywhere here."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import sys
import time
import traceback
from pathlib import Path

from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.project import load_project

POLL = 1.0  # seconds between asks while everything is leased to others


def team(store: str, project: str, queue: str, logins: list[str], acks: str, ready, go, stop: str, budget: float):
    """Build the board once, fork one annotator process per login, wait for them; exit 1 if any failed."""
    base = Board(store, load_project(project), queue)
    fork = mp.get_context("fork")
    procs = [fork.Process(target=annotate, args=(base, queue, x, acks, ready, go, stop, budget)) for x in logins]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        sys.exit(1)


def annotate(base: Board, queue: str, login: str, acks: str, ready, go, stop: str, budget: float) -> None:
    """Label whatever is served; each answer's id goes to `acks/<login>` once `submit` returned (an
    acknowledged answer). Nothing served: ask again shortly, since leases of others may expire."""
    out = Path(acks)
    try:
        board = base.for_child(queue)
        ready.put(login)
        if not go.wait(300):
            raise TimeoutError("the test never said go")
        deadline = time.time() + budget
        with open(out / login, "a") as acked:
            while time.time() < deadline and not os.path.exists(stop):
                shown = board.show(login, "pairwise")
                if shown is None:
                    time.sleep(POLL)
                    continue
                judgements = submit.pairwise(board.project, shown, random.choice("AB"))
                board.submit(shown, judgements)
                acked.write(judgements[0].judgement_id + "\n")
                acked.flush()
    except BaseException:
        (out / f"{login}.error").write_text(traceback.format_exc())
        raise
