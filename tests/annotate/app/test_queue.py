"""The task queue's guarantees, one suite over both backends (the store's SQLite and a real
PostgreSQL): k never exceeded, nobody judges an item twice, an expired lease is served again, and a
crashed app process's leases expire — with threads and processes claiming at the same moment."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections import Counter

import pytest
from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.items import judgement_item_key
from prefkit.annotate.app.queue import QueueError, SqliteQueue, open_queue
from prefkit.annotate.store import Store

from tests.annotate.app import queue_workers
from tests.annotate.app.conftest import make_project, make_store

BACKENDS = ["sqlite", "postgres"]
CTX = mp.get_context("spawn")


@pytest.fixture(params=BACKENDS)
def queue_url(request) -> str | None:
    """None is the store's own SQLite queue; else a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").create_database()


def _run(target, procs_args: list[tuple], timeout: float = 120) -> list:
    """Run `target(*args, out)` in one spawned process per args; what each reported."""
    out = CTX.Queue()
    procs = [CTX.Process(target=target, args=(*args, out)) for args in procs_args]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
    errors = [r for kind, r in results if kind == "error"]
    assert errors == [], errors
    return [r for _, r in results]


def _judgements(store: Store) -> list[dict]:
    return Store(store.root).read("judgements").to_pylist()


def _assert_within_k(rows: list[dict], k: int) -> Counter:
    per_item = Counter(judgement_item_key(r["kind"], r["prompt_id"], r["response_ids"]) for r in rows)
    assert max(per_item.values()) <= k, "an item was judged past its overlap k"
    pairs = Counter((judgement_item_key(r["kind"], r["prompt_id"], r["response_ids"]), r["annotator"]) for r in rows)
    assert max(pairs.values()) == 1, "an annotator judged the same item twice"
    return per_item


