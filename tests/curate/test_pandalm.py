"""PandaLM (real, three human votes per pair) imported and curated with the default recipe."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store
from prefkit.curate.pipeline import curate

from prefkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
PANDALM = ROOT.parent / "shared/data/pandalm/testset-v1.json"


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _expected_winners() -> dict[tuple[str, frozenset], str | None]:
    """The plurality of the votes per comparison, straight from the JSON file: records on the same
    (normalised) prompt and response pair pool their votes; a tie or no plurality gives None."""
    votes: dict[tuple, Counter] = defaultdict(Counter)
    for rec in json.loads(PANDALM.read_text(encoding="utf-8")):
        prompt = _norm(rec["instruction"] + "\n" + rec["input"]) if rec["input"] else _norm(rec["instruction"])
        r1, r2 = _norm(str(rec["response1"])), _norm(str(rec["response2"]))
        key = (prompt, frozenset((r1, r2)))
        for k in (1, 2, 3):
            v = rec[f"annotator{k}"]
            votes[key][{0: "tie", 1: r1, 2: r2}[v]] += 1
    out = {}
    for key, c in votes.items():
        (top, n), *rest = c.most_common()
        out[key] = None if top == "tie" or (rest and rest[0][1] == n) else top
    return out


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pandalm") / "store")
    import_files(store, [PANDALM])
    return store, curate(store, None, "pandalm")


def test_pairs_follow_the_majority_of_the_votes(curated):
    _, result = curated
    expected = _expected_winners()
    pairs = pq.read_table(result.tables["pairs"]).to_pylist()
    assert len(pairs) > 600
    for row in pairs:
        prompt = _norm("\n".join(m["content"] for m in row["prompt"]))
        chosen, rejected = _norm(row["chosen"]), _norm(row["rejected"])
        assert expected[(prompt, frozenset((chosen, rejected)))] == chosen, row["pair_id"]
        assert row["n_votes"] % 3 == 0 and row["agreement"] > 0.5
        assert len(row["annotators"]) == 3
    # Every comparison with a winner and two non-empty responses became a pair.
    winners = [k for k, w in expected.items() if w is not None and all(k[1]) and len(k[1]) == 2]
    assert len(pairs) == len(winners)


def test_ties_are_dropped_and_counted(curated):
    _, result = curated
    expected_ties = sum(1 for (_, pair), w in _expected_winners().items() if w is None and len(pair) == 2 and all(pair))
    drops = result.report["drops"]["pairs"]
    assert drops["ties"]["count"] == expected_ties > 50
    assert len(drops["ties"]["examples"]) == 3
    tie_step = next(s for s in result.report["steps"] if s["table"] == "pairs" and s["step"] == "ties")
    assert tie_step["dropped"] == expected_ties


def test_no_prompt_in_two_splits(curated):
    _, result = curated
    for table in ("pairs", "unpaired"):
        rows = pq.read_table(result.tables[table], columns=["prompt_id", "group_id", "split"]).to_pylist()
        splits_of = defaultdict(set)
        group_splits = defaultdict(set)
        for r in rows:
            splits_of[r["prompt_id"]].add(r["split"])
            group_splits[r["group_id"]].add(r["split"])
        assert all(len(s) == 1 for s in splits_of.values())
        assert all(len(s) == 1 for s in group_splits.values())
        assert {"train", "test"} == {s for v in splits_of.values() for s in v}


def test_report_files_beside_the_output(curated):
    _, result = curated
    report = json.loads(result.report_json.read_text())
    assert report["agreement"]["krippendorff_alpha"] > 0.5
    assert report["outputs"]["pairs"] == result.rows["pairs"]
    page = result.report_html.read_text()
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<svg" in page and "Counts after every step" in page
    assert "ties" in result.recipe_yaml.read_text()


def test_cli_curates_with_the_default_recipe(curated, capsys):
    store, first = curated
    assert main(["curate", "--store", str(store.root), "--out", "again"]) == 0
    out = capsys.readouterr().out
    assert f"pairs {first.rows['pairs']:>14} rows" in " ".join(out.split("  ")) or str(first.rows["pairs"]) in out
    again = pq.read_table(store.root / "curated/again/pairs.parquet")
    assert again.equals(pq.read_table(first.tables["pairs"]))  # deterministic
