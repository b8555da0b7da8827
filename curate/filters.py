"""Filters: each marks the rows it drops with a reason (`drop_reason`), never deletes them, so the
report can count every drop and show examples.

A filter applies to the working tables it makes sense for (`APPLIES`); a filter that needs a seed
(caps) orders rows by md5(key || seed), so the same recipe drops the same rows every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from prefkit.curate.decontaminate import contaminated
from prefkit.curate.recipe import (
    Decontaminate,
    Length,
    LengthBias,
    MinAgreement,
    MinMargin,
    SourceCap,
)

TABLES = ("pairs", "unpaired", "sft", "steps")
RESPONSE_COLUMNS = {
    "pairs": ("chosen", "rejected"),
    "unpaired": ("completion",),
    "sft": ("completion",),
    "steps": ("completion",),
}
APPLIES = {
    "identical": ("pairs",),
    "empty": TABLES,
    "ties": ("pairs",),
    "min_margin": ("pairs",),
    "min_agreement": ("pairs",),
    "length": TABLES,
    "length_bias": ("pairs",),
    "source_cap": TABLES,
    "decontaminate": TABLES,
}
EXAMPLES = 3


def kept(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}_w WHERE drop_reason IS NULL").fetchall()[0][0]


def mark(con: duckdb.DuckDBPyConnection, table: str, reason: str, condition: str, params: list | None = None) -> int:
    """Set `drop_reason` on kept rows of `table` matching the SQL `condition`; return how many."""
    before = kept(con, table)
    con.execute(
        f"UPDATE {table}_w SET drop_reason = ? WHERE drop_reason IS NULL AND ({condition})", [reason, *(params or [])]
    )
    return before - kept(con, table)


def mark_keys(con: duckdb.DuckDBPyConnection, table: str, reason: str, keys: list[str] | np.ndarray) -> int:
    con.register("_drop_keys", pa.table({"key": pa.array(list(keys), type=pa.string())}))
    try:
        return mark(con, table, reason, "key IN (SELECT key FROM _drop_keys)")
    finally:
        con.unregister("_drop_keys")


def _length(column: str, unit: str) -> str:
    if unit == "words":
        return f"len(string_split_regex(trim({column}), '\\s+'))"
    return f"length({column})"


# -- the filters (table, options, seed) → rows dropped --------------------------------------------


def identical(con, table, opts, seed) -> tuple[str, int]:
    reason = "identical chosen and rejected"
    cond = "chosen_id = rejected_id"
    if not con.execute("SELECT getvariable('responses_deduped')").fetchall()[0][0]:
        # Without response dedupe, equal-after-normalisation texts have different ids: compare the texts.
        norm = "lower(regexp_replace(trim({}), '\\s+', ' ', 'g'))"
        cond += f" OR {norm.format('chosen')} = {norm.format('rejected')}"
    return reason, mark(con, table, reason, cond)


def empty(con, table, opts, seed) -> tuple[str, int]:
    cols = ["prompt_text", *RESPONSE_COLUMNS[table]]
    cond = " OR ".join(f"coalesce(trim({c}), '') = ''" for c in cols)
    return "empty prompt or response", mark(con, table, "empty prompt or response", cond)


def ties(con, table, opts, seed) -> tuple[str, int]:
    return "tie", mark(con, table, "tie", "tie")


def min_margin(con, table, opts: MinMargin, seed) -> tuple[str, int]:
    reason = f"margin below {opts.value:g}"
    return reason, mark(con, table, reason, "margin < ?", [opts.value])


def min_agreement(con, table, opts: MinAgreement, seed) -> tuple[str, int]:
    reason = f"agreement below {opts.value:g}"
    return reason, mark(con, table, reason, "agreement < ?", [opts.value])


def length(con, table, opts: Length, seed) -> tuple[str, int]:
    conds, params = [], []
    for bound, op in (("min", "<"), ("max", ">")):
        limit = getattr(opts, f"{bound}_prompt")
        if limit is not None:
            conds.append(f"{_length('prompt_text', opts.unit)} {op} ?")
            params.append(limit)
        limit = getattr(opts, f"{bound}_response")
        if limit is not None:
            for col in RESPONSE_COLUMNS[table]:
                conds.append(f"{_length(col, opts.unit)} {op} ?")
                params.append(limit)
    reason = f"length outside limits ({opts.unit})"
    return reason, (mark(con, table, reason, " OR ".join(conds), params) if conds else 0)


def length_bias_share(con: duckdb.DuckDBPyConnection) -> float | None:
    """Share of kept pairs whose chosen response is longer (in characters) than the rejected one."""
    share = con.execute(
        "SELECT avg((length(chosen) > length(rejected))::INT) FROM pairs_w WHERE drop_reason IS NULL"
    ).fetchall()[0][0]
    return None if share is None else float(share)


def length_bias(con, table, opts: LengthBias, seed) -> tuple[str, int]:
    """Drop pairs whose chosen is longer, in a seeded order, until their share is at most `max_share`."""
    reason = "length-bias cap"
    if opts.max_share is None:
        return reason, 0
    longer, others = con.execute(
        "SELECT count_if(length(chosen) > length(rejected)), count_if(length(chosen) <= length(rejected)) "
        "FROM pairs_w WHERE drop_reason IS NULL"
    ).fetchall()[0]
    if longer + others == 0 or longer / (longer + others) <= opts.max_share:
        return reason, 0
    allowed = int(np.floor(opts.max_share * others / (1 - opts.max_share))) if opts.max_share < 1 else longer
    cond = """key IN (SELECT key FROM pairs_w WHERE drop_reason IS NULL AND length(chosen) > length(rejected)
                      ORDER BY md5(key || ?) OFFSET ?)"""
    return reason, mark(con, table, reason, cond, [str(seed), allowed])


def source_cap(con, table, opts: SourceCap, seed) -> tuple[str, int]:
    reason = "source cap"
    caps = pa.table(
        {"source": pa.array(list(opts.caps), pa.string()), "cap": pa.array(list(opts.caps.values()), pa.int64())}
    )
    con.register("_caps", caps)
    try:
        cond = f"""key IN (
            SELECT key FROM (
                SELECT w.key, coalesce(c.cap, ?) AS cap,
                       row_number() OVER (PARTITION BY w.source ORDER BY md5(w.key || ?)) AS n
                FROM (SELECT * FROM {table}_w WHERE drop_reason IS NULL) w LEFT JOIN _caps c USING (source))
            WHERE cap > 0 AND n > cap)"""
        return reason, mark(con, table, reason, cond, [opts.max_per_source, str(seed)])
    finally:
        con.unregister("_caps")


def decontaminate(con, table, opts: Decontaminate, seed) -> tuple[str, int]:
    reason = f"overlaps an eval set ({opts.n}-gram)"
    cols = ["prompt_text"] + (list(RESPONSE_COLUMNS[table]) if opts.check == "all" else [])
    rows = con.sql(f"SELECT key, {', '.join(cols)} FROM {table}_w WHERE drop_reason IS NULL").to_arrow_table()
    keys = contaminated(rows, cols, opts)
    return reason, mark_keys(con, table, reason, keys)


FILTERS: dict[str, Callable[..., tuple[str, int]]] = {
    "identical": identical,
    "empty": empty,
    "ties": ties,
    "min_margin": min_margin,
    "min_agreement": min_agreement,
    "length": length,
    "length_bias": length_bias,
    "source_cap": source_cap,
    "decontaminate": decontaminate,
}


def balance_cap(con: duckdb.DuckDBPyConnection, max_ratio: float | None, seed: int) -> tuple[str, int]:
    """Drop unpaired rows of the larger side until desirable:undesirable is within `max_ratio` either way."""
    reason = "balance cap"
    if max_ratio is None:
        return reason, 0
    good, bad = con.execute(
        "SELECT count_if(label), count_if(NOT label) FROM unpaired_w WHERE drop_reason IS NULL"
    ).fetchall()[0]
    big, small, label = (good, bad, True) if good >= bad else (bad, good, False)
    allowed = int(np.floor(max_ratio * small))
    if big <= allowed:
        return reason, 0
    cond = "key IN (SELECT key FROM unpaired_w WHERE drop_reason IS NULL AND label = ? ORDER BY md5(key || ?) OFFSET ?)"
    return reason, mark(con, "unpaired", reason, cond, [label, str(seed), allowed])


def examples(con: duckdb.DuckDBPyConnection, table: str, reason: str, n: int = EXAMPLES) -> list[dict[str, Any]]:
    """A few rows a reason dropped, texts shortened, for the report."""
    cols = ["prompt_text", *RESPONSE_COLUMNS[table]]
    extra = ", margin, agreement, n_votes" if table == "pairs" else ""
    rows = con.execute(
        f"SELECT prompt_id, {', '.join(cols)}{extra} FROM {table}_w WHERE drop_reason = ? ORDER BY key LIMIT ?",
        [reason, n],
    ).fetchall()
    names = ["prompt_id", "prompt", *RESPONSE_COLUMNS[table]] + (["margin", "agreement", "n_votes"] if extra else [])
    return [{k: _short(v) for k, v in zip(names, row, strict=True)} for row in rows]


def _short(value: Any, n: int = 200) -> Any:
    if isinstance(value, str) and len(value) > n:
        return value[: n - 1] + "…"
    return value
