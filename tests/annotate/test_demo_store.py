"""The bundled demo store: what it holds, and that it is exactly what its source builds."""

import difflib
import json
from pathlib import Path

import pytest
from prefkit.annotate import demo_store
from prefkit.annotate.store import TABLES, Store

from prefkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
RECORDED = ROOT / "data" / "demo-source" / "recorded-run"
RECORDED_RUN = RECORDED / "dpo-recorded"
RECORDED_AI = "ai:dpo-recorded:implicit-reward"


def table_rows(store: Store, table: str) -> list[dict]:
    return sorted(store.read(table).to_pylist(), key=lambda r: str(r[f"{table[:-1]}_id"]))


@pytest.fixture(scope="module")
def demo():
    return Store(DEMO, create=False)


def test_committed_store_is_what_the_source_builds(demo, tmp_path):
    """Rebuilding from data/demo-source gives the same rows as the committed data/demo (run
    `python -m prefkit.annotate.demo_store` after editing the source)."""
    rebuilt = Store(tmp_path / "rebuilt")
    demo_store.build(rebuilt.root)
    for table in TABLES:
        assert table_rows(rebuilt, table) == table_rows(demo, table), f"{table} differs: rebuild data/demo"


def test_build_is_deterministic(tmp_path):
    demo_store.build(tmp_path / "a")
    demo_store.build(tmp_path / "b")
    demo_store.build(tmp_path / "b")  # rebuilding in place replaces, never appends
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    for table in TABLES:
        assert table_rows(a, table) == table_rows(b, table)
        assert b.count(table) == len(list(Store(tmp_path / "b").read(table).to_pylist()))
    assert b.count("prompts") == len(demo_store.load_source())


def test_categories_and_responses(demo):
    con = demo.connect()
    per_category = dict(
        con.execute("SELECT json_extract_string(metadata, '$.category'), count(*) FROM prompts GROUP BY 1").fetchall()
    )
    assert sum(per_category.values()) >= 40
    assert {"coding", "math", "writing", "advice", "safety", "multi-turn chat"} <= set(per_category)
    assert all(n >= 5 for n in per_category.values())
    sizes = [n for (n,) in con.execute("SELECT count(*) FROM responses GROUP BY prompt_id").fetchall()]
    assert len(sizes) == sum(per_category.values()) and min(sizes) >= 2 and max(sizes) <= 4
    multi = con.execute("SELECT count(*) FROM prompts WHERE len(messages) >= 3").fetchone()[0]
    assert multi >= 5
    contents = [c for (c,) in con.execute("SELECT content FROM responses").fetchall()]
    assert sum("```" in c for c in contents) >= 10  # code blocks
    assert sum("**" in c or "\n- " in c or "\n1. " in c for c in contents) >= 20  # markdown
    # every math prompt has a worked answer (several lines, with numbers)
    math_best = con.execute(
        """SELECT r.content FROM judgements j JOIN prompts p USING (prompt_id)
           JOIN responses r ON r.response_id = j.response_ids[list_position(j.scores, -1.0)]
           WHERE json_extract_string(p.metadata, '$.category') = 'math'"""
    ).fetchall()
    assert len(math_best) >= 5 and all(c.count("\n") >= 2 for (c,) in math_best)


def test_one_pair_differs_only_by_a_small_fix(demo):
    con = demo.connect()
    by_prompt: dict[str, list[str]] = {}
    for pid, content in con.execute("SELECT prompt_id, content FROM responses ORDER BY response_id").fetchall():
        by_prompt.setdefault(pid, []).append(content)
    near = []
    for texts in by_prompt.values():
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                changed = sum(n for op, *_, n in _ops(a, b))
                if 0 < changed <= 3:
                    near.append((a, b))
    assert near, "the demo needs one pair of responses that differ only by a small fix"


def _ops(a: str, b: str):
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            yield op, max(i2 - i1, j2 - j1)


def test_reference_rankings(demo):
    con = demo.connect()
    rankings = con.execute("SELECT annotator, annotator_type, scores FROM judgements WHERE kind = 'ranking'").fetchall()
    assert len(rankings) == demo.count("prompts")
    for annotator, kind, scores in rankings:
        assert (annotator, kind) == ("demo:author", "import")
        assert sorted(scores, reverse=True) == [-1.0 - k for k in range(len(scores))]


