"""Every loss pinned to a value computed independently from its formula (by hand / with `math`)."""

import math

import pytest
import torch

from train import losses as L

PC, PR = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -18.0])
RC, RR = torch.tensor([-11.0, -19.0]), torch.tensor([-11.5, -19.5])
LC, LR = torch.tensor([5.0, 10.0]), torch.tensor([6.0, 8.0])
KW = {"chosen_lengths": LC, "rejected_lengths": LR}


def mean(out: L.LossOutput) -> float:
    return float(out.losses.mean())


@pytest.mark.parametrize(
    "name, extra, expected",
    [
        ("dpo", {}, 0.723448),
        ("hinge", {}, 1.05),
        ("apo-zero", {}, 1.012466),
        ("apo-down", {}, 1.012373),
        ("robust", {"label_smoothing": 0.1}, 0.729698),
        ("cdpo", {"label_smoothing": 0.1}, 0.718448),
        ("ipo", {}, 25.102300),
    ],
)
def test_paired_losses_with_reference_match_pinned_values(name, extra, expected):
    out = L.LOSSES[name](policy_chosen=PC, policy_rejected=PR, ref_chosen=RC, ref_rejected=RR, beta=0.1, **KW, **extra)
    assert mean(out) == pytest.approx(expected, rel=1e-6, abs=1e-6)  # the issue gives 6 decimals
    assert out.losses.shape == (2,)


def test_dpo_rewards_are_beta_times_log_ratios():
    out = L.dpo(PC, PR, RC, RR, beta=0.1)
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.1, -0.1]))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.05, 0.15]))


def test_simpo_pinned():
    # avg chosen [-2, -2], avg rejected [-2, -2.25]; β=2, γ=0.5: −log σ(2·0 − 0.5), −log σ(2·0.25 − 0.5)
    out = L.simpo(PC, PR, beta=2.0, gamma=0.5, **KW)
    assert mean(out) == pytest.approx(0.833612, abs=1e-6)
    assert mean(out) == pytest.approx((math.log1p(math.exp(0.5)) + math.log(2)) / 2, abs=1e-6)


def test_orpo_pinned():
    out = L.orpo(PC, PR, beta=0.1, **KW)
    assert mean(out) == pytest.approx(2.062716, abs=1e-5)


def test_kto_pinned_and_reference_point_clamped_at_zero():
    policy, ref = torch.cat([PC, PR]), torch.cat([RC, RR])
    labels = torch.tensor([True, True, False, False])
    kw = {"beta": 1.0, "desirable_weight": 1.0, "undesirable_weight": 1.5}
    # KL rows: log-ratios 0.5 and 0.8 → z0 = 0.65
    out = L.kto(policy, ref, labels, torch.tensor([-15.0, -16.0]), torch.tensor([-15.5, -16.8]), **kw)
    assert mean(out) == pytest.approx(0.665964, abs=1e-6)
    # negative KL estimate → z0 = 0
    out0 = L.kto(policy, ref, labels, torch.tensor([-15.0, -16.0]), torch.tensor([-14.0, -15.0]), **kw)
    assert mean(out0) == pytest.approx(0.698168, abs=1e-6)
    assert torch.isnan(out.chosen_rewards[2:]).all() and torch.isnan(out.rejected_rewards[:2]).all()


def test_kto_reference_point_carries_no_gradient():
    policy = torch.tensor([-10.0, -12.0], requires_grad=True)
    kl_policy = torch.tensor([-5.0, -6.0], requires_grad=True)
    out = L.kto(
        policy, torch.tensor([-11.0, -11.0]), torch.tensor([True, False]), kl_policy, torch.tensor([-6.0, -7.0])
    )
    out.losses.sum().backward()
    assert kl_policy.grad is None and policy.grad is not None


def test_bradley_terry_pinned():
    out = L.bradley_terry(torch.tensor([1.0, -0.5]), torch.tensor([0.0, 0.5]), margin=0.0)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2
    assert mean(out) == pytest.approx(expected, abs=1e-6)


def test_dpo_loss_is_ln2_when_policy_equals_reference():
    out = L.dpo(PC, PR, PC, PR)
    torch.testing.assert_close(out.losses, torch.full((2,), math.log(2)))


def test_robust_rejects_noise_at_or_above_half():
    with pytest.raises(ValueError, match="label_smoothing"):
        L.robust(PC, PR, RC, RR, label_smoothing=0.5)


def test_every_loss_documents_its_formula_and_paper():
    for name, fn in L.LOSSES.items():
        doc = fn.__doc__ or ""
        assert "L =" in doc, f"{name}: no formula in the docstring"
        assert any(str(y) in doc for y in range(1952, 2027)), f"{name}: no paper cited"


def test_method_names_match_the_loss_table():
    from train.methods import METHODS

    assert tuple(L.LOSSES) == METHODS


def test_cli_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, train.cli, prefkit.score; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
