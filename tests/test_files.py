"""prefkit.files: a reader never sees half a file, a crash leaves the old version or the new one, the
next open cleans what a killed writer left, and every writer of prefkit uses it.

Crashes are real: a child process is SIGKILLed while it writes, or at the moment just before (or in
the middle of) a rename, reached by stopping the real code there (`prefkit.files.commit`, or
`os.replace` inside it) — what a power cut at that instant leaves on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from prefkit import files

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# Stops the child for good, saying so first; the parent then kills it with SIGKILL.
STOP = """
import os, sys, time
from prefkit import files
def stop(*args, **kwargs):
    print("stopped", flush=True)
    time.sleep(600)
"""
BEFORE_RENAME = STOP + "files.commit = stop\n"  # the temporary is whole and fsynced, not yet renamed


def mid_swap(name: str, nth: int = 1) -> str:
    """Stop at the `nth` rename onto `name` (a folder swap: the old one has already moved aside)."""
    return STOP + textwrap.dedent(f"""
        _replace, _seen = os.replace, []
        def replace(src, dst, *args, **kwargs):
            if os.path.basename(dst) == {name!r}:
                _seen.append(dst)
                if len(_seen) == {nth}:
                    stop()
            return _replace(src, dst, *args, **kwargs)
        os.replace = replace
    """)


def killed_at_stop(prelude: str, code: str, tmp_path: Path, timeout: float = 300) -> int:
    """Run `prelude + code` in a child until it prints "stopped", SIGKILL it there; returns its pid."""
    log = tmp_path / f"child-{time.time_ns()}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
            env=ENV,
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            line = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()  # reaped: its pid is dead, not a zombie that still answers kill(pid, 0)
            watchdog.cancel()
    assert line.strip() == "stopped", log.read_text()[-3000:]
    return proc.pid


def dot_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ---- the helper's guarantees ------------------------------------------------------------------------

WRITER = """
import hashlib, os, sys, time
from prefkit import files
final, i = sys.argv[1], 0
while True:
    payload = bytes([i % 251]) * (300_000 + 7919 * (i % 13))
    header = f"{i} {len(payload)} {hashlib.sha256(payload).hexdigest()}\\n".encode()
    with files.atomic_file(final) as fh:
        fh.write(header)
        for k in range(0, len(payload), 8192):  # slow, many writes: a kill lands mid-write
            fh.write(payload[k : k + 8192])
            time.sleep(0.0005)
    print(i, flush=True)
    i += 1
"""


def whole(data: bytes) -> bool:
    """Whether `data` is one complete file of WRITER (its header's length and sha256 match)."""
    head, _, payload = data.partition(b"\n")
    _, n, digest = head.decode().split()
    return len(payload) == int(n) and hashlib.sha256(payload).hexdigest() == digest


def test_a_reader_never_sees_half_a_file_while_writers_are_killed_mid_write(tmp_path):
    final = tmp_path / "data.bin"
    rng = random.Random(15)
    reads, torn, stop = [0], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                data = final.read_bytes()
            except FileNotFoundError:
                continue
            reads[0] += 1
            if not whole(data):
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    left, acked = 0, 0
    try:
        for _ in range(10):
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(final)], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=ENV
            )
            proc.stdout.readline()  # one file written: the kill lands while later ones are written
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            acked += 1 + len(out.split())
            assert whole(final.read_bytes())  # the last complete file, never the one being written
            cleaned = files.clean_leftovers(tmp_path)
            assert all(files.leftover(p.name)[1] == proc.pid for p in cleaned)
            left += len(cleaned)
            assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
    finally:
        stop.set()
        thread.join()
    assert not torn, f"a reader saw {len(torn)} torn files"
    assert reads[0] > 10 and acked >= 10
    assert left >= 5, "most kills should land mid-write and leave a temporary"


