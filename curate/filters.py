"""Filters: each drops rows for one reason by marking them (`drop_reason` = its code), never deleting
them, so the report can count every drop and show examples.

A filter is one class here, and nothing else needs editing to add one: its recipe `name`, the curated
tables it `applies` to, its `Options` (the dataclass the recipe is read into, with its own checks),
its reason `code` (stable: the report's key; a threshold goes in its own field, `threshold()`), what
the code means, and `mark` (how it marks rows). Defining a subclass registers it: the recipe reads
`FILTERS`, the pipeline runs them, the report explains `REASONS`.

Filters a stage adds by itself — near-duplicate drops, duplicate pairs, both-bad pairs, binarise's own
checks, the balance cap — are classes too, `listed = False`: a recipe cannot name them.

A filter that needs a seed (caps) orders rows by md5(key || seed), so the same recipe drops the same
rows every time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa
from prefkit.curate.decontaminate import contaminated
from prefkit.curate.tables import CURATED
from prefkit.curate.working import ROWS

EVERY_TABLE = tuple(CURATED)
RESPONSE_COLUMNS = {
    "pairs": ("chosen", "rejected"),
    "unpaired": ("completion",),
    "sft": ("completion",),
    "steps": ("completion",),
}
EXAMPLES = 3
_NORM = "lower(regexp_replace(trim({}), '\\s+', ' ', 'g'))"  # case and whitespace folded, in SQL


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A recipe option that must be one of `choices` (the recipe reader checks it)."""
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class Context:
    """What a filter may need from the rest of the curation."""

    seed: int
    # Dedupe merged responses equal after normalisation, so equal texts share one id.
    responses_merged: bool = False


@dataclass
class NoOptions:
    def problems(self) -> list[str]:
        return []


FILTERS: dict[str, type[Filter]] = {}  # the filters a recipe may list, by name
REASONS: dict[str, type[Filter]] = {}  # every filter, by its reason code


class Filter:
    name: ClassVar[str]  # as a recipe lists it; for a filter a stage adds, its label in the report
    code: ClassVar[str]  # the drop reason: rows' drop_reason and the report's key; never changes
    applies: ClassVar[tuple[str, ...]]  # the curated tables whose rows it marks
    meaning: ClassVar[str]  # what a dropped row has, for the report
    Options: ClassVar[type] = NoOptions
    scalar: ClassVar[str | None] = None  # the option a bare value sets (`- min_margin: 0.3`)
    listed: ClassVar[bool] = True  # False: added by a stage, not named in recipes
    # The SQL condition of the rows it drops, for a filter whose condition never changes: then the
    # class needs no `mark` of its own.
    where: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.code in REASONS:
            raise TypeError(f"two filters share the reason code {cls.code!r}")
        REASONS[cls.code] = cls
        if cls.listed:
            FILTERS[cls.name] = cls

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def threshold(self) -> Any:
        """The value that decides what it drops (None for a yes/no reason); the report shows it beside the code."""
        return None

    def mark(self, con: duckdb.DuckDBPyConnection, table: str, ctx: Context) -> int:
        """Set `drop_reason` to `code` on the kept rows of `table` this filter drops; return how many."""
        if self.where is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither `where` nor `mark`")
        return mark_where(con, table, self.code, self.where)


# -- marking ---------------------------------------------------------------------------------------


