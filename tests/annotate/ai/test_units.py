"""Pure parts of the AI stage: verdict parsing, edit metrics, Bradley–Terry, Retry-After, the limiter,
and the engine's 429 slow-down against the loopback server."""

import asyncio
import math
import time

import numpy as np
import pytest
from prefkit.annotate.ai import verdicts
from prefkit.annotate.ai.edits import check_revision, edit_metrics, levenshtein
from prefkit.annotate.ai.engine import AIError, Engine, EngineConfig, Limiter, retry_after_seconds
from prefkit.annotate.ai.jobs import in_shard, parse_shard
from prefkit.annotate.ai.ranking import bradley_terry

from tests.support.openai_server import OpenAIServer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A\nbecause", ("first", "because")),
        ("**B**", ("second", "")),
        ("tie", ("tie", "")),
        ("Both are fine. [[B]]", ("second", "Both are fine. [[B]]")),
        ("Verdict: A", ("first", "Verdict: A")),
        ('```json\n{"verdict": "tie", "reason": "same"}\n```', ("tie", "same")),
        ("Response A is better than B, but [[B]]", None),  # contradictory: no guess
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_verdict_from_text(text, expected):
    assert verdicts.verdict_from_text(text) == expected


def test_verdict_from_logprobs_renormalises_over_labels():
    lp = [
        {
            "token": "A",
            "logprob": math.log(0.6),
            "top_logprobs": [
                {"token": "A", "logprob": math.log(0.6)},
                {"token": " B", "logprob": math.log(0.2)},
                {"token": "Tie", "logprob": math.log(0.1)},
                {"token": "The", "logprob": math.log(0.1)},
            ],
        }
    ]
    verdict, p_first = verdicts.verdict_from_logprobs(lp)
    assert verdict == "first" and p_first == pytest.approx(0.6 / 0.9)
    assert verdicts.verdict_from_logprobs([{"token": "The", "logprob": 0.0, "top_logprobs": []}]) is None


def test_score_parsing_checks_the_range():
    assert verdicts.score_from_text("Fine.\nScore: 4", 1, 5) == (4.0, "Fine.\nScore: 4")
    assert verdicts.score_from_text('{"score": 2, "reason": "thin"}', 1, 5) == (2.0, "thin")
    assert verdicts.score_from_text("Score: 9", 1, 5) is None
    assert verdicts.score_from_text("3", 0, 5) == (3.0, "3")


def test_edit_metrics_and_rejections():
    assert levenshtein("a b c".split(), "a x c d".split()) == 2
    m = edit_metrics("the cat sat", "the cat sat down")
    assert m == {"edit_distance": 1.0, "similarity": 0.75, "jaccard": 0.75}
    assert check_revision("x y", "", 0.5)[0] == "empty revision"
    assert check_revision("x y", " x y ", 0.5)[0] == "revision identical to the original"
    assert check_revision("a b c d", "w x y z", 0.5)[0].startswith("not minimal")
    assert check_revision("a b c d", "a b c e", 0.5)[0] is None


def test_bradley_terry_orders_by_strength():
    # 0 beats 1 three times of four, 1 beats 2 three times of four, 0 beats 2 always.
    outcomes = [
        (0, 1, 1),
        (0, 1, 1),
        (0, 1, 1),
        (0, 1, 0),
        (1, 2, 1),
        (1, 2, 1),
        (1, 2, 1),
        (1, 2, 0),
        (0, 2, 1),
        (0, 2, 1),
    ]
    p = bradley_terry(3, outcomes)
    assert p[0] > p[1] > p[2] and np.isclose(p.sum(), 3)
    assert np.allclose(bradley_terry(2, [(0, 1, 0.5)]), [1, 1])  # a tie: equal strengths
    assert np.all(np.isfinite(bradley_terry(2, [(0, 1, 1)] * 5)))  # a clean sweep stays finite


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({}) is None


