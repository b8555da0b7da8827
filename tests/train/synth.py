"""A synthetic preference task with a learnable difference, and tiny models to learn it (shared by train tests)."""

from __future__ import annotations

import random
from pathlib import Path

GOOD = ["sun", "tree", "river", "bird", "stone", "cloud"]
BAD = ["ash", "rust", "smoke", "dust", "mud", "fog"]
TOPIC = ["red", "blue", "green", "gold", "grey", "pink", "teal", "navy"]


def pairs(n: int, seed: int, conversational: bool = False, min_len: int = 2, max_len: int = 6) -> list[dict]:
    """Prompt: a few topic words. Chosen: words from GOOD; rejected: words from BAD (lengths vary)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choices(TOPIC, k=rng.randint(min_len, max_len)))
        chosen = " ".join(rng.choices(GOOD, k=rng.randint(min_len, max_len)))
        rejected = " ".join(rng.choices(BAD, k=rng.randint(min_len, max_len)))
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "prompt_id": f"p{i}",
                }
            )
        else:
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_id": f"p{i}", "margin": 1.0})
    return rows


def unpaired(n: int, seed: int) -> list[dict]:
    out = []
    for r in pairs(n, seed):
        out += [
            {"prompt": r["prompt"], "completion": r["chosen"], "label": True},
            {"prompt": r["prompt"], "completion": r["rejected"], "label": False},
        ]
    random.Random(seed).shuffle(out)
    return out


def save_dataset(path: Path, train: list[dict], test: list[dict]) -> Path:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(train), "test": Dataset.from_list(test)}).save_to_disk(str(path))
    return path


def tiny_model(path: Path, **kw) -> Path:
    from tests.support.tiny_model import save_tiny

    return save_tiny(path, extra_words=GOOD + BAD + TOPIC, **kw)
