"""Read an exported dataset and turn it into token ids with the prompt/completion boundary known.

A dataset is a `save_to_disk` DatasetDict, a folder of Parquet files in the Hub layout
(`DIR/data/train-*.parquet`), or a Hub dataset id. Rows are in TRL's columns: preference
(`prompt`, `chosen`, `rejected`) or unpaired (`prompt`, `completion`, `label`), each either plain text
or conversational (a prompt is a list of `{role, content}` messages, a completion a list holding the
assistant turn). Other columns (`prompt_id`, `margin`, …) are ignored.

Tokenisation keeps the boundary exact: the prompt is rendered with the chat template's generation
prompt, the completion is the rest of the full conversation's rendering, and each part is tokenised
on its own, so a completion's first token is never merged into the prompt. BOS is added once (not
when the template already wrote it) and EOS is appended once (not when the template already did).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from prefkit.train.methods import METHODS, Kind, Method


class DataError(ValueError):
    """The dataset cannot be used for this method; the message says what to change."""


@dataclass(frozen=True)
class Pair:
    """One tokenised preference pair (the paired methods and the reward model)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    margin: float = 0.0  # reward model: the optional per-pair margin (0 for the other methods)

    @property
    def completions(self) -> tuple[list[int], list[int]]:
        """The two sequences that run after the prompt, in one forward."""
        return self.chosen, self.rejected


@dataclass(frozen=True)
class Completion:
    """One tokenised KTO completion with its label, and its KL partner: a completion of another
    prompt, scored after this prompt, for the reference point z₀."""

    prompt: list[int]
    completion: list[int]
    label: bool  # desirable?
    kl_completion: list[int]

    @property
    def completions(self) -> tuple[list[int], list[int]]:
        """The two sequences that run after the prompt (the trainer runs a step's KL rows first, alone)."""
        return self.completion, self.kl_completion


Example = Pair | Completion  # what batching, the reference cache and the trainer take


def load_splits(data: str | Path):
    """A `DatasetDict` from a save_to_disk folder, a Parquet folder (Hub layout) or a Hub id."""
    import datasets

    path = Path(data)
    if (path / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(path))
    if (path / "dataset_info.json").exists():
        return datasets.DatasetDict({"train": datasets.load_from_disk(str(path))})
    if path.is_dir():
        files = sorted((path / "data").glob("*.parquet")) or sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(
                f"{path}: no dataset here (expected dataset_dict.json from save_to_disk, or data/*.parquet)"
            )
        by_split: dict[str, list[str]] = {}
        for f in files:
            by_split.setdefault(f.name.split("-")[0].split(".")[0], []).append(str(f))
        return datasets.load_dataset("parquet", data_files=by_split)
    if path.exists() or str(data).startswith((".", "/")):
        raise DataError(f"{data}: not a dataset folder")
    try:
        return datasets.load_dataset(str(data))
    except Exception as exc:  # the Hub raises many kinds; the user needs one line
        raise DataError(f"{data}: could not load it as a Hub dataset id ({exc.__class__.__name__}: {exc})") from exc


def dataset_format(columns: list[str]) -> str:
    """The rows' layout, in TRL's names: "preference" (prompt/chosen/rejected) or "unpaired"
    (prompt/completion/label)."""
    if {"prompt", "chosen", "rejected"} <= set(columns):
        return "preference"
    if {"prompt", "completion", "label"} <= set(columns):
        return "unpaired"
    raise DataError(f"columns {sorted(columns)}: need prompt/chosen/rejected (preference) or prompt/completion/label")


def unpair(rows: list[dict], seed: int) -> list[dict]:
    """Preference rows → KTO rows (chosen desirable, rejected undesirable), shuffled so that every
    micro-batch mixes desirable and undesirable completions (KTO's KL estimate needs a mix)."""
    out = [
        {"prompt": r["prompt"], "completion": r[c], "label": c == "chosen"}
        for r in rows
        for c in ("chosen", "rejected")
    ]
    random.Random(seed).shuffle(out)
    return out


class Tokenise:
    """Prompt and completion → token ids, with the boundary handled for plain text and chat templates."""

    def __init__(self, tokenizer, max_length: int = 1024, max_prompt_length: int = 512):
        self.tok = tokenizer
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length

    def _render(self, prompt, completion) -> tuple[str, str]:
        if isinstance(prompt, str):
            if not isinstance(completion, str):
                raise DataError("prompt is text but completion is a message list; use one format for both")
            return prompt, completion
        if self.tok.chat_template is None:
            raise DataError("conversational data needs a tokenizer with a chat template")
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        p = self.tok.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(list(prompt) + list(completion), tokenize=False)
        if not full.startswith(p):
            raise DataError(
                "the chat template renders the prompt differently inside the full conversation; "
                "cannot find the prompt/completion boundary"
            )
        return p, full[len(p) :]

    def __call__(self, prompt, completion) -> tuple[list[int], list[int]]:
        p_text, c_text = self._render(prompt, completion)
        tok = self.tok
        bos, eos = tok.bos_token_id, tok.eos_token_id
        # the tokenizer's own special tokens on the prompt (BOS for most causal LMs), unless the template
        # already wrote BOS; an EOS some tokenizers append there is dropped (it would end the prompt)
        starts_with_bos = tok.bos_token is not None and p_text.startswith(tok.bos_token)
        p_ids = tok(p_text, add_special_tokens=not starts_with_bos)["input_ids"]
        if (
            eos is not None
            and eos != bos
            and p_ids
            and p_ids[-1] == eos
            and not p_text.rstrip().endswith(tok.eos_token)
        ):
            p_ids = p_ids[:-1]
        c_ids = tok(c_text, add_special_tokens=False)["input_ids"]
        c_ids = _strip_trailing(c_ids, tok.pad_token_id, eos)  # templates may end with "\n" after EOS
        if eos is not None and (not c_ids or c_ids[-1] != eos):
            c_ids = c_ids + [eos]
        p_ids = p_ids[-self.max_prompt_length :]  # keep the end of a long prompt: it is what the answer follows
        c_ids = c_ids[: max(1, self.max_length - len(p_ids))]
        return p_ids, c_ids


