"""A store with a bad file in it, a store path that is odd, and who may read a store.

One zero-byte, truncated or foreign Parquet file in a table folder is named (with the fix) by every
reader instead of a DuckDB traceback, never blocks an import, and `prefkit check --repair` moves it
aside. A store path with glob characters reads itself; a file given as --store is an error; stores
are private (0700 folders, 0600 files) and writes never follow a link out of the store.
"""

import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store, StoreError

from prefkit.cli import main
from tests.support.factories import pairwise, prompt, response


def fill(store, n=3, text="q"):
    ps = [prompt(f"{text}{i}") for i in range(n)]
    rs = [r for p in ps for r in (response(p, "good"), response(p, "bad"))]
    with store.batch() as b:
        b.append("prompts", ps)
        b.append("responses", rs)
        b.append("judgements", [pairwise(p, rs[2 * i], rs[2 * i + 1]) for i, p in enumerate(ps)])


def day_folder(store, table="judgements"):
    return next(p for p in (store.root / table).iterdir() if p.is_dir())


def write_pairs(path, n=2, start=0):
    path.write_text(
        "".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(start, start + n))
    )


def truncated(store):
    part = next(day_folder(store).glob("*.parquet"))
    data = part.read_bytes()
    bad = part.with_name("00000000000000000001-truncated.parquet")
    bad.write_bytes(data[: len(data) // 2])
    return bad


BAD_FILES = {
    "zero bytes": lambda store: (
        (day_folder(store) / "00000000000000000001-empty.parquet").write_bytes(b"")
        or day_folder(store) / "00000000000000000001-empty.parquet"
    ),
    "truncated": truncated,
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_part_is_named_by_every_reader_and_check_repair_moves_it_aside(tmp_path, capsys, kind):
    store = Store(tmp_path / "s")
    fill(store)
    bad = BAD_FILES[kind](store)
    root = str(store.root)
    for argv in (["stats", "--store", root], ["compact", "--store", root], ["curate", "--store", root]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert f"{bad}: is not a readable Parquet file" in err and "prefkit check" in err and "--repair" in err
    with pytest.raises(StoreError, match="not a readable Parquet"):
        store.read("judgements")

    # an import still works: the bad part is left out of the dedupe check, with a warning
    write_pairs(tmp_path / "new.jsonl")
    assert main(["import", "--store", root, str(tmp_path / "new.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "+2 judgements" in out and f"warning: skipped {bad}" in out

    assert main(["check", "--store", root]) == 1
    out = capsys.readouterr().out
    assert str(bad) in out and "--repair" in out
    assert bad.exists()
    assert main(["check", "--store", root, "--repair"]) == 0
    out = capsys.readouterr().out
    moved = store.root / "quarantine" / bad.relative_to(store.root)
    assert f"moved {bad} → {moved}" in out
    assert not bad.exists() and moved.exists()
    assert main(["check", "--store", root]) == 0
    assert main(["stats", "--store", root, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["tables"]["judgements"] == 5


def test_a_part_damaged_inside_is_found_by_check(tmp_path, capsys):
    """Its footer reads, its pages do not: the query fails, and the message says how to find it."""
    store = Store(tmp_path / "s")
    store.append("prompts", [prompt(f"question {i} " * 40) for i in range(200)])
    part = store.part_files("prompts")[0]
    data = bytearray(part.read_bytes())
    data[8 : len(data) // 2] = b"Z" * (len(data) // 2 - 8)
    part.write_bytes(bytes(data))
    root = str(store.root)
    assert main(["stats", "--store", root]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a part may be damaged: run `prefkit check --store" in err
    with pytest.raises(StoreError, match="a part may be damaged"):
        store.read("prompts")
    assert main(["check", "--store", root]) == 1
    assert f"{part}: is not a readable Parquet file" in capsys.readouterr().out
    assert main(["check", "--store", root, "--repair"]) == 0
    assert store.count("prompts") == 0


def test_a_parquet_file_with_other_columns_is_rejected_by_schema(tmp_path, capsys):
    store = Store(tmp_path / "s")
    fill(store)
    foreign = day_folder(store) / "00000000000000000001-foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), foreign)
    with pytest.raises(StoreError, match=r"foreign.parquet: has columns that are not in the judgements table \(x, y\)"):
        store.count("judgements")
    wrong_type = day_folder(store, "prompts") / "00000000000000000001-wrong.parquet"
    pq.write_table(pa.table({"prompt_id": [1], "created_at": [2]}), wrong_type)
    assert [p.path.name for p in store.problems()] == [wrong_type.name, foreign.name]
    assert "column 'prompt_id' is int64" in str(store.problems()[0])
    assert main(["check", "--store", str(store.root), "--repair"]) == 0
    assert store.count("judgements") == 3 and store.count("prompts") == 3


def test_store_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "store.txt"
    path.write_text("not a store")
    for create in (True, False):
        with pytest.raises(StoreError, match="is a file, not a store folder"):
            Store(path, create=create)
    write_pairs(tmp_path / "p.jsonl")
    for argv in (["import", "--store", str(path), str(tmp_path / "p.jsonl")], ["stats", "--store", str(path)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a file, not a store folder" in err
    inside = path / "sub"  # a path through a file: NotADirectoryError from mkdir
    with pytest.raises(StoreError, match="cannot create the store"):
        Store(inside)


def test_a_store_path_with_glob_characters_reads_only_itself(tmp_path):
    Store(tmp_path / "g1").append("prompts", [prompt("other store")])
    odd = Store(tmp_path / "g[1]*?")
    odd.append("prompts", [prompt("mine")])
    fill(odd, 2)
    assert odd.read("prompts").num_rows == 3
    assert "other store" not in str(odd.read("prompts").column("messages").to_pylist())
    assert odd.compact()["prompts"] == 2
    assert odd.count("prompts") == 3 and Store(tmp_path / "g1").count("prompts") == 1


def test_a_new_store_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "deep" / "s")
        fill(store)
        fill(store, text="r")
        store.compact()
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(store.root) == 0o700
    folders = [p for p in store.root.rglob("*") if p.is_dir()]
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert folders and all(mode(p) == 0o700 for p in folders), [(p, oct(mode(p))) for p in folders]
    assert any("compact" in p.name for p in files)
    assert files and all(mode(p) == 0o600 for p in files), [(p, oct(mode(p))) for p in files]


def test_check_repair_makes_an_old_world_readable_store_private(tmp_path, capsys):
    store = Store(tmp_path / "s")
    fill(store)
    store.root.chmod(0o755)  # as stores were made before
    assert main(["check", "--store", str(store.root)]) == 0
    assert "other users may read the store (mode 755)" in capsys.readouterr().out
    assert main(["check", "--store", str(store.root), "--repair"]) == 0
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


def test_a_day_folder_linked_out_of_the_store_is_not_written_through(tmp_path):
    store = Store(tmp_path / "s")
    fill(store)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    day = day_folder(store)
    for part in day.iterdir():
        part.unlink()
    day.rmdir()
    day.symlink_to(outside)
    with pytest.raises(StoreError, match="outside the store"):
        store.append("judgements", [pairwise(prompt(), response(prompt(), "a"), response(prompt(), "b"))])
    write_pairs(tmp_path / "p.jsonl")
    with pytest.raises(StoreError, match="outside the store"):
        import_files(store, [tmp_path / "p.jsonl"])
    assert list(outside.iterdir()) == []
    assert any("outside the store" in str(p) for p in store.problems())
    inside = store.root / "prompts" / "linked-day"  # a link that stays inside the store is fine
    inside.symlink_to(day_folder(store, "prompts"))
    assert not [p for p in store.problems() if p.path == inside]
