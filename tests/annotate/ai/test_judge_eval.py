"""Acceptance: `judge-eval` reports position consistency and agreement with people on the PandaLM votes,
judged by a scripted server whose behaviour (and so the right answer) the test knows."""

from collections import Counter
from pathlib import Path

import pytest

from annotate.agreement import cohen_kappa
from annotate.ai.cli import main as ai_main
from annotate.ai.engine import EngineConfig
from annotate.ai.evaluate import evaluate
from annotate.ai.judge import JudgeOptions, judge
from annotate.ai.templates import load, render_conversation
from annotate.ids import content_hash
from annotate.importers import import_files
from annotate.store import Store
from tests.support.openai_server import OpenAIServer, Reply

ROOT = Path(__file__).resolve().parents[3]
PANDALM = ROOT.parent / "shared/data/pandalm/testset-v1.json"
LIMIT = 120  # comparisons judged (240 requests): enough for every label, quick on 2 cores


def _human_majority(store):
    """(prompt, lo, hi) → 'lo' | 'hi' | 'tie', computed here from the imported votes."""
    votes = {}
    for row in store.read("judgements", "annotator_type = 'import'").to_pylist():
        a, b = row["response_ids"]
        lo, hi = sorted((a, b))
        sa = row["scores"][0] if a == lo else row["scores"][1]
        label = "tie" if row["scores"][0] == row["scores"][1] else ("lo" if sa > 0.5 else "hi")
        votes.setdefault((row["prompt_id"], lo, hi), []).append(label)
    out = {}
    for key, labels in votes.items():
        top = Counter(labels).most_common()
        out[key] = "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]
    return out


def _biased(key):
    return int(content_hash(list(key))[-1], 16) < 4  # about a quarter of comparisons: always answers "A"


@pytest.fixture(scope="module")
def pandalm(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pandalm") / "store")
    import_files(store, [PANDALM])
    return store


def test_judge_eval_on_pandalm(pandalm, tmp_path, capsys):
    store = pandalm
    truth = _human_majority(store)
    template = load("pairwise", "judge")
    prompts = {r["prompt_id"]: r["messages"] for r in store.read("prompts").to_pylist()}
    texts = {r["response_id"]: r["content"] for r in store.read("responses").to_pylist()}
    shown = {}
    for pid, lo, hi in truth:
        if lo == hi:
            continue
        for first, second in ((lo, hi), (hi, lo)):
            user = template.text(
                "user", question=render_conversation(prompts[pid]), response_a=texts[first], response_b=texts[second]
            )
            shown[user] = ((pid, lo, hi), first)

    def answer(request):
        key, first = shown[request["messages"][-1]["content"]]
        if _biased(key):
            return "A\nthe first one"
        label = truth[key]
        verdict = "tie" if label == "tie" else ("A" if (first == key[1]) == (label == "lo") else "B")
        return Reply(f"{verdict}\nreasons", top_logprobs={verdict: -0.1, "A" if verdict != "A" else "B": -2.5})

    with OpenAIServer(answer) as server:
        config = EngineConfig(model="scripted", base_url=server.base_url, concurrency=16, timeout=5, progress=False)
        report = judge(store, config, JudgeOptions(pairs="judged", limit=LIMIT, mode="logprobs"))
    assert report.errors == 0 and report.written == 2 * LIMIT

    result = evaluate(store, "ai:scripted:pairwise")
    con = store.connect()
    keys = {
        (pid, *sorted(ids))
        for pid, ids in con.execute(
            "SELECT prompt_id, response_ids FROM judgements WHERE annotator = 'ai:scripted:pairwise'"
        ).fetchall()
    }
    biased = [k for k in keys if _biased(k)]
    assert result.comparisons == result.both_orders == LIMIT
    assert result.position_consistency == pytest.approx(1 - len(biased) / LIMIT)
    expected_correct = (LIMIT - len(biased)) + sum(truth[k] == "tie" for k in biased)
    assert result.accuracy == pytest.approx(expected_correct / LIMIT)
    assert 0 < len(biased) < LIMIT and result.accuracy < 1
    assert result.cohen_kappa == pytest.approx(
        cohen_kappa([("tie" if _biased(k) else truth[k]) for k in sorted(keys)], [truth[k] for k in sorted(keys)])
    )

    assert ai_main(["judge-eval", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "position consistency" in out and "agreement with the human majority" in out
    assert f"{100 * result.position_consistency:.1f}%" in out


def test_cohen_kappa_known_values():
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    # p_o = 0.5, p_e = 0.5 → 0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    assert cohen_kappa([], []) is None
