"""TRL's own loss code, run on given log-prob tensors: an independent reference for `train/losses.py`.

TRL 1.16 has no stand-alone loss functions; its losses live inside trainer methods that take a model
and a tokenised batch. Each function here calls such a method unbound, with a stand-in `self` that
carries only the attributes the method reads (β, ε, loss type, an accelerator that gathers nothing
across processes, metric dicts) and a stand-in model whose output holds the given log-probs: each
sequence's whole log-prob sits at its first completion position, zeros elsewhere, so TRL's sum over
the completion gives back exactly the value we passed. The formulas TRL then applies are its own code.

  dpo, hinge, ipo, robust, apo-zero, apo-down  `DPOTrainer._compute_loss` (loss_type sigmoid, …)
  cdpo   `CPOTrainer.cpo_loss`, loss_type sigmoid with label smoothing, on DPO's log-ratios (CPO is DPO
         without a reference; given ρ_w and ρ_l it is conservative DPO, Mitchell 2023)
  simpo  `CPOTrainer.cpo_loss`, loss_type simpo, on per-token averaged log-probs (as CPO feeds it)
  orpo   `ORPOTrainer.get_batch_loss_metrics`, with a model whose logits give every completion token the
         sequence's mean log-prob and a one-token prompt (TRL's NLL term also counts prompt tokens;
         a one-token prompt has none that are predicted, so its NLL is the completion's, as in prefkit)
  kto    `KTOTrainer._compute_loss`, with precomputed reference log-probs and the KL rows' log-probs
  rm     `RewardTrainer.compute_loss`, with a model whose logits are the given scores
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import torch

PROMPT = 3  # prompt tokens of every stand-in sequence


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x

    @staticmethod
    def gather(x):
        return x


def _self(**attrs) -> SimpleNamespace:
    base = dict(
        accelerator=_Accelerator(),
        model=SimpleNamespace(training=True),
        aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    return SimpleNamespace(**{**base, **attrs})


def _sequences(lengths: list[int], token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, completion_mask for sequences of PROMPT + length tokens, right-padded."""
    width = PROMPT + max(lengths) + 1
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    completion = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, : PROMPT + n] = token
        mask[i, : PROMPT + n] = 1
        completion[i, PROMPT : PROMPT + n] = 1
    return ids, mask, completion


class _LogProbModel:
    """Stands in for a causal LM with TRL's fused head: per-token log-probs of the labels, looked up by
    the input ids it is called with (each registered batch has its own token value)."""

    def __init__(self):
        self.table: list[tuple[torch.Tensor, torch.Tensor]] = []

    def register(self, input_ids: torch.Tensor, seq_logps: torch.Tensor) -> None:
        per_token = torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1, dtype=seq_logps.dtype)
        per_token[:, PROMPT - 1] = seq_logps  # position t predicts token t+1: the first completion token
        self.table.append((input_ids, per_token))

    def __call__(self, input_ids, labels=None, **_):
        per_token = next(lp for ids, lp in self.table if ids.shape == input_ids.shape and torch.equal(ids, input_ids))
        zeros = torch.zeros_like(per_token)
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


DPO_LOSS_TYPES = {
    "dpo": "sigmoid",
    "hinge": "hinge",
    "ipo": "ipo",
    "robust": "robust",
    "apo-zero": "apo_zero",
    "apo-down": "apo_down",
}


def dpo_family(name, pc, pr, rc, rr, chosen_lengths, rejected_lengths, *, beta, label_smoothing=0.0) -> torch.Tensor:
    """Per-example losses from `DPOTrainer._compute_loss`, one pair per call (it returns the mean)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    me = _self(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[DPO_LOSS_TYPES[name]],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
    )
    out = []
    for i in range(len(pc)):
        model = _LogProbModel()
        ids, mask, completion = _sequences([int(chosen_lengths[i]), int(rejected_lengths[i])], token=5)
        model.register(ids, torch.stack([pc[i], pr[i]]))
        inputs = {
            "input_ids": ids,
            "attention_mask": mask,
            "completion_mask": completion,
            "ref_chosen_logps": rc[i : i + 1],
            "ref_rejected_logps": rr[i : i + 1],
        }
        out.append(DPOTrainer._compute_loss(me, model, inputs, return_outputs=False))
    return torch.stack(out)


def cpo(loss_type: str, chosen, rejected, *, beta, label_smoothing=0.0, gamma=0.0) -> torch.Tensor:
    """Per-example losses from `CPOTrainer.cpo_loss` (its inputs are per-sequence values)."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    me = _self(alpha=0.0, loss_type=loss_type, beta=beta, label_smoothing=label_smoothing, simpo_gamma=gamma)
    losses, _, _ = CPOTrainer.cpo_loss(me, chosen, rejected)
    return losses