def test_a_crash_just_before_the_rename_keeps_the_old_file_and_the_next_open_cleans(tmp_path):
    final = tmp_path / "notes.txt"
    final.write_text("old")
    pid = killed_at_stop(BEFORE_RENAME, f"files.write_text({str(final)!r}, 'new')", tmp_path)
    assert final.read_text() == "old"
    (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert tmp.name.startswith(f".notes.txt.{pid}.") and tmp.name.endswith(".tmp") and tmp.read_text() == "new"
    assert files.leftover(tmp.name) == ("notes.txt", pid, "tmp")
    assert files.clean_leftovers(tmp_path) == [tmp]
    assert dot_entries(tmp_path) == [] and final.read_text() == "old"


def test_a_crash_while_a_folder_is_swapped_keeps_the_old_folder(tmp_path):
    final = tmp_path / "export"
    final.mkdir()
    (final / "a.txt").write_text("old")
    code = f"""
        with files.atomic_dir({str(final)!r}) as tmp:
            (tmp / "a.txt").write_text("new")
    """
    killed_at_stop(mid_swap("export"), code, tmp_path)
    assert not final.exists()  # the old one is aside, the new one not yet in place
    assert sorted(n.rsplit(".", 1)[1] for n in dot_entries(tmp_path)) == ["old", "tmp"]
    files.clean_leftovers(tmp_path)
    assert (final / "a.txt").read_text() == "old" and dot_entries(tmp_path) == []


def test_a_crash_after_a_folder_swap_keeps_the_new_folder(tmp_path):
    final = tmp_path / "export"
    final.mkdir()
    (final / "a.txt").write_text("old")
    code = f"""
        import shutil
        shutil.rmtree = stop  # the new folder is in place; the old one is about to be removed
        with files.atomic_dir({str(final)!r}) as tmp:
            (tmp / "a.txt").write_text("new")
    """
    killed_at_stop(STOP, code, tmp_path)
    assert (final / "a.txt").read_text() == "new" and [n.rsplit(".", 1)[1] for n in dot_entries(tmp_path)] == ["old"]
    files.clean_leftovers(tmp_path)
    assert (final / "a.txt").read_text() == "new" and dot_entries(tmp_path) == []


def test_only_dead_writers_leftovers_go(tmp_path):
    gone = dead_pid()
    dead = tmp_path / f".a.parquet.{gone}.0123abcd.tmp"
    legacy = tmp_path / f".0001-abc.{gone}.tmp"  # a store part's temporary before prefkit.files
    live = files.temp_path(tmp_path / "b.parquet")  # this process: a writer still running
    dead_dir = tmp_path / f".curation.{gone}.89abcdef.tmp"
    foreign = [tmp_path / ".notes.tmp", tmp_path / "x.123.tmp", tmp_path / f".y.{gone}.tmp.bak"]
    for p in [dead, legacy, live, *foreign]:
        p.write_text("x")
    (dead_dir / "sub").mkdir(parents=True)
    (dead_dir / "sub" / "f").write_text("x")
    assert sorted(files.clean_leftovers(tmp_path)) == sorted([dead, legacy, dead_dir])
    assert sorted(tmp_path.iterdir()) == sorted([live, *foreign])
    assert files.clean_leftovers(tmp_path / "missing") == []


def test_an_old_folder_is_put_back_only_when_nothing_took_its_name(tmp_path):
    gone = dead_pid()
    aside = tmp_path / f".run.{gone}.00000000.old"
    aside.mkdir()
    (aside / "f").write_text("old")
    files.clean_leftovers(tmp_path)
    assert (tmp_path / "run" / "f").read_text() == "old" and dot_entries(tmp_path) == []
    aside.mkdir()
    (aside / "f").write_text("older")
    files.clean_leftovers(tmp_path)  # `run` exists: the aside copy is stale
    assert (tmp_path / "run" / "f").read_text() == "old" and dot_entries(tmp_path) == []


class Boom(Exception):
    pass


def test_nothing_is_left_when_the_writer_raises(tmp_path):
    final = tmp_path / "f.bin"
    final.write_bytes(b"old")
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x").write_text("old")
    with pytest.raises(Boom):
        with files.atomic_file(final) as fh:
            fh.write(b"half")
            raise Boom
    with pytest.raises(Boom):
        with files.atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise Boom
    with pytest.raises(Boom):
        with files.atomic_dir(folder) as tmp:
            (tmp / "x").write_text("half")
            raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]
    assert final.read_bytes() == b"old" and [p.name for p in folder.iterdir()] == ["x"]
    assert (folder / "x").read_text() == "old"


