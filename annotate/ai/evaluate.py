"""`prefkit judge-eval`: how well an AI judge agrees with the people who judged the same pairs.

Every pairwise judgement is turned into a label for its comparison in one fixed orientation (the pair's
response ids sorted: `lo`, `hi`): `lo` won, `hi` won, or `tie`. For the judge, the two orders of one
comparison are combined as FastChat's MT-bench does: the same label in both orders is the verdict, a
disagreement counts as a tie. People's labels are combined by majority (an even split is a tie). The
judge is never among the people, whatever its annotator type (imported judge verdicts are `import`
rows), and each person counts once per comparison: a re-vote replaces the earlier vote, as curation's
`latest_human_vote` does. Only the `overall` aspect is compared (the app stores per-aspect answers as
extra rows by the same person).

Reported: accuracy against the human majority (all comparisons, and those people did not call a tie)
with its 95 % Wilson interval, Cohen's κ over the three labels (`prefkit.annotate.agreement`; None when
undefined) with its 95 % large-sample interval (analytic, `judge_stats.kappa_interval`), the confusion
matrix (judge's verdict × human majority, in the `lo`/`hi`/`tie` frame), position consistency (share of
comparisons judged the same in both orders) and which position the judge favours when it is
inconsistent, length bias (how often the longer response wins a decisive verdict, for the judge and
for people), and calibration: each single-order verdict's `confidence` (P(the first shown wins), from
the first token's logprobs) against whether the human majority preferred the first shown, on
comparisons people did not call a tie, as a reliability table and its expected calibration error (10
equal-width bins weighted by count: `judge_stats`). The comparisons where the verdict and the human
majority differ are listed (`disagreements`) for the Review queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from prefkit.annotate.agreement import ONE_LABEL, cohen_kappa, latest_vote_sql
from prefkit.annotate.ai import judge_stats
from prefkit.annotate.ai.engine import AIError
from prefkit.annotate.store import Store

LABELS = ("lo", "hi", "tie")
REFERENCE_TYPES = ("human", "import", "adjudicator")

_LABELLED = f"""
SELECT j.prompt_id, list_sort(j.response_ids) AS pair, j.annotator, j.annotator_type,
       coalesce(json_extract_string(j.metadata, '$.order'), 'ab') AS ord,
       coalesce(json_extract_string(j.metadata, '$.sample'), '0') AS sample,
       CASE WHEN j.scores[1] = j.scores[2] THEN 'tie'
            WHEN (j.scores[1] > j.scores[2]) = (j.response_ids[1] = list_sort(j.response_ids)[1]) THEN 'lo'
            ELSE 'hi' END AS label,
       j.response_ids[1] = list_sort(j.response_ids)[1] AS lo_first, j.confidence
FROM judgements j
WHERE j.kind = 'pairwise' AND j.status = 'submitted' AND j.aspect = 'overall'
  AND len(j.response_ids) = 2 AND len(j.scores) = 2
QUALIFY {latest_vote_sql("j.prompt_id, list_sort(j.response_ids)")}
"""


@dataclass
class JudgeEval:
    judge: str
    comparisons: int  # judged by the AI and by at least one person
    accuracy: float | None  # judge's combined verdict == human majority (ties included)
    accuracy_decisive: float | None  # the same, on comparisons people did not call a tie
    cohen_kappa: float | None
    both_orders: int  # comparisons the judge saw in both orders
    position_consistency: float | None  # same verdict in both orders
    first_position_rate: float | None  # of decisive single-order verdicts, share picking the first shown
    judge_longer_rate: float | None  # of the judge's decisive verdicts on unequal lengths, share picking the longer
    human_longer_rate: float | None  # the same for the human majority
    human_pairs: int  # comparisons people judged at all
    accuracy_ci: list[float] | None = None  # 95 % Wilson interval of `accuracy`
    cohen_kappa_ci: list[float] | None = None  # 95 % large-sample interval of `cohen_kappa`
    confusion: dict[str, dict[str, int]] | None = None  # judge's verdict → human majority → comparisons
    calibrated: int = 0  # single-order verdicts with a confidence, on comparisons with a decisive majority
    ece: float | None = None  # expected calibration error of those confidences (10 equal-width bins)
    reliability: list[dict] | None = None  # the bins: low, high, count, confidence, observed
    disagreements: list[list[str]] | None = None  # [prompt_id, lo, hi] where verdict ≠ human majority

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def majority(labels: list[str]) -> str:
    counts = Counter(labels).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"
    return counts[0][0]


def combine_orders(by_order: dict[str, str]) -> str:
    """The judge's verdict for one comparison: agreeing orders give their label, disagreeing ones a tie."""
    labels = set(by_order.values())
    return labels.pop() if len(labels) == 1 else "tie"


def judges(store: Store) -> list[str]:
    con = store.connect()
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT annotator FROM judgements WHERE annotator_type = 'ai' AND kind = 'pairwise' ORDER BY 1"
            ).fetchall()
        ]
    finally:
        con.close()


