"""The training configuration: one dataclass that is the CLI flags and the YAML file.

Every field becomes a `--flag` of `prefkit train` (underscores → dashes; the command line builds them,
in prefkit/cli/train.py) with the comment in `help=`; a YAML file holds the same keys. Precedence:
defaults < `--config FILE` < flags given on the command line. The final config is written to
`RUN_DIR/config.yaml`, and loading that file reproduces the run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from prefkit.train.methods import LORA_LR_FACTOR, METHODS, Method

from prefkit import files


class ConfigError(ValueError):
    """A bad config value or file; the message names the key."""


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    method: str = _f("dpo", "loss: " + ", ".join(METHODS), choices=list(METHODS))
    data: str = _f("", "exported dataset: save_to_disk folder, Parquet folder (data/*.parquet) or Hub id")
    model: str = _f("", "policy model: local folder or Hub id (a causal LM; `rm` adds a 1-score head)")
    out: str = _f("", "run folder: metrics.jsonl, config.yaml, checkpoint/, final/")
    # ---- the objective
    beta: float | None = _f(None, "β: 0.1 for DPO-family/KTO, 2.0 for SimPO, ORPO's λ 0.1 (None = the method's)")
    label_smoothing: float = _f(0.1, "ε for cdpo/robust: assumed probability that a label is flipped")
    gamma: float = _f(0.5, "SimPO's target margin γ")
    desirable_weight: float = _f(1.0, "KTO λ_D")
    undesirable_weight: float = _f(1.0, "KTO λ_U; keep λ_D·n_D/(λ_U·n_U) in [1, 4/3] (a warning says so)")
    # ---- the optimiser
    lr: float | None = _f(None, "peak learning rate (None = per method, ×10 with LoRA)")
    warmup_ratio: float = _f(0.1, "fraction of steps with linear warmup; cosine decay to 0 after")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping (0 = off)")
    epochs: float = _f(1.0, "passes over the training split (ignored when max_steps > 0)")
    max_steps: int = _f(0, "optimizer steps (0 = from epochs)")
    batch_size: int = _f(8, "examples (pairs, or KTO completions) per optimizer step, over all processes")
    micro_batch_size: int | None = _f(None, "examples per forward (None = batch_size); the rest is accumulation")
    max_tokens: int | None = _f(None, "token budget per forward instead of micro_batch_size (pairs kept whole)")
    seed: int = _f(0, "data order, KTO unpairing, head init")
    # ---- sequences
    max_length: int = _f(1024, "prompt + completion tokens (the completion is cut)")
    max_prompt_length: int = _f(512, "prompt tokens (the start is cut)")
    packing: bool = _f(True, "pack sequences without padding (attention kept per sequence)")
    # ---- reference model
    ref: str = _f(
        "cached",
        "cached: reference log-probs computed once and reused; on-the-fly: every step",
        choices=["cached", "on-the-fly"],
    )
    ref_model: str | None = _f(None, "reference model (None = the starting policy)")
    ref_cache_dir: str | None = _f(
        None, "where cached reference log-probs live (None = $PREFKIT_CACHE or ~/.cache/prefkit)"
    )
    # ---- model and speed
    lora: bool = _f(False, "train a LoRA adapter (peft); the reference is the adapter-disabled model")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA α")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    device: str = _f("auto", "auto (cuda if present), cpu, cuda")
    dtype: str = _f("auto", "autocast dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16")
    model_dtype: str = _f(
        "float32",
        "weights (and optimizer state) dtype: float32, or bfloat16 to halve memory like TRL's bf16 runs",
        choices=["float32", "bfloat16"],
    )
    compile: bool | None = _f(None, "torch.compile the forward (None = on for CUDA)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (less memory, ~30% slower)")
    head_chunk: int = _f(1024, "completion positions per LM-head chunk")
    threads: int | None = _f(None, "torch CPU threads (None = torch's default)")
    sharding: str = _f(
        "ddp",
        "under torchrun: ddp keeps a whole model copy per GPU (fastest when it fits one); fsdp shards weights, "
        "gradients and AdamW state across the processes (FSDP2), for a model whose training does not fit one GPU",
        choices=["ddp", "fsdp"],
    )
    # ---- bookkeeping
    logging_steps: int = _f(1, "write metrics every N steps")
    eval_steps: int = _f(0, "evaluate on the test split every N steps (0 = at the end only)")
    save_steps: int = _f(0, "checkpoint every N steps (0 = no intermediate checkpoints)")
    resume: bool = _f(False, "continue from RUN_DIR/checkpoint if it exists")
    progress: bool = _f(True, "show a progress bar")

    def method_record(self) -> Method:
        """The method's record (`validate` has checked the name)."""
        return METHODS[self.method]

    def resolved_beta(self) -> float | None:
        return self.beta if self.beta is not None else self.method_record().beta

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return self.method_record().lr * (LORA_LR_FACTOR if self.lora else 1.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        import yaml

        files.write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))  # whole or not at all


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def from_mapping(values: dict, source: str = "config") -> TrainConfig:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def load_yaml(path: str | Path) -> dict:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return {k.replace("-", "_"): v for k, v in values.items()}