def test_modes_private_or_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "public", "x")
        files.write_text(tmp_path / "private", "x", mode=files.PRIVATE_FILE)
        with files.atomic_path(tmp_path / "copied", mode=files.PRIVATE_FILE) as tmp:
            tmp.write_text("x")  # created 0644 by the umask, as DuckDB's COPY does
        with files.atomic_dir(tmp_path / "pdir", mode=files.PRIVATE_DIR):
            pass
        with files.atomic_dir(tmp_path / "dir"):
            pass
    finally:
        os.umask(old)
    mode = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert mode == {"public": 0o644, "private": 0o600, "copied": 0o600, "pdir": 0o700, "dir": 0o755}


def test_never_writes_through_a_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    inside = tmp_path / "store"
    inside.mkdir()
    (inside / "part").symlink_to(outside)
    files.write_text(inside / "part", "mine")
    assert not (inside / "part").is_symlink() and (inside / "part").read_text() == "mine"
    assert outside.read_text() == "theirs"
    planted = inside / ".planted.tmp"
    planted.symlink_to(outside)
    with pytest.raises(FileExistsError):
        files.create_new(planted)  # O_EXCL | O_NOFOLLOW: a link at the name is refused, not followed
    assert outside.read_text() == "theirs"


def test_commit_without_replace_keeps_what_another_process_made(tmp_path):
    final = tmp_path / "copy"
    final.mkdir()
    (final / "first").write_text("in use")
    tmp = files.make_temp_dir(final)
    (tmp / "second").write_text("x")
    with pytest.raises(FileExistsError):
        files.commit(tmp, final, replace=False)
    assert [p.name for p in final.iterdir()] == ["first"] and tmp.is_dir()
    files.discard(tmp)
    f = tmp_path / "f"
    f.write_text("first")
    t = files.temp_path(f)
    t.write_text("second")
    with pytest.raises(FileExistsError):
        files.commit(t, f, replace=False)
    assert f.read_text() == "first"
    files.commit(t, tmp_path / "g", replace=False)
    assert (tmp_path / "g").read_text() == "second" and not t.exists()


# ---- metrics.jsonl, read in one place ----------------------------------------------------------------