def kept(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {ROWS[table]} WHERE drop_reason IS NULL").fetchall()[0][0]


def mark_where(
    con: duckdb.DuckDBPyConnection, table: str, code: str, condition: str, params: list | None = None
) -> int:
    """Set `drop_reason` on kept rows of `table` matching the SQL `condition`; return how many."""
    before = kept(con, table)
    con.execute(
        f"UPDATE {ROWS[table]} SET drop_reason = ? WHERE drop_reason IS NULL AND ({condition})",
        [code, *(params or [])],
    )
    return before - kept(con, table)


def mark_keys(con: duckdb.DuckDBPyConnection, table: str, code: str, keys: list[str] | np.ndarray) -> int:
    con.register("_drop_keys", pa.table({"key": pa.array(list(keys), type=pa.string())}))
    try:
        return mark_where(con, table, code, "key IN (SELECT key FROM _drop_keys)")
    finally:
        con.unregister("_drop_keys")


def _length(column: str, unit: str) -> str:
    if unit == "words":
        return f"len(string_split_regex(trim({column}), '\\s+'))"
    return f"length({column})"


# -- the filters a recipe lists ----------------------------------------------------------------------


class Identical(Filter):
    name = code = "identical"
    applies = ("pairs",)
    meaning = "chosen and rejected are the same response, or equal after normalisation"

    def mark(self, con, table, ctx):
        cond = "chosen_id = rejected_id"
        if not ctx.responses_merged:
            # Without response dedupe, equal-after-normalisation texts have different ids: compare the texts.
            cond += f" OR {_NORM.format('chosen')} = {_NORM.format('rejected')}"
        return mark_where(con, table, self.code, cond)


class Empty(Filter):
    name = code = "empty"
    applies = EVERY_TABLE
    meaning = "the prompt or a response is empty or only whitespace"

    def mark(self, con, table, ctx):
        cond = " OR ".join(f"coalesce(trim({c}), '') = ''" for c in ["prompt_text", *RESPONSE_COLUMNS[table]])
        return mark_where(con, table, self.code, cond)


class Ties(Filter):
    name = code = "ties"
    applies = ("pairs",)
    meaning = "the comparison's votes end in a tie"
    where = "tie"


class MinMargin(Filter):
    name = code = "min_margin"
    applies = ("pairs",)
    meaning = "the pair's margin is below the threshold"
    scalar = "value"

    @dataclass
    class Options:
        value: float = 0.0  # drop pairs whose margin is below this

        def problems(self) -> list[str]:
            if self.value < 0:
                return [f"value ({self.value}) must be 0 or more: a margin is never negative"]
            return []

    def threshold(self):
        return self.options.value

    def mark(self, con, table, ctx):
        return mark_where(con, table, self.code, "margin < ?", [self.options.value])


class MinAgreement(Filter):
    name = code = "min_agreement"
    applies = ("pairs",)
    meaning = "the share of votes for the chosen side is below the threshold"
    scalar = "value"

    @dataclass
    class Options:
        value: float = 0.0  # drop pairs whose agreement (share of votes for the chosen side) is below this

        def problems(self) -> list[str]:
            if not 0 <= self.value <= 1:
                return [
                    f"value ({self.value}) must be between 0 and 1: agreement is the share of votes for the chosen side"
                ]
            return []

    def threshold(self):
        return self.options.value

    def mark(self, con, table, ctx):
        return mark_where(con, table, self.code, "agreement < ?", [self.options.value])


class Length(Filter):
    name = code = "length"
    applies = EVERY_TABLE
    meaning = "the prompt or a response is shorter or longer than the limits"

    @dataclass
    class Options:
        unit: str = choice("chars", ("chars", "words"))  # "chars" or "words"
        min_prompt: int | None = None
        max_prompt: int | None = None
        min_response: int | None = None
        max_response: int | None = None

        def problems(self) -> list[str]:
            problems = []
            for part in ("prompt", "response"):
                low, high = getattr(self, f"min_{part}"), getattr(self, f"max_{part}")
                for key, v in ((f"min_{part}", low), (f"max_{part}", high)):
                    if v is not None and v < 0:
                        problems.append(f"{key} ({v}) must be 0 or more")
                if low is not None and high is not None and low > high:
                    problems.append(f"min_{part} ({low}) is above max_{part} ({high}): no row could be kept")
            return problems

    def threshold(self):
        return {k: v for k, v in dataclasses.asdict(self.options).items() if v is not None}

    def mark(self, con, table, ctx):
        opts = self.options
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
        return mark_where(con, table, self.code, " OR ".join(conds), params) if conds else 0


def length_bias_share(con: duckdb.DuckDBPyConnection) -> float | None:
    """Share of kept pairs whose chosen response is longer (in characters) than the rejected one."""
    share = con.execute(
        f"SELECT avg((length(chosen) > length(rejected))::INT) FROM {ROWS['pairs']} WHERE drop_reason IS NULL"
    ).fetchall()[0][0]
    return None if share is None else float(share)


class LengthBias(Filter):
    """Drop pairs whose chosen is longer, in a seeded order, until their share is at most `max_share`."""

    name = code = "length_bias"
    applies = ("pairs",)
    meaning = "one of the pairs whose chosen is longer, beyond the share allowed"
    scalar = "max_share"

    @dataclass
    class Options:
        max_share: float | None = None  # the most pairs whose chosen is longer (None: only report the share)

        def problems(self) -> list[str]:
            if self.max_share is not None and not 0 < self.max_share <= 1:
                return ["max_share must be in (0, 1]"]
            return []

    def threshold(self):
        return self.options.max_share

    def mark(self, con, table, ctx):
        cap = self.options.max_share
        if cap is None:
            return 0
        longer, others = con.execute(
            "SELECT count_if(length(chosen) > length(rejected)), count_if(length(chosen) <= length(rejected)) "
            f"FROM {ROWS[table]} WHERE drop_reason IS NULL"
        ).fetchall()[0]
        longer, others = longer or 0, others or 0  # count_if over no rows is NULL
        if longer + others == 0 or longer / (longer + others) <= cap:
            return 0
        allowed = int(np.floor(cap * others / (1 - cap))) if cap < 1 else longer
        cond = f"""key IN (SELECT key FROM {ROWS[table]} WHERE drop_reason IS NULL AND length(chosen) > length(rejected)
                          ORDER BY md5(key || ?) OFFSET ?)"""
        return mark_where(con, table, self.code, cond, [str(ctx.seed), allowed])


class SourceCap(Filter):
    name = code = "source_cap"
    applies = EVERY_TABLE
    meaning = "a row beyond the most allowed per source (a seeded choice)"
    scalar = "max_per_source"

    @dataclass
    class Options:
        max_per_source: int = 0  # most rows per source in each table (0: no cap)
        caps: dict[str, int] = field(default_factory=dict)  # per-source overrides

        def problems(self) -> list[str]:
            caps = {"max_per_source": self.max_per_source, **{f"caps.{k}": v for k, v in self.caps.items()}}
            return [f"{key} ({v}) must be 0 or more" for key, v in caps.items() if v < 0]

    def threshold(self):
        return {"max_per_source": self.options.max_per_source, "caps": dict(self.options.caps)}

    def mark(self, con, table, ctx):
        opts = self.options
        caps = pa.table(
            {"source": pa.array(list(opts.caps), pa.string()), "cap": pa.array(list(opts.caps.values()), pa.int64())}
        )
        con.register("_caps", caps)
        try:
            cond = f"""key IN (
                SELECT key FROM (
                    SELECT w.key, coalesce(c.cap, ?) AS cap,
                           row_number() OVER (PARTITION BY w.source ORDER BY md5(w.key || ?)) AS n
                    FROM (SELECT * FROM {ROWS[table]} WHERE drop_reason IS NULL) w LEFT JOIN _caps c USING (source))
                WHERE cap > 0 AND n > cap)"""
            return mark_where(con, table, self.code, cond, [opts.max_per_source, str(ctx.seed)])
        finally:
            con.unregister("_caps")


class Decontaminate(Filter):
    name = code = "decontaminate"
    applies = EVERY_TABLE
    meaning = "the row shares a word n-gram (threshold: n words) with an eval set"

    @dataclass
    class Options:
        eval_sets: list[str] = field(
            default_factory=list
        )  # files (.jsonl .json .parquet .csv .txt) or HF datasets on disk
        n: int = 13  # words per n-gram
        fields: list[str] = field(default_factory=list)  # columns of the eval sets to read; empty: every string column
        check: str = choice("all", ("prompt", "all"))  # "prompt": the prompt only; "all": the prompt and the responses

        def problems(self) -> list[str]:
            return ["n must be at least 1"] if self.n < 1 else []

    def threshold(self):
        return self.options.n

    def mark(self, con, table, ctx):
        opts = self.options
        cols = ["prompt_text"] + (list(RESPONSE_COLUMNS[table]) if opts.check == "all" else [])
        rows = con.sql(f"SELECT key, {', '.join(cols)} FROM {ROWS[table]} WHERE drop_reason IS NULL").to_arrow_table()
        keys = contaminated(rows, cols, opts.eval_sets, opts.n, opts.fields)
        return mark_keys(con, table, self.code, keys)


# -- the filters stages add ------------------------------------------------------------------------


class NearDuplicate(Filter):
    """dedupe's `near_duplicates.action: drop`: every prompt but the first of its group goes."""

    name = "dedupe (near duplicates)"
    code = "near_duplicate"
    applies = EVERY_TABLE
    meaning = "the prompt is a near duplicate of an earlier one (threshold: estimated Jaccard similarity)"
    listed = False
    where = "prompt_id <> group_id"

    @dataclass
    class Options:
        threshold: float = 0.7

    def threshold(self):
        return self.options.threshold


class DuplicatePair(Filter):
    """dedupe's `pairs`: a pair equal to an earlier one on normalised prompt, chosen and rejected text (and aspect)."""

    name = "dedupe (pairs)"
    code = "duplicate_pair"
    applies = ("pairs",)
    meaning = "the pair equals an earlier one (prompt, chosen, rejected, aspect)"
    listed = False

    @dataclass
    class Options:
        # Prompts and responses were merged by normalised text already: the ids then say the same thing
        # as the texts, and comparing ids spares a regex over every text.
        by_ids: bool = False

    def mark(self, con, table, ctx):
        if self.options.by_ids:
            key = "key"
        else:
            texts = ", ".join(_NORM.format(c) for c in ("prompt_text", "chosen", "rejected"))
            key = f"md5(concat_ws(chr(0), {texts}, aspect))"
        cond = (
            f"rowid IN (SELECT rowid FROM {ROWS[table]} WHERE drop_reason IS NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY rowid) > 1)"
        )
        return mark_where(con, table, self.code, cond)


class BothBad(Filter):
    """votes' `both_bad: drop`."""

    name = "votes (both bad)"
    code = "both_bad"
    applies = ("pairs",)
    meaning = "most voters marked both responses bad"
    listed = False
    where = "both_bad"


class BinaryTie(Filter):
    """binarise: a response whose binary votes split evenly has no label."""

    name = "binarise (binary tie)"
    code = "binary_tie"
    applies = ("unpaired",)
    meaning = "the response's binary votes split evenly"
    listed = False
    where = "tie"


class StepCountMismatch(Filter):
    """binarise: a steps judgement whose labels and step texts differ in number cannot be a PRM row."""

    name = "binarise (step labels)"
    code = "step_count_mismatch"
    applies = ("steps",)
    meaning = "the judgement's step labels and step texts differ in number"
    listed = False
    where = "coalesce(len(labels), -1) <> coalesce(len(completions), -2)"


class BalanceCap(Filter):
    """binarise's `unpaired.max_ratio`: drop unpaired rows of the larger side until desirable:undesirable is
    within the ratio either way."""

    name = "binarise (balance)"
    code = "balance_cap"
    applies = ("unpaired",)
    meaning = "a row of the larger side (desirable or undesirable) beyond the ratio allowed (a seeded choice)"
    listed = False

    @dataclass
    class Options:
        max_ratio: float | None = None

    def threshold(self):
        return self.options.max_ratio

    def mark(self, con, table, ctx):
        max_ratio = self.options.max_ratio
        if max_ratio is None:
            return 0
        good, bad = con.execute(
            f"SELECT count_if(label), count_if(NOT label) FROM {ROWS[table]} WHERE drop_reason IS NULL"
        ).fetchall()[0]
        good, bad = good or 0, bad or 0  # count_if over no rows is NULL
        big, small, label = (good, bad, True) if good >= bad else (bad, good, False)
        allowed = int(np.floor(max_ratio * small))
        if big <= allowed:
            return 0
        cond = f"key IN (SELECT key FROM {ROWS[table]} WHERE drop_reason IS NULL AND label = ? ORDER BY md5(key || ?) OFFSET ?)"
        return mark_where(con, table, self.code, cond, [label, str(ctx.seed), allowed])


# -- the report's view of the drops ------------------------------------------------------------------


def examples(con: duckdb.DuckDBPyConnection, table: str, code: str, n: int = EXAMPLES) -> list[dict[str, Any]]:
    """A few rows a reason dropped, texts shortened, for the report."""
    cols = ["prompt_text", *RESPONSE_COLUMNS[table]]
    extra = ", margin, agreement, n_votes" if table == "pairs" else ""
    rows = con.execute(
        f"SELECT prompt_id, {', '.join(cols)}{extra} FROM {ROWS[table]} WHERE drop_reason = ? ORDER BY key LIMIT ?",
        [code, n],
    ).fetchall()
    names = ["prompt_id", "prompt", *RESPONSE_COLUMNS[table]] + (["margin", "agreement", "n_votes"] if extra else [])
    return [{k: _short(v) for k, v in zip(names, row, strict=True)} for row in rows]


def _short(value: Any, n: int = 200) -> Any:
    if isinstance(value, str) and len(value) > n:
        return value[: n - 1] + "…"
    return value
