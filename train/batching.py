"""Examples → micro-batches → tensors, padded or packed.

A step's examples are split into micro-batches (by count, or by a token budget with the longest
first), never splitting an example: a pair's chosen and rejected (or a KTO completion and its KL
partner) always run in the same forward. Each micro-batch becomes one `Batch`: either right-padded rows
`[n_seq, max_len]`, or the sequences packed end to end in rows `[rows, row_len]` with `position_ids`
restarting at 0 for each sequence (transformers then restricts attention to each sequence),
in as few rows as fit.

Either way the batch also carries the flat positions whose hidden state predicts a completion token
(`src`), that token (`tgt`) and which sequence it belongs to (`seg`), so the log-prob head only ever
sees completion positions and the per-sequence sums are one `index_add`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from prefkit.train.data import Completion, Example


@dataclass
class Batch:
    input_ids: torch.Tensor  # (rows, length)
    attention_mask: torch.Tensor | None  # (rows, length); None when packed
    position_ids: torch.Tensor | None  # (1, total) when packed
    src: torch.Tensor  # (n_tokens,) flat index into (rows*length) of positions predicting completion tokens
    tgt: torch.Tensor  # (n_tokens,) the completion tokens they predict
    seg: torch.Tensor  # (n_tokens,) index of the sequence each belongs to
    n_seq: int  # sequences: each example's first completion (chosen / the completion), then each one's second
    lengths: torch.Tensor  # (n_seq,) completion token counts
    last: torch.Tensor  # (n_seq,) flat index of each sequence's last token (reward-model score)
    tokens: int  # non-pad tokens (what tokens/s counts)

    def to(self, device) -> Batch:
        move = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**move)


def sequences(examples: list[Example]) -> list[tuple[list[int], list[int]]]:
    """(prompt, completion) for every sequence: every example's first completion (a pair's chosen, a
    KTO completion), then every example's second (a pair's rejected, a KTO completion's KL partner)."""
    return [(e.prompt, e.completions[0]) for e in examples] + [(e.prompt, e.completions[1]) for e in examples]


def example_tokens(e: Example) -> int:
    first, second = e.completions
    return 2 * len(e.prompt) + len(first) + len(second)


def plan_micro_batches(
    examples: list[Example], *, micro_batch_size: int | None = None, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices of `examples` per micro-batch. With `max_tokens`: longest first, each micro-batch filled
    up to the budget (an example over the budget runs alone); else consecutive groups of
    `micro_batch_size`. An example is never split."""
    n = len(examples)
    if not max_tokens:
        size = micro_batch_size or n or 1
        return [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    order = sorted(range(n), key=lambda i: -example_tokens(examples[i]))
    plans: list[list[int]] = []
    used: list[int] = []
    for i in order:
        t = example_tokens(examples[i])
        for j, u in enumerate(used):  # first fit: length-sorted, so little budget is wasted
            if u + t <= max_tokens:
                plans[j].append(i)
                used[j] += t
                break
        else:
            plans.append([i])
            used.append(t)
    return plans


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    """Sequence indices per packed row: longest first, first fit into rows of at most `row_tokens`."""
    rows: list[list[int]] = []
    used: list[int] = []
    for s in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, u in enumerate(used):
            if u + lengths[s] <= row_tokens:
                rows[r].append(s)
                used[r] += lengths[s]
                break
        else:
            rows.append([s])
            used.append(lengths[s])
    return rows


def collate(
    examples: list[Example], *, packed: bool, pad_id: int, row_tokens: int | None = None, parts: str = "both"
) -> Batch:
    """Padded rows, or (packed) sequences laid end to end in rows of at most `row_tokens` tokens
    (default: the longest sequence, so attention costs no more than padded rows; with varlen flash
    attention one long row is best). Rows are right-padded to the longest row; padding gets its own
    position ids, so it forms a separate document no real token attends to. `parts`: "both" (each
    example's two completions); for KTO `Completion`s also only the "completion"s or only the "kl" rows."""
    seqs = sequences(examples)
    if parts != "both":
        if parts not in ("completion", "kl") or not all(isinstance(e, Completion) for e in examples):
            raise ValueError(f"parts={parts!r}: a pair runs whole; KTO completions take completion or kl")
        n = len(examples)
        seqs = seqs[:n] if parts == "completion" else seqs[n:]
    src, tgt, seg, last = [], [], [], []
    lengths = [len(c) for _, c in seqs]
    if packed:
        full_lengths = [len(p) + len(c) for p, c in seqs]
        rows = pack_rows(full_lengths, max(max(full_lengths), row_tokens or 0))
        width = max(sum(full_lengths[s] for s in row) for row in rows)
        input_ids = torch.full((len(rows), width), pad_id)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        tokens = 0
        for r, row in enumerate(rows):
            off = r * width
            col = 0
            for s in row:
                p, c = seqs[s]
                full = p + c
                input_ids[r, col : col + len(full)] = torch.tensor(full)
                position_ids[r, col : col + len(full)] = torch.arange(len(full))
                src += range(off + col + len(p) - 1, off + col + len(full) - 1)  # position t predicts token t+1
                tgt += c
                seg += [s] * len(c)
                last.append((s, off + col + len(full) - 1))
                col += len(full)
                tokens += len(full)
            position_ids[r, col:] = torch.arange(width - col)
        last_idx = [i for _, i in sorted(last)]
        return Batch(
            input_ids,
            None,
            position_ids,
            torch.tensor(src),
            torch.tensor(tgt),
            torch.tensor(seg),
            len(seqs),
            torch.tensor(lengths),
            torch.tensor(last_idx),
            tokens,
        )
    width = max(len(p) + len(c) for p, c in seqs)
    input_ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for s, (p, c) in enumerate(seqs):
        full = p + c
        input_ids[s, : len(full)] = torch.tensor(full)
        mask[s, : len(full)] = 1
        src += range(s * width + len(p) - 1, s * width + len(full) - 1)
        tgt += c
        seg += [s] * len(c)
        last.append(s * width + len(full) - 1)
    return Batch(
        input_ids,
        mask,
        None,
        torch.tensor(src),
        torch.tensor(tgt),
        torch.tensor(seg),
        len(seqs),
        torch.tensor(lengths),
        torch.tensor(last),
        int(mask.sum()),
    )


def packing_supported() -> bool:
    """Whether the installed transformers turns reset `position_ids` into per-sequence attention."""
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        return False
    return True
