"""Acceptance: with 10% of answers faulty (500, 429 + Retry-After, timeouts, cut-off JSON, empty
content, finish_reason=length) a judge job completes; every failure is retried or recorded as an error
row with its reason; no row has a silent empty verdict."""

import json
from collections import Counter

from prefkit.annotate.ai.engine import EngineConfig
from prefkit.annotate.ai.judge import JudgeOptions, judge
from prefkit.annotate.store import Store

from tests.annotate.ai.conftest import fill
from tests.support.openai_server import FAULT_KINDS, OpenAIServer, Reply

ANNOTATOR = "ai:judge-m:pairwise"


def _config(server, **kw):
    values = dict(
        model="judge-m",
        base_url=server.base_url,
        concurrency=16,
        timeout=0.4,
        backoff=0.01,
        max_backoff=0.05,
        progress=False,
    )
    values.update(kw)
    return EngineConfig(**values)


def _verdict(request):
    return Reply("A\nthe first is better", top_logprobs={"A": -0.2, "B": -1.8, "tie": -4.0})


def _check_rows(store, logprobs=True):
    con = store.connect()
    rows = con.execute(
        "SELECT status, scores, error, raw, confidence FROM judgements WHERE annotator = ?", [ANNOTATOR]
    ).fetchall()
    for status, scores, error, raw, confidence in rows:
        if status == "submitted":
            assert len(scores) == 2 and sum(scores) == 1.0 and raw and error is None
            assert (confidence is not None) == logprobs
        else:
            assert status == "error" and scores == [] and error, "an error row must say why"
    return Counter(r[0] for r in rows), [r[2] for r in rows if r[0] == "error"]


def test_ten_percent_faults_complete_with_every_failure_handled(tmp_path):
    store = fill(Store(tmp_path / "s"), prompts=10, responses=5)  # 200 requests
    with OpenAIServer(_verdict, faults=0.10, seed=3, retry_after=0.05, hang=1.0) as server:
        report = judge(store, _config(server), JudgeOptions(mode="logprobs"))
        outcomes = server.stats()["outcomes"]
    assert set(FAULT_KINDS) <= set(outcomes), f"every kind of fault was injected: {outcomes}"
    statuses, errors = _check_rows(store)
    assert sum(statuses.values()) == 200 == report.planned, "every request ends as exactly one row"
    # Transport faults are retried until they succeed; an empty or cut-off answer is asked again.
    assert report.summary.requests > 200 and statuses["submitted"] + statuses["error"] == 200
    assert report.errors == statuses["error"] and all(errors)


def test_persistent_failures_become_error_rows_with_reasons(tmp_path):
    store = fill(Store(tmp_path / "s"), prompts=1, responses=5)  # 10 pairs

    def answer(request):
        text = request["messages"][-1]["content"]
        if "Answer 1 to" in text.split("[Response A]")[1].split("[Response B]")[0]:
            return Reply("A\nok", fault="empty")
        if "Answer 2 to" in text.split("[Response A]")[1].split("[Response B]")[0]:
            return Reply("A\nok", fault="length")
        if "Answer 3 to" in text.split("[Response A]")[1].split("[Response B]")[0]:
            return Reply("A\nok", fault="malformed")
        if "Answer 4 to" in text.split("[Response A]")[1].split("[Response B]")[0]:
            return "I really cannot decide between them."
        return "A\nfine"

    with OpenAIServer(answer, logprobs=False, response_format=False) as server:
        report = judge(store, _config(server, max_retries=2), JudgeOptions())
    assert report.mode == "text"
    statuses, errors = _check_rows(store, logprobs=False)
    assert statuses == {"submitted": 4, "error": 16}
    reasons = Counter(e.split(" (")[0].split(":")[0] for e in errors)
    assert reasons == {
        "empty content": 4,
        "output cut off at max_tokens": 4,
        "malformed JSON in the answer body": 4,
        "unreadable verdict, also after one repair request": 4,
    }
    raws = (
        store.connect()
        .execute("SELECT raw, metadata FROM judgements WHERE status = 'error' AND error LIKE 'unreadable%'")
        .fetchall()
    )
    assert all(raw == "I really cannot decide between them." for raw, _ in raws), "the model's words are kept"
    assert all(json.loads(m)["order"] in ("ab", "ba") for _, m in raws)
