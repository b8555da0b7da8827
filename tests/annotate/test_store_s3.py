"""The store on S3 (`s3://bucket/prefix`), against a real SeaweedFS server (tests/support/s3.py),
through the real s3fs, DuckDB and pyarrow: writes, reads, batches, compaction, checks, the local
state folder, and nothing downloaded at run time."""

import io
import os
import stat

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate.store import Store, StoreError
from prefkit.annotate.validate import ContractError

from tests.support.factories import pairwise, prompt, response


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    """The AWS variables pointing at the test server, and the local state under tmp_path."""
    for name in ("AWS_PROFILE", "PREFKIT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFKIT_STATE_DIR", str(tmp_path / "state"))
    return s3_server


@pytest.fixture
def url(s3_env):
    return f"s3://{s3_env.bucket()}/team/store"


def _fill(store, n=3):
    ps = [prompt(f"q{i}") for i in range(n)]
    rs = [r for p in ps for r in (response(p, "good"), response(p, "bad"))]
    js = [pairwise(p, rs[2 * i], rs[2 * i + 1]) for i, p in enumerate(ps)]
    with store.batch() as b:
        b.append("prompts", ps)
        b.append("responses", rs)
        b.append("judgements", js)
    return ps, rs, js


def _read_object(s3, key: str) -> pa.Table:
    """An object read back with pyarrow alone (a second reader, not DuckDB)."""
    return pq.read_table(io.BytesIO(s3.filesystem().cat_file(key)))


def test_append_and_read_roundtrip(url, s3_env):
    store = Store(url)
    ps, rs, js = _fill(store)
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [3, 6, 3]
    got = store.read("judgements")
    assert sorted(got.column("judgement_id").to_pylist()) == sorted(j.judgement_id for j in js)
    assert got.column("response_ids")[0].as_py() in [j.response_ids for j in js]
    # layout: <prefix>/<table>/<yyyy-mm-dd>/<part>.parquet, one object per part
    bucket = url.split("/")[2]
    keys = s3_env.keys(bucket)
    assert len(keys) == 3 and all(k.startswith(f"{bucket}/team/store/") for k in keys)
    assert [k.split("/")[3] for k in keys] == ["judgements", "prompts", "responses"]
    (judgement_key,) = [k for k in keys if "/judgements/" in k]
    assert sorted(_read_object(s3_env, judgement_key).column("judgement_id").to_pylist()) == sorted(
        j.judgement_id for j in js
    )
    assert store.part_files("judgements") == [f"s3://{judgement_key}"]


def test_a_second_store_object_sees_new_parts_and_dedupes(url):
    writer, reader = Store(url), Store(url)
    p = prompt()
    writer.append("prompts", [p])
    writer.append("prompts", [p])  # the same row again: a re-run
    assert reader.count("prompts") == 1
    con = reader.connect()
    assert con.execute("SELECT count(*) FROM raw_prompts").fetchone()[0] == 2
    writer.append("prompts", [prompt("another")])
    assert reader.count("prompts") == 2  # a new connection lists again


def test_bad_batch_writes_nothing(url, s3_env):
    store = Store(url)
    with pytest.raises(ContractError):
        with store.batch() as b:
            b.append("prompts", [prompt()])
            b.append("responses", [dict(response_id="r", prompt_id="p", content="", model="m")])
    assert s3_env.keys(url.split("/")[2]) == []
    assert store.count("prompts") == 0
    assert not [p for p in store.state_dir.rglob("*") if p.is_file()]


def test_batch_uploads_prompts_before_responses_before_judgements(url, s3_env):
    store = Store(url)
    ps = [prompt("x")]
    rs = [response(ps[0], "a"), response(ps[0], "b")]
    with store.batch() as b:  # appended in the reverse order
        b.append("judgements", [pairwise(ps[0], rs[0], rs[1])])
        b.append("responses", rs)
        b.append("prompts", ps)
    fs = s3_env.filesystem()
    modified = {k.split("/")[3]: fs.info(k)["LastModified"] for k in s3_env.keys(url.split("/")[2])}
    assert modified["prompts"] <= modified["responses"] <= modified["judgements"]
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [1, 2, 1]


