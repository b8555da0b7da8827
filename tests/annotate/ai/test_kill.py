"""Acceptance: a judge job killed with SIGKILL at five random points, then run to the end, writes every
judgement exactly once, and the server never sees again a request whose answer the job had received."""

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

ANNOTATOR = "ai:judge-m:pairwise"


def _answer(request):
    # The verdict depends on the request, so both orders of a pair can disagree as real judges do.
    return Reply(
        "A\nfirst" if len(request["messages"][-1]["content"]) % 3 else "B\nsecond",
        top_logprobs={"A": -0.3, "B": -1.5, "tie": -3.0},
    )


def _judge(store_path, base_url):
    env = dict(os.environ, OPENAI_API_KEY="sk-kill-test")
    cmd = [
        sys.executable,
        "-m",
        "prefkit.cli.ai",
        "judge",
        "--store",
        str(store_path),
        "--model",
        "judge-m",
        "--base-url",
        base_url,
        "--concurrency",
        "8",
        "--timeout",
        "5",
        "--write-every",
        "5",
        "--no-progress",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached_keys(store_path):
    keys = set()
    for path in (store_path / "ai" / "cache").glob("*.sqlite"):
        con = sqlite3.connect(path)
        keys |= {k for (k,) in con.execute("SELECT key FROM answers")}
        con.close()
    return keys


@pytest.mark.slow  # six job start-ups (about 4 s each on a busy 2-core machine)
def test_killed_five_times_then_finished(tmp_path):
    store_path = tmp_path / "store"
    fill(Store(store_path), prompts=10, responses=4)  # 60 comparisons, 120 requests
    total = 120
    rng = random.Random(os.getpid())
    with OpenAIServer(_answer, latency=0.03) as server:
        kills = 0
        answered_before_kill: list[tuple[int, set[str]]] = []  # (server log position, cache keys at the kill)
        while kills < 5:
            seen = server.stats()["ok"]
            target = seen + rng.randint(1, max(2, (total - seen) // 3))
            proc = _judge(store_path, server.base_url)
            deadline = time.time() + 60
            while server.stats()["ok"] < target and proc.poll() is None and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))
            if proc.poll() is not None:
                break  # finished before the kill point: no more kills possible
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            answered_before_kill.append((len(server.log), _cached_keys(store_path)))
        assert kills == 5, "the job finished before all five kills; make the store larger"
        proc = _judge(store_path, server.base_url)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

        # No repeat of a request whose answer had reached the job (it was in the cache at the kill).
        for position, cached in answered_before_kill:
            again = [e for e in server.log[position:] if e.key in cached]
            assert again == [], f"{len(again)} requests sent again after their answer was cached"
        # Repeats of answers the server sent but the killed job never received are the only ones allowed.
        assert server.repeats_of_ok <= 5 * 8

    store = Store(store_path)
    con = store.connect()
    rows = con.execute("SELECT count(*), count(DISTINCT judgement_id) FROM raw_judgements").fetchone()
    assert rows == (total, total), "every judgement written exactly once"
    orders = con.execute(
        "SELECT json_extract_string(metadata, '$.order_key') k, list(json_extract_string(metadata, '$.order')) "
        "FROM judgements WHERE annotator = ? GROUP BY k",
        [ANNOTATOR],
    ).fetchall()
    assert len(orders) == total // 2 and all(sorted(o) == ["ab", "ba"] for _, o in orders)
    assert con.execute("SELECT count(*) FROM judgements WHERE status <> 'submitted'").fetchone()[0] == 0