def orpo(pc, pr, chosen_lengths, rejected_lengths, *, beta) -> torch.Tensor:
    """Per-example ORPO losses from `ORPOTrainer.get_batch_loss_metrics`, one pair per call."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    me = _self(is_encoder_decoder=False, padding_value=0, beta=beta)
    me.concatenated_inputs = ORPOTrainer.concatenated_inputs
    me.get_batch_logps = ORPOTrainer.get_batch_logps
    me.odds_ratio_loss = lambda *a: ORPOTrainer.odds_ratio_loss(me, *a)
    me.concatenated_forward = lambda model, batch: ORPOTrainer.concatenated_forward(me, model, batch)
    out = []
    for i in range(len(pc)):
        rows = []
        for logp, n in ((pc[i], int(chosen_lengths[i])), (pr[i], int(rejected_lengths[i]))):
            ids = torch.ones(1, 1 + n, dtype=torch.long)  # a one-token prompt, then n completion tokens (id 1)
            labels = ids.clone()
            labels[0, 0] = -100
            rows.append((ids, labels, float(logp) / n))
        batch = {
            "chosen_input_ids": rows[0][0],
            "chosen_attention_mask": torch.ones_like(rows[0][0]),
            "chosen_labels": rows[0][1],
            "rejected_input_ids": rows[1][0],
            "rejected_attention_mask": torch.ones_like(rows[1][0]),
            "rejected_labels": rows[1][1],
        }
        means = [rows[0][2], rows[1][2]]

        def model(input_ids, attention_mask=None, means=means, **_):
            # two-word vocabulary: logit 0 for token 1 and log(1/p − 1) for token 0 give token 1 probability p
            logits = torch.zeros(*input_ids.shape, 2, dtype=torch.float64)
            for r, mean in enumerate(means):
                logits[r, :, 0] = math.log(math.expm1(-mean))
            return SimpleNamespace(logits=logits)

        loss, _ = ORPOTrainer.get_batch_loss_metrics(me, model, batch)
        out.append(loss)
    return torch.stack(out)


def kto(policy, ref, labels, kl_policy, kl_ref, *, beta, desirable_weight, undesirable_weight) -> torch.Tensor:
    """The mean KTO loss of one micro-batch from `KTOTrainer._compute_loss` (precomputed reference)."""
    from trl.trainer.kto_trainer import KTOTrainer

    me = _self(
        calculate_KL=True,
        precompute_ref_logps=True,
        loss_type="kto",
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    me._compute_kl_logps = lambda model, batch: KTOTrainer._compute_kl_logps(me, model, batch)
    n = len(policy)
    model = _LogProbModel()
    ids, mask, completion = _sequences([2] * n, token=5)
    kl_ids, kl_mask, kl_completion = _sequences([2] * n, token=7)
    model.register(ids, policy)
    model.register(kl_ids, kl_policy)
    inputs = {
        "input_ids": ids,
        "attention_mask": mask,
        "completion_mask": completion,
        "KL_input_ids": kl_ids,
        "KL_attention_mask": kl_mask,
        "KL_completion_mask": kl_completion,
        "label": labels.bool(),
        "ref_logps": ref,
        "ref_KL_logps": kl_ref,
    }
    return KTOTrainer._compute_loss(me, model, inputs, return_outputs=False)


def reward_model(chosen, rejected, margin=None) -> torch.Tensor:
    """Per-example Bradley–Terry losses from `RewardTrainer.compute_loss`, one pair per call."""
    from trl.trainer.reward_trainer import RewardTrainer

    me = _self(args=SimpleNamespace(center_rewards_coefficient=None))
    out = []
    for i in range(len(chosen)):
        scores = torch.stack([chosen[i], rejected[i]])[:, None]
        inputs = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
        if margin is not None:
            inputs["margin"] = margin[i : i + 1]

        def model(scores=scores, **_):
            return SimpleNamespace(logits=scores)

        out.append(RewardTrainer.compute_loss(me, model, inputs))
    return torch.stack(out)
