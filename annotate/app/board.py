"""The app's per-process state for one store and project: the index, the assigner and the texts,
plus the two operations every page uses — show the next item, submit an answer."""

from __future__ import annotations

import os
from pathlib import Path

from prefkit.annotate.app.assign import Assigner, Index
from prefkit.annotate.app.content import Content
from prefkit.annotate.app.items import display_order
from prefkit.annotate.app.project import Project
from prefkit.annotate.app.queue import Queue
from prefkit.annotate.app.submit import Shown, write
from prefkit.annotate.contract import Judgement, Response
from prefkit.annotate.store import TABLES, Store, StoreError


def open_store(path: str | os.PathLike) -> Store:
    """The existing store at `path`. The app never creates one: a mistyped path would otherwise
    become an empty store whose page says there is nothing left to label."""
    text = str(path)
    local = Path(text)
    if "://" not in text:
        if local.exists() and not local.is_dir():
            raise StoreError(
                f"{local} is a file, not a store folder: give the store's folder (--store or $PREFKIT_STORE)"
            )
        if not local.is_dir():
            raise StoreError(
                f"no store at {local}: check --store / $PREFKIT_STORE, create one with "
                f"`prefkit import FILE --store {local}`, or try `prefkit app --demo`"
            )
        if not any((local / t).is_dir() for t in TABLES):
            raise StoreError(f"{local} is a folder but not a prefkit store (no {', '.join(TABLES)} inside)")
    return Store(text, create=False)


class Board:
    """What one app process serves from: `queue` is a PostgreSQL URL shared by app servers on several
    machines, or None for the store's own SQLite queue (one machine)."""

    def __init__(self, store: str | os.PathLike | Store, project: Project, queue: Queue | str | None = None):
        self.store = store if isinstance(store, Store) else open_store(store)
        self.project = project
        self.index = Index(self.store, project)
        self.assigner = Assigner(self.store, project, self.index, queue)
        self.content = Content(self.store)

    def for_child(self, queue: Queue | str | None = None) -> Board:
        """This board in a process forked from this one, without building the index again: the index
        and texts are shared (copied on write), the store handle and the queue connections are the
        child's own, since neither an S3 filesystem nor a database connection survives a fork."""
        child = Board.__new__(Board)
        child.store = Store(self.store.url if self.store.remote else self.store.root, create=False)
        child.project, child.index, child.content = self.project, self.index, self.content
        child.assigner = Assigner(child.store, self.project, self.index, queue)
        return child

    def show(self, annotator: str, kind: str) -> Shown | None:
        """Lease the next item of `kind` to `annotator` and describe it as it will be shown."""
        item = self.assigner.next_item(annotator, kind)
        if item is None:
            return None
        order = display_order(annotator, item.key, item.response_ids)
        ai = self.index.ai.get(item.key) if self.project.mode == "assist" else None
        if ai is not None:  # say the verdict in the terms the person sees (A/B), and keep the ids
            letter = "tie" if ai["verdict"] == "tie" else "AB"[order.index(ai["verdict"])]
            ai = {**ai, "shown_as": letter}
        return Shown(item, order, annotator, ai_shown=ai, gold=self.index.gold.get(item.key))

    def submit(self, shown: Shown, judgements: list[Judgement], responses: list[Response] = ()) -> str:
        status = write(self.store, self.assigner, shown, judgements, responses)
        for r in responses:
            self.content.add(r.response_id, r.content)
        return status
