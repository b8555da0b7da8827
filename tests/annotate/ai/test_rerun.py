"""Every AI job kind against a loopback server that fails some requests on the first run (HTTP 503 on
every attempt) and then recovers. Counted on the server, by request body: the re-run sends exactly
the requests that had failed (and those only they lead to, such as the revision after a failed
critique), sends nothing that had been answered, and leaves the store as one clean run would."""

import re

import pytest
from prefkit.annotate.ai.engine import EngineConfig
from prefkit.annotate.ai.generate import GenerateOptions, generate
from prefkit.annotate.ai.jobs import Sampling
from prefkit.annotate.ai.judge import JudgeOptions, judge
from prefkit.annotate.ai.revise import ReviseOptions, clair, critique
from prefkit.annotate.ids import request_id
from prefkit.annotate.store import Store

from tests.annotate.ai.conftest import fill
from tests.support.openai_server import OpenAIServer, Reply


def _answer(request):
    """One script for every kind of request the jobs send."""
    messages = request["messages"]
    last = messages[-1]["content"]
    if "[Response to improve]" in last:  # CLAIR
        original = last.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        return f"Say it plainly.<revision>{original.replace(': ', ': about ')}</revision>"
    if "[Response A]" in last:  # pairwise (also CLAIR's verification): the revision, else the lower answer
        a = last.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
        b = last.split("[Response B]\n")[1].split("\n")[0]
        verdict = "A" if "about" in a or ("about" not in b and a < b) else "B"
        return Reply(f"{verdict}\nclearer", top_logprobs={verdict: -0.1, "AB".replace(verdict, ""): -2.5})
    if "[Response 1]" in last:  # listwise
        n = len(re.findall(r"\[Response \d+\]", last))
        return " > ".join(str(k) for k in range(1, n + 1)) + "\nin the order shown"
    if "[Response]" in last:  # rubric
        return f"Fair.\nScore: {2 + request['seed'] % 3}"
    if "Rewrite" in last:  # a critique's revision
        return messages[-4]["content"] + " [revised]"
    if len(messages) >= 3:  # a critique
        return "It could be clearer."
    return f"Generated answer {request['seed']} to: {last}"  # generate


KINDS = {
    "generate": lambda s, c: generate(s, c, GenerateOptions(n=2, sampling=Sampling(max_tokens=32))),
    "judge-pairwise": lambda s, c: judge(s, c, JudgeOptions(mode="logprobs")),
    "judge-rubric": lambda s, c: judge(
        s, c, JudgeOptions(method="rubric", template="self_rewarding", samples=3, mode="text")
    ),
    "judge-listwise": lambda s, c: judge(s, c, JudgeOptions(method="listwise", samples=2, mode="text")),
    "judge-ranking": lambda s, c: judge(s, c, JudgeOptions(method="ranking", mode="text")),
    "critique": lambda s, c: critique(s, c, ReviseOptions(rounds=2, sampling=Sampling(max_tokens=64))),
    "clair": lambda s, c: clair(s, c, ReviseOptions(mode="text", sampling=Sampling(max_tokens=64))),
    "clair-verify": lambda s, c: clair(s, c, ReviseOptions(mode="text", verify=True, sampling=Sampling(max_tokens=64))),
}


def _config(server):
    return EngineConfig(
        model="rerun-m", base_url=server.base_url, concurrency=4, timeout=5, progress=False, max_retries=1, backoff=0.01
    )


def _rows(store):
    con = store.connect()
    try:
        judgements = con.execute("SELECT judgement_id, status FROM judgements").fetchall()
        responses = [r for (r,) in con.execute("SELECT response_id FROM responses").fetchall()]
    finally:
        con.close()
    submitted = [j for j, status in judgements if status == "submitted"]
    return submitted, responses, sum(1 for _, status in judgements if status == "error")


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_rerun_retries_exactly_the_failed_requests(kind, tmp_path):
    job = KINDS[kind]

    # What one clean run sends and writes: the reference.
    clean = fill(Store(tmp_path / "clean"), prompts=3, responses=3)
    with OpenAIServer(_answer) as server:
        job(clean, _config(server))
        everything = set(server.counts())
    assert all(server.counts(outcome="ok").values()), "the clean run's requests all succeed"
    clean_submitted, clean_responses, _ = _rows(clean)

    # A server that fails about a third of the requests, chosen by body, on every attempt; then recovers.
    state = {"down": True}

    def flaky(request):
        if state["down"] and int(request_id(request)[:8], 16) % 3 == 0:
            return Reply(status=503, message="overloaded")
        return _answer(request)

    store = fill(Store(tmp_path / "flaky"), prompts=3, responses=3)
    with OpenAIServer(flaky) as server:
        job(store, _config(server))
        answered, failed = set(server.counts(outcome="ok")), set(server.counts(outcome="503"))
        assert answered and failed, "the first run has successes and failures"
        assert all(n == 2 for n in server.counts(outcome="503").values()), "each failure was retried once"
        _, _, errors = _rows(store)
        state["down"] = False
        second_mark = server.mark()
        job(store, _config(server))
        resent = server.counts(since=second_mark)
        third_mark = server.mark()
        job(store, _config(server))
        third = server.counts(since=third_mark)

    assert not set(resent) & answered, "nothing that had been answered is sent again"
    assert failed <= set(resent), "every failed request is tried again"
    assert answered | set(resent) == everything, "the two runs together sent what one clean run sends"
    assert set(resent.values()) == {1}, "the recovered server is asked each thing once"
    assert sum(third.values()) == 0, "a third run has nothing left to ask"
    submitted, responses, _ = _rows(store)
    assert sorted(submitted) == sorted(clean_submitted), "the same judgements as a clean run, each once"
    assert sorted(responses) == sorted(clean_responses), "the same responses as a clean run, each once"
    assert kind == "generate" or errors > 0, "the first run's failures were recorded as error rows"
