"""A tiny causal LM and a word-level tokenizer built on the spot, with nothing downloaded.

Used by `prefkit demo` (a new user sees the whole loop train without a GPU or a model download) and
by the tests. The tokenizer is a `PreTrainedTokenizerFast` with BOS/EOS/PAD and a chat template, so
it behaves like a real Hugging Face tokenizer for TRL and for prefkit's trainer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
    "{% if m['role'] == 'assistant' %}{{ eos_token }} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]


def vocabulary_from(texts: Iterable[str], max_words: int = 4000) -> list[str]:
    """The most frequent words of `texts` (split like the tokenizer splits), for a demo vocabulary."""
    counts = Counter(w for t in texts for w in re.findall(r"\w+", t))
    return [w for w, _ in counts.most_common(max_words)]


def make_tokenizer(extra_words: list[str] | None = None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(string.ascii_letters + string.digits + string.punctuation)
    words += [w for w in dict.fromkeys(extra_words or []) if w not in words]
    vocab = {tok: i for i, tok in enumerate(SPECIAL + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[4:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def save_tiny(path: str | Path, extra_words: list[str] | None = None, **model_kw) -> Path:
    """Write a tiny model + tokenizer folder that `from_pretrained(path)` loads."""
    path = Path(path)
    tok = make_tokenizer(extra_words)
    model = make_model(len(tok), **model_kw)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
