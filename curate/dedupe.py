"""The dedupe stage: map every prompt to its canonical copy and near-duplicate group, every response
to its canonical copy, as DuckDB tables the later stages join through.

- `p_map(prompt_id, canon_id, group_id, source)`: `canon_id` is the first prompt (by created_at, then
  id) whose normalised text is the same; `group_id` is the first prompt of its near-duplicate group.
  Votes on merged prompts count together; a group is never split across train and test.
- `r_map(response_id, canon_id, prompt_id)`: responses to the same canonical prompt with the same
  normalised content are one response; `prompt_id` here is the canonical prompt.

Pair-level deduplication happens after binarisation (`prefkit.curate.filters.DuplicatePair`).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefkit.curate.minhash import Groups, near_duplicate_groups
from prefkit.curate.recipe import Dedupe, NearDuplicates
from prefkit.curate.text import normalise

PROMPT_TEXT = "array_to_string(list_transform(messages, lambda m: m.role || ': ' || m.content), chr(10))"


def prompt_groups(texts: pa.Array, cfg: Dedupe | None, seed: int) -> Groups:
    """Exact and near-duplicate groups of prompt texts as the recipe asks (identity when it asks for none)."""
    n = len(texts)
    if cfg is None:
        return Groups(exact=np.arange(n), group=np.arange(n))
    near = cfg.near_duplicates if cfg.near_duplicates.enabled else NearDuplicates(enabled=False)
    groups = near_duplicate_groups(texts, near, seed=seed + 1)
    if not cfg.prompts:
        # Not merged, but exact copies still share a group so they land in the same split.
        groups = Groups(exact=np.arange(n), group=groups.group)
    return groups


def build_maps(con: duckdb.DuckDBPyConnection, cfg: Dedupe | None, seed: int) -> dict:
    """Create `p_map` and `r_map` in `con` (which has the store's views); return the dedupe report."""
    prompts = con.sql(
        f"SELECT prompt_id, source, {PROMPT_TEXT} AS text FROM prompts ORDER BY created_at, prompt_id"
    ).to_arrow_table()
    ids = prompts["prompt_id"].combine_chunks()
    groups = prompt_groups(prompts["text"], cfg, seed)
    p_map = pa.table(
        {
            "prompt_id": ids,
            "canon_id": ids.take(pa.array(groups.exact)),
            "group_id": ids.take(pa.array(groups.group)),
            "source": prompts["source"],
        }
    )
    con.register("_p_map", p_map)
    con.execute("CREATE OR REPLACE TEMP TABLE p_map AS SELECT * FROM _p_map")
    con.unregister("_p_map")

    responses = con.sql(
        "SELECT r.response_id, m.canon_id AS prompt_id, r.content FROM responses r "
        "JOIN p_map m USING (prompt_id) ORDER BY r.created_at, r.response_id"
    ).to_arrow_table()
    if cfg is not None and cfg.responses:
        # Equal normalised text ⇒ same dictionary code: a cheap, exact stand-in for the text itself.
        key = pc.dictionary_encode(normalise(responses["content"])).indices
    else:
        key = pa.array(np.arange(responses.num_rows))
    r_in = pa.table({"response_id": responses["response_id"], "prompt_id": responses["prompt_id"], "key": key})
    con.register("_r_in", r_in)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE r_map AS SELECT response_id, prompt_id, "
        "first(response_id) OVER (PARTITION BY prompt_id, key ORDER BY rowid_) AS canon_id "
        "FROM (SELECT *, row_number() OVER () AS rowid_ FROM _r_in)"
    )
    con.unregister("_r_in")

    # A few near-duplicate groups for the report, from the texts already in memory.
    idx = np.arange(len(ids))
    leaders = np.unique(groups.group[(groups.group != idx) & (groups.exact == idx)])[:3]
    texts = prompts["text"]
    examples = [
        (ids[int(g)].as_py(), texts[int(k)].as_py()) for g in leaders for k in np.flatnonzero(groups.group == g)[:4]
    ]
    n_resp_dupes = con.execute("SELECT count(*) FROM r_map WHERE canon_id <> response_id").fetchall()[0][0]
    return {
        "prompts": len(ids),
        "exact_duplicate_prompts": groups.exact_duplicates if cfg is not None and cfg.prompts else 0,
        "near_duplicate_prompts": groups.near_duplicates,
        "prompt_groups": int(len(np.unique(groups.group))),
        "responses": responses.num_rows,
        "duplicate_responses": int(n_resp_dupes),
        "near_duplicate_examples": [{"group": g[:12], "prompt": _snippet(t)} for g, t in examples],
    }


def _snippet(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
