"""The Training runs page (issue 18): it lists the runs under the runs folder (never one that links
out), overlays their loss, reward margin and accuracy curves as metrics.jsonl grows (the trainer's
own writer makes the files), and links the pairs `prefkit score-pairs` found disputed to Review,
where exactly the pairs that model and people disagree on are listed (recomputed here in pandas)."""

from __future__ import annotations

import json
import os
import random
import time

import pytest
from prefkit.annotate.app import learn, metrics
from prefkit.annotate.store import Store
from prefkit.train.metrics import Writer
from streamlit.testing.v1 import AppTest

from prefkit.score import disagreement_judgements
from tests.annotate.app.conftest import make_store
from tests.annotate.app.test_dashboard import chart_rows
from tests.support.factories import pairwise


def _write_run(folder, steps: int, seed: int, evals: bool = True) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    w, rows = Writer(folder / "metrics.jsonl"), []
    for step in range(1, steps + 1):
        row = {
            "step": step,
            "loss": 0.69 - step * 0.01 * rng.random(),
            "rewards/margins": step * 0.02 * rng.random(),
            "rewards/accuracies": min(1.0, 0.5 + step * 0.03 * rng.random()),
            "rewards/chosen": rng.random(),
            "rewards/rejected": -rng.random(),
        }
        w.write(row)
        rows.append(row)
        if evals and step % 4 == 0:
            ev = {"step": step, "eval/loss": row["loss"] + 0.05, "eval/rewards/margins": row["rewards/margins"] / 2}
            w.write(ev)
            rows.append(ev)
    return rows


