"""Judging against the loopback server: both orders, logprob confidence, capability fallbacks, rubric
scores, Bradley–Terry rankings, shards, dry runs, budgets, generation and idempotent re-runs."""

import json

import pytest
from prefkit.annotate.ai.engine import EngineConfig
from prefkit.annotate.ai.generate import GenerateOptions, generate
from prefkit.annotate.ai.jobs import Sampling
from prefkit.annotate.ai.judge import JudgeOptions, judge

from tests.support.openai_server import OpenAIServer, Reply


def _config(server, **kw):
    values = dict(
        model="judge-m", base_url=server.base_url, concurrency=8, timeout=5, progress=False, max_retries=1, backoff=0.01
    )
    values.update(kw)
    return EngineConfig(**values)


def _prefers_lower_answer(request):
    """A consistent judge: the response whose text says 'Answer 0' beats 'Answer 1' beats 'Answer 2'."""
    text = request["messages"][-1]["content"]
    if "[Response A]" not in text:
        return '{"ok": true}'  # the capability probes of --mode auto
    a = text.split("[Response A]\n")[1].split("\n")[0]
    b = text.split("[Response B]\n")[1].split("\n")[0]
    verdict = "A" if a < b else "B"
    other = "B" if verdict == "A" else "A"
    return Reply(f"{verdict}\nbecause", top_logprobs={verdict: -0.1, other: -2.5, "tie": -5.0})


def test_both_orders_are_stored_with_confidence(store):
    with OpenAIServer(_prefers_lower_answer) as server:
        report = judge(store, _config(server), JudgeOptions())
    assert report.mode == "logprobs" and report.written == 24 and report.errors == 0
    con = store.connect()
    rows = con.execute(
        "SELECT response_ids, scores, confidence, metadata, guidelines, annotator, annotator_type FROM judgements "
        "WHERE kind = 'pairwise'"
    ).fetchall()
    by_key = {}
    for ids, scores, confidence, metadata, guidelines, annotator, kind in rows:
        meta = json.loads(metadata)
        by_key.setdefault(meta["order_key"], {})[meta["order"]] = (ids, scores, confidence)
        assert annotator == "ai:judge-m:pairwise" and kind == "ai" and guidelines.startswith("pairwise@")
        assert meta["fingerprint"] == "fp_loopback"
        assert (
            confidence == pytest.approx(0.9 / (0.9 + 0.082 + 0.0067), abs=0.01)
            if scores == [1.0, 0.0]
            else confidence < 0.1
        )
    assert len(by_key) == 12
    for orders in by_key.values():
        (ab_ids, ab_scores, _), (ba_ids, ba_scores, _) = orders["ab"], orders["ba"]
        assert ba_ids == ab_ids[::-1], "each row lists the responses in the order the judge saw them"
        assert ba_scores == ab_scores[::-1], "a consistent judge gives the same winner in both orders"


def test_fallback_to_json_schema_then_text(store, tmp_path):
    def answer(request):
        if "[Response A]" not in request["messages"][-1]["content"]:
            return '{"ok": true}'
        verdict = _prefers_lower_answer(request).content.split("\n")[0]
        if request.get("response_format"):
            return json.dumps({"reason": "clearer", "verdict": verdict})
        return f"After thinking it over, my verdict: {verdict}."  # not on the first line: tolerant parse

    with OpenAIServer(answer, logprobs=False) as server:
        assert judge(store, _config(server), JudgeOptions(limit=2)).mode == "json"
    with OpenAIServer(answer, logprobs=False, response_format=False) as server:
        report = judge(store, _config(server, model="other"), JudgeOptions(limit=2))
    assert report.mode == "text" and report.errors == 0
    rows = store.connect().execute("SELECT annotator, rationale, confidence, scores FROM judgements").fetchall()
    assert len(rows) == 8 and all(r[2] is None and sum(r[3]) == 1 for r in rows)
    assert {r[1] for r in rows if r[0] == "ai:judge-m:pairwise"} == {"clearer"}
    assert {r[1].split(":")[0] for r in rows if r[0] == "ai:other:pairwise"} == {"After thinking it over, my verdict"}


def test_rerun_sends_nothing_and_shards_partition_the_job(store):
    with OpenAIServer(_prefers_lower_answer) as server:
        first = judge(store, _config(server), JudgeOptions(shard="1/2"))
        second = judge(store, _config(server), JudgeOptions(shard="2/2"))
        sent = server.stats()["requests"]
        again = judge(store, _config(server), JudgeOptions())
        assert server.stats()["requests"] == sent, "a finished job sends nothing on a re-run"
    assert first.written + second.written == 24 and first.written and second.written
    assert again.skipped == 24 and again.written == 0
    assert store.count("judgements") == 24


