"""Tiny offline model and tokenizer for tests; the builder lives in `train/tiny.py` (the demo uses it too)."""

from prefkit.train.tiny import CHAT_TEMPLATE, make_model, make_tokenizer, save_tiny, vocabulary_from

__all__ = ["CHAT_TEMPLATE", "make_model", "make_tokenizer", "save_tiny", "vocabulary_from"]
