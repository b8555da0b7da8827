"""The votes stage: every judgement that shows two or more responses becomes pairwise votes, the
recipe's policies decide which votes count, and the votes on each comparison are aggregated.

A comparison is (canonical prompt, response a, response b, aspect) with a < b by id, so the two
display orders of the same pair meet. A vote's outcome is +1 (a scored higher), −1 (b) or 0 (tie).

Policies, in the order they apply (each counted in the report):
1. `adjudicates`: a judgement named in an adjudicator's metadata `{"adjudicates": [ids]}` is set aside.
2. `latest_human_vote`: a person's (or adjudicator's) later vote on a comparison replaces the earlier one.
0. `model_verdicts`: rows `prefkit score-pairs` wrote (guidelines `score-pairs:<run>`) are left out
   unless asked for: they are a trained model's view of its own training pairs, for people to review.
3. `both_order_ties`: an AI judge's votes sharing metadata `order_key` (the two display orders of one
   question) become one vote: their common outcome, or a tie when the orders disagree.
4. Tiers: adjudicator votes override everything on their comparison; with `human_over_ai`, human and
   imported votes set AI votes aside.

Aggregation (`method`): `majority` (the plurality of a/b/tie; no plurality is a tie), `mean` (sign of
the mean score difference), `bradley_terry` (strengths fitted per prompt over all its comparisons, see `prefkit.annotate.bradley_terry`).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from prefkit.annotate import bradley_terry
from prefkit.annotate.agreement import latest_vote_sql
from prefkit.curate.recipe import Votes

MODEL_VERDICTS = "score-pairs:"  # the guidelines prefix of `prefkit score-pairs` rows
TIER = """CASE annotator_type WHEN 'adjudicator' THEN 3 WHEN 'ai' THEN {ai_tier} ELSE 2 END"""


def expand(con: duckdb.DuckDBPyConnection, cfg: Votes) -> dict:
    """Create `votes`: one row per (judgement, pair of shown responses), canonical ids, oriented a < b."""
    kinds = [k for k in cfg.kinds if k != "binary"]
    aspect_sql = "AND j.aspect IN (SELECT unnest(?::VARCHAR[]))" if cfg.aspects else ""
    params = [kinds] + ([cfg.aspects] if cfg.aspects else [])
    model_sql = "" if cfg.model_verdicts else f"AND NOT coalesce(j.guidelines, '') LIKE '{MODEL_VERDICTS}%'"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE votes_raw AS
        WITH j AS (
            SELECT j.judgement_id, m.canon_id AS prompt_id, j.kind, j.annotator, j.annotator_type, j.aspect,
                   j.both_bad, j.created_at, j.response_ids, j.scores,
                   json_extract_string(j.metadata, '$.order_key') AS order_key
            FROM judged j JOIN p_map m USING (prompt_id)
            WHERE j.status = 'submitted' AND j.kind IN (SELECT unnest(?::VARCHAR[])) {aspect_sql}
              AND len(j.response_ids) >= 2 AND len(j.scores) = len(j.response_ids) {model_sql}
        ),
        p AS (
            -- Two responses (most judgements): one pair, no list work.
            SELECT j.* EXCLUDE (response_ids, scores), response_ids[1] AS ra, response_ids[2] AS rb,
                   scores[1] AS sa, scores[2] AS sb
            FROM j WHERE len(response_ids) = 2
            UNION ALL
            SELECT j.* EXCLUDE (response_ids, scores),
                   unnest(flatten(list_transform(range(1, len(response_ids) + 1), lambda i:
                       list_transform(range(i + 1, len(response_ids) + 1), lambda k:
                           {{'ra': response_ids[i], 'rb': response_ids[k], 'sa': scores[i], 'sb': scores[k]}}))),
                          recursive := true)
            FROM j WHERE len(response_ids) > 2
        )
        SELECT p.* EXCLUDE (ra, rb, sa, sb),
               least(ca.canon_id, cb.canon_id) AS a, greatest(ca.canon_id, cb.canon_id) AS b,
               CASE WHEN ca.canon_id <= cb.canon_id THEN p.sa ELSE p.sb END AS score_a,
               CASE WHEN ca.canon_id <= cb.canon_id THEN p.sb ELSE p.sa END AS score_b
        FROM p JOIN r_map ca ON ca.response_id = p.ra JOIN r_map cb ON cb.response_id = p.rb
        """,
        params,
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE adjudicated AS
           SELECT DISTINCT unnest(json_extract_string(metadata, '$.adjudicates[*]')) AS judgement_id
           FROM judged WHERE annotator_type = 'adjudicator' AND status = 'submitted'"""
    )
    n_raw = con.execute("SELECT count(*) FROM votes_raw").fetchall()[0][0]
    n_model = 0
    if not cfg.model_verdicts:
        n_model = con.execute(
            f"SELECT count(*) FROM judged WHERE guidelines LIKE '{MODEL_VERDICTS}%' AND status = 'submitted'"
        ).fetchall()[0][0]
    any_adjudicated = con.execute("SELECT count(*) FROM adjudicated").fetchall()[0][0] > 0
    # One pass for policies 1 and 2; each is left out of the SQL when it cannot drop anything.
    where = "WHERE judgement_id NOT IN (SELECT judgement_id FROM adjudicated)" if any_adjudicated else ""
    n_a = con.execute(f"SELECT count(*) FROM votes_raw {where}").fetchall()[0][0] if any_adjudicated else n_raw
    # The one latest-vote rule, shared with the annotation app's and the judge evaluation's agreement.
    latest = f"QUALIFY {latest_vote_sql('prompt_id, a, b, aspect')}" if cfg.latest_human_vote else ""
    con.execute(f"CREATE OR REPLACE TEMP TABLE votes_b AS SELECT * FROM votes_raw {where} {latest}")
    n_b = con.execute("SELECT count(*) FROM votes_b").fetchall()[0][0]
    # Both-order collapse: one vote per (comparison, judge, order_key).
    key = "CASE WHEN annotator_type = 'ai' AND order_key IS NOT NULL THEN order_key ELSE judgement_id END"
    if not cfg.both_order_ties:
        key = "judgement_id"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE votes_c AS
        SELECT prompt_id, a, b, aspect, annotator, any_value(annotator_type) AS annotator_type,
               list(judgement_id ORDER BY judgement_id) AS judgement_ids, max(created_at) AS created_at,
               avg(both_bad::INT) >= 0.5 AS both_bad,
               count(*) AS n_orders,
               min(sign(score_a - score_b)) <> max(sign(score_a - score_b)) AS inconsistent,
               CASE WHEN min(sign(score_a - score_b)) = max(sign(score_a - score_b)) THEN avg(score_a) ELSE
                    (avg(score_a) + avg(score_b)) / 2 END AS score_a,
               CASE WHEN min(sign(score_a - score_b)) = max(sign(score_a - score_b)) THEN avg(score_b) ELSE
                    (avg(score_a) + avg(score_b)) / 2 END AS score_b
        FROM votes_b GROUP BY prompt_id, a, b, aspect, annotator, {key}
        """
    )
    inconsistent = con.execute("SELECT count(*) FROM votes_c WHERE inconsistent AND n_orders > 1").fetchall()[0][0]
    n_c = con.execute("SELECT count(*) FROM votes_c").fetchall()[0][0]
    tier = TIER.format(ai_tier=1 if cfg.human_over_ai else 2)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE votes AS
            SELECT *, sign(score_a - score_b)::INT AS outcome FROM votes_c
            QUALIFY {tier} = max({tier}) OVER (PARTITION BY prompt_id, a, b, aspect)"""
    )
    overridden = con.execute(
        f"""SELECT count_if(t = 1), count_if(t = 2) FROM (
              SELECT {tier} AS t, max({tier}) OVER (PARTITION BY prompt_id, a, b, aspect) AS top FROM votes_c)
            WHERE t < top"""
    ).fetchall()[0]
    n = con.execute("SELECT count(*) FROM votes").fetchall()[0][0]
    return {
        "votes": int(n_raw),
        "model_verdicts_left_out": int(n_model),
        "set_aside_by_adjudication_list": int(n_raw - n_a),
        "replaced_by_later_human_vote": int(n_a - n_b),
        "both_order_votes_merged": int(n_b - n_c),
        "both_order_disagreements": int(inconsistent),
        "ai_votes_set_aside_for_human_votes": int(overridden[0] or 0),
        "votes_overridden_by_adjudicator": int(
            (overridden[1] or 0) + ((overridden[0] or 0) if not cfg.human_over_ai else 0)
        ),
        "votes_counted": int(n),
    }


def aggregate(con: duckdb.DuckDBPyConnection, cfg: Votes) -> dict:
    """Create `comparisons`: per comparison the outcome, its margin, agreement and soft scores; return
    what the report needs to know about the aggregation (with Bradley–Terry: how its fit went).

    Columns: prompt_id, a, b, aspect, n_votes, wins_a, wins_b, ties, winner (+1 a, −1 b, 0 tie),
    score_a, score_b, margin (≥ 0), agreement, both_bad, judgement_ids, annotators.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE cmp_raw AS
        SELECT prompt_id, a, b, aspect, count(*)::INT AS n_votes,
               count_if(outcome > 0) AS wins_a, count_if(outcome < 0) AS wins_b, count_if(outcome = 0) AS ties,
               avg(score_a - score_b) AS mean_diff, avg(score_a) AS mean_a, avg(score_b) AS mean_b,
               avg(both_bad::INT) >= 0.5 AS both_bad,
               list_sort(flatten(list(judgement_ids))) AS judgement_ids,
               list_sort(list(DISTINCT annotator)) AS annotators
        FROM votes GROUP BY prompt_id, a, b, aspect
        """
    )
    fit_report: dict = {}
    if cfg.method == "majority":
        winner = "CASE WHEN wins_a > wins_b AND wins_a > ties THEN 1 WHEN wins_b > wins_a AND wins_b > ties THEN -1 ELSE 0 END"
        scores = "(wins_a + 0.5 * ties) / n_votes, (wins_b + 0.5 * ties) / n_votes"
        margin = "abs(wins_a - wins_b) / n_votes"
    elif cfg.method == "mean":
        winner = "CASE WHEN abs(mean_diff) < 1e-12 THEN 0 ELSE sign(mean_diff)::INT END"
        scores = "mean_a, mean_b"
        margin = "abs(mean_diff)"
    else:
        fit_report = _bradley_terry(con)
        winner = "CASE WHEN abs(s.sa - s.sb) < 1e-9 THEN 0 WHEN s.sa > s.sb THEN 1 ELSE -1 END"
        scores = "s.sa, s.sb"
        margin = "abs(s.sa - s.sb)"
    join = (
        "LEFT JOIN (SELECT c.prompt_id, c.a, c.b, c.aspect, x.strength AS sa, y.strength AS sb FROM cmp_raw c "
        "JOIN bt x ON x.prompt_id = c.prompt_id AND x.aspect = c.aspect AND x.response_id = c.a "
        "JOIN bt y ON y.prompt_id = c.prompt_id AND y.aspect = c.aspect AND y.response_id = c.b) s "
        "USING (prompt_id, a, b, aspect)"
        if cfg.method == "bradley_terry"
        else ""
    )
    score_a, score_b = (s.strip() for s in scores.split(","))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE comparisons AS
        SELECT c.prompt_id, c.a, c.b, c.aspect, c.n_votes, c.wins_a, c.wins_b, c.ties,
               ({winner})::INT AS winner, ({score_a})::DOUBLE AS score_a, ({score_b})::DOUBLE AS score_b,
               ({margin})::DOUBLE AS margin, c.both_bad, c.judgement_ids, c.annotators
        FROM cmp_raw c {join}
        """
    )
    # Agreement: the share of votes on the side that won (on a tie: the share of tie votes).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE comparisons AS SELECT *,
           (CASE winner WHEN 1 THEN wins_a WHEN -1 THEN wins_b ELSE ties END) / n_votes::DOUBLE AS agreement
           FROM comparisons"""
    )
    return {"bradley_terry": fit_report} if fit_report else {}


def _bradley_terry(con: duckdb.DuckDBPyConnection) -> dict:
    """Create `bt(prompt_id, aspect, response_id, strength)`: log-strengths fitted per (prompt, aspect) by
    `prefkit.annotate.bradley_terry.fit` (regularised by one virtual tie per response, iterated to a tolerance);
    return how the fit went, for the report."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE bt_players AS
           SELECT prompt_id, aspect, response_id,
                  (row_number() OVER (ORDER BY prompt_id, aspect, response_id) - 1)::BIGINT AS idx,
                  (dense_rank() OVER (ORDER BY prompt_id, aspect) - 1)::BIGINT AS tournament
           FROM (SELECT prompt_id, aspect, a AS response_id FROM votes UNION SELECT prompt_id, aspect, b FROM votes)"""
    )
    games = con.execute(
        """SELECT x.idx AS ia, y.idx AS ib, v.outcome FROM votes v
           JOIN bt_players x ON x.prompt_id = v.prompt_id AND x.aspect = v.aspect AND x.response_id = v.a
           JOIN bt_players y ON y.prompt_id = v.prompt_id AND y.aspect = v.aspect AND y.response_id = v.b"""
    ).fetchnumpy()
    players = con.execute("SELECT tournament FROM bt_players ORDER BY idx").fetchnumpy()["tournament"]
    out = np.asarray(games["outcome"])
    wins_a = np.where(out > 0, 1.0, np.where(out == 0, 0.5, 0.0))
    theta, how = bradley_terry.fit(
        players, games["ia"], games["ib"], wins_a, 1.0 - wins_a, max_iterations=bradley_terry.MAX_ITERATIONS
    )
    n = len(theta)
    con.register("_bt", pa.table({"idx": pa.array(np.arange(n, dtype=np.int64)), "strength": pa.array(theta)}))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE bt AS SELECT p.prompt_id, p.aspect, p.response_id, s.strength "
        "FROM bt_players p JOIN _bt s USING (idx)"
    )
    con.unregister("_bt")
    return how.as_report()
