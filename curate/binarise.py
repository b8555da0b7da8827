"""The binarise stage: aggregated comparisons and per-response scores → the working tables of pairs,
unpaired (KTO) labels, SFT rows and PRM step rows.

Every working table has `key` (the output row id), `prompt_id`, `group_id`, `source`, `prompt_text`,
the response text columns filters look at, lineage (`judgement_ids`, `annotators`) and
`drop_reason` (NULL while the row is kept). Filters only ever set `drop_reason`, so the report can
count and show what each one removed.
"""

from __future__ import annotations

import duckdb
from prefkit.annotate.agreement import latest_vote_sql
from prefkit.curate.recipe import Binarise, Votes
from prefkit.curate.votes import TIER

REVISION_ORIGINS = ("human_edit", "critique_revision", "clair_revision")
PROMPT_CONTENT = "array_to_string(list_transform(messages, lambda m: m.content), chr(10))"


def _per_response(where: str, tier: str) -> str:
    """SQL: one row per (judgement, shown response) of the submitted judgements matching `where`, with
    canonical prompt and response ids, the score, and the annotator tier."""
    return f"""
        SELECT e.judgement_id, e.prompt_id, e.aspect, e.annotator, e.annotator_type, e.created_at, e.tier,
               r.canon_id AS response_id, e.score
        FROM (SELECT j.judgement_id, m.canon_id AS prompt_id, j.aspect, j.annotator, j.annotator_type,
                     j.created_at, {tier} AS tier, unnest(j.response_ids) AS rid, unnest(j.scores) AS score
              FROM judged j JOIN p_map m USING (prompt_id)
              WHERE j.status = 'submitted' AND len(j.scores) = len(j.response_ids) AND {where}) e
        JOIN r_map r ON r.response_id = e.rid"""


def texts(con: duckdb.DuckDBPyConnection) -> None:
    """`ptext`: canonical prompts with their text, source and group; `rtext`: canonical responses."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ptext AS
            SELECT m.prompt_id, m.group_id, m.source, p.messages, {PROMPT_CONTENT} AS text
            FROM p_map m JOIN prompts p USING (prompt_id) WHERE m.canon_id = m.prompt_id"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE rtext AS
           SELECT r.response_id, r.content, r.origin, r.parent_id, r.model FROM responses r
           WHERE r.response_id IN (SELECT canon_id FROM r_map)"""
    )


