"""Malformed input stops an import with `file:line`, the field and the fix, and writes nothing."""

import json

import pytest

from annotate.importers import ImportFailed, import_files, run
from annotate.store import Store
from prefkit.cli import main

GOOD = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}


def snapshot(store):
    """Every file in the store (parts and temporaries), to compare before and after."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path):
    """A store that already holds an import, so "unchanged" is more than "empty"."""
    s = Store(tmp_path / "store")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"prompt": "seed", "chosen": "a", "rejected": "b"}) + "\n")
    import_files(s, [seed])
    return s


def jsonl_bytes(*lines):
    return b"".join((json.dumps(x).encode() if not isinstance(x, bytes) else x) + b"\n" for x in lines)


CASES = {
    # name: (file name, file bytes, line of the bad record, field named or None, words in the message)
    "bad json": ("a.jsonl", jsonl_bytes(GOOD, GOOD, b'{"prompt": "x", "chosen": '), 3, None, "bad JSON"),
    "missing field": ("a.jsonl", jsonl_bytes(GOOD, {"prompt": "x", "chosen": "y"}), 2, "rejected", "is missing"),
    "mistyped field": ("a.jsonl", jsonl_bytes(GOOD, {**GOOD, "chosen": {"text": "4"}}), 2, "chosen", "JSON object"),
    "null text": ("a.jsonl", jsonl_bytes(GOOD, GOOD, {**GOOD, "rejected": None}), 3, "rejected", "is null"),
    "empty prompt": ("a.jsonl", jsonl_bytes(GOOD, {**GOOD, "prompt": "   "}), 2, "prompt", "is empty"),
    "empty message": (
        "a.jsonl",
        jsonl_bytes(GOOD, {**GOOD, "prompt": [{"role": "user", "content": ""}]}),
        2,
        "prompt[0].content",
        "is empty",
    ),
    "bad role": (
        "a.jsonl",
        jsonl_bytes(GOOD, {**GOOD, "prompt": [{"role": "robot", "content": "hi"}]}),
        2,
        "prompt[0].role",
        "'robot'",
    ),
    "not an object": ("a.jsonl", jsonl_bytes(GOOD, ["x", "y"]), 2, None, "expected an object"),
    "invalid utf-8 jsonl": (
        "a.jsonl",
        jsonl_bytes(GOOD) + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n',
        2,
        None,
        "invalid UTF-8",
    ),
    "lone surrogate": (
        "a.jsonl",
        jsonl_bytes(GOOD) + b'{"prompt": "x", "chosen": "bad \\ud800", "rejected": "b"}\n',
        2,
        None,
        "unpaired surrogate",
    ),
    "invalid utf-8 json": (
        "a.json",
        b'[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n {"prompt": "\xff"}\n]',
        3,
        None,
        "invalid UTF-8",
    ),
    "bad json array": (
        "a.json",
        b'[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n\n {"prompt": "a" "x"}\n]',
        4,
        None,
        "bad JSON",
    ),
    "invalid utf-8 csv": (
        "a.csv",
        b"prompt,completion,label\nhi,hello,true\nhi,caf\xe9,false\n",
        3,
        None,
        "invalid UTF-8",
    ),
    "csv cell count": ("a.csv", b"prompt,completion,label\nhi,hello,true\nhi,a,b,false\n", 3, None, "4 cells"),
    "bad vote": (
        "v.jsonl",
        jsonl_bytes(
            {"prompt": "p", "response1": "a", "response2": "b", "annotator1": 1},
            {"prompt": "p", "response1": "a", "response2": "b", "annotator1": 3},
        ),
        2,
        "annotator1",
        "0 (tie)",
    ),
    "bad label": (
        "u.jsonl",
        jsonl_bytes(
            {"prompt": "p", "completion": "a", "label": True}, {"prompt": "p", "completion": "a", "label": "maybe"}
        ),
        2,
        "label",
        "true/false",
    ),
    "bad rating": (
        "r.jsonl",
        jsonl_bytes(
            {"prompt": "p", "completions": [{"text": "a", "ratings": {"helpfulness": 4}}]},
            {"prompt": "p", "completions": [{"text": "a", "ratings": {"helpfulness": "great"}}]},
        ),
        2,
        "completions[0].ratings.helpfulness",
        "not a number",
    ),
    "hh prefix differs": (
        "h.jsonl",
        jsonl_bytes(
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: X\n\nAssistant: c"},
        ),
        2,
        "rejected",
        "before the last Assistant turn",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_record_names_the_line_and_writes_nothing(store, tmp_path, name):
    filename, data, line, field, words = CASES[name]
    path = tmp_path / filename
    path.write_bytes(data)
    before = snapshot(store)
    with pytest.raises(ImportFailed) as err:
        import_files(store, [path])
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:"), message
    if field:
        assert f"field '{field}'" in message
    assert words in message
    assert ";" in message  # the fix follows the problem
    assert snapshot(store) == before
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [1, 2, 1]


def test_error_after_parts_were_staged_leaves_nothing(store, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "CHUNK_RECORDS", 5)  # several parts are staged before the bad record
    records = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(22)] + [{"prompt": "q"}]
    (tmp_path / "big.jsonl").write_bytes(jsonl_bytes(*records))
    before = snapshot(store)
    with pytest.raises(ImportFailed, match=r"big.jsonl:23: field 'chosen'"):
        import_files(store, [tmp_path / "big.jsonl"])
    assert snapshot(store) == before


def test_a_bad_second_file_keeps_the_first_out_too(store, tmp_path):
    (tmp_path / "ok.jsonl").write_bytes(jsonl_bytes(GOOD))
    (tmp_path / "bad.jsonl").write_bytes(jsonl_bytes(GOOD, b"not json"))
    before = snapshot(store)
    with pytest.raises(ImportFailed, match="bad.jsonl:2"):
        import_files(store, [tmp_path / "ok.jsonl", tmp_path / "bad.jsonl"])
    assert snapshot(store) == before


def test_unknown_shape_and_unknown_file_type(store, tmp_path):
    (tmp_path / "x.jsonl").write_bytes(jsonl_bytes({"foo": 1}))
    with pytest.raises(ImportFailed, match=r"x.jsonl:1: fields \['foo'\] match no known shape; pick one with --format"):
        import_files(store, [tmp_path / "x.jsonl"])
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ImportFailed, match="unknown file type '.xml'"):
        import_files(store, [tmp_path / "x.xml"])


def test_cli_failure_is_one_line_and_exit_1(store, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_bytes(jsonl_bytes(GOOD, {"prompt": "x", "chosen": 1.5, "rejected": []}))
    code = main(["import", "--store", str(store.root), str(tmp_path / "bad.jsonl")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("prefkit import: error: ")
    assert "bad.jsonl:2: field 'rejected'" in err
    code = main(["import", "--store", str(store.root), "--map", "nonsense", str(tmp_path / "bad.jsonl")])
    assert code == 1 and "COLUMN=FIELD" in capsys.readouterr().err


def test_cli_import_prints_the_shape_and_counts(store, tmp_path, capsys):
    (tmp_path / "mine.csv").write_text("question,answer,thumb\nHi?,Hello,up\n")
    code = main(
        [
            "import",
            "--store",
            str(store.root),
            "--map",
            "question=prompt",
            "--map",
            "answer=completion",
            "--map",
            "thumb=label",
            "--source",
            "survey",
            str(tmp_path / "mine.csv"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "unpaired (prompt/completion/label)" in out and "+1 judgements" in out
    assert store.read("judgements", "annotator = ?", ["survey"]).num_rows == 1
