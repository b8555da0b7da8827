"""Constitutional critique/revision and CLAIR minimal revisions against the loopback server."""

import json

from prefkit.annotate.ai.engine import EngineConfig
from prefkit.annotate.ai.revise import ReviseOptions, clair, critique

from tests.support.openai_server import OpenAIServer, Reply


def _config(server):
    return EngineConfig(
        model="rev-m", base_url=server.base_url, concurrency=4, timeout=5, progress=False, max_retries=1, backoff=0.01
    )


def test_critique_two_rounds_writes_chained_revisions(store):
    def answer(request):
        last = request["messages"][-1]["content"]
        previous = request["messages"][-4]["content"] if len(request["messages"]) >= 4 else ""
        if "Rewrite" in last:  # a revision request: the revised text grows by one marker per round
            return previous + " [revised]"
        return "It could be clearer."  # a critique

    with OpenAIServer(answer) as server:
        report = critique(store, _config(server), ReviseOptions(rounds=2, sampling=_sampling()))
        again = critique(store, _config(server), ReviseOptions(rounds=2, sampling=_sampling()))
        sent = server.stats()["requests"]
    assert report.revisions == 2 * 12 and report.errors == 0
    assert again.revisions == 0 and again.skipped == 12 and sent == 12 * 2 * 2, "a re-run asks for nothing"
    con = store.connect()
    rows = con.execute(
        "SELECT r.content, r.parent_id, j.response_ids, j.scores, j.principle, j.rationale, j.metadata "
        "FROM responses r JOIN judgements j ON j.response_ids[2] = r.response_id "
        "WHERE r.origin = 'critique_revision' AND j.kind = 'revision'"
    ).fetchall()
    assert len(rows) == 24
    names = {"helpful", "honest", "harmless", "respectful", "concise"}
    for content, parent, ids, scores, principle, rationale, metadata in rows:
        assert ids[0] == parent and scores == [0.0, 1.0] and principle in names
        assert rationale == "It could be clearer."
        assert content.count("[revised]") == json.loads(metadata)["round"], "round 2 revises round 1's revision"


def test_clair_accepts_minimal_rejects_rewrites_and_identical(store):
    def answer(request):
        text = request["messages"][1]["content"]  # the reviser's prompt (also in the repair request)
        original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        if "question 0" in original:
            return "<revision>totally different words here now</revision>"  # not minimal
        if "question 1" in original:
            return f"<revision>{original}</revision>"  # identical
        if "question 2" in original:
            return "I would change nothing."  # no revision field (the repair asks again, same answer)
        return f"Fix the number.<revision>{original.replace(': ', ': about ')}</revision>"

    with OpenAIServer(answer, response_format=False) as server:
        report = clair(store, _config(server), ReviseOptions(mode="text", sampling=_sampling()))
    assert (report.revisions, report.errors) == (3, 9)
    con = store.connect()
    errors = [e for (e,) in con.execute("SELECT error FROM judgements WHERE status = 'error'").fetchall()]
    assert sorted({e.split(":")[0] for e in errors}) == [
        "no revision field in the answer, also after one repair request",
        "not minimal",
        "revision identical to the original",
    ]
    (meta, ids, rationale), *_ = con.execute(
        "SELECT metadata, response_ids, rationale FROM judgements WHERE kind = 'revision' AND status = 'submitted'"
    ).fetchall()
    metrics = json.loads(meta)
    assert metrics["edit_distance"] == 1 and 0.5 < metrics["similarity"] < 1 and 0 < metrics["jaccard"] < 1
    assert rationale == "Fix the number."
    origin, parent = con.execute("SELECT origin, parent_id FROM responses WHERE response_id = ?", [ids[1]]).fetchone()
    assert origin == "clair_revision" and parent == ids[0]


def test_clair_verify_keeps_only_revisions_the_judge_prefers(store):
    def answer(request):
        text = request["messages"][-1]["content"]
        if "[Response to improve]" in text:
            original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
            return f"<revision>{original} (checked)</revision>"
        a = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
        if "question 3" in a:
            return "A"  # position bias: the verification fails for question 3's responses
        return "A" if "(checked)" in a else "B"

    with OpenAIServer(answer, logprobs=False, response_format=False) as server:
        report = clair(store, _config(server), ReviseOptions(verify=True, sampling=_sampling()))
    assert (report.revisions, report.errors) == (9, 3)
    con = store.connect()
    error, meta = con.execute("SELECT error, metadata FROM judgements WHERE status = 'error' LIMIT 1").fetchone()
    assert error.startswith("revision did not beat the original in both orders")
    assert json.loads(meta)["verification"] == {"original_first": "first", "revision_first": "first"}


def _sampling():
    from prefkit.annotate.ai.jobs import Sampling

    return Sampling(temperature=0.0, max_tokens=64)


def test_failed_critiques_and_revisions_are_tried_again_after_the_server_recovers(store):
    """The server answers 503 to every request about question 1 and 2, then recovers: the re-run
    revises exactly those responses, and asks for nothing it had an answer to."""
    state = {"down": True}

    def answer(request):
        text = " ".join(m["content"] for m in request["messages"])
        if state["down"] and ("question 1" in text or "question 2" in text):
            return Reply(status=503, message="overloaded")
        if "[Response to improve]" in text:
            original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
            return f"<revision>{original.replace(': ', ': about ')}</revision>"
        last = request["messages"][-1]["content"]
        if "Rewrite" in last:
            return request["messages"][-4]["content"] + " [revised]"
        return "It could be clearer."

    jobs = ((critique, ReviseOptions(rounds=2)), (clair, ReviseOptions(mode="text")))
    for n, (job, options) in enumerate(jobs, start=1):
        options.sampling = _sampling()
        state["down"] = True
        with OpenAIServer(answer) as server:
            first = job(store, _config(server), options)
            ok_before = server.counts(outcome="ok")
            state["down"] = False
            mark = server.mark()
            second = job(store, _config(server), options)
            resent = server.counts(since=mark)
            third = job(store, _config(server), options)
            last = server.counts(since=mark) - resent
        per_target = 2 * options.rounds
        assert (first.revisions, first.errors, first.skipped) == (6 * options.rounds, 6, 0), job.__name__
        assert (second.revisions, second.errors, second.skipped) == (6 * options.rounds, 0, 6), job.__name__
        assert not set(resent) & set(ok_before), "nothing that had an answer is sent again"
        assert sum(resent.values()) == 6 * (per_target if job is critique else 1) and set(resent.values()) == {1}
        assert (third.revisions, third.errors, third.skipped, sum(last.values())) == (0, 0, 12, 0)
        (errors,) = store.connect().execute("SELECT count(*) FROM judgements WHERE status = 'error'").fetchall()
        assert errors == (6 * n,), "the first run's failures stay on record, once each"
