"""Agreement and bias measures for the dashboard and the review queue (pure functions over pandas).

Pairwise labels are put in a canonical frame first: for an item with responses sorted by id, a
judgement's label is `first`, `second` (which of the two won) or `tie`, whatever order it was shown
in. Each person counts once per item: a re-vote replaces the earlier vote (latest created_at, then
judgement_id), as curation's `latest_human_vote` does. Agreement is computed on those labels:

- percent agreement, Cohen's κ (two annotators), Fleiss' κ (any number per item) and Krippendorff's
  α (nominal), all from `prefkit.annotate.agreement` (None where undefined; `undefined_reason` says why);
- position bias: among non-tied human judgements, how often the left (first shown) response won;
- length bias: how often the longer response won.
"""

from __future__ import annotations

from collections import Counter

import duckdb
import pandas as pd
from prefkit.annotate import agreement
from prefkit.annotate.agreement import cohen_kappa

# People's labels: those made in the app and those imported from human-labelled datasets.
HUMAN = ("human", "import")

PAIRWISE_SQL = """
SELECT j.judgement_id, j.prompt_id, j.annotator, j.annotator_type, j.response_ids, j.created_at,
       'pairwise|' || j.prompt_id || '|' || array_to_string(list_sort(j.response_ids), '|') AS item,
       CASE WHEN j.scores[1] = j.scores[2] THEN 'tie'
            WHEN (j.scores[1] > j.scores[2]) = (j.response_ids[1] = list_sort(j.response_ids)[1]) THEN 'first'
            ELSE 'second' END AS label,
       CASE WHEN j.scores[1] = j.scores[2] THEN NULL ELSE j.scores[1] > j.scores[2] END AS left_won,
       CASE WHEN j.scores[1] = j.scores[2] OR length(a.content) = length(b.content) THEN NULL
            ELSE (j.scores[1] > j.scores[2]) = (length(a.content) > length(b.content)) END AS longer_won,
       CASE WHEN json_extract(j.metadata, '$.gold') = 'true'
            THEN json_extract(j.metadata, '$.correct') = 'true' END AS gold_correct,
       j.both_bad
FROM judgements j
JOIN responses a ON a.response_id = j.response_ids[1]
JOIN responses b ON b.response_id = j.response_ids[2]
WHERE j.kind = 'pairwise' AND j.status IN ('submitted', 'flagged') AND j.aspect = 'overall'
  AND len(j.response_ids) = 2 AND len(j.scores) = 2
"""