def test_a_failure_between_puts_leaves_whole_rows_and_a_rerun_is_idempotent(url, s3_env, monkeypatch):
    """The network fails after the prompts' and responses' PUTs, before the judgements': what is on
    S3 is whole and readable, and the same batch again (a re-run) leaves every row counted once."""
    store = Store(url)
    ps = [prompt(f"q{i}") for i in range(3)]
    rs = [r for p in ps for r in (response(p, "good"), response(p, "bad"))]
    js = [pairwise(p, rs[2 * i], rs[2 * i + 1]) for i, p in enumerate(ps)]
    real = store.fs.pipe_file

    def fail_on_judgements(path, data, **kwargs):
        if "/judgements/" in path:
            raise ConnectionResetError("the network went away")
        return real(path, data, **kwargs)

    def write():
        with store.batch() as b:
            b.append("prompts", ps)
            b.append("responses", rs)
            b.append("judgements", js)

    monkeypatch.setattr(store.fs, "pipe_file", fail_on_judgements)
    with pytest.raises(StoreError, match="S3 request failed"):
        write()
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [3, 6, 0]
    monkeypatch.setattr(store.fs, "pipe_file", real)
    write()
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [3, 6, 3]
    con = store.connect()
    assert con.execute("SELECT count(*) FROM raw_prompts").fetchone()[0] == 6  # stored twice, read once
    assert not [p for p in store.state_dir.rglob("*") if p.is_file()]  # nothing staged is left


def test_large_batch_spills_to_private_files_and_leaves_none(url, s3_env, monkeypatch):
    from prefkit.annotate import store as store_module

    monkeypatch.setattr(store_module._S3Batch, "IN_MEMORY", 1)  # every part goes through a file
    store = Store(url)
    seen = []
    with store.batch() as b:
        b.append("prompts", [prompt(f"p{i}") for i in range(50)])
        seen = [p for p in (store.state_dir / "staging").iterdir()]
        assert len(seen) == 1 and stat.S_IMODE(seen[0].stat().st_mode) == 0o600
    assert store.count("prompts") == 50
    assert not list((store.state_dir / "staging").iterdir())


def test_compact_merges_then_deletes(url, s3_env):
    store = Store(url)
    ps = [prompt(f"q{i}") for i in range(5)]
    for p in ps:
        store.append("prompts", [p])
    store.append("prompts", [ps[0]])  # a duplicate the merge drops
    bucket = url.split("/")[2]
    before = s3_env.keys(bucket)
    assert len(before) == 6
    assert store.compact() == {"prompts": 6, "responses": 0, "judgements": 0}
    after = s3_env.keys(bucket)
    assert len(after) == 1 and after[0].endswith("-compact.parquet") and after[0] not in before
    merged = _read_object(s3_env, after[0])
    assert sorted(merged.column("prompt_id").to_pylist()) == sorted(p.prompt_id for p in ps)
    assert store.count("prompts") == 5
    assert store.compact() == {"prompts": 0, "responses": 0, "judgements": 0}


def test_compact_never_deletes_before_the_merged_object_exists(url, s3_env, monkeypatch):
    from prefkit.annotate import objects

    store = Store(url)
    for i in range(3):
        store.append("prompts", [prompt(f"q{i}")])
    bucket = url.split("/")[2]
    before = s3_env.keys(bucket)
    calls = []
    real_put, real_delete = store.fs.put_file, objects.delete

    def put_fails(*args, **kwargs):
        calls.append("put")
        raise ConnectionResetError("the network went away")

    monkeypatch.setattr(store.fs, "put_file", put_fails)
    monkeypatch.setattr(objects, "delete", lambda *a, **k: calls.append("rm") or real_delete(*a, **k))
    with pytest.raises(StoreError, match="S3 request failed"):
        store.compact()
    assert calls == ["put"] and s3_env.keys(bucket) == before  # nothing deleted
    monkeypatch.setattr(store.fs, "put_file", real_put)
    assert store.compact()["prompts"] == 3 and store.count("prompts") == 3


def test_a_reader_racing_a_compaction_misses_no_rows(url, monkeypatch):
    """The reader lists the parts, then a compaction elsewhere merges and deletes them before the
    reader fetches them: the reader lists again and counts every row once."""
    from prefkit.annotate import store as store_module

    writer = Store(url)
    for i in range(4):
        writer.append("prompts", [prompt(f"q{i}")])
    store_module._PARTS.clear()  # nothing cached: the reader must fetch
    reader = Store(url)
    real = Store._objects
    raced = []

    def list_then_compact(self, table):
        found = real(self, table)
        if table == "prompts" and not raced and self is reader:
            raced.append(None)
            raced[0] = writer.compact("prompts")
            store_module._PARTS.clear()  # as if the compaction ran in another process
        return found

    monkeypatch.setattr(Store, "_objects", list_then_compact)
    assert reader.count("prompts") == 4
    assert raced == [{"prompts": 4}]


