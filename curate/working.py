"""The working tables: the DuckDB temp tables the steps of a curation share, declared in one place.

Each table has one writer (the step that creates it) and the steps that read it, by the step names of
`prefkit.curate.plan` ("write" is the pipeline writing the curated files at the end). The pipeline
checks after every step that it created or replaced only the tables declared as its own, so a table
added to a step's SQL without a line here fails every curation test. A table whose only reader is its
writer is that step's scratch.

Steps do not talk through anything else: no session variables, no tables left undeclared.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
from prefkit.curate.tables import CURATED


@dataclass(frozen=True)
class Table:
    name: str
    holds: str
    writer: str
    readers: tuple[str, ...]


_BINARISE = ("binarise pairs", "binarise unpaired", "binarise sft", "binarise steps")
_ROW_READERS = ("filter", "split", "report", "write")

WORKING: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "judged",
            "the submitted judgements (the store's view read once), with the columns curation uses",
            "load",
            ("votes", *_BINARISE, "report"),
        ),
        Table(
            "p_map",
            "prompt_id → canon_id (exact copy), group_id (near-duplicate group), source",
            "dedupe",
            ("texts", "votes", *_BINARISE, "split"),
        ),
        Table(
            "r_map",
            "response_id → canon_id (exact copy), prompt_id (canonical)",
            "dedupe",
            ("texts", "votes", *_BINARISE),
        ),
        Table("ptext", "canonical prompts: messages, text, group_id, source", "texts", (*_BINARISE, "write")),
        Table("rtext", "canonical responses: content, origin, parent_id, model", "texts", (*_BINARISE, "report")),
        Table("votes_raw", "one vote per (judgement, pair of shown responses), canonical ids", "votes", ("votes",)),
        Table("adjudicated", "judgement ids an adjudicator's metadata sets aside", "votes", ("votes",)),
        Table("votes_b", "votes after the adjudication lists and later human votes", "votes", ("votes",)),
        Table("votes_c", "votes after the both-order merge", "votes", ("votes",)),
        Table("votes", "the counted votes, with their outcome", "votes", ("votes",)),
        Table("cmp_raw", "vote counts per comparison", "votes", ("votes",)),
        Table("bt_players", "Bradley–Terry: each (prompt, aspect, response) and its tournament", "votes", ("votes",)),
        Table("bt", "Bradley–Terry log-strengths per (prompt, aspect, response)", "votes", ("votes", "binarise pairs")),
        Table(
            "comparisons",
            "per comparison: winner, scores, margin, agreement, both_bad, lineage",
            "votes",
            ("votes", "binarise pairs", "binarise unpaired"),
        ),
        Table("pair_src", "the pairs before their texts are joined", "binarise pairs", ("binarise pairs",)),
        Table("scored", "per-response scores of the highest annotator tier", "binarise pairs", ("binarise pairs",)),
        Table("resp_scores", "each response's score per (prompt, aspect)", "binarise pairs", ("binarise pairs",)),
        Table(
            "pairs_w",
            "the pair rows (filters set drop_reason)",
            "binarise pairs",
            ("length bias", "binarise unpaired", *_ROW_READERS),
        ),
        Table("binary_votes", "binary judgements, latest per person", "binarise unpaired", ("binarise unpaired",)),
        Table("rating_votes", "rating judgements per response", "binarise unpaired", ("binarise unpaired",)),
        Table("unpaired_w", "the unpaired rows (filters set drop_reason)", "binarise unpaired", _ROW_READERS),
        Table("sft_w", "the SFT rows (filters set drop_reason)", "binarise sft", _ROW_READERS),
        Table("steps_w", "the PRM step rows (filters set drop_reason)", "binarise steps", _ROW_READERS),
        Table("split_of", "group_id → split", "split", ("report", "write")),
    )
}

# The working table of each curated table's rows: `key`, `prompt_id`, `group_id`, `source`, `prompt_text`,
# the response text columns, lineage and `drop_reason` (NULL while the row is kept).
ROWS: dict[str, str] = {table: f"{table}_w" for table in CURATED}


def written_by(step: str) -> tuple[str, ...]:
    return tuple(t.name for t in WORKING.values() if t.writer == step)


def read_by(step: str) -> tuple[str, ...]:
    return tuple(t.name for t in WORKING.values() if step in t.readers and t.writer != step)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The temp tables now in `con` by name, with their object ids (a replaced table gets a new one)."""
    return dict(con.execute("SELECT table_name, table_oid FROM duckdb_tables() WHERE temporary").fetchall())


def check_writes(step: str, allowed: tuple[str, ...], before: dict[str, int], after: dict[str, int]) -> None:
    """Fail when `step` created or replaced a table that is not declared here as one it writes."""
    made = {name for name, oid in after.items() if before.get(name) != oid}
    undeclared = sorted(made - set(allowed))
    if undeclared:
        raise RuntimeError(
            f"curation step {step!r} wrote the working table(s) {undeclared}, which prefkit.curate.working "
            "does not declare as its own: declare them there"
        )