def test_dry_run_sends_nothing_and_budget_stops(store):
    with OpenAIServer(_prefers_lower_answer) as server:
        dry = judge(store, _config(server, price_in=1000, price_out=1000), JudgeOptions(mode="logprobs", dry_run=True))
        assert server.stats()["requests"] == 0 and dry.summary.requests == 24 and dry.summary.cost > 0
        capped = judge(
            store,
            _config(server, price_in=1000, price_out=1000, max_cost=0.5, concurrency=1),
            JudgeOptions(mode="logprobs"),
        )
        assert capped.summary.stopped == "budget" and 0 < capped.written < 24
        assert server.stats()["requests"] == capped.summary.requests
        rest = judge(store, _config(server), JudgeOptions(mode="logprobs"))
    assert rest.written == 24 - capped.written


def test_rubric_scores_with_samples_and_self_rewarding(store):
    def answer(request):
        return f"Reasonable.\nScore: {3 + request['seed'] % 2}"  # samples 0, 1 → 3, 4

    with OpenAIServer(answer) as server:
        report = judge(
            store,
            _config(server),
            JudgeOptions(
                method="rubric", template="self_rewarding", samples=2, mode="text", sampling=Sampling(temperature=0.7)
            ),
        )
    assert report.written == 12 and report.errors == 0
    rows = store.read("judgements").to_pylist()
    assert {r["kind"] for r in rows} == {"rating"} and all(r["scores"] == [3.5] for r in rows)
    assert all(r["annotator"] == "ai:judge-m:self_rewarding" and r["aspect"] == "overall" for r in rows)


def test_ranking_by_bradley_terry(store):
    with OpenAIServer(_prefers_lower_answer) as server:
        report = judge(store, _config(server), JudgeOptions(method="ranking"))
    assert report.rankings == 4
    con = store.connect()
    for ids, scores in con.execute("SELECT response_ids, scores FROM judgements WHERE kind = 'ranking'").fetchall():
        texts = [con.execute("SELECT content FROM responses WHERE response_id = ?", [i]).fetchone()[0] for i in ids]
        assert [t.split()[1] for t in texts] == ["0", "1", "2"] and scores == [-1.0, -2.0, -3.0]


def test_generate_n_samples_with_parameters(store):
    def answer(request):
        return f"sample with seed {request['seed']} at temperature {request['temperature']}"

    with OpenAIServer(answer) as server:
        dry = generate(store, _config(server, model="gen-m", price_out=1), GenerateOptions(n=3, dry_run=True))
        assert dry.summary.requests == 12 and dry.summary.cost > 0 and server.stats()["requests"] == 0
        report = generate(store, _config(server, model="gen-m"), GenerateOptions(n=3))
        again = generate(store, _config(server, model="gen-m"), GenerateOptions(n=3))
        assert server.stats()["requests"] == 12
    assert report.written == 12 and again.skipped == 12 and not report.failures
    rows = store.read("responses", "origin = 'generated'").to_pylist()
    assert len(rows) == 12 and {r["model"] for r in rows} == {"gen-m"}
    generation = json.loads(rows[0]["generation"])
    assert {"temperature", "top_p", "max_tokens", "seed", "usage", "fingerprint", "request_id"} <= set(generation)


def test_listwise_rankings_in_shuffled_orders(store):
    def answer(request):
        text = request["messages"][-1]["content"]
        if "[Response 1]" not in text:
            return '{"ok": true}'
        shown = [text.split(f"[Response {i}]\n")[1].split("\n")[0] for i in (1, 2, 3)]
        best_first = sorted(range(3), key=lambda i: shown[i])  # "Answer 0…" best
        return " > ".join(str(i + 1) for i in best_first) + "\nordered by quality"

    with OpenAIServer(answer) as server:
        report = judge(store, _config(server), JudgeOptions(method="listwise", samples=3))
    assert report.written == 12 and report.errors == 0
    con = store.connect()
    rows = con.execute("SELECT response_ids, scores, metadata FROM judgements WHERE kind = 'ranking'").fetchall()
    orders = {}
    for ids, scores, metadata in rows:
        texts = [con.execute("SELECT content FROM responses WHERE response_id = ?", [i]).fetchone()[0] for i in ids]
        ranked = [t.split()[1] for _, t in sorted(zip(scores, texts, strict=True), reverse=True)]
        assert ranked == ["0", "1", "2"] and sorted(scores) == [-3.0, -2.0, -1.0]
        orders.setdefault(json.loads(metadata)["order_key"], set()).add(tuple(ids))
    assert len(orders) == 4 and all(len(shown) == 3 for shown in orders.values()), "three different orders"


