"""Malformed input stops an import with `file:line`, the field and the fix, and writes nothing."""

import json
from pathlib import Path

import pytest
from prefkit.annotate.importers import ImportFailed, import_files, run
from prefkit.annotate.store import Store

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
    # the shape is decided from enough records, and every record must fit it (issue 14)
    "first record lacks rejected": (
        "a.jsonl",
        jsonl_bytes({"prompt": "x", "chosen": "y"}, GOOD, GOOD),
        1,
        "rejected",
        "is missing",
    ),
    "csv header prompt,chosen": ("a.csv", b"prompt,chosen\nhi,hello\nyo,there\n", 2, "rejected", "looks like pairs"),
    "every record lacks label": (
        "u.jsonl",
        jsonl_bytes({"prompt": "p", "completion": "a"}, {"prompt": "q", "completion": "b"}),
        1,
        "label",
        "looks like unpaired",
    ),
    "votes without votes": (
        "v.jsonl",
        jsonl_bytes({"prompt": "p", "response1": "a", "response2": "b"}),
        1,
        "annotator1",
        "looks like votes",
    ),
    "a later record of another shape": (
        "a.jsonl",
        jsonl_bytes(GOOD, GOOD, {"prompt": "p", "completion": "a", "label": True}),
        3,
        None,
        "is unpaired (prompt/completion/label), but this file's records are pairs",
    ),
    "half a pair after many prompts": (
        "p.jsonl",
        jsonl_bytes(*[{"prompt": f"q{i}"} for i in range(150)], {"prompt": "x", "chosen": "y"}),
        151,
        "rejected",
        "looks like pairs",
    ),
    "a pair after many prompts": (
        "p.jsonl",
        jsonl_bytes(*[{"prompt": f"q{i}"} for i in range(150)], GOOD),
        151,
        None,
        "but this file's records are prompts",
    ),
    # values that cannot be meant (issue 14)
    "chosen equals rejected": (
        "a.jsonl",
        jsonl_bytes(GOOD, {"prompt": "p", "chosen": "same", "rejected": "same"}),
        2,
        "rejected",
        "same text as 'chosen'",
    ),
    "hh chosen equals rejected": (
        "h.jsonl",
        jsonl_bytes(
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
            {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"},
        ),
        2,
        "rejected",
        "same text as 'chosen'",
    ),
    "rating above the scale": (
        "r.jsonl",
        jsonl_bytes(
            {"prompt": "p", "completions": [{"text": "a", "ratings": {"helpfulness": 4}}]},
            {"prompt": "p", "completions": [{"text": "a", "ratings": {"helpfulness": 11}}]},
        ),
        2,
        "completions[0].ratings.helpfulness",
        "outside the rating scale 0 to 10",
    ),
    "rating below the scale": (
        "r.jsonl",
        jsonl_bytes({"prompt": "p", "completions": [{"text": "a", "annotations": {"honesty": {"Rating": "-3"}}}]}),
        1,
        "completions[0].ratings.honesty",
        "outside the rating scale",
    ),
    "overall score above the scale": (
        "r.jsonl",
        jsonl_bytes({"prompt": "p", "completions": [{"text": "a", "overall_score": 11}]}),
        1,
        "completions[0].overall_score",
        "outside the rating scale",
    ),
    "rank below one": (
        "r.jsonl",
        jsonl_bytes({"prompt": "p", "responses": [{"text": "a", "rank": 1}, {"text": "b", "rank": -3}]}),
        1,
        "completions[1].rank",
        "a rank is 1 (best) or more",
    ),
    # small lies and parser crashes (issues 14 and 20)
    "null record": ("a.jsonl", jsonl_bytes(GOOD, None), 2, None, "is a JSON null, expected an object"),
    "deep json line": ("a.jsonl", jsonl_bytes(GOOD, b"[" * 200_000 + b"]" * 200_000), 2, None, "nested too deeply"),
    "deep json record": (
        "a.jsonl",
        jsonl_bytes(
            GOOD, b'{"prompt": "p", "chosen": "a", "rejected": "b", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        ),
        2,
        None,
        "nested too deeply",
    ),
    "deep json array element": (
        "a.json",
        b'[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n ' + b"[" * 200_000 + b"]" * 200_000 + b"\n]",
        3,
        None,
        "nested too deeply",
    ),
    "deep json object": ("a.json", b'{"data": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", 0, None, "nested too deeply"),
    "csv with a bare CR": ("a.csv", b"prompt,completion,label\nhi,hello,true\nhi,he\rllo,false\n", 3, None, "bad CSV"),
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
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:"), message
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


# -- record size, parser limits and files that cannot be read (issues 14 and 20) --------------------


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "json"])
def test_a_record_over_the_size_limit_names_its_line(store, tmp_path, suffix):
    big = "x" * 5_000
    rows = [GOOD, {"prompt": "p", "chosen": big, "rejected": "b"}]
    path = tmp_path / f"big.{suffix}"
    if suffix == "jsonl":
        path.write_bytes(jsonl_bytes(*rows))
    elif suffix == "json":
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")
    else:
        path.write_text(
            "prompt,chosen,rejected\n" + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n" for r in rows)
        )
    before = snapshot(store)
    line = 2 if suffix == "jsonl" else 3  # after the header, or the opening [
    with pytest.raises(
        ImportFailed, match=rf"^{path}:{line}: is longer than the record limit \(4,000 .*--max-record-mb"
    ):
        import_files(store, [path], max_record_bytes=4_000)
    assert snapshot(store) == before
    assert import_files(store, [path], max_record_bytes=6_000).added["judgements"] == 2


def test_a_csv_record_of_many_quoted_lines_over_the_limit(store, tmp_path):
    cell = '"' + "line\n" * 1_000 + '"'  # 5,000 bytes, each line short
    path = tmp_path / "lines.csv"
    path.write_text(f"prompt,chosen,rejected\np,a,b\nq,{cell},b\n")
    with pytest.raises(ImportFailed, match=rf"^{path}:3: .*record limit"):
        import_files(store, [path], max_record_bytes=4_000)
    assert import_files(store, [path]).added["judgements"] == 2


def test_a_csv_cell_over_128_kib_imports(store, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(f"prompt,chosen,rejected\np,{'y' * 200_000},b\n")  # the csv module's own cap is 128 KiB
    assert import_files(store, [path]).added["judgements"] == 1


def test_the_cli_takes_the_record_limit_and_the_rating_scale(store, tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_bytes(
        jsonl_bytes({"prompt": "p", "completions": [{"text": "a" * 3_000, "ratings": {"helpfulness": 70}}]})
    )
    root = str(store.root)
    assert main(["import", "--store", root, str(path)]) == 1
    assert "outside the rating scale 0 to 10; fix the rating, or give" in capsys.readouterr().err
    assert main(["import", "--store", root, "--rating-range", "0:100", "--max-record-mb", "0.001", str(path)]) == 1
    assert "is longer than the record limit (1,048 bytes)" in capsys.readouterr().err
    assert main(["import", "--store", root, "--rating-range", "0:100", str(path)]) == 0
    assert store.read("judgements", "kind = 'rating'").column("scores").to_pylist() == [[70.0]]


CHILD = """
import resource, sys
from prefkit.annotate.importers import ImportFailed, import_files
from prefkit.annotate.store import Store
try:
    import_files(Store(sys.argv[2]), [sys.argv[1]], max_record_bytes=1 << 20)
except ImportFailed as exc:
    print(str(exc).split(";")[0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_giant_line_is_never_held_whole(tmp_path):
    """A 96 MiB one-line JSONL under a 1 MiB limit: the import stops at that line having held about
    1 MiB of it (the old reader held the line and its parse, several times its size)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    small, giant = tmp_path / "small.jsonl", tmp_path / "giant.jsonl"
    small.write_bytes(jsonl_bytes(GOOD, {"prompt": "p", "chosen": "x" * (2 << 20), "rejected": "b"}))
    with open(giant, "wb") as fh:
        fh.write(jsonl_bytes(GOOD) + b'{"prompt": "p", "chosen": "')
        for _ in range(96):
            fh.write(b"x" * (1 << 20))
        fh.write(b'", "rejected": "b"}\n')
    peaks = {}
    for path in (small, giant):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(tmp_path / path.stem)],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        assert out[0] == f"{path}:2: is longer than the record limit (1,048,576 bytes)"
        peaks[path.stem] = int(out[1]) / 1024
    assert peaks["giant"] - peaks["small"] < 16, peaks  # MiB: nowhere near the line's 96


def test_a_truncated_or_empty_input_parquet_is_named(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"prompt": ["a"] * 50, "chosen": ["b"] * 50, "rejected": ["c"] * 50}), good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-40])
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    before = snapshot(store)
    for path in (cut, empty):
        with pytest.raises(ImportFailed, match=rf"^{path}: is not a readable Parquet file .*; re-download or re-write"):
            import_files(store, [good, path])
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(cut.read_bytes())
    with pytest.raises(ImportFailed, match=r"ds/part-0.parquet: is not a readable Parquet file"):
        import_files(store, [folder])
    assert snapshot(store) == before