# -- the simulated team (prefkit.annotate.demo_team) --------------------------------------------------


@pytest.fixture(scope="module")
def team(demo):
    """People's overall pairwise rows, oldest first, with the reference winner of their pair."""
    con = demo.connect()
    rows = con.execute(
        """SELECT j.*, list_sort(j.response_ids) AS pair FROM judgements j
           WHERE annotator_type = 'human' AND kind = 'pairwise' ORDER BY created_at, judgement_id"""
    ).df()
    rank = {}
    for pid, ids, scores in con.execute(
        "SELECT prompt_id, response_ids, scores FROM judgements WHERE annotator = 'demo:author'"
    ).fetchall():
        rank[pid] = dict(zip(ids, scores, strict=True))  # −rank: higher is better
    rows["better"] = [max(pair, key=rank[pid].get) for pid, pair in zip(rows.prompt_id, rows.pair, strict=True)]
    return rows


def _winner(row) -> str | None:
    a, b = row.scores
    return None if a == b else row.response_ids[0] if a > b else row.response_ids[1]


def test_the_project_file_matches_the_simulation():
    from prefkit.annotate import demo_team
    from prefkit.annotate.app.project import load_project

    project = load_project(str(ROOT / "data" / "demo-project.yaml"))
    assert demo_team.MIN_SECONDS == project.min_seconds
    assert demo_team.OVERLAP == project.task("pairwise").overlap
    assert list(demo_team.ASPECTS) == project.aspects
    assert project.gold_rate > 0  # else the app would never serve the gold items


def test_a_team_of_five_disagrees(team):
    overall = team[(team.aspect == "overall") & (team.status != "skipped")]
    assert overall.annotator.nunique() >= 5 and (overall.groupby("annotator").size() >= 10).all()
    # on the app's items (a prompt's two smallest response ids), with several people per item
    votes = overall.groupby("prompt_id").annotator.nunique()
    assert (votes >= 3).sum() >= 20
    latest = overall.sort_values(["created_at", "judgement_id"]).groupby(["prompt_id", "annotator"]).last()
    labels = latest.apply(lambda r: _winner(r) or "tie", axis=1).groupby("prompt_id").nunique()
    assert (labels >= 2).sum() >= 5, "some items must split the people"
    assert (labels == 1).sum() >= 10, "and most must not"
    # people are mostly, not always, right about the reference winner; their accuracy differs
    right = overall.apply(lambda r: _winner(r) == r.better, axis=1).groupby(overall.annotator).mean()
    assert 0.5 < right.mean() < 0.95 and right.max() - right.min() > 0.1
    assert {a for a in team.aspect.unique()} == {"overall", "helpfulness", "harmlessness", "honesty"}


def test_re_votes_skips_and_fast_answers(team):
    overall = team[(team.aspect == "overall") & (team.status != "skipped")]
    again = overall.groupby(["prompt_id", "annotator"]).filter(lambda g: len(g) >= 2)
    assert again.groupby(["prompt_id", "annotator"]).ngroups >= 3
    changed = 0
    for _, g in again.groupby(["prompt_id", "annotator"]):
        g = g.sort_values(["created_at", "judgement_id"])
        assert g.created_at.iloc[-1] > g.created_at.iloc[0]  # the later vote is the one that counts
        changed += _winner(g.iloc[-1]) != _winner(g.iloc[0])
    assert changed >= 3
    skipped = team[team.status == "skipped"]
    assert len(skipped) >= 3 and all(len(s) == 0 for s in skipped.scores) and (skipped.rationale != "").all()
    flagged = team[team.status == "flagged"]
    assert len(flagged) >= 3
    assert (flagged.duration_ms < 2000).all() and (team[team.status == "submitted"].duration_ms >= 2000).all()
    assert all(json.loads(m)["flag"].startswith("fast: ") for m in flagged.metadata)