def test_rubric_samples_that_fail_are_counted_and_raw_comes_from_one_that_scored(store, capsys):
    def answer(request):
        if request["seed"] == 0:
            return "I would rather not put a number on it."  # sample 0: unreadable, its repair too
        return f"Fine work.\nScore: {3 + request['seed'] % 2}"  # samples 1, 2 → 4, 3

    options = JudgeOptions(
        method="rubric", template="self_rewarding", samples=3, mode="text", sampling=Sampling(temperature=0.7)
    )
    with OpenAIServer(answer) as server:
        report = judge(store, _config(server), options)
    assert (report.written, report.errors, report.failed_samples) == (12, 0, 12)
    rows = store.read("judgements").to_pylist()
    for row in rows:
        meta = json.loads(row["metadata"])
        assert row["scores"] == [3.5] and meta["sample_scores"] == [4.0, 3.0]
        assert row["raw"] == "Fine work.\nScore: 4" and row["rationale"] == "Fine work.\nScore: 4"
        assert len(meta["failed_samples"]) == 1 and meta["failed_samples"][0].startswith("unreadable score")
    log = json.loads(open(report.log, encoding="utf-8").read())
    assert log["failed_samples"] == 12


def test_rubric_sample_without_an_answer_is_asked_again_on_the_next_run(store):
    state = {"down": True}

    def answer(request):
        if state["down"] and request["seed"] == 2:
            return Reply(status=503, message="overloaded")
        return f"Fine work.\nScore: {3 + request['seed'] % 2}"

    options = JudgeOptions(
        method="rubric", template="self_rewarding", samples=3, mode="text", sampling=Sampling(temperature=0.7)
    )
    with OpenAIServer(answer) as server:
        first = judge(store, _config(server), options)
        answered = server.counts(outcome="ok")
        state["down"] = False
        mark = server.mark()
        second = judge(store, _config(server), options)
        resent = server.counts(since=mark)
    assert (first.written, first.errors) == (12, 12), "an unfinished mean is an error row, never a 2-sample mean"
    assert (second.written, second.errors, second.skipped) == (12, 0, 0)
    assert not set(resent) & set(answered) and sum(resent.values()) == 12, "only the failed samples are sent"
    ratings = [r for r in store.read("judgements").to_pylist() if r["status"] == "submitted"]
    assert len(ratings) == 12 and all(r["scores"] == [(3 + 4 + 3) / 3] for r in ratings)


def test_dry_run_prices_each_request_it_would_send(tmp_path):
    """The dry-run estimate is the sum over the requests a real run then sends (counted by the server):
    each one's prompt at about four characters a token, plus its max_tokens of answer. One prompt (the
    last by id, so outside the first 50 requests) has long responses: an estimate from a sample of the
    first requests would miss them."""
    from prefkit.annotate.store import Store

    from tests.support.factories import prompt, response

    store = Store(tmp_path / "store")
    ps = sorted((prompt(f"Question {i}?") for i in range(10)), key=lambda p: p.prompt_id)
    store.append("prompts", ps)
    store.append(
        "responses",
        [response(p, f"Answer {k}. " + ("long " * 800 if p is ps[-1] else "")) for p in ps for k in range(4)],
    )
    price = dict(price_in=3.0, price_out=7.0)
    with OpenAIServer(_prefers_lower_answer) as server:
        dry = judge(store, _config(server, **price), JudgeOptions(mode="logprobs", dry_run=True))
        assert server.stats()["requests"] == 0
        judge(store, _config(server, **price), JudgeOptions(mode="logprobs"))
        sent = [e.body for e in server.log]
    assert dry.summary.requests == len(sent) == 120
    tokens_in = sum(len(json.dumps(b["messages"])) // 4 for b in sent)
    tokens_out = sum(b["max_tokens"] for b in sent)
    assert dry.summary.cost == pytest.approx((tokens_in * 3.0 + tokens_out * 7.0) / 1e6, rel=1e-12)
