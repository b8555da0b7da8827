"""Step metrics: accumulate over micro-batches and processes, write one JSON object per line.

`RUN_DIR/metrics.jsonl` is what the app's training page reads: each training row has `step`, `loss`,
`rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, `logps/chosen`,
`logps/rejected`, `kl` (KTO), `tokens_per_s`, `lr`, `mfu` (GPU); evaluation rows have the same keys
prefixed `eval/`. Rewards are the loss's implicit rewards (β·log-ratio; SimPO/ORPO: β·mean log-prob;
`rm`: the scores). For KTO, `rewards/chosen` averages desirable completions and `rewards/rejected`
undesirable ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from prefkit.train.methods import Kind, Method

from prefkit import files

KEYS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl",
)


class Accumulator:
    """Sums and counts per key; `row()` averages them (over all processes when several run)."""

    def __init__(self):
        self.sums = dict.fromkeys(KEYS, 0.0)
        self.counts = dict.fromkeys(KEYS, 0.0)
        self.tokens = 0

    def _add(self, key: str, values: torch.Tensor) -> None:
        values = values.detach().float()
        keep = ~torch.isnan(values)
        self.sums[key] += float(values[keep].sum())
        self.counts[key] += float(keep.sum())

    def add(self, method: Method, out, values: torch.Tensor, ref: torch.Tensor | None, n: int, tokens: int) -> None:
        self.tokens += tokens
        self._add("loss", out.losses)
        self._add("rewards/chosen", out.chosen_rewards)
        self._add("rewards/rejected", out.rejected_rewards)
        if method.kind is Kind.UNPAIRED:  # desirable completions count as chosen, undesirable as rejected
            desirable = ~torch.isnan(out.chosen_rewards)
            nan = torch.full_like(values[:n], float("nan"))
            self._add("logps/chosen", torch.where(desirable, values[:n], nan))
            self._add("logps/rejected", torch.where(desirable, nan, values[:n]))
            if len(values) > n:  # the KL rows ran in this forward (else `add_kl` got them)
                self.add_kl(values[n:] - ref[n:])
            return
        self._add("rewards/margins", out.chosen_rewards - out.rejected_rewards)
        self._add("rewards/accuracies", (out.chosen_rewards > out.rejected_rewards).float())
        if method.kind is not Kind.REWARD:  # a reward model's values are scores, not log-probs
            self._add("logps/chosen", values[:n])
            self._add("logps/rejected", values[n:])

    def add_kl(self, log_ratios: torch.Tensor) -> None:
        """KTO's KL rows, ρ_KL each: `kl` is their mean over the step and all processes (z₀ unclamped)."""
        self._add("kl", log_ratios)

    def row(self, world: int = 1) -> dict:
        vec = torch.tensor(
            [self.sums[k] for k in KEYS] + [self.counts[k] for k in KEYS] + [float(self.tokens)], dtype=torch.float64
        )
        if world > 1:
            torch.distributed.all_reduce(vec)
        sums, counts = vec[: len(KEYS)], vec[len(KEYS) : 2 * len(KEYS)]
        row = {k: float(sums[i] / counts[i]) for i, k in enumerate(KEYS) if counts[i] > 0}
        row["tokens"] = float(vec[-1])
        return row


class Writer:
    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, row: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with self.path.open("a") as f:  # one line per write: a reader never sees half a row
            f.write(json.dumps(clean) + "\n")


def read(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl. A torn last line (a run killed mid-write) is left out; the app's
    training page reads the file the same way (`prefkit.files.read_jsonl`)."""
    return files.read_jsonl(path)[0]


def truncate(path: Path, step: int) -> None:
    """On resume: drop rows logged after the checkpoint's step (they will be logged again), and a torn
    last line; the file is replaced whole, so a crash here leaves the old one."""
    if not path.exists():
        return
    keep = [row for row in read(path) if isinstance(row.get("step"), int) and row["step"] <= step]
    files.write_text(path, "".join(json.dumps(row) + "\n" for row in keep))


# bf16 dense peak FLOP/s by device name (vendor datasheets; no sparsity)
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
    "B200": 2250e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def mfu(n_params: int, tokens_per_s: float, device: torch.device, ref_forward: bool = False) -> float | None:
    """Model FLOPs utilisation: 6·N per token for forward+backward (+2·N for a reference forward), over
    the GPU's bf16 peak. None on CPU or an unknown GPU."""
    peak = peak_flops(device)
    if peak is None:
        return None
    return (6 + (2 if ref_forward else 0)) * n_params * tokens_per_s / peak


def memory_estimate(model, cfg, packed: bool, shards: int = 1) -> float:
    """Rough peak bytes per process before training: weights + grads + AdamW moments for trainable
    weights, frozen weights (both split over `shards` FSDP processes), and activations ≈ 34·hidden +
    5·heads·tokens bytes per token per layer (Korthikanti et al. 2022), halved-ish with bf16, for one
    micro-batch."""
    # weights + gradient + two AdamW moments, all in the weights' dtype
    trainable = sum(p.numel() * p.element_size() * 4 for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    tokens = cfg.max_tokens or 2 * (cfg.micro_batch_size or cfg.batch_size) * cfg.max_length
    act = 0.0 if cfg.gradient_checkpointing else tokens * layers * 34 * hidden
    return float((trainable + frozen) / shards + act)