def test_a_long_running_reader_fetches_each_small_part_once(url, monkeypatch):
    from prefkit.annotate import objects

    store = Store(url)
    for i in range(3):
        store.append("prompts", [prompt(f"q{i}")])
    fetched = []
    real = objects.fetch_many
    monkeypatch.setattr(objects, "fetch_many", lambda fs, paths: fetched.append(len(paths)) or real(fs, paths))
    assert store.count("prompts") == 3 and sum(fetched) == 3
    store.append("prompts", [prompt("new")])
    fetched.clear()
    assert store.count("prompts") == 4 and sum(fetched) == 1  # only the new part
    fetched.clear()
    assert store.count("prompts") == 4 and sum(fetched) == 0


def test_the_part_cache_keeps_the_most_recently_used_within_its_budget():
    from prefkit.annotate.objects import PartCache

    tables = [pa.table({"x": list(range(100 * (i + 1)))}) for i in range(3)]
    cache = PartCache(budget=tables[1].nbytes + tables[2].nbytes)
    cache.put(("a", 1, "e"), tables[0])
    cache.put(("b", 1, "e"), tables[1])
    assert cache.get(("a", 1, "e")) is tables[0]  # now the most recent
    cache.put(("c", 1, "e"), tables[2])  # over budget: the least recently used (b) goes
    assert cache.get(("b", 1, "e")) is None and cache.get(("a", 1, "e")) is tables[0]
    assert cache.get(("c", 1, "e")) is tables[2] and cache.held == tables[0].nbytes + tables[2].nbytes
    cache.put(("d", 1, "e"), tables[2])  # a goes, then c, until the rest fits
    assert list(cache.tables) == [("d", 1, "e")] and cache.held == tables[2].nbytes


def test_reads_are_whole_when_the_cache_holds_almost_nothing(url, monkeypatch):
    from prefkit.annotate import store as store_module
    from prefkit.annotate.objects import PartCache

    monkeypatch.setattr(store_module, "_PARTS", PartCache(budget=1))
    store = Store(url)
    ps = [prompt(f"q{i}") for i in range(4)]
    for p in ps:
        store.append("prompts", [p])
    assert sorted(store.read("prompts").column("prompt_id").to_pylist()) == sorted(p.prompt_id for p in ps)


def test_foreign_object_is_named_and_check_repair_moves_it_aside(url, s3_env):
    from prefkit.annotate.check import check_store

    store = Store(url)
    _fill(store)
    bucket = url.split("/")[2]
    bad = f"{bucket}/team/store/judgements/2026-01-01/junk.parquet"
    s3_env.filesystem().pipe_file(bad, b"not parquet at all")
    with pytest.raises(StoreError, match=r"junk\.parquet.*prefkit check --store s3://"):
        store.count("judgements")
    report = check_store(store)
    assert [str(p.path) for p in report.problems] == [f"s3://{bad}"] and not report.shared
    report = check_store(store, repair=True)
    moved = f"{bucket}/team/store/quarantine/judgements/2026-01-01/junk.parquet"
    assert report.moved == [(f"s3://{bad}", f"s3://{moved}")]
    assert bad not in s3_env.keys(bucket) and moved in s3_env.keys(bucket)
    assert store.count("judgements") == 3


def test_deep_check_reads_every_page(url, s3_env):
    """A part whose footer is fine but a page is not: only the deep check (prefkit check) finds it."""
    from prefkit.annotate.check import check_store

    store = Store(url)
    store.append("prompts", [prompt(f"q{i}" * 200) for i in range(50)])
    (key,) = [k.removeprefix("s3://") for k in store.part_files("prompts")]
    data = bytearray(s3_env.filesystem().cat_file(key))
    for i in range(100, 400):  # inside the first column chunk, far from the footer
        data[i] ^= 0xFF
    s3_env.filesystem().pipe_file(key, bytes(data))
    assert store.problems() == []  # footers only
    assert [str(p.path) for p in check_store(store).problems] == [f"s3://{key}"]


def test_large_parts_are_checked_from_their_footer(url, s3_env):
    """Above objects.SMALL_PART only the footer is fetched: a good large part passes, a truncated or
    foreign large object is named."""
    import random

    from prefkit.annotate import objects

    rng = random.Random(7)
    text = lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(4000))  # noqa: E731
    store = Store(url)
    store.append("prompts", [prompt(text()) for _ in range(600)])
    (key,) = [k.removeprefix("s3://") for k in store.part_files("prompts")]
    fs = s3_env.filesystem()
    good = fs.cat_file(key)
    assert len(good) > objects.SMALL_PART
    assert store.problems() == [] and store.count("prompts") == 600
    day = key.rsplit("/", 1)[0]
    fs.pipe_file(f"{day}/truncated.parquet", good[: len(good) - 100])
    fs.pipe_file(f"{day}/foreign.parquet", os.urandom(objects.SMALL_PART + 10))
    got = {str(p.path).rsplit("/", 1)[1]: p.problem for p in store.problems()}
    assert set(got) == {"truncated.parquet", "foreign.parquet"}
    assert all(p.startswith("is not a readable Parquet file") for p in got.values())


