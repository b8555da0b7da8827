"""--batch across kills: SIGKILL at random moments (uploading, creating, waiting, writing rows) and
between a batch's creation and its record; the resumed job writes each row once, and the server's log
shows no request submitted in two batches."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from prefkit.annotate.store import Store

from tests.annotate.ai.conftest import fill
from tests.support.openai_server import OpenAIServer, Reply


def _answer(request):
    text = request["messages"][-1]["content"]
    if "JSON" in text and "ok" in text:
        return '{"ok": true}'
    return Reply("A\nfirst" if len(text) % 3 else "B\nsecond", top_logprobs={"A": -0.3, "B": -1.5, "tie": -3.0})


def _judge(store_path, base_url, *extra):
    env = dict(os.environ, OPENAI_API_KEY="sk-batch-kill")
    cmd = [sys.executable, "-m", "prefkit.cli.ai", "judge", "--store", str(store_path), "--model", "kill-m"]
    cmd += ["--base-url", base_url, "--timeout", "5", "--write-every", "5", "--no-progress", "--batch"]
    cmd += ["--batch-poll", "0.05", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(store_path):
    con = sqlite3.connect(store_path / "ai" / "cache" / "cache.sqlite")
    try:
        return con.execute("SELECT record, file_id, batch_id, status, detail FROM batch_files").fetchall()
    finally:
        con.close()


def _rows(store_path):
    con = Store(store_path).connect()
    try:
        return con.execute("SELECT count(*), count(DISTINCT judgement_id) FROM raw_judgements").fetchone()
    finally:
        con.close()


def test_killed_between_create_and_record_adopts_the_batch(tmp_path):
    store_path = tmp_path / "store"
    fill(Store(store_path), prompts=3, responses=3)  # 9 comparisons, 18 requests
    with OpenAIServer(_answer, create_delay=30) as server:
        proc = _judge(store_path, server.base_url)
        deadline = time.time() + 60
        while not server.batch_api.batches and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert server.batch_api.batches, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)  # the batch exists on the server; its id never reached the job
        proc.wait()
        [(record, file_id, batch_id, status, detail)] = _records(store_path)
        assert file_id and batch_id is None and status == "uploaded" and detail == "creating"

        server.batch_api.create_delay = 0
        proc = _judge(store_path, server.base_url)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert len(server.batch_api.batches) == 1, "found again by its metadata, not created twice"
        created = next(iter(server.batch_api.batches.values()))
        assert created["metadata"] == {"prefkit_file": record}
        assert _records(store_path)[0][2] == created["id"]
        assert server.batch_api.repeated() == {}
    assert _rows(store_path) == (18, 18)


def _parts(store_path) -> int:
    return len(list((store_path / "judgements").rglob("*.parquet")))


def _until(condition, proc, seconds=60.0) -> bool:
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.002)
    return True


@pytest.mark.slow  # six job start-ups (a few seconds each on a busy 2-core machine)
def test_killed_five_times_at_random_then_resumed(tmp_path):
    store_path = tmp_path / "store"
    fill(Store(store_path), prompts=8, responses=4)  # 48 comparisons, 96 requests
    total, files = 96, 6
    rng = random.Random(os.getpid())
    # Six input files of 16 requests; each create is answered 0.15 s after the batch exists, each batch is
    # done 0.6 s after its creation, rows are written five at a time. One kill lands in each stage, at a
    # random point of it: while uploading (after a random number of files), between a create and its
    # record, while waiting, and twice while writing rows (after a random number of parts).
    with OpenAIServer(_answer, create_delay=0.15, batch_delay=0.6) as server:
        api = server.batch_api
        stages = [
            ("upload", lambda n=rng.randint(1, 2): len(api.files) >= n),
            ("create", lambda n=rng.randint(3, 5): len(api.batches) >= n),
            ("wait", lambda: len(api.batches) >= files),
            ("write", lambda n=rng.randint(1, 6): _parts(store_path) >= n),
            ("write", lambda n=rng.randint(8, 14): _parts(store_path) >= n),
        ]
        moments = []
        for stage, reached in stages:
            proc = _judge(store_path, server.base_url, "--batch-max-lines", "16")
            assert _until(reached, proc), f"the job finished before the {stage} kill ({moments})"
            time.sleep(rng.uniform(0, 0.3 if stage == "wait" else 0.02))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            moments.append((stage, len(api.files), len(api.batches), _parts(store_path)))
        print(moments)  # (stage, files on the server, batches, row parts in the store) at each kill
        proc = _judge(store_path, server.base_url, "--batch-max-lines", "16")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert api.repeated() == {}, f"a request was submitted in two batches ({moments})"
        assert len(api.submitted()) == total and len(api.batches) == files
    assert _rows(store_path) == (total, total), f"every judgement written exactly once ({moments})"
