"""The steps of a curation as objects, and `plan(recipe)`: the recipe turned into the steps that run.

A step has a `name` (curate/working.py declares, by that name, the working tables it writes and
reads: `writes`, `reads`), its `options`, the report's timing it counts toward (`timing`), and
`run(con, state)`. The pipeline runs the plan as a loop. The recipe orders the stages (dedupe → votes →
binarise → filters → split) and the filters among themselves; the plan adds what follows from them:

    load → dedupe → texts → votes → binarise pairs → the filters on pairs (dedupe's and votes' first,
    then the recipe's, between two length-bias shares) → binarise unpaired → its filters → binarise sft
    → its filters → binarise steps → its filters → the balance cap → split → report

Unpaired rows are made from the pairs the filters kept, so the pair filters run before them, and
every filter then runs, in the recipe's order, on each other table it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
from prefkit.curate import binarise, dedupe, filters, report, splits, votes, working
from prefkit.curate.filters import Context, Filter
from prefkit.curate.recipe import Binarise, Dedupe, Recipe, Split, Votes


@dataclass
class State:
    """What the steps of one curation share besides the working tables: its context and the report."""

    context: Context
    report: dict

    def row(self, table: str, step: str, before: int | None, after: int, reason: str = "", **extra: Any) -> None:
        """A row of the report's counts after every step."""
        self.report["steps"].append(
            {
                "table": table,
                "step": step,
                "in": before,
                "out": after,
                "dropped": None if before is None else before - after,
                "reason": reason,
                **extra,
            }
        )


class Step:
    name: str  # its name in curate/working.py
    timing: str  # the report's `timings` key its seconds count toward
    options: Any = None

    @property
    def writes(self) -> tuple[str, ...]:
        return working.written_by(self.name)

    @property
    def reads(self) -> tuple[str, ...]:
        return working.read_by(self.name)

    def run(self, con: duckdb.DuckDBPyConnection, state: State) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Load(Step):
    """The store's `judgements` view dedupes on id with a window over every row: run it once, keep the
    submitted rows and the columns curation reads, and let every later query use this table."""

    name, timing = "load", "dedupe"

    def run(self, con, state):
        con.execute(
            """CREATE OR REPLACE TEMP TABLE judged AS
               SELECT judgement_id, prompt_id, kind, annotator, annotator_type, response_ids, scores, both_bad,
                      aspect, step_labels, status, guidelines, metadata, created_at
               FROM judgements WHERE status = 'submitted'"""
        )


class DedupeStep(Step):
    name, timing = "dedupe", "dedupe"

    def __init__(self, options: Dedupe | None, seed: int) -> None:
        self.options, self.seed = options, seed

    def run(self, con, state):
        d = state.report["dedupe"] = dedupe.build_maps(con, self.options, self.seed)
        merged = d["prompts"] - d["exact_duplicate_prompts"]
        state.row("prompts", "dedupe", d["prompts"], merged, "exact duplicate prompt merged")
        unique = d["responses"] - d["duplicate_responses"]
        state.row("responses", "dedupe", d["responses"], unique, "exact duplicate response merged")


class Texts(Step):
    name, timing = "texts", "dedupe"

    def run(self, con, state):
        binarise.texts(con)


class VotesStep(Step):
    name, timing = "votes", "votes"

    def __init__(self, options: Votes) -> None:
        self.options = options

    def run(self, con, state):
        rep = state.report
        rep["votes"] = votes.expand(con, self.options)
        rep["votes"].update(votes.aggregate(con, self.options))
        fit = rep["votes"].get("bradley_terry")
        if fit and not fit["converged"]:
            rep["warnings"].append(
                f"Bradley–Terry did not converge for {fit['tournaments_not_converged']} of {fit['tournaments']} "
                f"(prompt, aspect) tournaments in {fit['iterations']} iterations (largest gradient left "
                f"{fit['max_gradient']}): their strengths, margins and min_margin decisions are approximate"
            )
        state.row("votes", "votes", rep["votes"]["votes"], rep["votes"]["votes_counted"], "set aside by a vote policy")
        rep["agreement"] = report.agreement(con)


class BinariseTable(Step):
    """One curated table's working rows: pairs from the comparisons, or unpaired, sft or steps rows."""

    def __init__(self, table: str, options: Binarise, votes_options: Votes, seed: int) -> None:
        self.table, self.options, self.votes_options, self.seed = table, options, votes_options, seed
        self.name = f"binarise {table}"
        self.timing = "pairs" if table == "pairs" else "unpaired, sft, steps"

    def run(self, con, state):
        cfg, vcfg = self.options, self.votes_options
        if self.table == "pairs":
            binarise.pairs(con, cfg, vcfg, self.seed)
            state.row("pairs", f"binarise ({cfg.pairs})", None, filters.kept(con, "pairs"))
            return
        if self.table == "unpaired":
            binarise.unpaired(con, cfg, vcfg)
        elif self.table == "sft":
            binarise.sft(con, cfg)
        else:
            binarise.steps(con, cfg, vcfg)
        rows = con.execute(f"SELECT count(*) FROM {working.ROWS[self.table]}").fetchall()[0][0]
        state.row(self.table, "binarise", None, rows)


