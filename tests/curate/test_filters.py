"""Every filter on a small hand-made case, the right answer written in the test."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from prefkit.curate.decontaminate import EvalSetError
from prefkit.curate.pipeline import curate

from tests.curate.helpers import make_store, prompt, recipe, response, vote


def build(tmp_path, items, *filters, name="f"):
    """items: (prompt text, chosen text, rejected text, source, votes for chosen, votes against)."""
    ps, rs, js = [], [], []
    for i, (text, good, bad, source, up, down) in enumerate(items):
        p = prompt(text, source=source, minute=i)
        a, b = response(p, good), response(p, bad)
        ps.append(p)
        rs += [a, b]
        js += [vote(p, a, b, "a", f"u{k}") for k in range(up)] + [vote(p, a, b, "b", f"v{k}") for k in range(down)]
    store = make_store(tmp_path / name, ps, rs, js)
    res = curate(store, recipe("votes", "binarise", *filters, {"split": {"test_size": 0}}), name)
    return res, pq.read_table(res.tables["pairs"]).to_pylist()


def prompts_of(rows):
    return sorted(r["prompt"][0]["content"] for r in rows)


def test_identical_chosen_and_rejected(tmp_path):
    res, rows = build(
        tmp_path, [("p1", "Same text", "same  TEXT ", "s", 1, 0), ("p2", "yes", "no", "s", 1, 0)], "identical"
    )
    assert prompts_of(rows) == ["p2"]
    assert res.report["drops"]["pairs"]["identical"]["count"] == 1


def test_empty(tmp_path):
    # (The store itself refuses an empty prompt, so only responses can be empty here.)
    res, rows = build(
        tmp_path, [("p1", "  ", "no", "s", 1, 0), ("p2", "yes", "", "s", 1, 0), ("p3", "yes", "no", "s", 1, 0)], "empty"
    )
    assert prompts_of(rows) == ["p3"]
    assert res.report["drops"]["pairs"]["empty"]["count"] == 2


def test_ties(tmp_path):
    res, rows = build(tmp_path, [("p1", "x", "y", "s", 1, 1), ("p2", "x", "y", "s", 2, 1)], "ties")
    assert prompts_of(rows) == ["p2"]


def test_min_margin_and_min_agreement(tmp_path):
    items = [("p1", "x", "y", "s", 3, 0), ("p2", "x", "y", "s", 2, 1), ("p3", "x", "y", "s", 3, 2)]
    # margins: 1, 1/3, 1/5; agreements: 1, 2/3, 3/5
    res, rows = build(tmp_path, items, {"min_margin": 0.3})
    assert prompts_of(rows) == ["p1", "p2"] and res.report["drops"]["pairs"]["min_margin"]["count"] == 1
    res, rows = build(tmp_path, items, {"min_agreement": 0.65}, name="g")
    assert prompts_of(rows) == ["p1", "p2"] and res.report["drops"]["pairs"]["min_agreement"]["count"] == 1


def test_length_limits_in_chars_and_words(tmp_path):
    items = [
        ("short prompt", "a fine answer", "no", "s", 1, 0),
        ("a much longer prompt with many words in it", "ok", "no", "s", 1, 0),
        ("p", "an answer that rambles on for far too many words to keep", "no", "s", 1, 0),
    ]
    res, rows = build(tmp_path, items, {"length": {"unit": "words", "max_prompt": 5, "max_response": 8}})
    assert prompts_of(rows) == ["short prompt"]
    res, rows = build(tmp_path, items, {"length": {"min_response": 2}}, name="g")  # chars: "ok" stays, "no" stays
    assert len(rows) == 3
    res, rows = build(tmp_path, items, {"length": {"min_response": 3}}, name="h")
    assert rows == [] and res.report["drops"]["pairs"]["length"]["count"] == 3


def test_length_bias_is_reported_and_capped(tmp_path):
    # Four pairs whose chosen is longer, one whose chosen is shorter: share 0.8.
    items = [(f"p{i}", "a long and careful answer", "short", "s", 1, 0) for i in range(4)]
    items += [("q", "tiny", "a long rambling answer", "s", 1, 0)]
    res, rows = build(tmp_path, items, "length_bias")
    assert res.report["length_bias"] == {"before": 0.8, "after": 0.8} and len(rows) == 5
    res, rows = build(tmp_path, items, {"length_bias": 0.5}, name="g")
    # One shorter-chosen pair allows one longer-chosen pair at a share of 0.5.
    assert len(rows) == 2 and res.report["length_bias"]["after"] == 0.5
    assert res.report["drops"]["pairs"]["length_bias"]["count"] == 3


def test_per_source_caps(tmp_path):
    items = [(f"a{i}", "x", "y", "big", 1, 0) for i in range(5)] + [
        (f"b{i}", "x", "y", "small", 1, 0) for i in range(2)
    ]
    res, rows = build(tmp_path, items, {"source_cap": {"max_per_source": 3, "caps": {"small": 1}}})
    by_source = sorted(r["source"] for r in rows)
    assert by_source == ["big", "big", "big", "small"]
    assert res.report["drops"]["pairs"]["source_cap"]["count"] == 3


EVAL = "The quick brown fox jumps over the lazy dog near the old mill by the river bank today"


def test_decontamination_by_13_gram_overlap_with_a_jsonl_file(tmp_path):
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": EVAL, "id": 3}) + "\n", encoding="utf-8")
    leaked = "Please answer: the QUICK brown fox, jumps over the lazy dog near the old mill by the river bank."
    twelve = "quick brown fox jumps over the lazy dog near the old mill"  # only 12 words in common
    items = [(leaked, "x", "y", "s", 1, 0), (twelve, "x", "y", "s", 1, 0), ("clean", EVAL, "y", "s", 1, 0)]
    res, rows = build(tmp_path, items, {"decontaminate": {"eval_sets": [str(evals)]}})
    assert prompts_of(rows) == [twelve]  # the prompt leak and the response leak both go
    assert res.report["drops"]["pairs"]["decontaminate"]["count"] == 2
    res, rows = build(tmp_path, items, {"decontaminate": {"eval_sets": [str(evals)], "check": "prompt"}}, name="g")
    assert prompts_of(rows) == ["clean", twelve]
    res, rows = build(tmp_path, items, {"decontaminate": {"eval_sets": [str(evals)], "n": 8}}, name="h")
    assert rows == []


def test_decontamination_against_a_saved_hf_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"test": Dataset.from_list([{"prompt": [{"role": "user", "content": EVAL}], "n": 1}])}).save_to_disk(
        str(tmp_path / "evalds")
    )
    res, rows = build(
        tmp_path,
        [(EVAL, "x", "y", "s", 1, 0), ("fine", "x", "y", "s", 1, 0)],
        {"decontaminate": {"eval_sets": [str(tmp_path / "evalds")]}},
    )
    assert prompts_of(rows) == ["fine"]


def test_a_missing_eval_set_is_a_clear_error_and_writes_nothing(tmp_path):
    with pytest.raises(EvalSetError, match="does not exist"):
        build(tmp_path, [("p", "x", "y", "s", 1, 0)], {"decontaminate": {"eval_sets": [str(tmp_path / "nope.jsonl")]}})
    curated = tmp_path / "f" / "curated"
    assert not curated.exists() or list(curated.iterdir()) == []


def test_filters_apply_to_unpaired_rows_too(tmp_path):
    items = [(f"a{i}", "x", "y", "big", 1, 0) for i in range(3)]
    res, _ = build(tmp_path, items, {"source_cap": 1})
    unpaired = pq.read_table(res.tables["unpaired"]).to_pylist()
    assert len(unpaired) == 1  # the one kept pair gives 2 labels, then the cap keeps 1
    assert res.report["drops"]["unpaired"]["source_cap"]["count"] == 1