def test_read_jsonl_follows_a_growing_file_in_any_pieces(tmp_path):
    rng = random.Random(3)
    rows = [{"step": i, "loss": rng.random(), "note": "é" * rng.randrange(5)} for i in range(200)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    path = tmp_path / "metrics.jsonl"
    got, offset, at = [], 0, 0
    with open(path, "wb") as fh:
        while at < len(text):
            step = rng.randrange(1, 300)
            fh.write(text[at : at + step])  # cuts lines (and UTF-8 characters) anywhere
            fh.flush()
            at += step
            new, offset = files.read_jsonl(path, offset)
            got += new
    assert got == [json.loads(line) for line in text.decode().splitlines()] == rows
    assert offset == len(text)


def test_read_jsonl_skips_what_is_not_a_json_object(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n\nnot json\n[1, 2]\n{"step": 2, "lo\n{"step": 3}\n{"step": 4')
    rows, offset = files.read_jsonl(path)
    assert rows == [{"step": 1}, {"step": 3}]
    assert offset == path.read_bytes().rindex(b"\n") + 1  # the unfinished last line is read next time
    assert files.read_jsonl(tmp_path / "missing.jsonl") == ([], 0)


def test_the_trainer_and_the_app_read_metrics_the_same_way(tmp_path):
    from prefkit.annotate.app import learn
    from prefkit.train import metrics
    from prefkit.train.trainer import read_metrics

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": i, "loss": 1 / (i + 1)} for i in range(1, 6)]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    (run / "metrics.jsonl").write_text(body + '{"step": 6, "lo')  # a run killed mid-line
    assert read_metrics(run) == rows  # the old reader raised JSONDecodeError here
    assert metrics.read(run / "metrics.jsonl") == rows
    assert learn.read_metrics(run / "metrics.jsonl")[0] == rows
    metrics.truncate(run / "metrics.jsonl", 3)  # resume after that kill: the old code raised too
    assert read_metrics(run) == rows[:3]
    assert (run / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows[:3])
    assert dot_entries(run) == []


# ---- every writer: a killed one's leftovers are cleaned on the next open ------------------------------


def test_store_append_and_compact(tmp_path):
    from prefkit.annotate.store import Store

    root = tmp_path / "store"
    code = f"""
        from prefkit.annotate.store import Store
        from tests.support.factories import prompt
        Store({str(root)!r}).append("prompts", [prompt("lost")])
    """
    killed_at_stop(BEFORE_RENAME, code, tmp_path)
    (day,) = (root / "prompts").iterdir()
    assert [files.leftover(n)[2] for n in dot_entries(day)] == ["tmp"]
    store = Store(root)  # the next open
    assert dot_entries(day) == [] and store.count("prompts") == 0
    from tests.support.factories import prompt

    store.append("prompts", [prompt("a")])
    store.append("prompts", [prompt("b")])
    killed_at_stop(BEFORE_RENAME, f"from prefkit.annotate.store import Store\nStore({str(root)!r}).compact()", tmp_path)
    assert len(dot_entries(day)) == 1 and len(list(day.glob("*.parquet"))) == 2
    store = Store(root)
    assert dot_entries(day) == [] and store.count("prompts") == 2


def test_store_open_puts_back_a_curation_a_killed_curate_moved_aside(tmp_path):
    from prefkit.annotate.store import Store

    root = tmp_path / "store"
    Store(root)
    gone = dead_pid()
    aside = root / "curated" / f".demo.{gone}.01234567.old"
    aside.mkdir(parents=True)
    (aside / "report.json").write_text("{}")
    (root / "curated" / f".demo.{gone}.89abcdef.tmp").mkdir()
    Store(root)
    assert (root / "curated" / "demo" / "report.json").exists() and dot_entries(root / "curated") == []


@pytest.fixture
def demo_store(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(ROOT / "data" / "demo", root, ignore=shutil.ignore_patterns("app"))
    return root


def test_curate(tmp_path, demo_store):
    from prefkit.curate.pipeline import curate

    curated = demo_store / "curated"
    first = curate(demo_store, name="c")
    before = (first.folder / "report.json").read_text()
    code = f"from prefkit.curate.pipeline import curate\ncurate({str(demo_store)!r}, name='c')"
    killed_at_stop(mid_swap("c"), code, tmp_path)  # the old curation is aside, the new one not in place
    assert not (curated / "c").exists() and len(dot_entries(curated)) == 2
    from prefkit.export import export_curated

    export_curated(demo_store, "c", tmp_path / "out", "preference")  # reads the curation put back
    assert json.loads((curated / "c" / "report.json").read_text())["name"] == json.loads(before)["name"]
    killed_at_stop(BEFORE_RENAME, code, tmp_path)
    assert len(dot_entries(curated)) == 1
    curate(demo_store, name="c")  # the next run
    assert dot_entries(curated) == [] and (curated / "c" / "pairs.parquet").exists()


def test_export(tmp_path):
    from prefkit.export import export_curated

    from tests.export.curated import write_curation

    write_curation(tmp_path / "store", limit=20, tables=("pairs",))
    out = tmp_path / "out"
    export_curated(tmp_path / "store", "pandalm", out, "preference")
    code = f"""
        from prefkit.export import export_curated
        export_curated({str(tmp_path / "store")!r}, "pandalm", {str(out)!r}, "preference")
    """
    killed_at_stop(mid_swap("preference"), code, tmp_path)
    assert not (out / "preference").exists() and len(dot_entries(out)) == 2
    killed_at_stop(BEFORE_RENAME, code, tmp_path)  # its open put the old export back first
    assert (out / "preference" / "dataset_dict.json").exists() and len(dot_entries(out)) == 1
    export_curated(tmp_path / "store", "pandalm", out, "preference")
    assert dot_entries(out) == [] and (out / "preference" / "dataset_dict.json").exists()


def test_reference_cache(tmp_path):
    import torch
    from prefkit.train.refcache import cached

    cache = tmp_path / "cache"
    code = f"""
        import torch
        from prefkit.train.refcache import cached
        cached("k", {str(cache)!r}, make=lambda: torch.ones(3, 2))
    """
    killed_at_stop(BEFORE_RENAME, code, tmp_path)
    assert [p.suffix for p in cache.iterdir()] == [".tmp"] and not (cache / "k.pt").exists()
    value, hit = cached("k", cache, make=lambda: torch.zeros(3, 2))
    assert not hit and dot_entries(cache) == [] and [p.name for p in cache.iterdir()] == ["k.pt"]
    assert torch.equal(cached("k", cache, make=lambda: torch.ones(3, 2))[0], torch.zeros(3, 2))


def test_app_demo_copy(tmp_path):
    from prefkit.annotate.app import serve
    from prefkit.annotate.app.serve import DEMO_STORE, demo_store

    copy = tmp_path / ".prefkit" / "demo-store"
    code = f"""
        from pathlib import Path
        from prefkit.annotate.app.serve import demo_store
        demo_store(Path({str(copy)!r}))
    """
    killed_at_stop(BEFORE_RENAME, code, tmp_path)
    assert not copy.exists() and len(dot_entries(copy.parent)) == 1
    assert demo_store(copy) == copy and dot_entries(copy.parent) == []
    made = sorted(p.name for p in copy.iterdir() if p.name != serve.BUNDLED)  # the copy's stamp of its source
    assert made == sorted(p.name for p in DEMO_STORE.iterdir() if p.name != "app")


@pytest.mark.slow  # two tiny training runs, one in a child that imports torch and transformers
def test_checkpoint_killed_while_it_is_replaced_resumes_from_the_previous_one(tmp_path, capsys):
    from prefkit.train.config import TrainConfig
    from prefkit.train.trainer import read_metrics, train

    from tests.train.synth import pairs, save_dataset, tiny_model

    tiny_model(tmp_path / "model")
    save_dataset(tmp_path / "pairs", pairs(32, 0), pairs(8, 1))
    out = tmp_path / "run"
    cfg = dict(data=str(tmp_path / "pairs"), model=str(tmp_path / "model"), out=str(out), lr=1e-3, max_steps=6)
    cfg.update(batch_size=4, save_steps=2, ref_cache_dir=str(tmp_path / "cache"), progress=False, threads=1)
    code = f"""
        import torch
        torch.set_num_threads(1)
        from prefkit.train.config import TrainConfig
        from prefkit.train.trainer import train
        train(TrainConfig(**{cfg!r}))
    """
    # The step-4 checkpoint is replacing the step-2 one: the old is aside, the new not yet in place.
    killed_at_stop(mid_swap("checkpoint", nth=2), code, tmp_path)
    assert not (out / "checkpoint").exists() and len(dot_entries(out)) == 2
    capsys.readouterr()
    train(TrainConfig(**{**cfg, "resume": True}))
    assert "resumed from step 2" in capsys.readouterr().err  # the old code had deleted it before the rename
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert dot_entries(out) == [] and (out / "final" / "config.json").exists()


def test_app_demo_copy_made_meanwhile_by_another_app_is_kept(tmp_path, monkeypatch):
    from prefkit.annotate.app import serve

    copy = tmp_path / ".prefkit" / "demo-store"
    real = shutil.copytree

    def copy_while_another_app_starts(source, dest, **kw):
        monkeypatch.setattr(shutil, "copytree", real)  # copytree calls itself for each subfolder
        real(source, copy, **kw)  # the other app's copy lands first, and it writes into it
        (copy / "judgements" / "theirs.parquet").write_text("in use")
        return real(source, dest, **kw)

    monkeypatch.setattr(shutil, "copytree", copy_while_another_app_starts)
    assert serve.demo_store(copy) == copy  # the old code's os.replace failed here (folder not empty)
    assert (copy / "judgements" / "theirs.parquet").read_text() == "in use" and dot_entries(copy.parent) == []
