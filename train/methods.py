"""The training methods as records: one `Method` per method, in the table `METHODS` (name → record).

Everything the trainer, data preparation, config validation and the CLI's help need to know about a
method is here; they read the record instead of comparing method names. This module imports nothing
heavy (the CLI's --help must stay fast without torch), so a record names its loss function in
`prefkit.train.losses` and `Method.loss_fn` imports it when a run needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """What a method trains on, and so which examples, forwards and metrics it gets."""

    PAIRED = "paired"  # preference pairs: log-probs of the chosen and the rejected completion
    UNPAIRED = "unpaired"  # single labelled completions, each with a KL partner (KTO's z₀)
    REWARD = "reward"  # preference pairs scored by a sequence-classification head


@dataclass(frozen=True)
class Method:
    name: str  # the CLI's METHOD and the config's `method`
    kind: Kind
    loss: str  # its function in prefkit.train.losses
    reference: bool  # needs reference log-probs (a frozen reference model, or the cache)
    beta: float | None  # default β (None: the loss has no β)
    lr: float  # default peak learning rate for full fine-tuning (×LORA_LR_FACTOR with LoRA)
    length_normalised: bool = False  # log-probs (or log-ratios) averaged per completion token
    options: tuple[str, ...] = ()  # config fields the loss reads as keywords, besides β
    reports_loss: bool = True  # False: only the rewards mean something (an evaluation stand-in)
    on_pairs: Method | None = None  # how to evaluate on a preference test split, when not as itself

    @property
    def loss_fn(self) -> Callable:
        from prefkit.train import losses  # torch: only once a run needs the loss

        return getattr(losses, self.loss)


# Learning rates that work for full fine-tuning of 1–8B models (the papers' and TRL's usual values);
# LoRA trains ~10× fewer, freshly initialised weights and wants ~10× more.
LORA_LR_FACTOR = 10.0
_DPO_LR = 5e-7

# Not a training method (no CLI choice): a KTO run judged on held-out preference pairs, is
# β·ρ(chosen) > β·ρ(rejected)? DPO's rewards are exactly KTO's β·ρ (with the run's β); the DPO loss
# itself would mislabel a KTO run, so it is not reported.
KTO_ON_PAIRS = Method("kto-on-pairs", Kind.PAIRED, "dpo", reference=True, beta=0.1, lr=_DPO_LR, reports_loss=False)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("dpo", Kind.PAIRED, "dpo", reference=True, beta=0.1, lr=_DPO_LR),
        Method("cdpo", Kind.PAIRED, "cdpo", reference=True, beta=0.1, lr=_DPO_LR, options=("label_smoothing",)),
        Method("robust", Kind.PAIRED, "robust", reference=True, beta=0.1, lr=_DPO_LR, options=("label_smoothing",)),
        Method("hinge", Kind.PAIRED, "hinge", reference=True, beta=0.1, lr=_DPO_LR),
        Method("ipo", Kind.PAIRED, "ipo", reference=True, beta=0.1, lr=_DPO_LR, length_normalised=True),
        Method("apo-zero", Kind.PAIRED, "apo_zero", reference=True, beta=0.1, lr=_DPO_LR),
        Method("apo-down", Kind.PAIRED, "apo_down", reference=True, beta=0.1, lr=_DPO_LR),
        Method(
            "simpo",
            Kind.PAIRED,
            "simpo",
            reference=False,
            beta=2.0,
            lr=1e-6,
            length_normalised=True,
            options=("gamma",),
        ),
        Method("orpo", Kind.PAIRED, "orpo", reference=False, beta=0.1, lr=8e-6, length_normalised=True),
        Method(
            "kto",
            Kind.UNPAIRED,
            "kto",
            reference=True,
            beta=0.1,
            lr=_DPO_LR,
            options=("desirable_weight", "undesirable_weight"),
            on_pairs=KTO_ON_PAIRS,
        ),
        Method("rm", Kind.REWARD, "bradley_terry", reference=False, beta=None, lr=1e-5),
    )
}
