"""Task assignment: overlap k, leases, no repeats, nothing lost, across threads and processes."""

from __future__ import annotations

import multiprocessing as mp
import stat
from collections import Counter

import pytest
from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.items import judgement_item_key
from prefkit.annotate.store import Store

from tests.annotate.app.conftest import make_project, make_store
from tests.annotate.app.workers import run_process

N_PROCESSES, THREADS_PER_PROCESS, PER_ANNOTATOR, K = 4, 5, 50, 2


@pytest.mark.slow
def test_twenty_concurrent_annotators_with_overlap_two(tmp_path):
    n_items = N_PROCESSES * THREADS_PER_PROCESS * PER_ANNOTATOR // K + 20
    store = make_store(tmp_path / "s", n_prompts=n_items)
    logins = [f"ann{i:02d}" for i in range(N_PROCESSES * THREADS_PER_PROCESS)]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=run_process, args=(str(store.root), logins[i::N_PROCESSES], PER_ANNOTATOR, K, queue))
        for i in range(N_PROCESSES)
    ]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in queue.get(timeout=240)]
    for p in procs:
        p.join(timeout=60)
    assert errors == []
    assert all(p.exitcode == 0 for p in procs)

    rows = Store(store.root).read("judgements").to_pylist()
    assert len(rows) == 1000
    per_item = Counter(judgement_item_key(r["kind"], r["prompt_id"], r["response_ids"]) for r in rows)
    assert max(per_item.values()) <= K
    pairs = Counter((judgement_item_key(r["kind"], r["prompt_id"], r["response_ids"]), r["annotator"]) for r in rows)
    assert max(pairs.values()) == 1, "an annotator judged the same item twice"
    assert Counter(r["annotator"] for r in rows) == {login: PER_ANNOTATOR for login in logins}


def test_reload_serves_the_same_item_until_answered(store):
    board = Board(store.root, make_project())
    first = board.show("alice", "pairwise")
    assert board.show("alice", "pairwise").item == first.item  # a rerun of the page
    board.submit(first, submit.pairwise(board.project, first, "B"))
    assert board.show("alice", "pairwise").item != first.item


def test_new_process_sees_judgements_in_the_store(store):
    board = Board(store.root, make_project(overlap=1))
    seen = set()
    while (shown := board.show("alice", "pairwise")) is not None:
        seen.add(shown.item.key)
        board.submit(shown, submit.pairwise(board.project, shown, "A"))
    assert len(seen) == 20
    # a fresh process (new index from Parquet, fresh lease db) has nothing left for anyone
    (store.root / "app" / "assign.sqlite").unlink()
    again = Board(store.root, make_project(overlap=1))
    assert again.show("bob", "pairwise") is None
    assert again.index.progress("alice", "pairwise").mine == 20


def test_skipped_item_returns_to_the_pool_but_not_to_the_skipper(store):
    board = Board(store.root, make_project(overlap=1))
    shown = board.show("alice", "pairwise")
    board.submit(shown, submit.skip(board.project, shown, "unclear prompt"))
    keys = set()
    while (s := board.show("alice", "pairwise")) is not None:
        keys.add(s.item.key)
        board.submit(s, submit.pairwise(board.project, s, "A"))
    assert shown.item.key not in keys and len(keys) == 19
    assert board.show("bob", "pairwise").item.key == shown.item.key
    row = Store(store.root).read("judgements", "status = 'skipped'").to_pylist()[0]
    assert row["rationale"] == "unclear prompt" and row["scores"] == []


def test_an_expired_lease_frees_the_item(store):
    import time

    # 2 s leases: long enough that taking all 20 items never outlasts them on a busy machine
    # (30 ms did, now and then), short enough to wait out
    project = make_project(overlap=1, lease_minutes=2 / 60)
    board = Board(store.root, project)
    start = time.monotonic()
    taken = {board.show(f"a{i}", "pairwise").item.key for i in range(20)}
    assert len(taken) == 20 and board.show("late", "pairwise") is None
    assert time.monotonic() - start < 2.0
    time.sleep(max(0.0, start + 2.1 - time.monotonic()))
    assert board.show("late", "pairwise") is not None


def test_display_order_is_shuffled_per_person_and_recorded(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=40)
    board = Board(store.root, make_project(overlap=2))
    firsts = Counter()
    for login in ("alice", "bob"):
        while (s := board.show(login, "pairwise")) is not None:
            assert sorted(s.order) == list(s.item.response_ids)
            assert board.show(login, "pairwise").order == s.order  # stable on rerun
            firsts[s.order[0] == s.item.response_ids[0]] += 1
            board.submit(s, submit.pairwise(board.project, s, "A"))
    assert firsts[True] > 10 and firsts[False] > 10
    rows = Store(store.root).read("judgements").to_pylist()
    assert Counter(r["response_ids"][0] == sorted(r["response_ids"])[0] for r in rows) == firsts


def test_an_answer_after_the_lease_ran_out_is_kept_but_flagged(store):
    import json
    import time

    board = Board(store.root, make_project(overlap=1, lease_minutes=0.0005))  # 30 ms leases
    late = board.show("alice", "pairwise")
    time.sleep(0.05)
    for i in range(20):  # others take every item, including alice's
        s = board.show(f"b{i}", "pairwise")
        if s is None:
            break
        board.submit(s, submit.pairwise(board.project, s, "A"))
    assert board.submit(late, submit.pairwise(board.project, late, "B")) == "flagged"
    row = Store(store.root).read("judgements", "annotator = 'alice'").to_pylist()[0]
    assert "over k" in json.loads(row["metadata"])["flag"] and row["scores"] == [0.0, 1.0]


def test_the_lease_database_is_private_to_its_owner(tmp_path):
    store = make_store(tmp_path / "store", n_prompts=2)
    board = Board(store.root, make_project())
    board.submit(shown := board.show("alice", "pairwise"), submit.pairwise(board.project, shown, "A"))
    app = store.root / "app"
    assert stat.S_IMODE(app.stat().st_mode) == 0o700
    files = sorted(p.name for p in app.iterdir())
    assert "assign.sqlite" in files and "assign.sqlite-wal" in files
    for p in app.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
