"""The curation recipe: a YAML list of named steps, read into typed dataclasses.

A recipe is `name`, `seed` and `steps`. The stages run in a fixed order (dedupe → votes → binarise →
filters → split), because each needs the one before; filters run in the order the recipe lists them
and each is counted on its own in the report. A stage the recipe leaves out runs with its defaults,
except `dedupe` and the filters, which only run when listed. The resolved recipe, every default filled
in, is saved beside the output as `recipe.yaml`, so a curation can be re-run exactly.

This module holds the stages' options; each filter's options, and its checks, are part of its class in
curate/filters.py. An option with fixed choices says so in its field (`choice`); an options class
with a `problems()` method says which values of the right type still cannot work. curate/plan.py
turns a recipe into the steps that run.

    name: default
    seed: 0
    steps:
      - dedupe: {near_duplicates: {threshold: 0.7}}
      - votes: {method: majority}
      - binarise: {pairs: comparisons}
      - identical
      - empty
      - ties
      - split: {test_size: 0.1}

docs/curating.md describes every option.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefkit.curate.filters import FILTERS, choice


class RecipeError(ValueError):
    """A recipe file that cannot be used: bad YAML, an unknown step or option, a value of the wrong type."""


# -- the stages ----------------------------------------------------------------------------------


@dataclass
class NearDuplicates:
    enabled: bool = True
    shingle: str = choice("word", ("word", "char"))  # "word" n-grams (robust to punctuation and case) or "char" n-grams
    ngram: int = 2  # words (or characters) per shingle
    num_perm: int = 128  # MinHash permutations
    bands: int = 32  # LSH bands; rows per band = num_perm / bands
    threshold: float = 0.7  # estimated Jaccard similarity at or above which two prompts are near duplicates
    action: str = choice(
        "group", ("group", "drop")
    )  # "group": keep all, one split per group; "drop": keep only the group's first prompt


@dataclass
class Dedupe:
    prompts: bool = True  # merge prompts equal after normalising case, whitespace and Unicode form (NFKC)
    responses: bool = True  # merge responses to the same prompt equal after the same normalisation
    pairs: bool = True  # drop a pair equal to an earlier one (same prompt, chosen, rejected, aspect)
    near_duplicates: NearDuplicates = field(default_factory=NearDuplicates)

    def problems(self) -> list[str]:
        nd, problems = self.near_duplicates, []
        if nd.num_perm < 1 or nd.bands < 1 or nd.num_perm % nd.bands:
            problems.append(
                f"near_duplicates.num_perm ({nd.num_perm}) must be a positive multiple of bands ({nd.bands})"
            )
        if not 0 < nd.threshold <= 1:
            problems.append(f"near_duplicates.threshold ({nd.threshold}) must be in (0, 1]")
        if nd.ngram < 1:
            problems.append("near_duplicates.ngram must be at least 1")
        return problems


@dataclass
class Votes:
    method: str = choice(
        "majority", ("majority", "mean", "bradley_terry")
    )  # "majority", "mean" (mean score difference) or "bradley_terry" (per prompt)
    human_over_ai: bool = True  # when people voted on a comparison, AI votes on it are set aside
    latest_human_vote: bool = True  # a person's later vote on the same comparison replaces the earlier
    both_order_ties: bool = True  # an AI judge's two orders that disagree count as one tie vote
    # `prefkit score-pairs` rows are a trained model's verdicts on the pairs it was trained on, written
    # for people to review; counted as votes, the next model would be trained on its predecessor's view.
    model_verdicts: bool = False
    both_bad: str = choice(
        "drop", ("drop", "keep")
    )  # a comparison most voters marked both-bad: "drop" its pair, or "keep" it
    kinds: list[str] = field(default_factory=lambda: ["pairwise", "ranking", "rating", "revision"])
    aspects: list[str] = field(default_factory=list)  # aspects to keep; empty: all


@dataclass
class Unpaired:
    from_pairs: bool = True  # chosen → desirable, rejected → undesirable
    binary: bool = True  # binary judgements (majority per response)
    both_bad: bool = True  # both responses of a both-bad comparison → undesirable
    rating_threshold: float | None = None  # mean rating ≥ threshold → desirable, below → undesirable
    max_ratio: float | None = None  # cap desirable:undesirable (either way) at this ratio by dropping the larger side


@dataclass
class Binarise:
    pairs: str = choice("comparisons", ("comparisons", "best_vs_worst", "best_vs_random", "all_pairs"))
    margin: float = 0.0  # all_pairs: the least score difference that makes a pair
    unpaired: Unpaired = field(default_factory=Unpaired)
    sft_revisions: bool = True  # accepted revisions (human edits, critique and CLAIR revisions) → SFT rows
    steps: bool = True  # step-labelled responses → PRM rows

    def problems(self) -> list[str]:
        problems = []
        if self.unpaired.max_ratio is not None and self.unpaired.max_ratio < 1:
            problems.append("unpaired.max_ratio must be 1 or more")
        if self.margin < 0:
            problems.append(f"margin ({self.margin}) must be 0 or more: it is the least score difference of a pair")
        return problems


@dataclass
class Split:
    test_size: float = 0.1  # share of prompt groups (a number ≥ 1: that many groups) in the test split
    stratify: str = choice("source", ("source", "none"))  # "source": the share holds within each source; "none"
    seed: int | None = None  # defaults to the recipe's seed

    def problems(self) -> list[str]:
        return ["test_size must be 0 or more"] if self.test_size < 0 else []


# The filters (their options, checks and reason codes) are classes in curate/filters.py; a recipe
# reads the options of the ones it lists from `FILTERS` there.
STAGES: dict[str, type] = {"dedupe": Dedupe, "votes": Votes, "binarise": Binarise, "split": Split}
_ORDER = {"dedupe": 0, "votes": 1, "binarise": 2, "filter": 3, "split": 4}


@dataclass
class RecipeStep:
    """A step as the recipe lists it: a stage or a filter, with its options (curate/plan.py runs it)."""

    name: str  # a stage ("dedupe", "votes", "binarise", "split") or a filter name
    options: Any  # the stage's or filter's options dataclass


@dataclass
class Recipe:
    name: str = "default"
    seed: int = 0  # every random choice (best_vs_random, caps, splits) derives from it
    steps: list[RecipeStep] = field(default_factory=list)

    def stage(self, name: str) -> Any:
        """The options of a stage; a stage the recipe leaves out gets its defaults (dedupe: none)."""
        for step in self.steps:
            if step.name == name:
                return step.options
        return None if name == "dedupe" else STAGES[name]()

    @property
    def filters(self) -> list[RecipeStep]:
        return [s for s in self.steps if s.name in FILTERS]

    def to_dict(self) -> dict:
        steps = []
        for s in self.steps:
            opts = dataclasses.asdict(s.options)
            steps.append({s.name: opts} if opts else s.name)
        return {"name": self.name, "seed": self.seed, "steps": steps}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# -- reading -------------------------------------------------------------------------------------

# data/recipes/default.yaml is the copy users see; curate/default.yaml (identical, a test checks) ships
# inside the package, so an installed prefkit has its default recipe without the repository's data/.
DEFAULT_RECIPE = Path(__file__).resolve().parent / "default.yaml"


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Read a recipe file (the bundled default recipe when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_RECIPE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark else ""
        raise RecipeError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_recipe(data, where=str(path), default_name=path.stem)


def parse_recipe(data: Any, where: str = "recipe", default_name: str = "default") -> Recipe:
    """A recipe from its YAML value (a mapping with `steps`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a mapping with name, seed and steps")
    unknown = set(data) - {"name", "seed", "steps"}
    if unknown:
        raise RecipeError(f"{where}: unknown key {sorted(unknown)[0]!r}; a recipe has name, seed and steps")
    name = data.get("name", default_name)
    seed = data.get("seed", 0)
    if not isinstance(name, str) or not isinstance(seed, int) or isinstance(seed, bool):
        raise RecipeError(f"{where}: name must be text and seed an integer")
    raw_steps = data.get("steps") or []
    if not isinstance(raw_steps, list):
        raise RecipeError(f"{where}: steps must be a list")
    steps = [_parse_step(item, f"{where}: steps[{i}]") for i, item in enumerate(raw_steps)]
    last = -1
    seen = set()
    for i, step in enumerate(steps):
        stage = "filter" if step.name in FILTERS else step.name
        if stage != "filter" and stage in seen:
            raise RecipeError(f"{where}: steps[{i}]: {step.name!r} is listed twice")
        if _ORDER[stage] < last:
            raise RecipeError(
                f"{where}: steps[{i}]: {step.name!r} comes too late; the order is dedupe, votes, binarise, filters, split"
            )
        seen.add(stage)
        last = _ORDER[stage]
    return Recipe(name=name, seed=seed, steps=steps)


def _parse_step(item: Any, where: str) -> RecipeStep:
    if isinstance(item, str):
        name, opts = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, opts = next(iter(item.items()))
    else:
        raise RecipeError(f"{where}: a step is a name or a one-key mapping `name: {{options}}`")
    known = {**STAGES, **{n: f.Options for n, f in FILTERS.items()}}
    if name not in known:
        raise RecipeError(f"{where}: unknown step {name!r}; steps are {sorted(known)}")
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        scalar = FILTERS[name].scalar if name in FILTERS else None
        if scalar:
            opts = {scalar: opts}
        elif opts is True:
            opts = {}
        else:
            raise RecipeError(f"{where}: options of {name!r} must be a mapping")
    options = _build(known[name], opts, f"{where} ({name})")
    # Values of the right type that still cannot work: each options class says which.
    problems = options.problems() if hasattr(options, "problems") else []
    if problems:
        raise RecipeError(f"{where} ({name}): {problems[0]}")
    return RecipeStep(name=name, options=options)


def _build(cls: type, opts: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    unknown = set(opts) - names
    if unknown:
        known = ", ".join(sorted(names)) or "no options"
        raise RecipeError(f"{where}: unknown option {sorted(unknown)[0]!r}; it takes {known}")
    values = {}
    for key, value in opts.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is True or value is None:
                value = {}
            if value is False and "enabled" in {f.name for f in dataclasses.fields(hint)}:
                value = {"enabled": False}
            if not isinstance(value, dict):
                raise RecipeError(f"{where}: {key} must be a mapping")
            values[key] = _build(hint, value, f"{where}.{key}")
            continue
        values[key] = _check(value, hint, f"{where}: {key}")
        choices = fields[key].metadata.get("choices")
        if choices and values[key] not in choices:
            raise RecipeError(f"{where}: {key} is {values[key]!r}; choose one of {list(choices)}")
    return cls(**values)


def _check(value: Any, hint: Any, where: str) -> Any:
    """`value` if it has the annotated type (ints are accepted for floats), else RecipeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
        for arg in typing.get_args(hint):
            if arg is not type(None):
                try:
                    return _check(value, arg, where)
                except RecipeError:
                    pass
        raise RecipeError(f"{where} must be {_describe(hint)}, not {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where} must be a list, not {value!r}")
        (arg,) = typing.get_args(hint)
        return [_check(v, arg, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, not {value!r}")
        karg, varg = typing.get_args(hint)
        return {_check(k, karg, where): _check(v, varg, where) for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise RecipeError(f"{where} must be {_describe(hint)}, not {value!r}")


def _describe(hint: Any) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "text"}.get(hint, str(hint))
