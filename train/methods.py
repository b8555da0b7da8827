"""Method names, importable without torch (the CLI's --help must stay fast). `prefkit.train.losses.LOSSES` is the
table of their loss functions; a test checks the two agree."""

METHODS = ("dpo", "cdpo", "robust", "hinge", "ipo", "apo-zero", "apo-down", "simpo", "orpo", "kto", "rm")
REFERENCE_FREE = frozenset({"simpo", "orpo", "rm"})


def needs_reference(method: str) -> bool:
    return method not in REFERENCE_FREE
