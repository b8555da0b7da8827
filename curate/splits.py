"""Train/test splits by prompt group: every row of a near-duplicate group (and so every row of a
prompt) lands in the same split, whichever table it is in.

Groups are ordered by md5(group_id || seed) — deterministic for a seed, independent of row order —
and the first ones go to test. With `stratify: source` the share is taken within each source (a
group's source is the source of its first prompt), so small sources are represented in both splits.
"""

from __future__ import annotations

import duckdb
from prefkit.curate.recipe import Split
from prefkit.curate.working import ROWS


def assign(con: duckdb.DuckDBPyConnection, cfg: Split, seed: int) -> dict[str, int]:
    """Create `split_of(group_id, split)` over the groups of all kept rows; return groups per split."""
    kept = " UNION ".join(f"SELECT group_id FROM {t} WHERE drop_reason IS NULL" for t in ROWS.values())
    stratum = "p.source" if cfg.stratify == "source" else "''"
    # A fraction below 1 is a share of the groups; 1 or more is a number of groups, shared out by stratum size.
    if cfg.test_size < 1:
        quota = "round(? * n_stratum)"
    else:
        quota = "round(? * n_stratum / n_all)"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE split_of AS
        WITH g AS (
            SELECT DISTINCT k.group_id, {stratum} AS stratum FROM ({kept}) k
            JOIN p_map p ON p.prompt_id = k.group_id
        ), ranked AS (
            SELECT group_id, row_number() OVER (PARTITION BY stratum ORDER BY md5(group_id || ?)) AS n,
                   count(*) OVER (PARTITION BY stratum) AS n_stratum, count(*) OVER () AS n_all
            FROM g
        )
        SELECT group_id, CASE WHEN n <= {quota} THEN 'test' ELSE 'train' END AS split FROM ranked
        """,
        [str(seed), float(cfg.test_size)],
    )
    return dict(con.execute("SELECT split, count(*) FROM split_of GROUP BY split ORDER BY split").fetchall())
