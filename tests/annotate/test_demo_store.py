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
    judgements = demo.read("judgements").to_pylist()
    assert {(j["kind"], j["annotator"], j["annotator_type"]) for j in judgements} == {
        ("ranking", "demo:author", "import")
    }
    for j in judgements:
        assert sorted(j["scores"], reverse=True) == [-1.0 - k for k in range(len(j["scores"]))]


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