def load_pairwise(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per counted pairwise judgement (any annotator type), with its canonical label: a
    person's superseded votes are left out."""
    return con.execute(f"SELECT * FROM ({PAIRWISE_SQL}) QUALIFY {agreement.latest_vote_sql('item')}").df()


def _units(df: pd.DataFrame) -> list[list[str]]:
    return [list(g) for _, g in df.groupby("item")["label"]]


def percent_agreement(df: pd.DataFrame) -> float | None:
    return agreement.percent_agreement(_units(df))


def fleiss_kappa(df: pd.DataFrame) -> float | None:
    return agreement.fleiss_kappa(_units(df))


def krippendorff_alpha(df: pd.DataFrame) -> float | None:
    return agreement.krippendorff_alpha(_units(df))


def undefined_reason(df: pd.DataFrame, chance_corrected: bool = True) -> str | None:
    """Why the agreement figures of `df` are None (shown beside the "—")."""
    return agreement.undefined_reason(_units(df), chance_corrected)


def per_annotator(df: pd.DataFrame) -> pd.DataFrame:
    """Per person: labels given, agreement with the others on shared items, mean Cohen's κ with
    each colleague (over shared items), gold accuracy, and how often the left response won."""
    rows = []
    # one label per (item, name): an imported name can hold several votes on an item; take its latest
    latest = df.sort_values(["created_at", "judgement_id"])
    wide = latest.pivot_table(index="item", columns="annotator", values="label", aggfunc="last")
    for person, own in df.groupby("annotator"):
        agree = total = 0
        kappas = []
        for other in wide.columns:
            if other == person:
                continue
            shared = wide[[person, other]].dropna()
            if len(shared):
                agree += int((shared[person] == shared[other]).sum())
                total += len(shared)
                if len(shared) >= 5:
                    k = cohen_kappa(list(shared[person]), list(shared[other]))
                    if k is not None:
                        kappas.append(k)
        gold = own["gold_correct"].dropna()
        rows.append(
            {
                "annotator": person,
                "labels": len(own),
                "agreement": agree / total if total else None,
                "cohen_kappa": sum(kappas) / len(kappas) if kappas else None,
                "gold_accuracy": float(gold.mean()) if len(gold) else None,
                "gold_items": len(gold),
                "left_won": float(own["left_won"].dropna().mean()) if own["left_won"].notna().any() else None,
            }
        )
    return pd.DataFrame(rows)


def share(series: pd.Series) -> float | None:
    """Share of True among non-null values (position and length bias)."""
    s = series.dropna()
    return float(s.astype(bool).mean()) if len(s) else None


def majority(labels: list[str]) -> str | None:
    """The most common label, or None on a tie for first place."""
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def human_vs_ai(df: pd.DataFrame) -> tuple[float | None, int]:
    """Share of items where the human majority label equals the AI's (latest) label, and how many."""
    humans = df[df.annotator_type.isin(HUMAN)].groupby("item")["label"].agg(list)
    ai = df[df.annotator_type == "ai"].sort_values("created_at").groupby("item")["label"].last()
    both = [(majority(h), ai[item]) for item, h in humans.items() if item in ai.index]
    both = [(h, a) for h, a in both if h is not None]
    return (sum(h == a for h, a in both) / len(both) if both else None), len(both)


def review_queue(df: pd.DataFrame, min_agreement: float = 1.0, ai: str | None = None) -> pd.DataFrame:
    """Items a reviewer should settle: humans split (agreement below `min_agreement`) or the human
    majority differs from the AI; items already adjudicated are left out.

    With `ai` (an AI annotator: a judge, or `ai:<run>:implicit-reward` from `prefkit score-pairs`),
    only the items it judged where its verdict differs from the human majority, or people split; its
    two orders of one item combine as `prefkit judge-eval` combines them."""
    settled = set(df.loc[df.annotator_type == "adjudicator", "item"])
    verdicts = None
    if ai is not None:
        from prefkit.annotate.ai.evaluate import combine_orders

        mine = df[(df.annotator == ai) & (df.annotator_type == "ai")]
        verdicts = mine.groupby("item")["label"].agg(lambda s: combine_orders(dict(enumerate(s))))
    out = []
    for item, g in df[df.annotator_type.isin(HUMAN)].groupby("item"):
        if item in settled or (verdicts is not None and item not in verdicts.index):
            continue
        labels = list(g["label"])
        counts = Counter(labels)
        agree = max(counts.values()) / len(labels)
        if verdicts is not None:
            ai_label = verdicts[item]
        else:
            ai_rows = df[(df.item == item) & (df.annotator_type == "ai")]["label"]
            ai_label = ai_rows.iloc[-1] if len(ai_rows) else None
        reason = None
        if len(labels) >= 2 and agree < min_agreement:
            reason = "humans disagree"
        elif ai_label is not None and majority(labels) not in (None, ai_label):
            reason = "human majority differs from the AI" if ai is None else f"human majority differs from {ai}"
        if reason:
            out.append(
                {
                    "item": item,
                    "prompt_id": g["prompt_id"].iloc[0],
                    "reason": reason,
                    "votes": dict(counts),
                    "ai": ai_label,
                    "agreement": agree,
                    "judgement_ids": list(g["judgement_id"]),
                }
            )
    return pd.DataFrame(out, columns=["item", "prompt_id", "reason", "votes", "ai", "agreement", "judgement_ids"])


# --- the Dashboard's pictures (issue 18) ------------------------------------------------------------
# Each figure below is computed here once; the page draws it and `prefkit stats --json` prints it
# (`team_figures`), so the two cannot differ.

ACTIVITY_SQL = """
SELECT judgement_id, annotator, kind, status, created_at, duration_ms,
       json_extract_string(metadata, '$.flag') AS flag
FROM judgements
WHERE annotator_type = 'human' AND status IN ('submitted', 'flagged', 'skipped')
  AND NOT (kind = 'pairwise' AND aspect <> 'overall')
"""
ANSWERED = ("submitted", "flagged")


def load_activity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per label a person made in the app (answers and skips). A pairwise answer's aspect
    sub-questions are stored as extra rows of the same answer and are not counted again; each aspect
    of a rating is a label of its own."""
    return con.execute(ACTIVITY_SQL + " ORDER BY created_at, judgement_id").df()


def labels_over_time(activity: pd.DataFrame) -> pd.DataFrame:
    """Per person, the running count of answers (skips left out) at each answer's time:
    columns annotator, created_at, labels."""
    answers = activity[activity.status.isin(ANSWERED)].sort_values(["created_at", "judgement_id"])
    out = answers[["annotator", "created_at"]].copy()
    out["labels"] = out.groupby("annotator").cumcount() + 1
    return out.reset_index(drop=True)


def seconds_on_task(activity: pd.DataFrame) -> pd.DataFrame:
    """Answers with a recorded duration: columns annotator, status, seconds."""
    answers = activity[activity.status.isin(ANSWERED) & activity.duration_ms.notna()]
    return pd.DataFrame(
        {"annotator": answers.annotator, "status": answers.status, "seconds": answers.duration_ms / 1000}
    ).reset_index(drop=True)


def per_person_activity(activity: pd.DataFrame, min_seconds: float) -> pd.DataFrame:
    """Per person: answers, skips, answers flagged as too fast (status `flagged` with a `fast:` flag),
    the share of answers under `min_seconds`, and the median seconds per answer."""
    rows = []
    for person, g in activity.groupby("annotator"):
        answers = g[g.status.isin(ANSWERED)]
        secs = answers.duration_ms.dropna() / 1000
        rows.append(
            {
                "annotator": person,
                "answers": len(answers),
                "skips": int((g.status == "skipped").sum()),
                "flagged_fast": int(answers.flag.fillna("").str.startswith("fast").sum()),
                "under_threshold": float((secs < min_seconds).mean()) if len(secs) else None,
                "median_seconds": float(secs.median()) if len(secs) else None,
            }
        )
    return pd.DataFrame(
        rows, columns=["annotator", "answers", "skips", "flagged_fast", "under_threshold", "median_seconds"]
    )


def rater_labels(df: pd.DataFrame) -> pd.DataFrame:
    """One label per (item, rater) for every person and AI judge, items as rows, raters as columns.

    A person's latest vote counts (`load_pairwise` already dropped the superseded ones; an imported
    name with several votes keeps its latest). An AI judge that saw an item in both orders counts
    once, as `prefkit judge-eval` combines them: the same label in both orders is its verdict, two
    different labels a tie.
    """
    from prefkit.annotate.ai.evaluate import combine_orders

    ordered = df.sort_values(["created_at", "judgement_id"])
    people = ordered[~ordered.annotator_type.isin(["ai", "adjudicator"])]
    wide = people.pivot_table(index="item", columns="annotator", values="label", aggfunc="last")
    ai = ordered[ordered.annotator_type == "ai"]
    if len(ai):
        verdicts = ai.groupby(["item", "annotator"])["label"].agg(lambda s: combine_orders(dict(enumerate(s))))
        wide = wide.join(verdicts.unstack(), how="outer")
    return wide


def kappa_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Cohen's κ between every two raters (people and AI judges) over the items both labelled:
    columns a, b, items (shared), kappa (None where undefined: no shared item, or one label only),
    agreement (share of shared items with the same label). Both orders (a, b) and (b, a) are listed,
    and a rater with itself, so the heatmap is square."""
    wide = rater_labels(df)
    rows = []
    for a in wide.columns:
        for b in wide.columns:
            shared = wide[[a, b]].dropna() if a != b else wide[[a]].dropna().assign(_b=wide[a].dropna())
            x, y = list(shared.iloc[:, 0]), list(shared.iloc[:, 1])
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "items": len(x),
                    "kappa": agreement.cohen_kappa(x, y),
                    "agreement": sum(p == q for p, q in zip(x, y, strict=True)) / len(x) if x else None,
                }
            )
    return pd.DataFrame(rows, columns=["a", "b", "items", "kappa", "agreement"])