def test_an_unreadable_input_is_an_import_error(tmp_path, capsys):
    import os
    import shutil
    import tempfile

    # root reads any file whatever its mode: as root, act as an ordinary user (nobody) for the
    # import, in a folder nobody can reach, with a store nobody owns; the uid is given back at once
    base = Path(tempfile.mkdtemp(prefix="prefkit-unreadable-"))
    try:
        base.chmod(0o755)
        store = Store(base / "store")
        path = base / "secret.jsonl"
        path.write_bytes(jsonl_bytes(GOOD))
        path.chmod(0)
        as_root = os.geteuid() == 0
        if as_root:
            for p in [store.root, *store.root.rglob("*")]:
                os.chown(p, 65534, 65534)
            os.seteuid(65534)
        try:
            with pytest.raises(ImportFailed, match=rf"^{path}: cannot be read \(Permission denied\); check that"):
                import_files(store, [path])
            code = main(["import", "--store", str(store.root), str(path)])
        finally:
            if as_root:
                os.seteuid(0)
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "cannot be read (Permission denied)" in err
        assert store.count("prompts") == 0
    finally:
        shutil.rmtree(base)


def test_a_pipe_is_refused_rather_than_read(store, tmp_path):
    import os

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)  # reading it would block until a writer came
    with pytest.raises(ImportFailed, match=rf"^{fifo}: is not a regular file"):
        import_files(store, [fifo])


def test_state_json_may_not_name_files_outside_its_folder(store, tmp_path):
    import datasets

    outside = tmp_path / "outside"
    datasets.Dataset.from_list([{"prompt": "secret", "chosen": "a", "rejected": "b"}]).save_to_disk(str(outside))
    folder = tmp_path / "ds"
    datasets.Dataset.from_list([GOOD]).save_to_disk(str(folder))
    state = json.loads((folder / "state.json").read_text())
    shard = next(outside.glob("*.arrow"))
    for name in (str(shard), f"../outside/{shard.name}"):
        state["_data_files"] = [{"filename": name}]
        (folder / "state.json").write_text(json.dumps(state))
        before = snapshot(store)
        with pytest.raises(ImportFailed, match=r"state.json: field '_data_files': names .* which is outside"):
            import_files(store, [folder])
        assert snapshot(store) == before
    (folder / "state.json").write_text("{not json")
    with pytest.raises(ImportFailed, match=r"state.json: bad JSON"):
        import_files(store, [folder])
