"""The real multi-annotator data: PandaLM's human-annotated test set (../shared/data/pandalm/)."""

import json
from pathlib import Path

import pytest
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store

ROOT = Path(__file__).resolve().parents[2]
PANDALM = ROOT.parent / "shared/data/pandalm/testset-v1.json"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pandalm"))
    return store, import_files(store, [PANDALM])


def test_counts(imported):
    store, result = imported
    (file,) = result.files
    assert file.shape == "votes" and file.records == 999
    # 1,998 response slots hold 722 distinct (prompt, text) responses: many models gave the same answer
    assert result.added == {"prompts": 170, "responses": 722, "judgements": 2997}
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [170, 722, 2997]


def test_one_judgement_per_annotator_vote(imported):
    store, _ = imported
    records = json.loads(PANDALM.read_text())
    con = store.connect()
    got = dict(
        con.execute(
            "SELECT annotator, count(*) FROM judgements WHERE annotator_type = 'import' AND kind = 'pairwise' GROUP BY 1"
        ).fetchall()
    )
    assert got == {f"testset-v1.json:annotator{i}": 999 for i in (1, 2, 3)}
    # votes → scores: 0 tie [0.5, 0.5], 1 [1, 0], 2 [0, 1], counted over the whole file
    want = {0: 0, 1: 0, 2: 0}
    for r in records:
        for i in (1, 2, 3):
            want[r[f"annotator{i}"]] += 1
    scores = dict(con.execute("SELECT scores[1], count(*) FROM judgements GROUP BY 1").fetchall())
    assert scores == {0.5: want[0], 1.0: want[1], 0.0: want[2]}


def test_first_record_lands_as_written(imported):
    store, _ = imported
    first = json.loads(PANDALM.read_text())[0]
    con = store.connect()
    rows = con.execute(
        """SELECT p.messages[1].content, r1.content, r2.content, j.scores, j.metadata
           FROM judgements j JOIN prompts p USING (prompt_id)
           JOIN responses r1 ON r1.response_id = j.response_ids[1]
           JOIN responses r2 ON r2.response_id = j.response_ids[2]
           WHERE j.annotator = 'testset-v1.json:annotator1' AND json_extract(j.metadata, '$.idx') = 0"""
    ).fetchall()
    assert len(rows) == 1
    prompt, a, b, scores, meta = rows[0]
    assert prompt == first["instruction"] + "\n\n" + first["input"]
    assert (a, b) == (first["response1"], first["response2"])
    assert scores == [0.0, 1.0] and first["annotator1"] == 2
    assert json.loads(meta)["cmp_key"] == first["cmp_key"]


def test_reimport_adds_nothing(imported):
    store, _ = imported
    files_before = sorted(p.name for t in ("prompts", "responses", "judgements") for p in store.part_files(t))
    again = import_files(store, [PANDALM])
    assert again.added == {"prompts": 0, "responses": 0, "judgements": 0}
    assert sorted(p.name for t in ("prompts", "responses", "judgements") for p in store.part_files(t)) == files_before


def test_messy_values_are_reported(imported):
    _, result = imported
    warnings = result.files[0].warnings
    # the set has 54 empty answers (kept: a model that said nothing, and lost) and 6 JSON booleans
    assert sum(n for w, (n, _) in warnings.items() if "empty response" in w) == 54
    assert sum(n for w, (n, _) in warnings.items() if "JSON bool" in w) == 6