LABELS_SQL = """
SELECT judgement_id, prompt_id, kind, aspect, annotator, annotator_type, created_at, response_ids, scores,
       step_labels,
       kind || '|' || aspect || '|' || prompt_id || '|' || array_to_string(list_sort(response_ids), '|') AS item
FROM judgements
WHERE annotator_type IN ('human', 'import') AND status IN ('submitted', 'flagged')
  AND kind IN ('pairwise', 'ranking', 'binary', 'rating', 'steps') AND len(scores) = len(response_ids)
"""


def task_label(kind: str, response_ids, scores, step_labels) -> str:
    """A judgement's answer as one nominal label, whatever order the responses were shown in:
    pairwise first/second/tie of the sorted pair; ranking the scores in sorted-id order; binary and
    rating the score; steps the step labels."""
    if kind == "pairwise":
        s0, s1 = scores
        if s0 == s1:
            return "tie"
        return "first" if (s0 > s1) == (response_ids[0] == min(response_ids)) else "second"
    if kind == "ranking":
        by_id = dict(zip(response_ids, scores, strict=True))
        return ",".join(f"{by_id[r]:g}" for r in sorted(by_id))
    if kind == "steps":
        return ",".join(str(int(x)) for x in (step_labels if step_labels is not None else []))
    return f"{scores[0]:g}"


