"""Read tensor files without unpickling code: checkpoints and caches may come from someone else.

`torch.load` unpickles, and a pickle can call any function while it loads (a crafted `state.pt` ran
`os.system`). `weights_only=True` allows only tensors and plain containers (dict, list, tuple, str,
numbers, None); anything else is refused before it runs. It is passed explicitly because older torch
releases, which pyproject allows, default to `False`.
"""

from __future__ import annotations

import pickle
from pathlib import Path


class UnsafeFileError(ValueError):
    """A tensor file that holds something other than tensors, or cannot be read; the message says which."""


def load_tensors(path: str | Path, *, mmap: bool = False):
    """The contents of a `torch.save` file of tensors and plain containers; `UnsafeFileError` otherwise."""
    import torch

    try:
        return torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        text = str(exc)
        # torch's message is long and ends with how to load it unsafely; keep the line naming what was refused
        why = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), None)
        why = why or (text.strip().splitlines() or [exc.__class__.__name__])[0]
        raise UnsafeFileError(f"{path}: refused, not a file of tensors only ({why})") from exc