def pairs(con: duckdb.DuckDBPyConnection, cfg: Binarise, votes: Votes, seed: int) -> None:
    """Create `pairs_w` from `comparisons` (or from per-response scores for the other strategies)."""
    if cfg.pairs == "comparisons":
        con.execute(
            """CREATE OR REPLACE TEMP TABLE pair_src AS
               SELECT prompt_id, aspect,
                      CASE WHEN winner >= 0 THEN a ELSE b END AS chosen_id,
                      CASE WHEN winner >= 0 THEN b ELSE a END AS rejected_id,
                      CASE WHEN winner >= 0 THEN score_a ELSE score_b END AS score_chosen,
                      CASE WHEN winner >= 0 THEN score_b ELSE score_a END AS score_rejected,
                      margin, agreement, n_votes, winner = 0 AS tie, both_bad, judgement_ids, annotators
               FROM comparisons"""
        )
    else:
        _response_scores(con, votes)
        _pairs_from_scores(con, cfg, seed)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE pairs_w AS
           SELECT md5(concat_ws('|', s.prompt_id, s.chosen_id, s.rejected_id, s.aspect)) AS key, s.*,
                  p.group_id, p.source, p.text AS prompt_text, c.content AS chosen, r.content AS rejected,
                  NULL::VARCHAR AS drop_reason
           FROM pair_src s JOIN ptext p USING (prompt_id)
           JOIN rtext c ON c.response_id = s.chosen_id JOIN rtext r ON r.response_id = s.rejected_id
           ORDER BY s.prompt_id, s.aspect, s.chosen_id, s.rejected_id"""
    )


def _response_scores(con: duckdb.DuckDBPyConnection, votes: Votes) -> None:
    """`resp_scores(prompt_id, aspect, response_id, score, judgement_ids, annotators)`: the mean score each
    response got (Bradley–Terry log-strength with that method), highest annotator tier only."""
    tier = TIER.format(ai_tier=1 if votes.human_over_ai else 2)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE scored AS
        SELECT * FROM ({_per_response("j.kind IN (SELECT unnest(?::VARCHAR[]))", tier)})
        QUALIFY tier = max(tier) OVER (PARTITION BY prompt_id, aspect)
        """,
        [[k for k in votes.kinds if k != "binary"]],
    )
    strength = "b.strength" if votes.method == "bradley_terry" else "avg(s.score)"
    join = (
        "JOIN bt b ON b.prompt_id = s.prompt_id AND b.aspect = s.aspect AND b.response_id = s.response_id"
        if votes.method == "bradley_terry"
        else ""
    )
    group = ", b.strength" if votes.method == "bradley_terry" else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE resp_scores AS
            SELECT s.prompt_id, s.aspect, s.response_id, {strength} AS score,
                   list_sort(list(DISTINCT s.judgement_id)) AS judgement_ids,
                   list_sort(list(DISTINCT s.annotator)) AS annotators
            FROM scored s {join} GROUP BY s.prompt_id, s.aspect, s.response_id{group}"""
    )


def _pairs_from_scores(con: duckdb.DuckDBPyConnection, cfg: Binarise, seed: int) -> None:
    ranked = """SELECT *, row_number() OVER (PARTITION BY prompt_id, aspect ORDER BY score DESC, response_id) AS top,
                          row_number() OVER (PARTITION BY prompt_id, aspect ORDER BY score, response_id) AS bottom,
                          row_number() OVER (PARTITION BY prompt_id, aspect ORDER BY md5(response_id || ?)) AS lot
                FROM resp_scores"""
    if cfg.pairs == "best_vs_worst":
        pick = "x.top = 1 AND y.bottom = 1 AND x.response_id <> y.response_id"
    elif cfg.pairs == "best_vs_random":
        pick = (
            "x.top = 1 AND y.response_id <> x.response_id AND y.lot = (SELECT min(z.lot) FROM ranked z "
            "WHERE z.prompt_id = x.prompt_id AND z.aspect = x.aspect AND z.response_id <> x.response_id)"
        )
    else:
        pick = "x.score - y.score >= greatest(?, 1e-12)"
    params = [str(seed)] + ([cfg.margin] if cfg.pairs == "all_pairs" else [])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE pair_src AS
        WITH ranked AS ({ranked})
        SELECT x.prompt_id, x.aspect, x.response_id AS chosen_id, y.response_id AS rejected_id,
               x.score AS score_chosen, y.score AS score_rejected, x.score - y.score AS margin,
               CASE WHEN c.prompt_id IS NULL THEN NULL WHEN x.response_id = c.a THEN c.wins_a / c.n_votes::DOUBLE
                    ELSE c.wins_b / c.n_votes::DOUBLE END AS agreement,
               len(list_distinct(x.judgement_ids || y.judgement_ids))::INT AS n_votes,
               abs(x.score - y.score) < 1e-12 AS tie, coalesce(c.both_bad, false) AS both_bad,
               list_sort(list_distinct(x.judgement_ids || y.judgement_ids)) AS judgement_ids,
               list_sort(list_distinct(x.annotators || y.annotators)) AS annotators
        FROM ranked x JOIN ranked y ON x.prompt_id = y.prompt_id AND x.aspect = y.aspect
        LEFT JOIN comparisons c ON c.prompt_id = x.prompt_id AND c.aspect = x.aspect
             AND c.a = least(x.response_id, y.response_id) AND c.b = greatest(x.response_id, y.response_id)
        WHERE {pick}
        """,
        params,
    )


