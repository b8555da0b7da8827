"""--batch: every AI job through the Batch API of the loopback server, driven by the official `openai`
client's `files` and `batches` calls, against the live mode on the same inputs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter

import pytest
from prefkit.annotate.ai.batch import custom_id, request_line, split_files
from prefkit.annotate.store import Store

from prefkit.cli.ai import main
from tests.annotate.ai.conftest import fill
from tests.support.openai_server import OpenAIServer, Reply

MODEL = "batch-m"
REPAIR = "Your reply could not be read"


def answer(request):
    """Deterministic answers that exercise every path a live answer takes: verdicts from text, a repair
    request after an unreadable verdict, an empty answer asked again, rubric scores, critique → revision
    and CLAIR revisions with their verification."""
    messages = request["messages"]
    text = messages[-1]["content"]
    if "JSON" in text and "ok" in text:
        return '{"ok": true}'
    if text.startswith(REPAIR):
        return "B\nfixed after repair"
    if "[Response A]" in text:
        n = int(hashlib.sha256(text.encode()).hexdigest(), 16)
        if n % 5 == 0:
            return Reply("", fault="empty")  # empty every time: three answers tried, then an error row
        if n % 5 == 1:
            return "I cannot decide between them."  # unreadable: one repair request
        return "A\nfirst is clearer" if n % 2 else "B\nsecond is clearer"
    if "[Response to improve]" in text:
        original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        return f"One word.<revision>{original} indeed</revision>"
    if "Score:" in text or "Score the response" in text:
        return f"Fine.\nScore: {1 + len(text) % 5}"
    if "Rewrite" in text:
        return messages[-4]["content"] + " (revised)"
    return "A critique."


def run(store_root, server, *args, model=MODEL):
    return main(
        [
            *args,
            "--store",
            str(store_root),
            "--base-url",
            server.base_url,
            "--model",
            model,
            "--no-progress",
            "--timeout",
            "5",
            "--batch-poll",
            "0.01",
        ]
    )


def rows(store: Store, table: str) -> list[dict]:
    """Every row as a dict, without what differs between any two runs (times, latencies, cache hits)."""
    con = store.connect()
    try:
        cur = con.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    for row in found:
        for name in ("created_at", "duration_ms", "updated_at"):
            row.pop(name, None)
        for name in ("metadata", "generation"):
            if row.get(name):
                data = json.loads(row[name])
                for k in ("cached", "latency_ms"):
                    data.pop(k, None)
                row[name] = data
    return sorted(found, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def cache_keys(store: Store) -> set[tuple[str, int]]:
    keys = set()
    for path in (store.root / "ai" / "cache").glob("*.sqlite"):
        con = sqlite3.connect(path)
        keys |= set(con.execute("SELECT key, attempt FROM answers").fetchall())
        con.close()
    return keys


def new_store(path, prompts=3, responses=3) -> Store:
    return fill(Store(path), prompts=prompts, responses=responses)


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch")


JOBS = {
    "judge": ["judge", "--mode", "text"],
    "rubric": ["judge", "--method", "rubric", "--template", "self_rewarding", "--samples", "2", "--temperature", "0.7"],
    "ranking": ["judge", "--method", "ranking", "--mode", "text"],
    "listwise": ["judge", "--method", "listwise", "--mode", "text", "--samples", "2"],
    "generate": ["generate", "-n", "2"],
    "critique": ["critique", "--rounds", "2", "--limit", "3"],
    "clair": ["revise", "--clair", "--verify", "--limit", "4"],
}


@pytest.mark.parametrize("job", list(JOBS))
def test_same_rows_ids_and_cache_keys_as_live(tmp_path, job, capsys):
    live, batched = new_store(tmp_path / "live"), new_store(tmp_path / "batch")
    with OpenAIServer(answer) as server:
        assert run(live.root, server, *JOBS[job]) in (0, 1)
        live_sent = server.counts()  # requests per body: a body asked again (empty answer) counts again
    with OpenAIServer(answer, batch_delay=0.02) as server:
        assert run(batched.root, server, *JOBS[job], "--batch") in (0, 1)
        submitted = server.batch_api.submitted()
        assert server.batch_api.repeated() == {}
        live_probes = server.counts()
    out = capsys.readouterr().out
    assert "requests in batches" in out
    for table in ("judgements", "responses"):
        assert rows(batched, table) == rows(live, table), table
    assert cache_keys(batched) == cache_keys(live)
    # Every request the live job sent went as one line of one batch, as often (attempts), and no other
    # did; only the capability probes (at most two, plus a plain one) went live.
    assert sum(live_probes.values()) <= 3
    batched_sent = Counter(c.rpartition(".")[0] for c in submitted)
    assert batched_sent == live_sent - live_probes
    if job == "judge":  # repairs and second content attempts went as later rounds
        con = batched.connect()
        errors = con.execute("SELECT count(*) FROM judgements WHERE status = 'error'").fetchone()[0]
        repaired = con.execute(
            "SELECT count(*) FROM judgements WHERE json_extract(metadata, '$.repaired')::BOOLEAN"
        ).fetchone()[0]
        con.close()
        assert errors > 0 and repaired > 0
        assert any(c.endswith(".2") for c in submitted)


def test_splits_files_at_the_line_and_byte_limits(tmp_path, capsys):
    store = new_store(tmp_path / "s", prompts=4, responses=3)  # 24 judge requests
    with OpenAIServer(answer) as server:
        assert (
            run(store.root, server, "judge", "--mode", "text", "--one-order", "--batch", "--batch-max-lines", "5") == 0
        )
        sizes = [len(ids) for ids in server.batch_api.log.values()]
        first_round = [n for n in sizes]
        assert sum(first_round) >= 12 and max(sizes) <= 5
        files = [server.batch_api.contents[b["input_file_id"]] for b in server.batch_api.batches.values()]
    # The byte limit: lines never split, each file at most the limit, in order.
    lines = [
        (f"k{i}", 0, request_line(f"k{i}", 0, {"model": "m", "messages": [{"role": "user", "content": "x" * i}]}))
        for i in range(40)
    ]
    limit = 700
    chunks = split_files(lines, max_lines=1000, max_bytes=limit)
    assert [item for chunk in chunks for item in chunk] == lines
    assert all(sum(len(line.encode()) for *_, line in chunk) <= limit for chunk in chunks)
    # Greedy: a file ends only where the next line would not fit.
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        assert sum(len(line.encode()) for *_, line in chunk) + len(following[0][2].encode()) > limit
    assert all(f.count(b"\n") <= 5 for f in files)


def test_batch_prices_ledger_and_max_cost(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    prices = ["--price-in", "2", "--price-out", "8"]
    with OpenAIServer(answer) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--batch", *prices) == 0
        usage = []
        for batch in server.batch_api.batches.values():
            for line in server.batch_api.contents[batch["output_file_id"]].decode().splitlines():
                usage.append(json.loads(line)["response"]["body"]["usage"])
    expected = sum(u["prompt_tokens"] * 2 + u["completion_tokens"] * 8 for u in usage) / 1e6 * 0.5
    con = sqlite3.connect(store.root / "ai" / "cache" / "cache.sqlite")
    ledger = con.execute("SELECT sum(cost) FROM answers WHERE latency_ms = -1").fetchone()[0]
    con.close()
    assert ledger == pytest.approx(expected, rel=1e-9)
    assert f"${expected:.4f}" in capsys.readouterr().out

    # --max-cost: nothing is submitted past the budget (estimated at batch prices, max_tokens of answer).
    other = new_store(tmp_path / "t")
    with OpenAIServer(answer) as server:
        code = run(other.root, server, "judge", "--mode", "text", "--batch", *prices, "--max-cost", "0.002")
        submitted = server.batch_api.submitted()
    assert code == 1 and "--max-cost reached" in capsys.readouterr().err
    assert 0 < len(submitted) < 18


def test_dry_run_shows_files_and_requests(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer) as server:
        args = ["judge", "--mode", "text", "--batch", "--dry-run", "--batch-max-lines", "4", "--price-in", "1"]
        assert run(store.root, server, *args) == 0
        assert server.batch_api.log == {}
    out = capsys.readouterr().out
    assert "18 not in the cache would be sent in 5 batch input files (at batch prices)" in out


@pytest.mark.parametrize("fault", ["error-lines", "failed", "expired", "cancelled"])
def test_faults_become_error_rows_with_reasons(tmp_path, fault, capsys):
    store = new_store(tmp_path / "s")
    options = {
        "error-lines": {"batch_error_lines": lambda line: int(line["custom_id"][:2], 16) % 3 == 0},
        "failed": {"batch_faults": {0: "failed"}},
        "expired": {"batch_faults": {0: "expired"}},
        "cancelled": {"batch_faults": {0: "cancelled"}},
    }[fault]
    with OpenAIServer(answer, **options) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--one-order", "--batch") == 0
        first = next(iter(server.batch_api.log.values()))
    con = store.connect()
    found = con.execute("SELECT status, error, metadata FROM judgements").fetchall()
    con.close()
    assert len(found) == 9, "one row per comparison: nothing dropped"
    errors = [e for s, e, _ in found if s == "error"]
    reason = {
        "error-lines": "in the batch's error file",
        "failed": "failed validation",
        "expired": "expired before this request ran",
        "cancelled": "was cancelled before this request ran",
    }[fault]
    expected = {
        "error-lines": sum(1 for c in first if int(c[:2], 16) % 3 == 0),
        "failed": 9,
        "expired": 9 - len(first) // 2,
        "cancelled": 9 - len(first) // 2,
    }[fault]
    assert expected > 0
    assert sum(1 for e in errors if reason in e) == expected


def test_retry_live_sends_unanswered_requests_live(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer, batch_faults={0: "expired"}) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--one-order", "--batch", "--retry-live") == 0
        first = next(iter(server.batch_api.log.values()))
        live = server.counts(outcome="ok")
    unanswered = {c.rpartition(".")[0] for c in first[len(first) // 2 :]}
    assert unanswered <= set(live) and len(unanswered) > 0
    con = store.connect()
    found = con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'error') FROM judgements").fetchone()
    con.close()
    # The only error rows left are the script's own (always-empty answers), not the expiry.
    assert found[0] == 9
    con = store.connect()
    reasons = [r for (r,) in con.execute("SELECT error FROM judgements WHERE status = 'error'").fetchall()]
    con.close()
    assert not any("expired" in r for r in reasons)


def test_no_wait_then_batches_list_and_resume(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer, batch_delay=0.3) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--batch", "--no-wait") == 0
        out = capsys.readouterr().out
        assert "submitted: 18 requests in 1 new batches" in out
        con = store.connect()
        assert con.execute("SELECT count(*) FROM judgements").fetchone()[0] == 0
        con.close()
        assert main(["batches", "--store", str(store.root)]) == 0
        listing = capsys.readouterr().out
        batch_id = next(iter(server.batch_api.batches))
        assert batch_id in listing and "validating" in listing and "prefkit judge" in listing
        assert main(["batches", "--store", str(store.root), "--refresh"]) == 0
        listing = capsys.readouterr().out
        assert f"{batch_id}  in_progress  " in listing or f"{batch_id}  completed  18 done" in listing
        assert main(["batches", "resume", "--store", str(store.root), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "resuming: prefkit judge" in out and "rows written" in out
        assert main(["batches", "resume", "--store", str(store.root)]) == 0
        assert "nothing to resume" in capsys.readouterr().out
        assert server.batch_api.repeated() == {}
    live = new_store(tmp_path / "live")
    with OpenAIServer(answer) as server:
        assert run(live.root, server, "judge", "--mode", "text") == 0
    assert rows(store, "judgements") == rows(live, "judgements")


def test_cancel_then_resume_writes_error_rows(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer, batch_delay=30) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--one-order", "--batch", "--no-wait") == 0
        assert main(["batches", "cancel", "--store", str(store.root)]) == 0
        assert "cancelling" in capsys.readouterr().out
        server.batch_api.delay = 0.0  # the later rounds (repairs, content attempts) need not wait 30 s
        assert main(["batches", "resume", "--store", str(store.root), "--no-progress"]) == 0
        assert main(["batches", "cancel", "--store", str(store.root), "--id", "batch_nope"]) == 1
        assert "no batch batch_nope in this store" in capsys.readouterr().err
    con = store.connect()
    found = con.execute("SELECT count(*) FILTER (WHERE error LIKE '%cancelled%'), count(*) FROM judgements").fetchone()
    con.close()
    assert found == (9 - 9 // 2, 9)


@pytest.mark.parametrize("missing, route", [(False, "/v1/files"), ("files", "/v1/batches")])
def test_server_without_batch_api_says_so(tmp_path, capsys, missing, route):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer, batches=missing) as server:
        assert run(store.root, server, "judge", "--mode", "text", "--batch") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"has no Batch API (HTTP 404 on {route})" in err[0] and "without --batch" in err[0]
    con = store.connect()
    assert con.execute("SELECT count(*) FROM judgements").fetchone()[0] == 0, "nothing written"
    con.close()


def test_flags_that_need_batch(tmp_path, capsys):
    store = new_store(tmp_path / "s")
    with OpenAIServer(answer) as server:
        assert run(store.root, server, "judge", "--no-wait") == 1
        assert "--no-wait and --retry-live go with --batch" in capsys.readouterr().err
        assert run(store.root, server, "judge", "--batch", "--batch-discount", "2") == 1
        assert "--batch-discount 2" in capsys.readouterr().err


def test_custom_ids_round_trip():
    from prefkit.annotate.ai.batch import split_custom_id

    assert split_custom_id(custom_id("ab12", 2)) == ("ab12", 2)
    assert split_custom_id("nonsense") is None
