"""Agreement and bias measures for the dashboard and the review queue (pure functions over pandas).

Pairwise labels are put in a canonical frame first: for an item with responses sorted by id, a
judgement's label is `first`, `second` (which of the two won) or `tie`, whatever order it was shown
in. Agreement is computed on those labels:

- percent agreement: the share of agreeing pairs of annotators on the same item;
- Cohen's κ (two annotators), Fleiss' κ (any number per item, Fleiss 1971 with varying n),
  Krippendorff's α (nominal, from the coincidence matrix; Krippendorff 2011);
- position bias: among non-tied human judgements, how often the left (first shown) response won;
- length bias: how often the longer response won.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import duckdb
import pandas as pd

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
    """One row per pairwise judgement (any annotator type), with its canonical label."""
    return con.execute(PAIRWISE_SQL).df()


def _by_item(df: pd.DataFrame) -> dict[str, list[str]]:
    return {item: list(g) for item, g in df.groupby("item")["label"] if len(g) >= 2}


def percent_agreement(df: pd.DataFrame) -> float | None:
    agree = total = 0
    for labels in _by_item(df).values():
        for a, b in combinations(labels, 2):
            agree += a == b
            total += 1
    return agree / total if total else None


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """κ = (p_o − p_e) / (1 − p_e) for two annotators' labels on the same items."""
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in set(ca) | set(cb)) / (n * n)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def fleiss_kappa(df: pd.DataFrame) -> float | None:
    """Fleiss' κ with a varying number of raters per item (items with at least two)."""
    items = _by_item(df)
    if not items:
        return None
    per_item, totals, n_labels = [], Counter(), 0
    for labels in items.values():
        counts, n = Counter(labels), len(labels)
        per_item.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
        totals.update(counts)
        n_labels += n
    p_bar = sum(per_item) / len(per_item)
    p_e = sum((c / n_labels) ** 2 for c in totals.values())
    return None if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha(df: pd.DataFrame) -> float | None:
    """Nominal α = 1 − D_o / D_e from the coincidence matrix of pairable values."""
    coincidences: Counter = Counter()
    for labels in _by_item(df).values():
        m = len(labels)
        for i, a in enumerate(labels):
            for j, b in enumerate(labels):
                if i != j:
                    coincidences[(a, b)] += 1 / (m - 1)
    n = sum(coincidences.values())
    if n <= 1:
        return None
    marg = Counter()
    for (a, _), v in coincidences.items():
        marg[a] += v
    d_o = sum(v for (a, b), v in coincidences.items() if a != b) / n
    d_e = sum(marg[a] * marg[b] for a in marg for b in marg if a != b) / (n * (n - 1))
    return None if d_e == 0 else 1 - d_o / d_e


def per_annotator(df: pd.DataFrame) -> pd.DataFrame:
    """Per person: labels given, agreement with the others on shared items, mean Cohen's κ with
    each colleague (over shared items), gold accuracy, and how often the left response won."""
    rows = []
    wide = df.pivot_table(index="item", columns="annotator", values="label", aggfunc="first")
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