def test_gold_items(demo, team):
    con = demo.connect()
    gold = dict(
        con.execute(
            "SELECT prompt_id, json_extract_string(metadata, '$.gold.preferred') FROM prompts WHERE metadata LIKE '%gold%'"
        ).fetchall()
    )
    categories = con.execute(
        "SELECT count(DISTINCT json_extract_string(metadata, '$.category')) FROM prompts WHERE prompt_id IN "
        f"({', '.join('?' * len(gold))})",
        list(gold),
    ).fetchall()[0][0]
    assert len(gold) == categories == 6  # one per category
    on_gold = team[team.prompt_id.isin(gold) & (team.aspect == "overall")]
    for row in on_gold.itertuples():
        assert gold[row.prompt_id] == row.better and gold[row.prompt_id] in row.pair[:2]
        meta = json.loads(row.metadata)
        assert meta["gold"] is True and meta["correct"] == (_winner(row) == gold[row.prompt_id])
    per_person = on_gold.groupby("annotator").size()
    assert len(per_person) == 5 and (per_person >= 3).all()
    assert {True, False} <= {json.loads(m)["correct"] for m in on_gold.metadata}


def test_the_ai_judge_answers_in_both_orders_with_confidences(demo):
    from prefkit.annotate.ai.verdicts import SCORES

    con = demo.connect()
    rows = con.execute(f"SELECT * FROM judgements WHERE annotator_type = 'ai' AND annotator <> '{RECORDED_AI}'").df()
    assert rows.annotator.nunique() == 1 and (rows.kind == "pairwise").all()
    ok = rows[rows.status == "submitted"]
    assert (rows.status == "error").sum() >= 1 and rows[rows.status == "error"].error.notna().all()
    meta = [json.loads(m) for m in ok.metadata]
    for row, m in zip(ok.itertuples(), meta, strict=True):
        assert list(row.scores) == SCORES[m["verdict"]] and m["mode"] == "logprobs"
        assert 0.0 <= row.confidence <= 1.0
        # the confidence is P(first shown wins) and the verdict the likeliest of first / second / tie
        assert m["verdict"] == "first" or row.confidence <= 0.5
        assert m["verdict"] != "first" or row.confidence >= 1 / 3
    orders: dict[str, dict[str, list[str]]] = {}
    for row, m in zip(ok.itertuples(), meta, strict=True):
        orders.setdefault(m["order_key"], {})[m["order"]] = list(row.response_ids)
    both = [o for o in orders.values() if len(o) == 2]
    assert len(both) >= len(orders) - 1 >= 80
    assert all(o["ab"] == o["ba"][::-1] for o in both)
    responses = con.execute("SELECT count(*) FROM responses").fetchall()[0][0]
    assert responses < len(orders) + 42  # every pair of every prompt, not only the app's items
    verdicts = {m["verdict"] for m in meta}
    assert verdicts == {"first", "second", "tie"}


def test_every_simulated_row_says_so_and_the_store_stays_small(demo):
    con = demo.connect()
    unmarked = con.execute(
        "SELECT count(*) FROM judgements WHERE annotator_type IN ('human', 'ai') AND annotator <> ? "
        "AND json_extract(metadata, '$.simulated') IS DISTINCT FROM 'true'",
        [RECORDED_AI],
    ).fetchall()[0][0]
    assert unmarked == 0  # the one exception is real: the recorded run's score-pairs rows
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert size < 300_000


def test_source_errors_name_the_line(tmp_path):
    (tmp_path / "x.jsonl").write_text(
        json.dumps(
            {
                "id": "a",
                "category": "c",
                "messages": [{"role": "user", "content": "q"}],
                "responses": [{"model": "m", "content": "r", "rank": 1}],
            }
        )
        + "\n"
    )
    with pytest.raises(demo_store.DemoSourceError, match=r"x.jsonl:1: field 'responses': give 2–4"):
        demo_store.load_source(tmp_path)


