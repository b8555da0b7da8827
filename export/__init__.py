"""export: curated tables → Hugging Face datasets in TRL's formats, with a dataset card."""
