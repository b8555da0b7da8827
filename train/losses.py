"""Preference losses as pure functions of per-sequence log-probs; each method's record in
`prefkit.train.methods` names its function, and `LOSSES` looks them up by method name.

Every function takes 1-D tensors of shape `(batch,)` — summed log-probs of each completion given its
prompt under the policy (`policy_*`) and the frozen reference (`ref_*`), and completion token counts
(`*_lengths`) — plus keyword hyper-parameters, and returns a `LossOutput` whose fields all have shape
`(batch,)`: the per-example loss and the implicit rewards of the chosen and rejected completions.
Nothing here touches a model, a tokenizer or a config, so each formula is tested with plain numbers.

Notation: for a pair (y_w ≻ y_l) given x,
    ρ_w = log π(y_w|x) − log π_ref(y_w|x),   ρ_l = log π(y_l|x) − log π_ref(y_l|x),   h = ρ_w − ρ_l.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from prefkit.train.methods import METHODS
from torch import Tensor


class LossOutput(NamedTuple):
    losses: Tensor  # (batch,) per-example loss; the trainer averages over the step's examples
    chosen_rewards: Tensor  # (batch,) implicit reward of the chosen/desirable completion, detached
    rejected_rewards: Tensor  # (batch,) implicit reward of the rejected/undesirable completion, detached


def _out(losses: Tensor, chosen: Tensor, rejected: Tensor) -> LossOutput:
    return LossOutput(losses, chosen.detach(), rejected.detach())


# ---------------------------------------------------------------- paired losses with a reference


def dpo(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *, beta: float = 0.1, **_
) -> LossOutput:
    """DPO, sigmoid loss: L = −log σ(β·h).

    Rafailov et al. 2023, "Direct Preference Optimization", eq. 7. Rewards: β·ρ_w, β·ρ_l.
    """
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    return _out(-F.logsigmoid(beta * (rho_w - rho_l)), beta * rho_w, beta * rho_l)


def cdpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    **_,
) -> LossOutput:
    """Conservative DPO (labels flipped with probability ε): L = −(1−ε)·log σ(β·h) − ε·log σ(−β·h).

    Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO".
    """
    eps = label_smoothing
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    z = beta * (rho_w - rho_l)
    return _out(-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z), beta * rho_w, beta * rho_l)


def robust(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    **_,
) -> LossOutput:
    """Robust DPO, unbiased under label noise ε: L = (−(1−ε)·log σ(β·h) + ε·log σ(−β·h)) / (1 − 2ε).

    Chowdhury et al. 2024, "Provably Robust DPO", eq. 8. Requires ε < 0.5.
    """
    eps = label_smoothing
    if not 0 <= eps < 0.5:
        raise ValueError(f"robust DPO needs 0 <= label_smoothing < 0.5, got {eps}")
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    z = beta * (rho_w - rho_l)
    losses = (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    return _out(losses, beta * rho_w, beta * rho_l)


def hinge(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *, beta: float = 0.1, **_
) -> LossOutput:
    """Hinge (SLiC-style): L = max(0, 1 − β·h).

    Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"; Liu et al. 2024 (RSO).
    """
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    return _out(torch.relu(1 - beta * (rho_w - rho_l)), beta * rho_w, beta * rho_l)


def ipo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    **_,
) -> LossOutput:
    """IPO: L = (h̄ − 1/(2β))², with h̄ = ρ_w/|y_w| − ρ_l/|y_l| (log-ratios averaged per completion token).

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    eq. 17; the authors average token log-probs (|y| counts the completion tokens, EOS included).
    """
    rho_w = (policy_chosen - ref_chosen) / chosen_lengths
    rho_l = (policy_rejected - ref_rejected) / rejected_lengths
    return _out((rho_w - rho_l - 1 / (2 * beta)) ** 2, beta * rho_w, beta * rho_l)


def apo_zero(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *, beta: float = 0.1, **_
) -> LossOutput:
    """APO-zero (chosen better than the model's own outputs): L = 1 − σ(β·ρ_w) + σ(β·ρ_l).

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions" (CLAIR), eq. 6.
    """
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    return _out(1 - torch.sigmoid(beta * rho_w) + torch.sigmoid(beta * rho_l), beta * rho_w, beta * rho_l)


def apo_down(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *, beta: float = 0.1, **_
) -> LossOutput:
    """APO-down (chosen worse than the model's outputs): L = σ(β·ρ_w) + 1 − σ(β·(ρ_w − ρ_l)).

    D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions", eq. 7.
    """
    rho_w, rho_l = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    losses = torch.sigmoid(beta * rho_w) + 1 - torch.sigmoid(beta * (rho_w - rho_l))
    return _out(losses, beta * rho_w, beta * rho_l)


# ---------------------------------------------------------------- reference-free paired losses


def simpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
    **_,
) -> LossOutput:
    """SimPO: L = −log σ(β·(log π(y_w|x)/|y_w| − log π(y_l|x)/|y_l|) − γ); no reference model.

    Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward", eq. 6.
    Rewards: β·log π(y|x)/|y|. Typical β 2–2.5 and γ 0.3–1.6 (the paper's γ is absolute, not γ/β).
    """
    r_w, r_l = beta * policy_chosen / chosen_lengths, beta * policy_rejected / rejected_lengths
    return _out(-F.logsigmoid(r_w - r_l - gamma), r_w, r_l)


def orpo(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    *,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 0.1,
    **_,
) -> LossOutput:
    """ORPO: L = −log π(y_w|x)/|y_w| − β·log σ(log odds(y_w) − log odds(y_l)); no reference model.

    Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model", eq. 6–7, with
    P(y|x) = exp(mean token log-prob) and odds(y) = P/(1−P); β is the paper's λ. Rewards: β·mean log-prob.
    """
    avg_w, avg_l = policy_chosen / chosen_lengths, policy_rejected / rejected_lengths
    # log odds = log p − log(1 − p); the clamp keeps p < 1 (a certain completion has infinite odds)
    log_odds = (avg_w - avg_l) - (_log1mexp(avg_w.clamp(max=-1e-6)) - _log1mexp(avg_l.clamp(max=-1e-6)))
    return _out(-avg_w - beta * F.logsigmoid(log_odds), beta * avg_w, beta * avg_l)


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 − eˣ) for x < 0 without cancellation: log(−expm1(x)) near 0, log1p(−eˣ) below −ln 2
    (Mächler 2012, "Accurately Computing log(1 − exp(−|a|))"). In fp32, log1p(−eˣ) alone is off by
    ~1e-4 at x = −1e-3, a mean log-prob a confident model reaches."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


# ---------------------------------------------------------------- unpaired: KTO


def kto(
    policy: Tensor,
    ref: Tensor,
    labels: Tensor,
    kl_policy: Tensor | None = None,
    kl_ref: Tensor | None = None,
    *,
    z0: Tensor | float | None = None,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    **_,
) -> LossOutput:
    """KTO: with ρ = log π(y|x) − log π_ref(y|x) and reference point z₀ = max(0, mean(ρ_KL)) (no gradient),
    L = λ_D·(1 − σ(β·(ρ − z₀))) for desirable y, λ_U·(1 − σ(β·(z₀ − ρ))) for undesirable y.

    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", eq. 8. ρ_KL are the
    log-ratios of mismatched (prompt, completion) pairs, shape `(n_kl,)`; or give `z0` itself (the trainer
    computes it over a whole optimizer step, all processes: `kto_reference_point`).
    Shapes: policy, ref, labels (bool) `(batch,)`. Returns losses `(batch,)`; `chosen_rewards` holds β·ρ
    where the label is desirable (NaN elsewhere) and `rejected_rewards` where undesirable.
    """
    if z0 is None:
        if kl_policy is None or kl_ref is None:
            raise ValueError("kto needs the KL rows' log-probs (kl_policy, kl_ref) or z0")
        z0 = kto_reference_point(kto_kl(kl_policy, kl_ref))
    rho = policy - ref
    z0 = torch.as_tensor(z0, dtype=rho.dtype, device=rho.device).detach()
    labels = labels.bool()
    losses = torch.where(
        labels,
        desirable_weight * (1 - torch.sigmoid(beta * (rho - z0))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - rho))),
    )
    nan = torch.full_like(rho, float("nan"))
    return _out(losses, torch.where(labels, beta * rho, nan), torch.where(labels, nan, beta * rho))


def kto_kl(kl_policy: Tensor, kl_ref: Tensor) -> Tensor:
    """The KTO reference point before clamping: mean(ρ_KL), logged as `kl`."""
    return (kl_policy - kl_ref).mean().detach()


def kto_reference_point(kl: Tensor) -> Tensor:
    """z₀ = max(0, mean(ρ_KL)) from the unclamped mean `kl`, without gradient."""
    return kl.clamp(min=0).detach()


# ---------------------------------------------------------------- reward model


def bradley_terry(chosen_scores: Tensor, rejected_scores: Tensor, *, margin: Tensor | float = 0.0, **_) -> LossOutput:
    """Bradley–Terry reward-model loss: L = −log σ(r(x, y_w) − r(x, y_l) − m).

    Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT) eq. 1; m is an optional per-pair margin
    (Touvron et al. 2023, Llama 2, eq. 2). Shapes: `(batch,)` scalar scores from the classification head.
    """
    return _out(-F.logsigmoid(chosen_scores - rejected_scores - margin), chosen_scores, rejected_scores)


# the loss function of every method, by method name, in the table's order
LOSSES: dict[str, Callable[..., LossOutput]] = {name: globals()[m.loss] for name, m in METHODS.items()}