def evaluate(store: Store, judge: str, reference: tuple[str, ...] = REFERENCE_TYPES) -> JudgeEval:
    """Compare `judge` (an annotator name, `ai:<model>:<template>`) with the reference annotators."""
    con = store.connect()
    try:
        con.execute(f"CREATE TEMP TABLE labelled AS {_LABELLED}")
        ai = con.execute(
            "SELECT prompt_id, pair, sample, ord, label, lo_first, confidence FROM labelled WHERE annotator = ?",
            [judge],
        ).fetchall()
        people = con.execute(
            # The judge is not its own reference, even when its verdicts were imported as people's are.
            f"SELECT prompt_id, pair, label FROM labelled WHERE annotator <> ? "
            f"AND annotator_type IN ({', '.join('?' * len(reference))})",
            [judge, *reference],
        ).fetchall()
        lengths = dict(con.execute("SELECT response_id, length(content) FROM responses").fetchall())
    finally:
        con.close()
    if not ai:
        raise AIError(f"no submitted pairwise judgements by {judge!r} in the store; judges there: {judges(store)}")

    human: dict[tuple, list[str]] = {}
    for pid, pair, label in people:
        human.setdefault((pid, tuple(pair)), []).append(label)
    judged: dict[tuple, dict[str, str]] = {}
    first_pick = []
    calibration: list[tuple[float, bool]] = []  # (P(first shown wins), people preferred the first shown)
    for pid, pair, sample, order, label, lo_first, confidence in ai:
        judged.setdefault((pid, tuple(pair), sample), {})[order] = label
        if label != "tie":
            first_pick.append((label == "lo") == lo_first)
        people_say = majority(human[(pid, tuple(pair))]) if (pid, tuple(pair)) in human else "tie"
        if confidence is not None and people_say != "tie":
            calibration.append((confidence, (people_say == "lo") == lo_first))

    verdicts = {key: combine_orders(orders) for key, orders in judged.items()}
    both = [orders for orders in judged.values() if len(orders) == 2]
    shared = [(v, majority(human[key[:2]])) for key, v in verdicts.items() if key[:2] in human]
    decisive = [(v, h) for v, h in shared if h != "tie"]
    disputed = sorted({key[:2] for key, v in verdicts.items() if key[:2] in human and v != majority(human[key[:2]])})
    kappa = judge_stats.kappa_interval([v for v, _ in shared], [h for _, h in shared])
    agreeing = judge_stats.wilson_interval(sum(v == h for v, h in shared), len(shared))
    table = judge_stats.reliability([p for p, _ in calibration], [y for _, y in calibration])

    def longer_rate(pairs_labels: list[tuple[tuple, str]]) -> float | None:
        picks = []
        for pair, label in pairs_labels:
            lo, hi = (lengths.get(r, 0) for r in pair)
            if label != "tie" and lo != hi:
                picks.append((label == "lo") == (lo > hi))
        return _mean(picks)

    return JudgeEval(
        judge=judge,
        comparisons=len(shared),
        accuracy=_mean([v == h for v, h in shared]),
        accuracy_decisive=_mean([v == h for v, h in decisive]),
        cohen_kappa=cohen_kappa([v for v, _ in shared], [h for _, h in shared]),
        both_orders=len(both),
        position_consistency=_mean([o["ab"] == o["ba"] for o in both]),
        first_position_rate=_mean(first_pick),
        judge_longer_rate=longer_rate([(key[1], v) for key, v in verdicts.items()]),
        human_longer_rate=longer_rate([(key[1], majority(labels)) for key, labels in human.items()]),
        human_pairs=len(human),
        accuracy_ci=list(agreeing) if agreeing else None,
        cohen_kappa_ci=list(kappa[1:]) if kappa else None,
        confusion={v: {h: sum(1 for x, y in shared if (x, y) == (v, h)) for h in LABELS} for v in LABELS},
        calibrated=len(calibration),
        ece=judge_stats.expected_calibration_error(table),
        reliability=table,
        disagreements=[[pid, *pair] for pid, pair in disputed],
    )


def evaluate_judges(
    store: Store, judge: str | None = None, reference: tuple[str, ...] = REFERENCE_TYPES
) -> list[JudgeEval]:
    """`prefkit judge-eval`: `judge`, else every AI pairwise judge in the store, against the people."""
    names = [judge] if judge else judges(store)
    if not names:
        raise AIError("no AI pairwise judgements in the store: run `prefkit judge` first")
    return [evaluate(store, name, reference) for name in names]


def _mean(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def format_eval(result: JudgeEval) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    def interval(ci: list[float] | None, fmt) -> str:
        return f" (95% CI {fmt(ci[0])} to {fmt(ci[1])})" if ci else ""

    if result.cohen_kappa is not None:
        kappa = f"{result.cohen_kappa:.3f}" + interval(result.cohen_kappa_ci, lambda x: f"{x:.3f}")
    else:  # undefined: say why rather than print a number (docs/annotating.md)
        kappa = f"— ({ONE_LABEL})" if result.comparisons else "— (no comparison judged by both)"
    confusion = result.confusion or {}
    rows = [f"  judge {v:<4} " + " ".join(f"{confusion.get(v, {}).get(h, 0):>5}" for h in LABELS) for v in LABELS]
    ece = "—" if result.ece is None else f"{result.ece:.3f}"
    return "\n".join(
        [
            f"judge: {result.judge}",
            f"comparisons judged by the AI and by people: {result.comparisons} (people judged {result.human_pairs})",
            f"agreement with the human majority: {pct(result.accuracy)}{interval(result.accuracy_ci, pct)} "
            f"(decisive human verdicts only: {pct(result.accuracy_decisive)}), Cohen's kappa {kappa}",
            "verdicts (rows: judge; columns: human majority; lo/hi: the pair's responses in id order):",
            "             " + " ".join(f"{h:>5}" for h in LABELS),
            *rows,
            f"position consistency: {pct(result.position_consistency)} of {result.both_orders} comparisons judged in "
            f"both orders; the first-shown response wins {pct(result.first_position_rate)} of decisive verdicts",
            f"length bias: the longer response wins {pct(result.judge_longer_rate)} of the judge's decisive verdicts, "
            f"{pct(result.human_longer_rate)} of people's",
            f"calibration: expected calibration error {ece} over {result.calibrated} verdicts with a confidence "
            "(10 equal-width bins, weighted by count)",
            f"disagreements with the human majority: {len(result.disagreements or [])} comparisons",
        ]
    )
