"""Acceptance: `judge-eval` reports position consistency and agreement with people on the PandaLM votes,
judged by a scripted server whose behaviour (and so the right answer) the test knows."""

import itertools
import json
import random
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate.agreement import ONE_LABEL, cohen_kappa
from prefkit.annotate.ai.engine import EngineConfig
from prefkit.annotate.ai.evaluate import evaluate
from prefkit.annotate.ai.judge import JudgeOptions, judge
from prefkit.annotate.ai.templates import load, render_conversation
from prefkit.annotate.ids import content_hash
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store
from sklearn.calibration import calibration_curve
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import cohens_kappa as statsmodels_kappa
from statsmodels.stats.proportion import proportion_confint

from prefkit.cli.ai import main as ai_main
from tests.support.factories import pairwise, prompt, response
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

    # every figure again, from the stored rows by an independent re-computation
    expected = _recompute(store.root, "ai:scripted:pairwise")
    assert expected["both_orders"] == LIMIT and 0 < expected["position_consistency"] < 1
    _assert_matches(result, expected)

    assert ai_main(["judge-eval", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "position consistency" in out and "agreement with the human majority" in out
    assert f"{100 * result.position_consistency:.1f}%" in out


def test_cohen_kappa_known_values():
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    # p_o = 0.5, p_e = 0.5 → 0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    assert cohen_kappa([], []) is None


# --- an independent re-computation from the store's Parquet rows ----------------------------------


def _parquet(root, table: str) -> pd.DataFrame:
    files = sorted(Path(root).glob(f"{table}/*/*.parquet"))
    return pa.concat_tables(pq.read_table(f) for f in files).to_pandas()


def _vote_majority(labels: list[str]) -> str:
    top = Counter(labels).most_common()
    return "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]


def _recompute(root, judge: str, reference=("human", "import", "adjudicator")) -> dict:
    """judge-eval's figures from the rows as stored, written without the module's code or SQL."""
    j = _parquet(root, "judgements")
    j = j[(j.kind == "pairwise") & (j.status == "submitted") & (j.aspect == "overall")].copy()
    j["lo"] = j.response_ids.map(min)
    j["hi"] = j.response_ids.map(max)
    j["label"] = [
        "tie" if s[0] == s[1] else ("lo" if (s[0] > s[1]) == (r[0] == min(r)) else "hi")
        for s, r in zip(j.scores, j.response_ids, strict=True)
    ]
    meta = j.metadata.map(json.loads)
    j["order"] = meta.map(lambda m: m.get("order", "ab"))
    j["sample"] = meta.map(lambda m: str(m.get("sample", 0)))
    lengths = dict(zip(*_parquet(root, "responses")[["response_id", "content"]].T.values, strict=True))
    lengths = {k: len(v) for k, v in lengths.items()}

    people = j[(j.annotator != judge) & j.annotator_type.isin(reference)].sort_values(["created_at", "judgement_id"])
    revoters = people.annotator_type.isin(["human", "adjudicator"])
    people = pd.concat([people[revoters].groupby(["prompt_id", "lo", "hi", "annotator"]).tail(1), people[~revoters]])
    human = {key: _vote_majority(list(g)) for key, g in people.groupby(["prompt_id", "lo", "hi"])["label"]}

    ai = j[j.annotator == judge]
    orders = {
        key: dict(zip(g.order, g.label, strict=True)) for key, g in ai.groupby(["prompt_id", "lo", "hi", "sample"])
    }
    verdict = {
        key: (o.popitem()[1] if len(set(o.values())) == 1 else "tie")
        for key, o in ((k, dict(v)) for k, v in orders.items())
    }
    shared = [(v, human[key[:3]]) for key, v in verdict.items() if key[:3] in human]
    both = [o for o in orders.values() if len(o) == 2]
    decisive_ai = ai[ai.label != "tie"]
    first = [
        (lab == "lo") == (ids[0] == lo)
        for lab, ids, lo in zip(decisive_ai.label, decisive_ai.response_ids, decisive_ai.lo, strict=True)
    ]

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    def longer(items):
        return mean(
            [
                (lab == "lo") == (lengths[lo] > lengths[hi])
                for (lo, hi), lab in items
                if lab != "tie" and lengths[lo] != lengths[hi]
            ]
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score([v for v, _ in shared], [h for _, h in shared])) if shared else float("nan")
    hits = sum(v == h for v, h in shared)
    # calibration: each AI row's confidence against "people preferred the first shown", decisive majorities only
    rated = [
        (c, (human[(pid, lo, hi)] == "lo") == (ids[0] == lo))
        for pid, lo, hi, ids, c in zip(ai.prompt_id, ai.lo, ai.hi, ai.response_ids, ai.confidence, strict=True)
        if c is not None and not pd.isna(c) and human.get((pid, lo, hi), "tie") != "tie"
    ]
    table = _reliability_reference(np.array([c for c, _ in rated]), np.array([y for _, y in rated]))
    return {
        "comparisons": len(shared),
        "accuracy": mean([v == h for v, h in shared]),
        "accuracy_decisive": mean([v == h for v, h in shared if h != "tie"]),
        "cohen_kappa": None if np.isnan(kappa) else kappa,
        "both_orders": len(both),
        "position_consistency": mean([o["ab"] == o["ba"] for o in both]),
        "first_position_rate": mean(first),
        "judge_longer_rate": longer([(k[1:3], v) for k, v in verdict.items()]),
        "human_longer_rate": longer([(k[1:], v) for k, v in human.items()]),
        "human_pairs": len(human),
        "accuracy_ci": list(proportion_confint(hits, len(shared), method="wilson")) if shared else None,
        "cohen_kappa_ci": _kappa_ci_reference([v for v, _ in shared], [h for _, h in shared]),
        "confusion": {
            v: {h: sum(1 for x, y in shared if (x, y) == (v, h)) for h in ("lo", "hi", "tie")}
            for v in ("lo", "hi", "tie")
        },
        "calibrated": len(rated),
        "ece": _ece_reference(table),
        "reliability": table,
        "disagreements": sorted(
            [k[0], k[1], k[2]]
            for k in {key[:3] for key, v in verdict.items() if key[:3] in human and v != human[key[:3]]}
        ),
    }


def _kappa_ci_reference(a: list, b: list) -> list[float] | None:
    """statsmodels' κ and its asymptotic 95 % interval (None where κ is undefined: NaN there)."""
    if not a:
        return None
    labels = sorted(set(a) | set(b))
    table = pd.crosstab(pd.Categorical(a, labels), pd.Categorical(b, labels), dropna=False).to_numpy()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = statsmodels_kappa(table)
    if np.isnan(res.kappa):
        return None
    return [res.kappa_low, res.kappa_upp]


def _reliability_reference(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """The bins by a direct loop (k/10 < p ≤ (k+1)/10, p = 0 in the first), checked against sklearn's
    calibration_curve on the non-empty ones."""
    out = []
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        inside = (p > low) & (p <= high) | ((p == 0) & (k == 0))
        n = int(inside.sum())
        out.append(
            {
                "low": low,
                "high": high,
                "count": n,
                "confidence": float(p[inside].mean()) if n else None,
                "observed": float(y[inside].mean()) if n else None,
            }
        )
    if len(p) and len(set(y.tolist())) == 2:  # sklearn needs both outcomes present
        observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        full = [b for b in out if b["count"]]
        assert np.allclose(observed, [b["observed"] for b in full]) and np.allclose(
            predicted, [b["confidence"] for b in full]
        )
    assert sum(b["count"] for b in out) == len(p)
    return out


def _ece_reference(table: list[dict]) -> float | None:
    n = sum(b["count"] for b in table)
    if not n:
        return None
    return float(np.sum([b["count"] / n * abs(b["confidence"] - b["observed"]) for b in table if b["count"]]))


def _assert_matches(result, expected: dict) -> None:
    got = result if isinstance(result, dict) else result.as_dict()
    for name, value in expected.items():
        _assert_close(got[name], value, name)


def _assert_close(got, value, name: str) -> None:
    """Equal, numbers within 1e-9, through lists and dicts."""
    if isinstance(value, dict):
        assert isinstance(got, dict) and set(got) == set(value), name
        for k in value:
            _assert_close(got[k], value[k], f"{name}.{k}")
    elif isinstance(value, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(value), name
        for i, (g, v) in enumerate(zip(got, value, strict=True)):
            _assert_close(g, v, f"{name}[{i}]")
    elif value is None or isinstance(value, int | str | bool):
        assert got == value, name
    else:
        assert got == pytest.approx(value, abs=1e-9), name


def test_an_imported_judge_is_not_its_own_reference(tmp_path, capsys):
    """300 unique comparisons, three people and a judge whose verdicts were imported beside theirs
    (annotator4): the judge's vote must not join the human majority it is measured against."""
    rng = random.Random(14)
    records = []
    for i in range(300):
        truth = rng.choice([1, 2, 2, 0])
        people = [truth if rng.random() < 0.7 else rng.choice([0, 1, 2]) for _ in range(3)]
        judge_vote = truth if rng.random() < 0.6 else rng.choice([0, 1, 2])
        records.append(
            {
                "instruction": f"Question {i}: name a number above {i}.",
                "response1": f"{i + 1}",
                "response2": f"It is {i + 2}, because {i + 2} > {i}.",
                **{f"annotator{k + 1}": v for k, v in enumerate([*people, judge_vote])},
            }
        )
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = Store(tmp_path / "store")
    import_files(store, [path], source="mtb")
    judge_name = "mtb:annotator4"

    assert ai_main(["judge-eval", "--store", str(store.root), "--judge", judge_name, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    expected = _recompute(store.root, judge_name)
    assert expected["comparisons"] == expected["human_pairs"] == 300
    _assert_matches(result, expected)
    # the old figure, the majority of all four votes (the judge counted as a person), is another one
    assert result["accuracy"] != pytest.approx(_accuracy_against(store.root, judge_name, include_judge=True))


def _accuracy_against(root, judge: str, include_judge: bool) -> float:
    j = _parquet(root, "judgements")
    votes: dict[tuple, list[str]] = {}
    mine: dict[tuple, str] = {}
    for ids, scores, who, pid in zip(j.response_ids, j.scores, j.annotator, j.prompt_id, strict=True):
        key = (pid, *sorted(ids))
        label = "tie" if scores[0] == scores[1] else ("lo" if (scores[0] > scores[1]) == (ids[0] == min(ids)) else "hi")
        if who == judge:
            mine[key] = label
        if who != judge or include_judge:
            votes.setdefault(key, []).append(label)
    return sum(mine[k] == _vote_majority(v) for k, v in votes.items()) / len(votes)


def test_judge_eval_matches_a_recomputation_from_the_parquet_rows(tmp_path):
    """Random stores: people who re-vote (some at the same instant), answer per-aspect questions, an
    adjudicator, imported voters; an AI judge that saw some comparisons in one order, some in both,
    some twice (samples), and a second AI judge that must not be mixed in."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for seed in range(4):
        rng = random.Random(seed)
        store = Store(tmp_path / f"store{seed}")
        prompts = [prompt(f"Question {seed}.{i}") for i in range(30)]
        store.append("prompts", prompts)
        answers = {p.prompt_id: [response(p, "x" * rng.randint(1, 6) + f" {k}") for k in range(3)] for p in prompts}
        store.append("responses", [r for rs in answers.values() for r in rs])
        rows = []
        for p in prompts:
            for a, b in itertools.combinations(answers[p.prompt_id], 2):
                lean = rng.random()
                if rng.random() < 0.8:
                    for who, kind in rng.sample(
                        [
                            ("alice", "human"),
                            ("bob", "human"),
                            ("src:annotator1", "import"),
                            ("src:annotator2", "import"),
                            ("rita", "adjudicator"),
                        ],
                        rng.randint(1, 5),
                    ):
                        for _ in range(rng.choice([1, 1, 2])):
                            shown = (a, b) if rng.random() < 0.5 else (b, a)
                            at = t0 + timedelta(seconds=rng.randint(0, 2))
                            winner = -1 if rng.random() < 0.2 else int(rng.random() < lean)
                            rows.append(
                                pairwise(p, *shown, winner=winner, annotator=who, annotator_type=kind, created_at=at)
                            )
                    rows.append(pairwise(p, a, b, winner=0, annotator="alice", aspect="helpfulness"))
                for judge_name in ("ai:m:pairwise", "ai:other:pairwise"):
                    lo, hi = sorted((a, b), key=lambda r: r.response_id)
                    for sample in range(rng.choice([1, 1, 2])):
                        for order in rng.choice([("ab", "ba"), ("ab", "ba"), ("ab",)]):
                            shown = (lo, hi) if order == "ab" else (hi, lo)
                            winner = (
                                0 if rng.random() < 0.3 else (-1 if rng.random() < 0.1 else int(rng.random() < lean))
                            )
                            meta = json.dumps({"order": order, "sample": sample, "order_key": f"{p.prompt_id}{sample}"})
                            confidence = rng.choice([None, rng.random(), rng.random(), 1.0, 0.0, 0.5, 0.3])
                            rows.append(
                                pairwise(
                                    p,
                                    *shown,
                                    winner=winner,
                                    annotator=judge_name,
                                    annotator_type="ai",
                                    metadata=meta,
                                    confidence=confidence,
                                )
                            )
        store.append("judgements", rows)
        expected = _recompute(store.root, "ai:m:pairwise")
        assert expected["both_orders"] > 0 and expected["comparisons"] > 0
        assert expected["calibrated"] > 20 and expected["ece"] > 0 and expected["disagreements"]
        _assert_matches(evaluate(store, "ai:m:pairwise"), expected)
        _assert_matches(
            evaluate(store, "ai:m:pairwise", ("import",)), _recompute(store.root, "ai:m:pairwise", ("import",))
        )


def test_undefined_kappa_is_none_and_says_why(tmp_path, capsys):
    """Every label the same: κ is 0/0, None (not 1.0) and the report says why."""
    store = Store(tmp_path / "store")
    p = prompt("Which is better?")
    a, b = response(p, "one"), response(p, "two")
    store.append("prompts", [p])
    store.append("responses", [a, b])
    lo, hi = sorted((a, b), key=lambda r: r.response_id)
    meta = [json.dumps({"order": o, "sample": 0}) for o in ("ab", "ba")]
    store.append(
        "judgements",
        [
            pairwise(p, lo, hi, winner=0, annotator="ai:m:pairwise", annotator_type="ai", metadata=meta[0]),
            pairwise(p, hi, lo, winner=1, annotator="ai:m:pairwise", annotator_type="ai", metadata=meta[1]),
            pairwise(p, lo, hi, winner=0, annotator="alice"),
        ],
    )
    result = evaluate(store, "ai:m:pairwise")
    assert result.accuracy == 1.0 and result.cohen_kappa is None
    assert ai_main(["judge-eval", "--store", str(store.root)]) == 0
    assert f"Cohen's kappa — ({ONE_LABEL})" in capsys.readouterr().out


def test_a_store_without_ai_judges_is_a_one_line_error(tmp_path, capsys):
    store = Store(tmp_path / "store")
    store.append("prompts", [prompt("p")])
    assert ai_main(["judge-eval", "--store", str(store.root)]) == 1
    err = capsys.readouterr().err
    assert err == "prefkit judge-eval: error: no AI pairwise judgements in the store: run `prefkit judge` first\n"


# --- the interval and calibration functions against statsmodels, sklearn and a direct loop ---------


def test_wilson_interval_matches_statsmodels():
    from prefkit.annotate.ai.judge_stats import wilson_interval

    rng = random.Random(3)
    cases = [(0, 1), (1, 1), (0, 40), (40, 40), (1, 2), (17, 37)] + [
        (k, n) for n in (rng.randint(1, 500) for _ in range(200)) for k in [rng.randint(0, n)]
    ]
    for k, n in cases:
        low, high = wilson_interval(k, n)
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (low, high) == pytest.approx(ref, abs=1e-12), (k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
    assert wilson_interval(0, 0) is None


def test_kappa_interval_matches_statsmodels():
    from prefkit.annotate.ai.judge_stats import kappa_interval

    rng = random.Random(4)
    cases = [
        (["lo", "hi", "tie", "lo"], ["lo", "hi", "tie", "lo"]),  # perfect: zero width
        (["lo"] * 5 + ["hi"], ["lo"] * 6),  # one rater constant
        (["lo", "hi"], ["hi", "lo"]),  # perfect disagreement
    ]
    for _ in range(200):
        n = rng.randint(2, 120)
        a = [rng.choice("abc") for _ in range(n)]
        b = [x if rng.random() < rng.random() else rng.choice("abc") for x in a]
        cases.append((a, b))
    for a, b in cases:
        got = kappa_interval(a, b)
        ref = _kappa_ci_reference(a, b)
        assert got[0] == pytest.approx(cohen_kappa(a, b), abs=1e-12)
        # 1e-7: where the variance is zero, rounding leaves ~1e-15 whose square root is ~1e-8
        assert list(got[1:]) == pytest.approx(ref, abs=1e-7), (a, b)
        assert got[1] <= got[0] <= got[2]
    assert kappa_interval(["x"] * 4, ["x"] * 4) is None and _kappa_ci_reference(["x"] * 4, ["x"] * 4) is None
    assert kappa_interval([], []) is None


@pytest.mark.parametrize(
    "case",
    ["random", "all confident", "one bin", "empty bins", "edges", "one outcome", "nothing"],
)
def test_reliability_and_ece_match_sklearn_and_a_direct_loop(case):
    from prefkit.annotate.ai.judge_stats import expected_calibration_error, reliability

    rng = np.random.default_rng(len(case))
    p = {
        "random": rng.random(500),
        "all confident": np.ones(40),
        "one bin": rng.uniform(0.41, 0.49, 30),
        "empty bins": np.concatenate([rng.uniform(0, 0.1, 20), rng.uniform(0.9, 1.0, 20)]),
        "edges": np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] * 3),
        "one outcome": rng.random(25),
        "nothing": np.array([]),
    }[case]
    y = rng.random(len(p)) < p if case not in ("all confident", "one outcome") else np.arange(len(p)) % 3 == 0
    if case == "one outcome":
        y = np.ones(len(p), bool)
    table = reliability(p.tolist(), y.tolist())
    expected = _reliability_reference(p, y)  # also checks the bins against sklearn's calibration_curve
    _assert_close(table, expected, case)
    ece = expected_calibration_error(table)
    _assert_close(ece, _ece_reference(expected), case)
    if case == "all confident":  # one bin, the last: ECE = 1 − share of true outcomes
        assert [b["count"] for b in table] == [0] * 9 + [40] and ece == pytest.approx(1 - y.mean())
    if case == "empty bins":
        assert [b["count"] for b in table][1:9] == [0] * 8
    if case == "nothing":
        assert ece is None and all(b["count"] == 0 for b in table)


def test_reliability_refuses_a_probability_outside_0_1():
    from prefkit.annotate.ai.judge_stats import reliability

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability([0.2, 1.5], [True, False])


def test_judge_eval_on_the_demo_store_matches_the_recomputation(capsys):
    """The bundled demo's judge: every figure defined, and equal to the independent re-computation."""
    demo = ROOT / "data" / "demo"
    assert ai_main(["judge-eval", "--store", str(demo), "--json"]) == 0
    # the demo's AI judge; its other AI annotator is a recorded training run's score-pairs rows
    results = {r["judge"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(results) == {"ai:simulated-judge:pairwise", "ai:dpo-recorded:implicit-reward"}
    result = results["ai:simulated-judge:pairwise"]
    expected = _recompute(demo, result["judge"])
    _assert_matches(result, expected)
    assert result["cohen_kappa_ci"] and result["accuracy_ci"] and result["ece"] is not None
    assert result["calibrated"] > 30 and result["disagreements"] and result["both_orders"] > 30
    assert ai_main(["judge-eval", "--store", str(demo)]) == 0
    out = capsys.readouterr().out
    assert f"expected calibration error {result['ece']:.3f}" in out and "95% CI" in out