def test_glob_characters_in_the_prefix_are_read_literally(s3_env):
    bucket = s3_env.bucket()
    odd, plain = Store(f"s3://{bucket}/g[1]"), Store(f"s3://{bucket}/g1")
    odd.append("prompts", [prompt("in g[1]")])
    plain.append("prompts", [prompt("in g1"), prompt("also g1")])
    assert odd.count("prompts") == 1 and plain.count("prompts") == 2
    assert odd.read("prompts").column("messages").to_pylist()[0][0]["content"] == "in g[1]"
    odd.append("prompts", [prompt("in g[1] too")])
    assert odd.compact()["prompts"] == 2  # the parts are found and deleted by their exact keys
    assert len(s3_env.keys(f"{bucket}/g[1]")) == 1 and len(s3_env.keys(f"{bucket}/g1")) == 1
    assert odd.count("prompts") == 2 and plain.count("prompts") == 2


def test_state_dir_is_private_local_and_one_per_store(url, s3_env, tmp_path):
    a, b = Store(url), Store(url + "-other")
    assert a.state_dir.parent == tmp_path / "state" and a.state_dir != b.state_dir
    assert a.state_dir == Store(url + "/").state_dir  # the same store
    assert stat.S_IMODE(a.state_dir.stat().st_mode) == 0o700
    local = Store(tmp_path / "local")
    assert local.state_dir == tmp_path / "local"


def test_state_dir_defaults_under_the_prefkit_cache(url, monkeypatch, tmp_path):
    monkeypatch.delenv("PREFKIT_STATE_DIR")
    monkeypatch.setenv("PREFKIT_CACHE", str(tmp_path / "cache"))
    assert Store(url).state_dir.parent == tmp_path / "cache" / "stores"


def test_connections_never_download_an_extension(url):
    store = Store(url)
    _fill(store)
    con = store.connect()
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('autoinstall_known_extensions', 'autoload_known_extensions')"
        ).fetchall()
    )
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    loaded = con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    assert ("httpfs",) not in loaded
    # a read that would need httpfs fails loudly instead of downloading it
    with pytest.raises(duckdb.Error, match="httpfs"):
        con.execute("SELECT * FROM read_parquet('https://127.0.0.1:9/x.parquet')")


def test_an_offline_machine_reads_and_writes(url, tmp_path):
    """No network but the endpoint: DuckDB's extension folder is empty and unreachable, and HOME is
    new, so a read that tried to INSTALL httpfs would fail."""
    import subprocess
    import sys

    code = (
        "import sys; from prefkit.annotate.store import Store; from tests.support.factories import prompt;"
        "s = Store(sys.argv[1]); s.append('prompts', [prompt('offline')]); print(s.count('prompts'))"
    )
    env = {**os.environ, "HOME": str(tmp_path / "home"), "http_proxy": "http://127.0.0.1:9", "https_proxy": ""}
    env["HTTPS_PROXY"] = "http://127.0.0.1:9"
    env["NO_PROXY"] = "127.0.0.1"
    out = subprocess.run([sys.executable, "-c", code, url], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert not (tmp_path / "home" / ".duckdb").exists()


def test_an_https_store_never_downloads_httpfs(tmp_path, monkeypatch):
    """Served by a local web server, read with a fresh HOME (no DuckDB extensions installed): the read
    fails with one line that says what to do, and nothing was downloaded into HOME."""
    import functools
    import http.server
    import threading

    Store(tmp_path / "site" / "store").append("prompts", [prompt()])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        with pytest.raises(StoreError, match="needs DuckDB's httpfs extension, which prefkit never downloads"):
            Store(f"http://127.0.0.1:{server.server_port}/store").count("prompts")
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "home").exists()


def test_hf_and_https_stores_stay_read_only(tmp_path):
    for remote in ("hf://datasets/someone/store", "https://example.com/store"):
        store = Store(remote)
        assert not store.writable
        with pytest.raises(StoreError, match="read-only remote store"):
            store.append("prompts", [prompt()])