def _strip_trailing(ids: list[int], pad: int | None, eos: int | None) -> list[int]:
    # drop whitespace-only tokens the template writes after EOS, which the model never predicts
    if eos is not None and eos in ids:
        last = len(ids) - 1 - ids[::-1].index(eos)
        return ids[: last + 1]
    return ids


def build_examples(
    rows: list[dict],
    method: Method,
    tokenise: Tokenise,
    *,
    batch_size: int,
    seed: int,
    warn: Callable[[str], None] | None = None,
) -> list[Pair] | list[Completion]:
    """Tokenise rows for `method`: `Pair`s, or for an unpaired method `Completion`s. Unpaired:
    preference rows are unpaired, and all rows shuffled with `seed`; each completion gets its KL
    partner from `kl_partners` (fixed here, so cached reference log-probs stay valid). `warn` gets one
    line where batches hold a single prompt."""
    if not rows:
        return []
    layout = dataset_format(list(rows[0]))
    if method.kind is Kind.UNPAIRED:
        if layout == "preference":
            rows = unpair(rows, seed)
        else:
            rows = list(rows)
            # an export keeps the curated order, sorted by prompt: shuffled, a batch mixes prompts and labels
            random.Random(seed).shuffle(rows)
        toks = [tokenise(r["prompt"], r["completion"]) for r in rows]
        partner, note = kl_partners([tuple(p) for p, _ in toks], batch_size)
        if note and warn:
            warn(note)
        return [
            Completion(p, c, bool(r["label"]), toks[j][1]) for r, (p, c), j in zip(rows, toks, partner, strict=True)
        ]
    if layout != "preference":
        unpaired = " or ".join(f"`{m.name}`" for m in METHODS.values() if m.kind is Kind.UNPAIRED)
        raise DataError(
            f"`{method.name}` needs preference data (prompt/chosen/rejected); this dataset is unpaired "
            f"(prompt/completion/label): use {unpaired}"
        )
    pairs = []
    for r in rows:
        p, c = tokenise(r["prompt"], r["chosen"])
        p2, rj = tokenise(r["prompt"], r["rejected"])
        if p2 != p:
            raise DataError("prompt tokenised differently with chosen and rejected; check the chat template")
        margin = float(r.get("margin") or 0.0) if method.kind is Kind.REWARD else 0.0
        pairs.append(Pair(p, c, rj, margin))
    return pairs


def kl_partners(prompts: list[Hashable], batch_size: int) -> tuple[list[int], str | None]:
    """For each row, the row whose completion becomes its KL row, and a warning or None.

    KTO estimates its reference point z0 from completions y' of *other* prompts (Ethayarajh et al.
    2024, §4: x paired with a mismatched y'). Rows are taken in groups of `batch_size`, and within a
    group the completions are permuted so that none stays with its own prompt: the group's KL rows are
    its own completions moved to other prompts (TRL rotates them the same way, within a batch). A
    row left without one (its group holds one prompt only, a final group of one, or a prompt with more
    than half the group) takes the nearest later row with another prompt, cyclically over all rows.
    Only when every row answers the same prompt is a same-prompt completion used (the next row's),
    and the warning says so."""
    n = len(prompts)
    partner = list(range(n))
    single_prompt = len(set(prompts)) <= 1
    lonely = 0
    for start in range(0, n, batch_size):
        group = list(range(start, min(start + batch_size, n)))
        first = {}
        for i in group:
            first.setdefault(prompts[i], len(first))
        lonely += len(first) == 1
        # same prompts side by side, then shifted by the largest block: no row lands in its own block
        # unless one prompt fills more than half the group
        group.sort(key=lambda i: first[prompts[i]])
        shift = max(Counter(prompts[i] for i in group).values())
        for k, i in enumerate(group):
            j = group[(k + shift) % len(group)]
            if prompts[j] == prompts[i] and not single_prompt:
                j = next((i + d) % n for d in range(1, n) if prompts[(i + d) % n] != prompts[i])
            partner[i] = j if j != i else (i + 1) % n
    if single_prompt and n:
        return partner, (
            "KTO: every completion answers the same prompt, so the KL rows (which need completions of other "
            "prompts) are completions of that prompt and the reference point z0 is biased; add other prompts"
        )
    if lonely and not single_prompt:
        groups = math.ceil(n / batch_size)
        return partner, (
            f"KTO: {lonely} of {groups} batches of {batch_size} hold completions of one prompt only; "
            "their KL rows are completions of other prompts from other batches"
        )
    return partner, None


def check_kto_weights(examples: list[Completion], desirable_weight: float, undesirable_weight: float) -> str | None:
    """KTO paper §4.2: keep λ_D·n_D / (λ_U·n_U) within [1, 4/3]. Returns a warning, or None."""
    n_d = sum(e.label for e in examples)
    n_u = len(examples) - n_d
    if n_d == 0 or n_u == 0:
        return f"KTO data has {n_d} desirable and {n_u} undesirable completions; it needs both"
    ratio = desirable_weight * n_d / (undesirable_weight * n_u)
    if not 1 <= ratio <= 4 / 3:
        return (
            f"KTO: λ_D·n_D / (λ_U·n_U) = {ratio:.2f} is outside [1, 4/3] (n_D={n_d}, n_U={n_u}); "
            f"consider --undesirable-weight {desirable_weight * n_d / n_u:.2f}"
        )
    return None
