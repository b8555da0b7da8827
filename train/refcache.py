"""Reference log-probs computed once, cached on disk by data fingerprint and model.

The reference model is frozen, so its log-probs of every (prompt, completion) never change during a
run: computing them in one pass before training lets the reference leave memory, and a second run on
the same tokenised data with the same reference model reuses the file. The key hashes the token ids
of every example (so any change of data, tokenizer, template or truncation is a new key) and the
reference model (its name, config and a sample of every weight tensor).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from prefkit.train.batching import collate, plan_micro_batches
from prefkit.train.data import Example
from prefkit.train.forward import run
from prefkit.train.safeload import UnsafeFileError, load_tensors

from prefkit import files


def data_fingerprint(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        for part in (e.prompt, *e.completions):  # a pair's chosen, rejected; a KTO completion, its KL partner
            h.update(len(part).to_bytes(4, "little"))
            h.update(torch.tensor(part, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:24]


def model_fingerprint(model: torch.nn.Module, name: str = "", adapter_disabled: bool = False) -> str:
    h = hashlib.sha256(f"{name}|{adapter_disabled}|".encode())
    config = getattr(model, "config", None)
    if config is not None:
        h.update(config.to_json_string(use_diff=False).encode())
    for pname, p in model.named_parameters():
        if "lora_" in pname:  # the adapter is disabled for the reference: not part of it
            continue
        h.update(pname.encode())
        t = p.detach()
        if hasattr(t, "full_tensor"):  # an FSDP shard: gather it (every rank calls this), so the key is unchanged
            t = t.full_tensor()
        flat = t.reshape(-1)
        # a strided sample of each tensor: cheap for big models, still changes when weights do
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("PREFKIT_CACHE") or Path.home() / ".cache" / "prefkit") / "ref-logps"


@torch.no_grad()
def compute(
    module: torch.nn.Module,
    examples: list[Example],
    *,
    packed: bool,
    pad_id: int,
    device,
    max_tokens: int | None = None,
    micro_batch_size: int = 16,
    autocast=None,
) -> torch.Tensor:
    """Reference log-probs, shape (n_examples, 2), of each example's two completions: [:, 0] a pair's
    chosen or a KTO completion, [:, 1] a pair's rejected or the completion's KL partner."""
    out = torch.empty(len(examples), 2)
    plans = plan_micro_batches(examples, micro_batch_size=micro_batch_size, max_tokens=max_tokens)
    for idx in plans:
        batch = collate([examples[i] for i in idx], packed=packed, pad_id=pad_id).to(device)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            logps = run(module, batch).float().cpu()
        n = len(idx)
        out[idx, 0], out[idx, 1] = logps[:n], logps[n:]
    return out


def cached(
    key: str, cache_dir: Path | None, make, agree: Callable[[bool], bool] | None = None
) -> tuple[torch.Tensor, bool]:
    """`make()` once per key; returns (tensor, came_from_cache). Written atomically (`prefkit.files`).
    `agree(hit)` makes every process take the same branch: a sharded `make()` needs all of them."""
    path = Path(cache_dir or default_cache_dir()) / f"{key}.pt"
    files.clean_leftovers(path.parent)  # a killed run's half-written cache file
    hit = path.exists()
    if agree is not None:
        hit = agree(hit)
    if hit:
        value = load_tensors(path)  # a cache file may be planted by someone else: tensors only, no code
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[1] != 2:
            raise UnsafeFileError(f"{path}: not a reference log-prob cache (expected an (n, 2) tensor)")
        return value, True
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_file(path) as fh:
        torch.save(value, fh)
    return value, False