def test_limiter_halves_once_per_burst_and_grows_back():
    limiter = Limiter(8)
    limiter.throttle(0.2)
    limiter.throttle(0.2)  # same burst: one cut
    assert limiter.limit == 4 and limiter.resume_at > time.monotonic()

    async def cycle():
        for _ in range(40):
            await limiter.acquire()
            limiter.release(ok=True)

    limiter.resume_at = 0
    asyncio.run(cycle())
    assert limiter.limit == 8


def test_shards_partition_keys():
    keys = [f"{i:032x}" for i in range(0, 2**20, 7919)]
    shards = [{k for k in keys if in_shard(k, parse_shard(f"{s}/3"))} for s in (1, 2, 3)]
    assert set.union(*shards) == set(keys) and sum(map(len, shards)) == len(keys)
    with pytest.raises(AIError):
        parse_shard("4/3")


def test_engine_slows_down_on_429_and_honours_retry_after():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0}
    with OpenAIServer(faults={"429": 0.5}, retry_after=0.2, seed=1) as server:
        engine = Engine(EngineConfig(model="m", base_url=server.base_url, concurrency=8, timeout=2, progress=False))
        bodies = [dict(body, seed=i) for i in range(24)]

        async def one(engine, b):
            return await engine.complete(b)

        answers = []
        summary = engine.run(bodies, one, lambda item, answer: answers.append(answer), total=24)
        outcomes = server.stats()["outcomes"]
    assert all(a.ok for a in answers) and len(answers) == 24
    assert outcomes["429"] > 0 and summary.requests == 24 + outcomes["429"]
    assert engine.limiter.limit < 8 or summary.seconds >= 0.2, "429s slowed the job down"
    # Every retry of a rate-limited request waited for Retry-After: no two attempts closer than 0.2 s.
    times = {}
    for e in server.log:
        times.setdefault(e.key, []).append(e.at)
    gaps = [b - a for ts in times.values() for a, b in zip(ts, ts[1:], strict=False)]
    assert gaps and min(gaps) >= 0.19


def test_ranking_parsing():
    assert verdicts.ranking_from_text("2 > 1 > 3\nbecause", 3) == ([1, 0, 2], "because")
    assert verdicts.ranking_from_text('{"ranking": [3, 1, 2], "reason": "r"}', 3) == ([2, 0, 1], "r")
    assert verdicts.ranking_from_text("2 > 2 > 3", 3) is None
    assert verdicts.ranking_from_text("1 > 2", 3) is None


def test_ai_rows_are_named_by_their_request_and_errors_by_request_and_reason(tmp_path):
    import json

    from prefkit.annotate.ai.rows import ai_error, ai_judgement
    from prefkit.annotate.ids import content_hash, request_id
    from prefkit.annotate.store import Store

    from tests.support.factories import prompt, response

    p = prompt("Which is better?")
    a, b = response(p, "one"), response(p, "two")
    key = request_id({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    ok = ai_judgement(
        key,
        p.prompt_id,
        "pairwise",
        "ai:m:t",
        (a.response_id, b.response_id),
        "g",
        {"z": 1, "a": 2},
        scores=[1.0, 0.0],
        duration_ms=12,
    )
    bad = ai_error(
        key, "timed out", p.prompt_id, "pairwise", "ai:m:t", [a.response_id, b.response_id], "g", "half an answer"
    )
    assert (ok.judgement_id, ok.annotator_type, ok.response_ids, ok.duration_ms) == (
        key,
        "ai",
        [a.response_id, b.response_id],
        12,
    )
    assert ok.metadata == json.dumps({"a": 2, "z": 1})  # one key order, whatever the caller's
    assert bad.judgement_id == content_hash(["error", key, "timed out"]) != key
    assert (bad.status, bad.error, bad.scores, bad.raw, bad.annotator_type) == (
        "error",
        "timed out",
        [],
        "half an answer",
        "ai",
    )
    store = Store(tmp_path / "s")  # both are valid rows of the contract
    store.append("prompts", [p])
    store.append("responses", [a, b])
    store.append("judgements", [ok, bad])
    assert store.count("judgements") == 2