def test_find_runs_lists_run_folders_inside_the_root_newest_first(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "secret"
    _write_run(root / "dpo", 3, 1)
    _write_run(root / "sweep" / "lr-1e-4", 3, 2)
    _write_run(outside / "stolen", 3, 3)
    (root / "empty").mkdir()
    (root / "link").symlink_to(outside / "stolen")
    (root / "a" / "b" / "c" / "d").mkdir(parents=True)
    _write_run(root / "a" / "b" / "c" / "d", 2, 4)  # deeper than three levels: not listed
    old = time.time() - 3600
    os.utime(root / "dpo" / "metrics.jsonl", (old, old))
    assert learn.find_runs(root) == ["sweep/lr-1e-4", "dpo"]
    assert learn.find_runs(root / "missing") == []
    assert learn.run_annotator(root / "sweep" / "lr-1e-4") == "ai:lr-1e-4:implicit-reward"


def _run():
    from prefkit.annotate.app.pages import learn

    learn.run_page()


def _review():
    from prefkit.annotate.app.pages import review

    review.page()


def test_the_page_overlays_every_run_and_follows_the_files(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    a, b = _write_run(root / "dpo-a", 8, 1), _write_run(root / "dpo-b", 5, 2, evals=False)
    store = make_store(tmp_path / "store", n_prompts=2)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.setenv("PREFKIT_RUNS", str(root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    monkeypatch.delenv("PREFKIT_RUN_DIR", raising=False)
    at = AppTest.from_function(_run, default_timeout=60).run()
    assert not at.exception, at.exception
    assert sorted(at.multiselect(key="runs").value) == ["dpo-a", "dpo-b"]
    captions = " ".join(c.value for c in at.caption)
    assert "dpo-a: 10 logged steps" in captions and "dpo-b: 5 logged steps" in captions  # eval rows are rows too

    # each overlaid curve: one point per logged value of that key, over both runs (counted from the rows)
    for key, name in (("loss", "loss"), ("rewards-margins", "rewards/margins"), ("rewards-accuracies", None)):
        name = name or "rewards/accuracies"
        want = sum(name in r for r in a + b) + sum(f"eval/{name}" in r for r in a + b)
        assert chart_rows(at, f"run-{key}") == [want], key

    # the curves grow with the file: new rows are read from where the page stopped
    more = _write_run(tmp_path / "scratch", 2, 9, evals=False)
    with open(root / "dpo-b" / "metrics.jsonl", "a") as f:
        for row in more:
            f.write(json.dumps({**row, "step": row["step"] + 5}) + "\n")
    at.run()
    assert "dpo-b: 7 logged steps" in " ".join(c.value for c in at.caption)
    assert chart_rows(at, "run-loss") == [10 + 7]  # dpo-a: 8 train + 2 eval losses; dpo-b: 5 + 2 new

    # a run folder outside the runs folder stays refused, and only one run is left chosen
    at.multiselect(key="runs").set_value(["dpo-a"]).run()
    at.text_input(key="run_dir").input("../").run()
    assert any("outside the runs folder" in e.value for e in at.error)
    assert chart_rows(at, "run-loss") == [10]


def _team_with_disputes(tmp_path, rng: random.Random):
    """People's votes on 24 pairs, and a trained run's score-pairs rows (the real builder) with random
    margins over the pairs in the dataset's order [chosen, rejected]."""
    store = make_store(tmp_path / "store", n_prompts=24)
    con = store.connect()
    pairs = con.execute(
        "SELECT prompt_id, list(response_id ORDER BY response_id) FROM responses GROUP BY 1 ORDER BY 1"
    ).fetchall()

    class P:
        def __init__(self, pid):
            self.prompt_id = pid

    class R:
        def __init__(self, rid):
            self.response_id = rid

    votes, margins = [], []
    for k, (pid, ids) in enumerate(pairs):
        winner = rng.randint(0, 1)
        for who in ("alice", "bob", "carol")[: rng.randint(1, 3)]:
            w = winner if rng.random() < 0.8 else 1 - winner
            votes.append(pairwise(P(pid), R(ids[0]), R(ids[1]), winner=w, annotator=who))
        chosen, rejected = ids[winner], ids[1 - winner]
        row = {"prompt_id": pid, "chosen_id": chosen, "rejected_id": rejected}
        margins.append(
            {
                "row": row,
                "margin": rng.uniform(-2, 2),
                "split": "train",
                "index": k,
                "chosen_reward": 0.0,
                "rejected_reward": 0.0,
            }
        )
    store.append("judgements", votes)
    disputes = disagreement_judgements(margins, "dpo", top=16)
    store.append("judgements", disputes)
    return store, margins, disputes


@pytest.mark.parametrize("seed", [1, 2])
def test_disputed_pairs_link_to_exactly_those_in_review(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    store, margins, disputes = _team_with_disputes(tmp_path, rng)
    root = tmp_path / "runs"
    _write_run(root / "dpo", 4, 1)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.setenv("PREFKIT_RUNS", str(root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    monkeypatch.delenv("PREFKIT_RUN_DIR", raising=False)

    con = Store(store.root).connect()
    scored = learn.scored_pairs(con, root / "dpo")
    lowest = sorted(margins, key=lambda m: m["margin"])[:16]
    assert [round(r["margin"], 12) for r in scored] == [round(m["margin"], 12) for m in lowest]
    negative = sum(m["margin"] < 0 for m in lowest)

    at = AppTest.from_function(_run, default_timeout=60).run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"16 pairs scored, {negative} with a negative implicit reward margin" in text
    (link,) = [el for el in _walk(at.main) if getattr(el, "type", None) == "page_link"]
    assert link.proto.page == "review" and "ai=ai" in link.proto.query_string, link.proto

    # Review, filtered to that model: pairs it judged where its verdict ≠ the people's majority (or they split)
    sorted_pairs = {}
    for v in Store(store.root).read("judgements", "annotator_type = 'human'").to_pylist():
        key = (v["prompt_id"], *sorted(v["response_ids"]))
        won = v["response_ids"][0 if v["scores"][0] > v["scores"][1] else 1]
        sorted_pairs.setdefault(key, []).append(won)
    want = set()
    for j in disputes:
        people = sorted_pairs[(j.prompt_id, *sorted(j.response_ids))]
        model_pick = j.response_ids[0 if j.scores[0] > j.scores[1] else 1]
        if len(set(people)) > 1 or people[0] != model_pick:  # people split, or agree against the model
            want.add(j.prompt_id)
    df = metrics.load_pairwise(con)
    queue = metrics.review_queue(df, ai="ai:dpo:implicit-reward")
    assert set(queue.prompt_id) == want and len(want) > 0

    at = AppTest.from_function(_review, default_timeout=60)
    at.query_params["ai"] = "ai:dpo:implicit-reward"
    at.run()
    assert not at.exception, at.exception
    assert any(f"{len(want)} items to settle" in c.value for c in at.caption)
    at = AppTest.from_function(_review, default_timeout=60)
    at.query_params["ai"] = "![x](http://example.invalid/x.png)"  # not an AI annotator here: ignored, said so
    at.run()
    assert any("No AI annotator by that name" in w.value for w in at.warning)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_the_runs_folder_defaults_to_where_runs_are_written(tmp_path, monkeypatch):
    """`prefkit app --demo` lists `prefkit demo`'s runs (its --out default, runs/ inside, as the demo
    plan writes them) once there is one, the bundled recorded run before; otherwise ./runs; --runs
    and --run-dir as before."""
    from prefkit.cli import build_parser
    from prefkit.cli.app import runs_folder
    from prefkit.demo import plan

    monkeypatch.chdir(tmp_path)
    parser, _ = build_parser()
    demo_out = parser.parse_args(["demo"]).out
    train = [s.argv for s in plan(tmp_path / demo_out, None, None, 1) if s.argv[0] == "train"]
    written = {(tmp_path / a[a.index("--out") + 1]).parent for a in train}
    # before `prefkit demo` has written a run: a working copy of the bundled recorded run
    shown = runs_folder(parser.parse_args(["app", "--demo"]))
    assert shown == (tmp_path / ".prefkit" / "demo-runs").resolve() and learn.find_runs(shown) == ["dpo-recorded"]
    (run,) = {tmp_path / a[a.index("--out") + 1] for a in train if a[1] == "dpo"}
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n')
    assert {runs_folder(parser.parse_args(["app", "--demo"]))} == {p.resolve() for p in written}
    assert runs_folder(parser.parse_args(["app"])) == (tmp_path / "runs").resolve()
    assert runs_folder(parser.parse_args(["app", "--runs", "elsewhere"])) == (tmp_path / "elsewhere").resolve()
    assert runs_folder(parser.parse_args(["app", "--run-dir", "x/y"])) == (tmp_path / "x").resolve()
