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


def review_queue(df: pd.DataFrame, min_agreement: float = 1.0) -> pd.DataFrame:
    """Items a reviewer should settle: humans split (agreement below `min_agreement`) or the human
    majority differs from the AI; items already adjudicated are left out."""
    settled = set(df.loc[df.annotator_type == "adjudicator", "item"])
    out = []
    for item, g in df[df.annotator_type.isin(HUMAN)].groupby("item"):
        if item in settled:
            continue
        labels = list(g["label"])
        counts = Counter(labels)
        agree = max(counts.values()) / len(labels)
        ai = df[(df.item == item) & (df.annotator_type == "ai")]["label"]
        ai_label = ai.iloc[-1] if len(ai) else None
        reason = None
        if len(labels) >= 2 and agree < min_agreement:
            reason = "humans disagree"
        elif ai_label is not None and majority(labels) not in (None, ai_label):
            reason = "human majority differs from the AI"
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
