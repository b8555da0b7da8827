"""One annotator of the team test, in its own process: the library's board interface against the
shared queue and store, labelling until the test says stop. Imports no torch (only the app's
modules), so sixty of them start quickly from a forkserver that has loaded these once."""

from __future__ import annotations

import os
import random
import time
import traceback
from pathlib import Path

from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.project import load_project

POLL = 1.0  # seconds between asks while everything is leased to others


def annotate(store: str, project: str, queue: str, login: str, acks: str, ready, go, stop: str, budget: float) -> None:
    """Label whatever is served; each answer's id goes to `acks/<login>` once `submit` returned (an
    acknowledged answer). Nothing served: ask again shortly, since leases of others may expire."""
    out = Path(acks)
    try:
        board = Board(store, load_project(project), queue)
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