def unpaired(con: duckdb.DuckDBPyConnection, cfg: Binarise, votes: Votes) -> None:
    """Create `unpaired_w` from the kept pairs, binary judgements, both-bad comparisons and ratings."""
    u = cfg.unpaired
    tier = TIER.format(ai_tier=1 if votes.human_over_ai else 2)
    parts = []
    if u.binary:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE binary_votes AS
            SELECT * FROM ({_per_response("j.kind = 'binary'", tier)})
            QUALIFY {latest_vote_sql("response_id, aspect")}
            """
        )
        parts.append(
            """SELECT prompt_id, response_id, avg(score) > 0.5 AS label, 'binary' AS derived_from, 1 AS rank,
                      avg(score) = 0.5 AS tie, list_sort(list(judgement_id)) AS judgement_ids,
                      list_sort(list(DISTINCT annotator)) AS annotators
               FROM (SELECT * FROM binary_votes QUALIFY tier = max(tier) OVER (PARTITION BY response_id, aspect))
               GROUP BY prompt_id, response_id, aspect"""
        )
    if u.both_bad:
        for side in ("a", "b"):
            parts.append(
                f"""SELECT prompt_id, {side} AS response_id, false AS label, 'both_bad' AS derived_from, 2 AS rank,
                           false AS tie, judgement_ids, annotators FROM comparisons WHERE both_bad"""
            )
    if u.rating_threshold is not None:
        threshold = float(u.rating_threshold)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE rating_votes AS
            SELECT * FROM ({_per_response("j.kind = 'rating'", tier)})
            """
        )
        parts.append(
            f"""SELECT prompt_id, response_id, avg(score) >= {threshold!r} AS label, 'rating' AS derived_from,
                       3 AS rank, false AS tie, list_sort(list(judgement_id)) AS judgement_ids,
                       list_sort(list(DISTINCT annotator)) AS annotators
                FROM (SELECT * FROM rating_votes QUALIFY tier = max(tier) OVER (PARTITION BY response_id, aspect))
                GROUP BY prompt_id, response_id, aspect"""
        )
    if u.from_pairs:
        for side, label in (("chosen", "true"), ("rejected", "false")):
            parts.append(
                f"""SELECT prompt_id, {side}_id AS response_id, {label} AS label, 'pair_{side}' AS derived_from,
                           4 AS rank, false AS tie, judgement_ids, annotators
                    FROM pairs_w WHERE drop_reason IS NULL"""
            )
    if not parts:
        parts.append(
            "SELECT NULL::VARCHAR AS prompt_id, NULL::VARCHAR AS response_id, NULL::BOOLEAN AS label, "
            "NULL::VARCHAR AS derived_from, 0 AS rank, false AS tie, []::VARCHAR[] AS judgement_ids, "
            "[]::VARCHAR[] AS annotators WHERE false"
        )
    union = " UNION ALL ".join(f"({p})" for p in parts)
    # One label per (response, label): a direct binary label first, then both-bad, rating, pairs.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE unpaired_w AS
        SELECT md5(concat_ws('|', u.response_id, u.label::VARCHAR)) AS key, u.prompt_id, u.response_id, u.label,
               u.derived_from, u.tie, u.judgement_ids, u.annotators, p.group_id, p.source, p.text AS prompt_text,
               r.content AS completion,
               NULL::VARCHAR AS drop_reason  -- a tie is marked by filters.BinaryTie
        FROM ({union}) u JOIN ptext p USING (prompt_id) JOIN rtext r USING (response_id)
        QUALIFY row_number() OVER (PARTITION BY u.response_id, u.label ORDER BY u.rank, u.derived_from) = 1
        ORDER BY u.prompt_id, u.response_id, u.label DESC
        """
    )


def sft(con: duckdb.DuckDBPyConnection, cfg: Binarise) -> None:
    """Create `sft_w`: accepted revisions — `revision` judgements that score the revised response
    (second) above the original (first), whose revised response has a revision origin."""
    enabled = "true" if cfg.sft_revisions else "false"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE sft_w AS
        SELECT md5('sft|' || r.canon_id) AS key, m.canon_id AS prompt_id, r.canon_id AS response_id,
               t.parent_id, list_sort(list(j.judgement_id)) AS judgement_ids,
               list_sort(list(DISTINCT j.annotator)) AS annotators, any_value(p.group_id) AS group_id,
               any_value(p.source) AS source, any_value(p.text) AS prompt_text, any_value(t.content) AS completion,
               NULL::VARCHAR AS drop_reason
        FROM judged j JOIN p_map m USING (prompt_id) JOIN ptext p ON p.prompt_id = m.canon_id
        JOIN r_map r ON r.response_id = j.response_ids[2] JOIN rtext t ON t.response_id = r.canon_id
        WHERE {enabled} AND j.status = 'submitted' AND j.kind = 'revision' AND len(j.response_ids) = 2
          AND len(j.scores) = 2 AND j.scores[2] > j.scores[1] AND t.origin IN {REVISION_ORIGINS}
        GROUP BY m.canon_id, r.canon_id, t.parent_id
        ORDER BY 2, 3
        """
    )


def steps(con: duckdb.DuckDBPyConnection, cfg: Binarise, votes: Votes) -> None:
    """Create `steps_w`: one PRM row per step-labelled response (the highest-tier, latest judgement)."""
    enabled = "true" if cfg.steps else "false"
    tier = TIER.format(ai_tier=1 if votes.human_over_ai else 2)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE steps_w AS
        SELECT md5('steps|' || r.canon_id) AS key, m.canon_id AS prompt_id, r.canon_id AS response_id,
               json_extract_string(j.metadata, '$.steps[*]') AS completions, j.step_labels AS labels,
               [j.judgement_id] AS judgement_ids, [j.annotator] AS annotators, p.group_id, p.source,
               p.text AS prompt_text, array_to_string(json_extract_string(j.metadata, '$.steps[*]'), chr(10))
                   AS completion,
               NULL::VARCHAR AS drop_reason  -- labels and steps that differ in number: filters.StepCountMismatch
        FROM judged j JOIN p_map m USING (prompt_id) JOIN ptext p ON p.prompt_id = m.canon_id
        JOIN r_map r ON r.response_id = j.response_ids[1]
        WHERE {enabled} AND j.status = 'submitted' AND j.kind = 'steps' AND len(j.response_ids) >= 1
        QUALIFY row_number() OVER (PARTITION BY r.canon_id ORDER BY {tier} DESC, j.created_at DESC, j.judgement_id) = 1
        ORDER BY 2, 3
        """
    )