def _check_types(cfg: TrainConfig) -> None:
    """Each value has its field's type (a YAML file can hold anything: `lr: fast`)."""
    for name, f in FIELDS.items():
        value = getattr(cfg, name)
        annotation = f.type if isinstance(f.type, str) else str(f.type)
        if value is None and "None" in annotation:
            continue
        base = annotation.split("|")[0].strip()
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(base, True)
        if not ok:
            raise ConfigError(f"{name}: expected {annotation.replace('None', 'null')}, got {value!r}")
        if base == "float" and not math.isfinite(value):
            raise ConfigError(f"{name}: must be a finite number, got {value}")


def validate(cfg: TrainConfig) -> None:
    """Every value checked before anything loads: a flag, a YAML key and a saved config alike."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method: unknown `{cfg.method}`; choose one of {', '.join(METHODS)}")
    _check_types(cfg)
    for name in ("batch_size", "logging_steps", "head_chunk", "lora_r"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name}: must be at least 1, got {getattr(cfg, name)}")
    for name in ("micro_batch_size", "max_tokens", "threads"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"{name}: must be at least 1 (or null), got {getattr(cfg, name)}")
    for name in ("max_steps", "eval_steps", "save_steps", "weight_decay", "max_grad_norm", "gamma"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name}: must be 0 or more, got {getattr(cfg, name)}")
    for name in ("desirable_weight", "undesirable_weight", "lora_alpha"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}: must be above 0, got {getattr(cfg, name)}")
    if cfg.beta is not None and cfg.beta <= 0:
        raise ConfigError(
            f"beta: must be above 0, got {cfg.beta} (it scales the log-ratios; leave it out for the method's)"
        )
    if cfg.lr is not None and cfg.lr <= 0:
        raise ConfigError(f"lr: must be above 0, got {cfg.lr} (leave it out for the method's default)")
    if not 0 <= cfg.label_smoothing < 0.5:
        raise ConfigError(
            f"label_smoothing: the probability that a label is flipped must be in [0, 0.5), got {cfg.label_smoothing}"
            " (robust DPO divides by 1 − 2ε; at 0.5 cdpo learns nothing)"
        )
    if not 0 <= cfg.warmup_ratio <= 1:
        raise ConfigError(f"warmup_ratio: a fraction of the steps, in [0, 1], got {cfg.warmup_ratio}")
    if not 0 <= cfg.lora_dropout < 1:
        raise ConfigError(f"lora_dropout: must be in [0, 1), got {cfg.lora_dropout}")
    if cfg.epochs < 0 or (cfg.epochs == 0 and cfg.max_steps == 0):
        raise ConfigError(f"epochs: must be above 0 (or give max_steps), got {cfg.epochs}")
    if cfg.max_length < 2:
        raise ConfigError(
            f"max_length: must be at least 2 (a prompt token and a completion token), got {cfg.max_length}"
        )
    if not 1 <= cfg.max_prompt_length < cfg.max_length:
        raise ConfigError(
            f"max_prompt_length: must be at least 1 and below max_length ({cfg.max_length}) to leave room for "
            f"the completion, got {cfg.max_prompt_length}"
        )
    if cfg.ref not in ("cached", "on-the-fly"):
        raise ConfigError(f"ref: `{cfg.ref}` is not cached or on-the-fly")
    if cfg.sharding not in ("ddp", "fsdp"):
        raise ConfigError(f"sharding: `{cfg.sharding}` is not ddp or fsdp")
    if cfg.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"dtype: `{cfg.dtype}` is not auto, float32 or bfloat16")
    if cfg.model_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"model_dtype: `{cfg.model_dtype}` is not float32 or bfloat16")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device: `{cfg.device}` is not auto, cpu or cuda")
