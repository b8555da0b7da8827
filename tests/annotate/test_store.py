import os

import pyarrow.parquet as pq
import pytest
from prefkit.annotate.store import Store, StoreError
from prefkit.annotate.validate import ContractError

from tests.support.factories import pairwise, prompt, response


def _fill(store, n=3):
    ps = [prompt(f"q{i}") for i in range(n)]
    rs = [r for p in ps for r in (response(p, "good"), response(p, "bad"))]
    js = [pairwise(p, rs[2 * i], rs[2 * i + 1]) for i, p in enumerate(ps)]
    with store.batch() as b:
        b.append("prompts", ps)
        b.append("responses", rs)
        b.append("judgements", js)
    return ps, rs, js


def test_append_read_roundtrip(tmp_path):
    store = Store(tmp_path)
    ps, rs, js = _fill(store)
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [3, 6, 3]
    got = store.read("judgements")
    assert sorted(got.column("judgement_id").to_pylist()) == sorted(j.judgement_id for j in js)
    assert got.column("response_ids")[0].as_py() == js[0].response_ids
    # layout: <store>/<table>/<yyyy-mm-dd>/<part>.parquet
    parts = store.part_files("judgements")
    assert len(parts) == 1 and parts[0].parent.parent.name == "judgements"


def test_reimport_is_idempotent(tmp_path):
    store = Store(tmp_path)
    p = prompt()
    store.append("prompts", [p])
    store.append("prompts", [p])
    assert store.count("prompts") == 1
    con = store.connect()
    assert con.execute("SELECT count(*) FROM raw_prompts").fetchone()[0] == 2


def test_bad_batch_writes_nothing(tmp_path):
    store = Store(tmp_path)
    p = prompt()
    with pytest.raises(ContractError):
        with store.batch() as b:
            b.append("prompts", [p])
            b.append(
                "responses",
                [dict(response_id="r", prompt_id="p", content="", model="m", origin="imported", generation="{}")],
            )
    assert store.count("prompts") == 0
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


def test_empty_store_reads_as_empty_tables(tmp_path):
    store = Store(tmp_path)
    assert store.count("judgements") == 0
    assert store.read("prompts").num_rows == 0


def test_open_missing_store_without_create(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "nope", create=False)


def test_remote_store_is_read_only():
    # s3:// stores are writable now (tests/annotate/test_store_s3.py); hf:// and https:// are not.
    store = Store("hf://datasets/someone/store")
    assert store.glob("judgements") == "hf://datasets/someone/store/judgements/*/*.parquet"
    with pytest.raises(StoreError, match="read-only"):
        store.append("prompts", [prompt()])


def test_stray_temporaries_of_dead_writers_are_removed(tmp_path):
    store = Store(tmp_path)
    day = tmp_path / "prompts" / "2026-01-01"
    day.mkdir()
    dead = day / ".0001-abc.999999999.tmp"  # no such pid
    live = day / f".0002-abc.{os.getpid()}.tmp"  # a writer that is still running
    dead.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    Store(tmp_path)
    assert not dead.exists() and live.exists()
    assert store.count("prompts") == 0


def test_compact_merges_and_is_idempotent(tmp_path):
    store = Store(tmp_path)
    ps = [prompt(f"q{i}") for i in range(20)]
    for p in ps:
        store.append("prompts", [p])
    store.append("prompts", [ps[0]])  # a duplicate part
    assert len(store.part_files("prompts")) == 21
    assert store.compact()["prompts"] == 21
    assert len(store.part_files("prompts")) == 1
    assert store.count("prompts") == 20
    assert pq.read_table(store.part_files("prompts")[0]).num_rows == 20
    assert store.compact()["prompts"] == 0
    assert store.read("prompts").schema.field("messages").type == store.read("prompts").schema.field("messages").type


def test_crash_after_merge_before_delete_double_counts_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path)
    for i in range(5):
        store.append("prompts", [prompt(f"q{i}")])
    real_unlink = type(tmp_path).unlink
    calls = {"n": 0}

    def crash_on_second_unlink(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(type(tmp_path), "unlink", crash_on_second_unlink)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    assert store.count("prompts") == 5  # merged file + 4 surviving parts: deduped
    store.compact()
    assert store.count("prompts") == 5 and len(store.part_files("prompts")) == 1


def test_appending_nothing_writes_nothing(tmp_path):
    store = Store(tmp_path)
    for table in ("prompts", "responses", "judgements"):
        assert store.append(table, []) == 0
    assert not list(tmp_path.rglob("*.parquet"))
