"""The exported sets train in TRL as they are: DPOTrainer on the preference set, KTOTrainer on the unpaired set.

A tiny Llama and a word-level tokenizer built offline (train/tiny.py); two steps each on CPU. TRL's
defaults (bf16, gradient checkpointing) are turned off for the CPU.
"""

import pytest
import torch
from datasets import load_dataset, load_from_disk

from tests.support.tiny_model import save_tiny, vocabulary_from

pytestmark = pytest.mark.slow

CPU = dict(
    max_steps=2,
    per_device_train_batch_size=2,
    learning_rate=1e-3,
    bf16=False,
    gradient_checkpointing=False,
    report_to=[],
    logging_steps=1,
    save_strategy="no",
    use_cpu=True,
    max_length=64,
    dataloader_num_workers=0,
)


def _tiny(ds, folder):
    """A tiny model folder (TRL loads the reference model from the policy's path) and its tokenizer."""
    from transformers import AutoTokenizer

    texts = []
    for row in ds:
        for value in row.values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts += [m["content"] for m in value if isinstance(m, dict)]
    path = save_tiny(folder, extra_words=vocabulary_from(texts, 2000))
    return str(path), AutoTokenizer.from_pretrained(path)


def _trained(trainer):
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert trainer.state.global_step == 2 and len(losses) == 2
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    return losses


@pytest.mark.parametrize("which", ["standard", "conversational"])
def test_dpo_trains_two_steps_on_the_exported_preference_set(exported, exported_conversational, which, tmp_path):
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(2)
    root, _ = exported if which == "standard" else exported_conversational
    ds = load_from_disk(str(root / "out/preference"))["train"]
    assert isinstance(ds[0]["prompt"], str if which == "standard" else list)
    model, tok = _tiny(ds, tmp_path / "model")
    args = DPOConfig(output_dir=str(tmp_path / "run"), **CPU)
    _trained(DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok))


def test_kto_trains_two_steps_on_the_exported_unpaired_set(exported, tmp_path):
    from trl import KTOConfig, KTOTrainer

    torch.set_num_threads(2)
    root, _ = exported
    # Through the Hub layout this time: the Parquet shards as `load_dataset` reads them.
    ds = load_dataset("parquet", data_dir=str(root / "out/unpaired/data"), cache_dir=str(tmp_path / "cache"))["train"]
    model, tok = _tiny(ds, tmp_path / "model")
    args = KTOConfig(output_dir=str(tmp_path / "run"), **CPU)
    _trained(KTOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok))
