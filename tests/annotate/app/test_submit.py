"""What each kind of answer becomes in the store (scores, order, flags, gold, assist, edits)."""

from __future__ import annotations

import json

import pytest
from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.items import split_steps, word_diff
from prefkit.annotate.app.submit import SubmitError
from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import new_judgement_id
from prefkit.annotate.store import Store

from tests.annotate.app.conftest import make_project, make_store


def _board(tmp_path, kinds=("pairwise",), n_responses=2, **kw):
    store = make_store(tmp_path / "s", n_prompts=6, n_responses=n_responses)
    return Board(store.root, make_project(kinds, **kw))


def test_every_kind_stores_scores_in_the_order_shown(tmp_path):
    b = _board(tmp_path, ("pairwise", "ranking", "binary", "rating", "steps"), n_responses=3)
    s = b.show("alice", "pairwise")
    b.submit(s, submit.pairwise(b.project, s, "B", strength=2))
    s = b.show("alice", "ranking")
    b.submit(s, submit.ranking(b.project, s, [3, 1, 1]))
    s = b.show("alice", "binary")
    b.submit(s, submit.binary(b.project, s, True))
    s = b.show("alice", "rating")
    b.submit(s, submit.rating(b.project, s, {"overall": 4}))
    s = b.show("alice", "steps")
    texts = split_steps(b.content.text(s.order[0]))
    b.submit(s, submit.steps(b.project, s, texts, [1, -1]))
    rows = {r["kind"]: r for r in Store(b.store.root).read("judgements").to_pylist()}
    assert rows["pairwise"]["scores"] == [0.0, 1.0] and rows["pairwise"]["strength"] == 2
    assert rows["ranking"]["scores"] == [-3.0, -1.0, -1.0] and len(set(rows["ranking"]["response_ids"])) == 3
    assert rows["binary"]["scores"] == [1.0] and rows["rating"]["scores"] == [4.0]
    assert rows["steps"]["step_labels"] == [1, -1] and rows["steps"]["scores"] == [0.5]
    assert json.loads(rows["steps"]["metadata"])["steps"] == texts
    assert {r["guidelines"] for r in rows.values()} == {b.project.guidelines}


def test_pairwise_aspects_become_their_own_judgements(tmp_path):
    b = _board(tmp_path, aspects=["helpfulness", "honesty"])
    s = b.show("alice", "pairwise")
    js = submit.pairwise(b.project, s, "A", aspects={"helpfulness": "A", "honesty": "tie"})
    assert [(j.aspect, j.scores) for j in js] == [("overall", [1, 0]), ("helpfulness", [1, 0]), ("honesty", [0.5, 0.5])]


def test_fast_answers_are_flagged_not_dropped(tmp_path):
    b = _board(tmp_path, min_seconds=3.0)
    s = b.show("alice", "pairwise")
    fast = submit.pairwise(b.project, s, "A", now=s.started + 0.5)[0]
    slow = submit.pairwise(b.project, s, "A", now=s.started + 5)[0]
    assert fast.status == "flagged" and "fast" in json.loads(fast.metadata)["flag"]
    assert slow.status == "submitted" and slow.duration_ms == 5000


def test_edit_is_a_human_edit_response_and_a_revision(tmp_path):
    b = _board(tmp_path, ("edit",))
    s = b.show("alice", "edit")
    original = b.content.text(s.order[0])
    with pytest.raises(SubmitError, match="identical"):
        submit.edit(b.project, s, original, original + "  ")
    new, js = submit.edit(b.project, s, original, original.replace("Step 1", "Step one"))
    b.submit(s, js, [new])
    stored = Store(b.store.root).read("responses", "origin = 'human_edit'").to_pylist()[0]
    assert stored["parent_id"] == s.order[0] and stored["model"] == "human:alice"
    j = Store(b.store.root).read("judgements").to_pylist()[0]
    assert j["kind"] == "revision" and j["response_ids"] == [s.order[0], new.response_id] and j["scores"] == [0, 1]
    assert b.show("alice", "edit").item != s.item  # the edit item counts as answered


def test_gold_items_are_mixed_in_and_scored(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=30)
    from prefkit.annotate.contract import Prompt

    con = store.connect()
    pid, rid = con.execute("SELECT prompt_id, min(response_id) FROM responses GROUP BY 1 ORDER BY 1 LIMIT 1").fetchone()
    messages = con.execute("SELECT messages FROM prompts WHERE prompt_id = ?", [pid]).fetchone()[0]
    # the same prompt again, now with a gold answer in its metadata (the dedupe keeps the first row,
    # so write the gold prompt into a fresh store instead)
    gold_store = make_store(tmp_path / "g", n_prompts=0)
    gold_store.append("prompts", [Prompt(messages=messages, metadata=json.dumps({"gold": {"preferred": rid}}))])
    gold_store.append("prompts", store.read("prompts", "prompt_id != ?", [pid]))
    gold_store.append("responses", store.read("responses"))
    b = Board(gold_store.root, make_project(gold_rate=0.5))
    served = []
    while (s := b.show("alice", "pairwise")) is not None:
        served.append(s)
        choice = "A" if s.order[0] == rid else "B"
        b.submit(s, submit.pairwise(b.project, s, choice if s.gold else "A"))
    gold = [x for x in served if x.gold]
    assert len(gold) == 1 and len(served) == 30  # the gold item once, every other item once
    rows = Store(gold_store.root).read("judgements").to_pylist()
    meta = [json.loads(r["metadata"]) for r in rows if r["prompt_id"] == pid]
    assert meta == [{"gold": True, "correct": True}]


def test_assist_mode_records_the_ai_verdict_shown(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=3)
    con = store.connect()
    pid, rids = con.execute(
        "SELECT prompt_id, list_sort(list(response_id)) FROM responses GROUP BY 1 LIMIT 1"
    ).fetchone()
    ai = Judgement(new_judgement_id(), pid, "pairwise", "ai:judge:t", "ai", rids, [0.0, 1.0], confidence=0.8)
    store.append("judgements", [ai])
    b = Board(store.root, make_project(mode="assist"))
    while (s := b.show("alice", "pairwise")).item.prompt_id != pid:
        b.submit(s, submit.pairwise(b.project, s, "A"))
    assert s.ai_shown["verdict"] == rids[1] and s.ai_shown["shown_as"] == "AB"[s.order.index(rids[1])]
    j = submit.pairwise(b.project, s, "A")[0]
    shown = json.loads(j.metadata)["ai_shown"]
    assert shown["judgement_id"] == ai.judgement_id and shown["confidence"] == 0.8


def test_blind_mode_shows_no_ai_verdict(tmp_path):
    b = _board(tmp_path)
    assert b.show("alice", "pairwise").ai_shown is None


def test_split_steps_and_word_diff():
    assert split_steps("Step 1: add.\nStep 2: carry.\nStep 3: done.") == [
        "Step 1: add.",
        "Step 2: carry.",
        "Step 3: done.",
    ]
    assert split_steps("First part.\n\nSecond part.") == ["First part.", "Second part."]
    assert split_steps("One. Two! Three?") == ["One.", "Two!", "Three?"]
    assert word_diff("the cat sat", "the dog sat") == "the [-cat-]{+dog+} sat"
    assert word_diff("<b>x</b>", "<b>y</b>") == "<b>[-x-]{+y+}</b>"
