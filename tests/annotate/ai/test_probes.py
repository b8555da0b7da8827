"""Capability detection (`--mode auto`) against the loopback server when the probes' answers are odd:
cut off at max_tokens, refused, failing at the transport, or not coming at all."""

import pytest
from prefkit.annotate.ai.engine import AIError, EngineConfig
from prefkit.annotate.ai.judge import JudgeOptions, judge

from tests.support.openai_server import OpenAIServer, Reply


def _config(server, **kw):
    values = dict(
        model="probe-m", base_url=server.base_url, concurrency=4, timeout=5, progress=False, max_retries=1, backoff=0.01
    )
    values.update(kw)
    return EngineConfig(**values)


def _is_probe(request):
    return "[Response A]" not in request["messages"][-1]["content"]


def _verdict(request):
    return Reply("A\nthe first", top_logprobs={"A": -0.1, "B": -2.5, "tie": -5.0})


def _script(probe):
    """Judge requests get a verdict; probes get `probe(request)`."""

    def answer(request):
        return probe(request) if _is_probe(request) else _verdict(request)

    return answer


def _cut_off(request):
    # A verbose model: 16 tokens are not enough, the answer stops mid-object.
    return Reply('{"ok": true, "note": "I was asked for', finish_reason="length")


def _probes_sent(server):
    return sum(1 for e in server.log if _is_probe(e.body))


def test_probe_answers_cut_at_max_tokens_still_detect_logprobs(store):
    with OpenAIServer(_script(_cut_off)) as server:
        report = judge(store, _config(server), JudgeOptions())
        first = _probes_sent(server)
        again = judge(store, _config(server), JudgeOptions(limit=0))
        second = _probes_sent(server) - first
    assert report.mode == "logprobs" and report.errors == 0 and report.written == 24
    # The engine asks a cut-off answer again (3 answers per request, all cached); detection reads the last.
    assert first == 2 * 3
    assert again.mode == "logprobs" and second == 0, "found once, remembered: the re-run sends no probe"


def test_cut_off_probe_without_logprobs_detects_json_schema(store):
    with OpenAIServer(_script(_cut_off), logprobs=False) as server:
        report = judge(store, _config(server), JudgeOptions(limit=1))
    assert report.mode == "json" and report.errors == 0


def test_a_probe_failing_at_the_transport_does_not_stop_the_job_and_is_asked_again(store):
    def probe(request):
        if request.get("logprobs"):
            return Reply(status=503, message="overloaded")  # every attempt: a broken option handler
        return '{"ok": true}'

    with OpenAIServer(_script(probe)) as server:
        first = judge(store, _config(server), JudgeOptions(limit=1))
        before = _probes_sent(server)
        second = judge(store, _config(server), JudgeOptions(limit=0))
        after = _probes_sent(server)
    assert first.mode == "json" and first.errors == 0 and first.written == 2
    assert second.mode == "json" and after > before, "an unanswered probe is not remembered as 'unsupported'"


def test_both_probes_failing_falls_back_to_text_when_a_plain_request_works(store):
    def probe(request):
        if request.get("logprobs") or request.get("response_format"):
            return Reply(status=503, message="unknown option crashed the worker")
        return "ok"

    with OpenAIServer(_script(probe)) as server:
        report = judge(store, _config(server), JudgeOptions(limit=1))
    assert report.mode == "text" and report.errors == 0 and report.written == 2


def test_a_transient_probe_failure_is_retried_like_any_request(store):
    seen = set()

    def probe(request):
        key = "lp" if request.get("logprobs") else "js"
        if key not in seen:
            seen.add(key)
            return Reply(status=503, message="warming up")
        return '{"ok": true}'

    with OpenAIServer(_script(probe)) as server:
        report = judge(store, _config(server), JudgeOptions(limit=1))
        outcomes = [e.outcome for e in server.log if _is_probe(e.body)]
    assert report.mode == "logprobs" and sorted(outcomes) == ["503", "503", "ok", "ok"]


def test_a_server_that_answers_nothing_stops_the_job_with_one_line(store):
    with OpenAIServer(lambda request: Reply(status=503, message="down")) as server:
        with pytest.raises(AIError, match="cannot reach the server: HTTP 503: down"):
            judge(store, _config(server), JudgeOptions())
        assert server.stats()["requests"] == 3 * 2, "three requests (two probes, one plain), each tried twice"