def load_task_labels(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """People's labels on every kind with an answer to agree on (an edit has none), one per person,
    item and aspect (a re-vote replaces the earlier one): columns kind, aspect, item, annotator, label."""
    cur = con.execute(f"SELECT * FROM ({LABELS_SQL}) QUALIFY {agreement.latest_vote_sql('item')}")
    names = [d[0] for d in cur.description]
    df = pd.DataFrame(cur.fetchall(), columns=names)  # Python lists and None, not pandas' NA
    df["label"] = [
        task_label(k, r, s, sl) for k, r, s, sl in zip(df.kind, df.response_ids, df.scores, df.step_labels, strict=True)
    ]
    return df[["kind", "aspect", "item", "annotator", "annotator_type", "label"]]


def agreement_by_task(labels: pd.DataFrame) -> pd.DataFrame:
    """Per task kind and aspect: items labelled by two or more people, percent agreement, Fleiss' κ,
    Krippendorff's α (nominal; None where undefined)."""
    rows = []
    for (kind, aspect), g in labels.groupby(["kind", "aspect"]):
        units = [list(u) for _, u in g.groupby("item")["label"]]
        rows.append(
            {
                "task": kind,
                "aspect": aspect,
                "items": sum(len(u) >= 2 for u in units),
                "percent_agreement": agreement.percent_agreement(units),
                "fleiss_kappa": agreement.fleiss_kappa(units),
                "krippendorff_alpha": agreement.krippendorff_alpha(units),
            }
        )
    return pd.DataFrame(
        rows, columns=["task", "aspect", "items", "percent_agreement", "fleiss_kappa", "krippendorff_alpha"]
    )


def gold_over_time(df: pd.DataFrame) -> pd.DataFrame:
    """Per person, gold accuracy so far after each gold answer: columns annotator, created_at,
    gold_items (answered so far), gold_accuracy."""
    gold = df[df.annotator_type.isin(HUMAN) & df.gold_correct.notna()].sort_values(["created_at", "judgement_id"])
    out = gold[["annotator", "created_at"]].copy()
    correct = gold.gold_correct.astype(bool).astype(int)
    out["gold_items"] = out.groupby("annotator").cumcount() + 1
    out["gold_accuracy"] = correct.groupby(gold.annotator).cumsum() / out["gold_items"]
    return out.reset_index(drop=True)


def bias_per_rater(df: pd.DataFrame) -> pd.DataFrame:
    """Per person and per AI judge, over each decisive verdict it gave (an AI judge's two orders count
    as two verdicts, as `prefkit judge-eval`'s first-position rate counts them): how often the
    response shown first won (0.5 = no position bias) and how often the longer one won."""
    rows = []
    raters = df[df.annotator_type.isin((*HUMAN, "ai"))]
    for (person, kind), g in raters.groupby(["annotator", "annotator_type"]):
        rows.append(
            {
                "annotator": person,
                "type": kind,
                "decisive": int(g.left_won.notna().sum()),
                "first_shown_won": share(g.left_won),
                "longer_won": share(g.longer_won),
            }
        )
    return pd.DataFrame(rows, columns=["annotator", "type", "decisive", "first_shown_won", "longer_won"])


def labelling_rate(times: pd.Series, last: int = 50) -> float | None:
    """Answers per hour over the most recent `last` answers (the span from the first of them to the
    last); None with fewer than two or no time between them."""
    recent = pd.to_datetime(times).sort_values().iloc[-last:]
    if len(recent) < 2:
        return None
    hours = (recent.iloc[-1] - recent.iloc[0]).total_seconds() / 3600
    return (len(recent) - 1) / hours if hours > 0 else None


def hours_left(remaining: int, rate: float | None) -> float | None:
    """Hours until `remaining` judgements are in at `rate` per hour (0 when none remain)."""
    if remaining <= 0:
        return 0.0
    return remaining / rate if rate else None


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts, None for a missing value (JSON has no NaN)."""
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


def _missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def team_figures(con: duckdb.DuckDBPyConnection) -> dict:
    """The Dashboard's figures that need no project file, as `prefkit stats --json` prints them
    (key `team`): labels per person, Cohen's κ between every two raters, agreement per task and
    aspect, gold accuracy and position/length bias per rater."""
    df = load_pairwise(con)
    activity = load_activity(con)
    gold = df[df.annotator_type.isin(HUMAN) & df.gold_correct.notna()]
    return {
        "labels_per_person": _records(
            activity.groupby(["annotator", "status"])
            .size()
            .rename("n")
            .reset_index()
            .sort_values(["annotator", "status"])
        ),
        "cohen_kappa": _records(kappa_matrix(df).query("a < b")),
        "agreement_by_task": _records(agreement_by_task(load_task_labels(con))),
        "gold_accuracy": _records(
            gold.groupby("annotator")["gold_correct"].agg(gold_items="size", gold_accuracy="mean").reset_index()
        ),
        "bias": _records(bias_per_rater(df)),
    }
