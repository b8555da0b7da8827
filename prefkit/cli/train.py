"""`prefkit train METHOD --data DIR --model PATH_OR_ID --out RUN_DIR [--config FILE] …`"""

from __future__ import annotations

import argparse

from prefkit.cli import add_command
from prefkit.train.config import ConfigError, add_flags, merge
from prefkit.train.data import DataError
from prefkit.train.methods import METHODS

ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "train",
        cmd_train,
        f"""\
        Train a model on an exported preference dataset (DPO, KTO and their variants, or a reward model).

        METHOD is one of: {", ".join(METHODS)}. `rm` trains a Bradley–Terry reward model.
        Every flag is also a key of the YAML file given with --config (flags win). The run folder
        gets metrics.jsonl (one JSON object per step, read by the app's training page), config.yaml,
        checkpoint/ (with --save-steps; continue with --resume) and final/ (Hugging Face format).
        Reference log-probs are computed once and cached (--ref on-the-fly recomputes them each step).
        Several GPUs: torchrun --nproc-per-node N -m prefkit.cli train ... (add --sharding fsdp when
        the model's weights, gradients and optimizer state do not fit one GPU).

        Example:
          prefkit train dpo --data exports/helpful --model Qwen/Qwen2.5-0.5B-Instruct --out runs/dpo1
          prefkit train kto --data exports/helpful --model ./my-sft --out runs/kto1 --lora --config kto.yaml
        """,
    )
    p.add_argument("method", choices=METHODS, help="the loss")
    p.add_argument("--config", help="YAML file with any of the flags below as keys")
    add_flags(p, skip=("method",))


def cmd_train(args: argparse.Namespace) -> int:
    from prefkit.train.trainer import TrainError, train

    try:
        cfg = merge(args)
        for name in ("data", "model", "out"):
            if not getattr(cfg, name):
                raise ConfigError(f"--{name} is required (flag or config key)")
        final = train(cfg)
    except TrainError as exc:
        raise ConfigError(str(exc)) from exc  # one error type the CLI already turns into one line
    print(f"trained: {final}")
    return 0
