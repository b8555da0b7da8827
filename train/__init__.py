"""train: DPO, KTO and their variants on exported datasets — losses as pure functions, one trainer."""