def test_stats_reads_the_demo(capsys):
    assert main(["stats", "--store", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "ranking" in out and "demo:author" in out and "prefkit-demo" in out


def _recorded_rows() -> list[dict]:
    return [json.loads(line) for line in (RECORDED / "score-pairs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_recorded_runs_pairs_are_in_the_store_exactly_and_name_its_pairs(demo):
    """The score-pairs rows of the recorded run (data/demo-source/recorded-run) are in data/demo as
    recorded, and each names a prompt of the store and two of that prompt's responses."""
    recorded = _recorded_rows()
    assert len(recorded) >= 5
    stored = demo.read("judgements", "annotator = ?", [RECORDED_AI]).to_pylist()
    as_recorded = [{k: v.isoformat() if k == "created_at" else v for k, v in r.items()} for r in stored]
    key = lambda r: r["judgement_id"]  # noqa: E731
    assert sorted(as_recorded, key=key) == sorted(recorded, key=key)
    con = demo.connect()
    owner = dict(con.execute("SELECT response_id, prompt_id FROM responses").fetchall())
    prompts = {p for (p,) in con.execute("SELECT prompt_id FROM prompts").fetchall()}
    for r in recorded:
        assert r["prompt_id"] in prompts and len(set(r["response_ids"])) == 2
        assert all(owner.get(rid) == r["prompt_id"] for rid in r["response_ids"]), r["judgement_id"]


def test_the_recorded_rows_figures_follow_from_their_margins():
    """Each row's verdict, confidence and order, recomputed from its recorded rewards: margin = chosen −
    rejected implicit reward, confidence = σ(margin) (Bradley–Terry), scores give the model's side,
    the rows are the run's lowest margins (score-pairs keeps the most disputed)."""
    from scipy.special import expit

    rows = _recorded_rows()
    margins = []
    for r in rows:
        m = json.loads(r["metadata"])
        assert m["source"] == "score-pairs" and r["kind"] == "pairwise" and r["annotator_type"] == "ai"
        assert m["margin"] == pytest.approx(m["chosen_reward"] - m["rejected_reward"], rel=1e-5, abs=1e-6)
        assert r["confidence"] == pytest.approx(expit(m["margin"]), abs=1e-12)
        assert r["scores"] == ([1.0, 0.0] if m["margin"] > 0 else [0.0, 1.0])
        assert f"{m['margin']:.3f}" in r["rationale"]
        margins.append(m["margin"])
    assert margins == sorted(margins) and min(margins) < 0  # the model disputes some pairs


def test_a_recorded_row_that_names_another_store_is_refused(tmp_path):
    """An edited source that changes ids must not leave recorded rows pointing nowhere."""
    import shutil

    shutil.copytree(ROOT / "data" / "demo-source", tmp_path / "src")
    rows = _recorded_rows()
    rows[0]["response_ids"] = [rows[0]["response_ids"][0], "0" * 32]
    (tmp_path / "src" / "recorded-run" / "score-pairs.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    with pytest.raises(demo_store.DemoSourceError, match=r"score-pairs.jsonl:1: field 'response_ids'"):
        demo_store.build(tmp_path / "out", tmp_path / "src")


def test_the_recorded_metrics_parse_and_hang_together():
    """The recorded run's metrics.jsonl, read as the Training runs page reads it: loss, reward margin
    and accuracy on every step; margin = chosen − rejected reward; accuracy a share; the DPO loss
    −log σ(βΔ) is convex, so its mean is at least −log σ of the mean margin (Jensen)."""
    from prefkit.annotate.app.learn import read_metrics
    from scipy.special import log_expit

    from prefkit import files

    rows, _ = read_metrics(RECORDED_RUN / "metrics.jsonl")
    raw, _ = files.read_jsonl(RECORDED_RUN / "metrics.jsonl")
    assert rows == raw and len(rows) >= 10
    train = [r for r in rows if "loss" in r]
    steps = [r["step"] for r in train]
    assert steps == sorted(set(steps)) and len(train) >= 10
    for r in train:
        assert 0.0 <= r["rewards/accuracies"] <= 1.0
        assert r["rewards/margins"] == pytest.approx(r["rewards/chosen"] - r["rewards/rejected"], rel=1e-4, abs=1e-5)
        assert r["loss"] >= -log_expit(r["rewards/margins"]) - 1e-5
    assert any("eval/loss" in r for r in rows)
    size = sum(f.stat().st_size for f in RECORDED.rglob("*") if f.is_file())
    assert size < 200_000 and not (RECORDED_RUN / "final").exists()
