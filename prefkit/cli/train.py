"""`prefkit train METHOD --data DIR --model PATH_OR_ID --out RUN_DIR [--config FILE] …`

Every field of the training configuration (prefkit.train.config.TrainConfig) is a `--flag`
(underscores → dashes) with the field's comment as its help; a YAML file holds the same keys.
Precedence: defaults < `--config FILE` < flags given on the command line.
"""

from __future__ import annotations

import argparse

from prefkit.cli import add_command
from prefkit.train.config import FIELDS, ConfigError, TrainConfig, from_mapping, load_yaml
from prefkit.train.data import DataError
from prefkit.train.methods import METHODS, Kind

ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError)


def _reward_models() -> str:
    return ", ".join(f"`{m.name}`" for m in METHODS.values() if m.kind is Kind.REWARD)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "train",
        cmd_train,
        f"""\
        Train a model on an exported preference dataset (DPO, KTO and their variants, or a reward model).

        METHOD is one of: {", ".join(METHODS)}. {_reward_models()} trains a Bradley–Terry reward model.
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
    p.add_argument("method", choices=list(METHODS), help="the loss")
    p.add_argument("--config", help="YAML file with any of the flags below as keys")
    add_flags(p, skip=("method",))


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text}")


def add_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per field; defaults are SUPPRESSed so `merge` can tell which flags were given."""
    for name, f in FIELDS.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else str(f.type)
        default = f.default
        # argparse %-formats help: a literal % (as in "~30% slower") must be doubled
        help_text = f"{f.metadata['help']} (default: {default})".replace("%", "%%")
        if kind.startswith("bool"):
            parser.add_argument(
                flag, nargs="?", const=True, type=_parse_bool, default=argparse.SUPPRESS, help=help_text
            )
            parser.add_argument(
                "--no-" + name.replace("_", "-"),
                dest=name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
            continue
        conv = float if kind.startswith("float") else int if kind.startswith("int") else str
        parser.add_argument(
            flag, type=conv, default=argparse.SUPPRESS, choices=f.metadata.get("choices"), help=help_text
        )


def merge(args: argparse.Namespace) -> TrainConfig:
    """Defaults < YAML (`args.config`) < flags given."""
    values: dict = {}
    if getattr(args, "config", None):
        values.update(load_yaml(args.config))
    values.update({k: v for k, v in vars(args).items() if k in FIELDS})
    return from_mapping(values, source=getattr(args, "config", None) or "flags")


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