class Mark(Step):
    """One filter on one table: rows marked, counted in the report with a few examples."""

    name = "filter"

    def __init__(self, flt: Filter, table: str) -> None:
        self.filter, self.table, self.options = flt, table, flt.options
        self.timing = "pairs" if table == "pairs" else "unpaired, sft, steps"

    @property
    def reads(self) -> tuple[str, ...]:
        return (working.ROWS[self.table],)

    def run(self, con, state):
        flt = self.filter
        before = filters.kept(con, self.table)
        dropped = flt.mark(con, self.table, state.context)
        threshold = flt.threshold()
        state.row(self.table, flt.name, before, before - dropped, flt.code, threshold=_flat(threshold))
        if dropped:
            drops = state.report["drops"].setdefault(self.table, {})
            if flt.code in drops:  # the recipe lists this filter again: one key, the counts add up
                entry = drops[flt.code]
                entry["count"] += dropped
                entry["threshold"] = [*_listed(entry["threshold"]), threshold]
            else:
                entry = drops[flt.code] = {"count": dropped, "threshold": threshold}
            entry["examples"] = filters.examples(con, self.table, flt.code)

    def __repr__(self) -> str:
        return f"Mark({self.filter.name!r}, {self.table!r})"


def _listed(threshold: Any) -> list:
    return threshold if isinstance(threshold, list) else [threshold]


def _flat(threshold: Any) -> Any:
    """A threshold as one value for a row of the steps table (a filter with several limits: "k=v, k=v")."""
    if isinstance(threshold, dict):
        return ", ".join(f"{k}={v}" for k, v in threshold.items())
    return threshold


class LengthBiasShare(Step):
    """The share of kept pairs whose chosen is longer, and their lengths, before and after the filters."""

    name, timing = "length bias", "pairs"

    def __init__(self, when: str) -> None:
        self.when = when

    def run(self, con, state):
        state.report.setdefault("length_bias", {})[self.when] = filters.length_bias_share(con)
        # the lengths themselves, on the bins of "before", so the cap's effect shows bin by bin
        dist = state.report.setdefault("length_distribution", {})
        dist[self.when] = report.lengths(con, dist.get("before", {}).get("edges"))


class SplitStep(Step):
    name, timing = "split", "split"

    def __init__(self, options: Split, seed: int) -> None:
        self.options, self.seed = options, seed

    def run(self, con, state):
        state.report["split_groups"] = splits.assign(con, self.options, self.seed)


class Summary(Step):
    name, timing = "report", "report"

    def run(self, con, state):
        state.report.update(report.summary(con))


def context(recipe: Recipe) -> Context:
    cfg = recipe.stage("dedupe")
    return Context(seed=recipe.seed, responses_merged=bool(cfg is not None and cfg.responses))


def plan(recipe: Recipe) -> list[Step]:
    """The steps `recipe` runs, in order (see the module docstring)."""
    seed = recipe.seed
    dcfg, vcfg, bcfg, scfg = (recipe.stage(s) for s in ("dedupe", "votes", "binarise", "split"))
    listed = [filters.FILTERS[s.name](s.options) for s in recipe.filters]
    near = (
        [filters.NearDuplicate(filters.NearDuplicate.Options(dcfg.near_duplicates.threshold))]
        if dcfg is not None and dcfg.near_duplicates.enabled and dcfg.near_duplicates.action == "drop"
        else []
    )
    steps: list[Step] = [Load(), DedupeStep(dcfg, seed), Texts(), VotesStep(vcfg)]
    steps.append(BinariseTable("pairs", bcfg, vcfg, seed))
    first: list[Filter] = list(near)
    if dcfg is not None and dcfg.pairs:
        first.append(filters.DuplicatePair(filters.DuplicatePair.Options(by_ids=dcfg.prompts and dcfg.responses)))
    if vcfg.both_bad == "drop":
        first.append(filters.BothBad())
    steps += [Mark(f, "pairs") for f in first]
    steps.append(LengthBiasShare("before"))
    steps += [Mark(f, "pairs") for f in listed if "pairs" in f.applies]
    steps.append(LengthBiasShare("after"))
    own = {"unpaired": [filters.BinaryTie()], "sft": [], "steps": [filters.StepCountMismatch()]}
    for table in ("unpaired", "sft", "steps"):
        steps.append(BinariseTable(table, bcfg, vcfg, seed))
        steps += [Mark(f, table) for f in [*own[table], *near, *listed] if table in f.applies]
    steps.append(Mark(filters.BalanceCap(filters.BalanceCap.Options(bcfg.unpaired.max_ratio)), "unpaired"))
    steps.append(SplitStep(scfg, scfg.seed if scfg.seed is not None else seed))
    steps.append(Summary())
    return steps