def test_threads_of_one_process_claim_the_last_slots(tmp_path, queue_url):
    """One item, k = 2, twelve sessions asking at once: exactly two get it."""
    store = make_store(tmp_path / "s", n_prompts=1)
    board = Board(store.root, make_project(overlap=2), queue_url)
    go, got = threading.Event(), []

    def ask(login: str) -> None:
        go.wait(30)
        shown = board.show(login, "pairwise")
        got.append(shown and shown.item.key)

    threads = [threading.Thread(target=ask, args=(f"t{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    assert sum(key is not None for key in got) == 2 and len(got) == 12


def test_processes_claim_the_last_slots(tmp_path, queue_url):
    """Three items, k = 2 (six slots), four app processes × five sessions asking at the same moment:
    exactly six leases, at most two per item, each person at most one."""
    store = make_store(tmp_path / "s", n_prompts=3)
    ready, go, out = CTX.Queue(), CTX.Event(), CTX.Queue()
    logins = [f"p{i:02d}" for i in range(20)]
    procs = [
        CTX.Process(
            target=queue_workers.claim_together,
            args=(str(store.root), queue_url, logins[i::4], 2, 30.0, ready, go, out),
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # every process has built its board and its sessions wait at the line
            ready.get(timeout=120)
        go.set()
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [kind for kind, _ in results] == ["ok"] * 4, results
    got = [pair for _, r in results for pair in r]
    keys = Counter(key for _, key in got if key is not None)
    assert len(got) == 20 and sum(keys.values()) == 6 and set(keys.values()) == {2}


def test_processes_label_everything_exactly_k_times(tmp_path, queue_url):
    """Twenty items, k = 2, three processes × four sessions labelling until nothing is left: every
    item judged exactly twice, nobody twice, and every acknowledged answer is in the store."""
    store = make_store(tmp_path / "s", n_prompts=20)
    logins = [f"a{i:02d}" for i in range(12)]
    done = _run(queue_workers.label_all, [(str(store.root), queue_url, logins[i::3], 2, 30.0) for i in range(3)])
    acknowledged = [d for r in done for d in r]
    rows = _judgements(store)
    per_item = _assert_within_k(rows, 2)
    assert len(rows) == 40 and len(per_item) == 20 and set(per_item.values()) == {2}
    assert sorted(j for _, _, j in acknowledged) == sorted(r["judgement_id"] for r in rows)


def test_an_expired_lease_is_served_again(tmp_path, queue_url):
    store = make_store(tmp_path / "s", n_prompts=3)
    board = Board(store.root, make_project(overlap=1, lease_minutes=1.5 / 60), queue_url)
    start = time.monotonic()
    taken = {board.show(f"a{i}", "pairwise").item.key for i in range(3)}
    assert len(taken) == 3 and board.show("late", "pairwise") is None
    assert time.monotonic() - start < 1.5  # all three leases were live when "late" asked
    time.sleep(max(0.0, start + 1.6 - time.monotonic()))
    again = board.show("late", "pairwise")
    assert again is not None and again.item.key in taken


def test_a_crashed_process_leases_expire_and_are_served_again(tmp_path, queue_url):
    """An app process leases three items to three people and is killed (SIGKILL, no clean-up): the
    items stay taken until the leases run out, then another process serves them."""
    store = make_store(tmp_path / "s", n_prompts=3)
    lease_minutes = 2 / 60
    out = CTX.Queue()
    proc = CTX.Process(
        target=queue_workers.hold_and_die, args=(str(store.root), queue_url, ["x0", "x1", "x2"], 1, lease_minutes, out)
    )
    proc.start()
    kind, held = out.get(timeout=120)
    leased_at = time.monotonic()
    proc.join(timeout=30)
    assert kind == "ok" and proc.exitcode == -9
    board = Board(store.root, make_project(overlap=1, lease_minutes=lease_minutes), queue_url)
    if time.monotonic() - leased_at < 1.5:  # while the dead process's leases are live, nothing is free
        assert board.show("survivor", "pairwise") is None
    time.sleep(max(0.0, leased_at + 2.2 - time.monotonic()))
    served = set()
    for i in range(3):
        shown = board.show(f"s{i}", "pairwise")
        served.add(shown.item.key)
        board.submit(shown, submit.pairwise(board.project, shown, "A"))
    assert served == {key for _, key in held}
    assert board.show("s9", "pairwise") is None  # and now they are answered, k = 1 is reached
    _assert_within_k(_judgements(store), 1)


def test_an_answer_given_through_another_process_counts_here(tmp_path, queue_url):
    """Two app processes (two boards, each with its own index) on one queue: what one serves and
    answers, the other never serves past k, and its progress shows the answers of both."""
    store = make_store(tmp_path / "s", n_prompts=4)
    first = Board(store.root, make_project(overlap=1), queue_url)
    second = Board(store.root, make_project(overlap=1), queue_url)
    for _ in range(2):
        s = first.show("alice", "pairwise")
        first.submit(s, submit.pairwise(first.project, s, "A"))
    seen = set()
    while (s := second.show("bob", "pairwise")) is not None:
        seen.add(s.item.key)
        second.submit(s, submit.pairwise(second.project, s, "B"))
    assert len(seen) == 2
    second.assigner.sync(force=True)
    assert second.index.progress("alice", "pairwise").mine == 2
    assert second.index.progress("bob", "pairwise").filled == 4
    _assert_within_k(_judgements(store), 1)


def test_nobody_is_served_an_item_they_answered_through_another_process(tmp_path, queue_url):
    store = make_store(tmp_path / "s", n_prompts=3)
    first = Board(store.root, make_project(overlap=3), queue_url)
    second = Board(store.root, make_project(overlap=3), queue_url)
    answered = set()
    for board in (first, second, first):
        s = board.show("alice", "pairwise")
        assert s.item.key not in answered
        answered.add(s.item.key)
        board.submit(s, submit.pairwise(board.project, s, "A"))
    assert first.show("alice", "pairwise") is None and second.show("alice", "pairwise") is None


def test_sqlite_is_the_default_and_postgres_keeps_nothing_in_the_store(tmp_path, postgres_server):  # noqa: F811
    assert isinstance(open_queue(None, make_store(tmp_path / "local", n_prompts=1)), SqliteQueue)
    store = make_store(tmp_path / "s", n_prompts=2)
    board = Board(store.root, make_project(), postgres_server.create_database())
    board.submit(s := board.show("alice", "pairwise"), submit.pairwise(board.project, s, "A"))
    assert not (store.root / "app").exists()


def test_a_queue_url_of_another_kind_is_refused(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=1)
    with pytest.raises(QueueError, match="postgresql://"):
        open_queue("mysql://u:secret@host/db", store)
