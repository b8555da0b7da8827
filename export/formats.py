"""The four export formats: which curated table each reads, and the SQL that turns its rows into TRL's columns.

Each format is one DuckDB `SELECT` over the curated Parquet file. Keeping the mapping in SQL keeps it
readable (one line per output column) and lets DuckDB stream it: nothing is loaded whole.

TRL's column names (https://huggingface.co/docs/trl/dataset_formats):
    preference  prompt, chosen, rejected          (DPOTrainer, IPO, ORPO, …)
    unpaired    prompt, completion, label         (KTOTrainer)
    sft         messages                          (SFTTrainer)
    stepwise    prompt, completions, labels       (process reward models; labels are booleans)

A prompt is exported *standard* (a plain string: the content of its single user message) when every
prompt of the table is one user message, and *conversational* (the list of `{role, content}` turns)
otherwise or when asked. In the conversational form the judged turns become one assistant message
each, as TRL's conversational preference format has them.

Every format also keeps the store's ids (`Format.ids`): `prompt_id` and the ids of the responses in
the row — `chosen_id` and `rejected_id` (preference), `completion_id` (unpaired), `response_id` (sft,
stepwise). TRL's trainers ignore columns they do not read; `prefkit score-pairs` reads these instead
of re-hashing the text, which would miss responses curation merged onto a duplicate prompt.

Names, in export: a *format* (`preference`, `unpaired`, `sft`, `stepwise`) is what is written; a
*table* (`pairs`, `unpaired`, `sft`, `steps`, the keys of `prefkit.curate.tables.CURATED`) is the
curated Parquet file a format reads. "pairs" is only ever that table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    name: str
    table: str  # the curated table it reads (a key of prefkit.curate.tables.CURATED)
    trl_columns: tuple[str, ...]  # the columns a TRL trainer reads
    extra_columns: tuple[str, ...]  # lineage and quality, kept beside them
    task_categories: tuple[str, ...]
    tags: tuple[str, ...]
    trainer: str  # which trainer reads it, for the card
    ids: tuple[str, ...] = ()  # the store ids among extra_columns (prompt and responses)
    # Export column → curated column, where the export names it differently.
    renamed: tuple[tuple[str, str], ...] = ()

    def source_column(self, column: str) -> str:
        """The curated table's column that the export column `column` is read from."""
        return dict(self.renamed).get(column, column)

    def column_sql(self, column: str) -> str:
        source = self.source_column(column)
        return column if source == column else f"{source} AS {column}"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format(
            "preference",
            "pairs",
            ("prompt", "chosen", "rejected"),
            (
                "pair_id",
                "prompt_id",
                "chosen_id",
                "rejected_id",
                "aspect",
                "score_chosen",
                "score_rejected",
                "margin",
                "agreement",
                "n_votes",
                "source",
            ),
            ("text-generation",),
            ("dpo", "preference", "rlhf", "trl"),
            "TRL `DPOTrainer` (and the DPO-family trainers of `prefkit train`)",
            ids=("prompt_id", "chosen_id", "rejected_id"),
        ),
        Format(
            "unpaired",
            "unpaired",
            ("prompt", "completion", "label"),
            ("example_id", "prompt_id", "completion_id", "derived_from", "source"),
            ("text-generation",),
            ("kto", "unpaired-preference", "rlhf", "trl"),
            "TRL `KTOTrainer` (and `prefkit train --loss kto`)",
            ids=("prompt_id", "completion_id"),
            renamed=(("completion_id", "response_id"),),  # named after the `completion` it identifies
        ),
        Format(
            "sft",
            "sft",
            ("messages",),
            ("example_id", "prompt_id", "response_id", "source"),
            ("text-generation",),
            ("sft", "conversational", "trl"),
            "TRL `SFTTrainer`",
            ids=("prompt_id", "response_id"),
        ),
        Format(
            "stepwise",
            "steps",
            ("prompt", "completions", "labels"),
            ("example_id", "prompt_id", "response_id", "source"),
            ("text-classification",),
            ("process-reward-model", "prm", "stepwise-supervision", "trl"),
            "process reward model training (TRL's stepwise-supervision format)",
            ids=("prompt_id", "response_id"),
        ),
    ]
}

ALL = tuple(FORMATS)

# A prompt needs the conversational form when it is not exactly one user message.
CONVERSATIONAL_PROMPTS_SQL = (
    "SELECT count(*) FROM read_parquet(?) WHERE len(prompt) <> 1 OR prompt[1].role IS DISTINCT FROM 'user'"
)

# The prompt column, in each form.
_PROMPT = {False: "prompt[1].content AS prompt", True: "prompt"}


def _as_assistant(column: str, conversational: bool) -> str:
    if conversational:
        return f"[{{'role': 'assistant', 'content': {column}}}] AS {column}"
    return column


def select_sql(fmt: Format, conversational: bool, neutral_is_good: bool = True) -> str:
    """The SELECT that maps one split of the curated table (parameters: parquet path, split) to `fmt`'s columns.

    `neutral_is_good` says what a neutral (0) step becomes in the stepwise format, whose labels are
    booleans: True (the default: a neutral step is not a mistake, as PRM800K's authors count it) or False.
    """
    if fmt.name == "preference":
        cols = [
            _PROMPT[conversational],
            _as_assistant("chosen", conversational),
            _as_assistant("rejected", conversational),
        ]
    elif fmt.name == "unpaired":
        cols = [_PROMPT[conversational], _as_assistant("completion", conversational), "label"]
    elif fmt.name == "sft":
        cols = ["messages"]
    elif fmt.name == "stepwise":
        neutral = "true" if neutral_is_good else "false"
        cols = [
            _PROMPT[conversational],
            "completions",
            f"list_transform(labels, lambda x: CASE WHEN x = 0 THEN {neutral} ELSE x > 0 END) AS labels",
        ]
    else:  # pragma: no cover - FORMATS and this function change together
        raise KeyError(fmt.name)
    cols += [fmt.column_sql(c) for c in fmt.extra_columns]
    # The curated order is kept (DuckDB preserves insertion order by default), so an export is reproducible.
    return f"SELECT {', '.join(cols)} FROM read_parquet(?) WHERE split = ?"
