"""Every loss pinned to a value computed independently from its formula (by hand / with `math`)."""

import math
from contextlib import nullcontext

import pytest
import torch
from prefkit.train import losses as L

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
    from prefkit.train.methods import METHODS as TABLE

    METHODS = tuple(TABLE)  # the table's names
    assert tuple(L.LOSSES) == METHODS


def test_cli_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, prefkit.cli.train, prefkit.cli.score; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- against TRL's own loss code
# tests/train/trl_reference.py runs TRL 1.16's trainer methods on the same tensors. float64 throughout,
# so a difference is the formula's, not rounding's: agreement to 1e-6 (absolute, on per-example losses).

TOL = 1e-6


def _random(n: int, seed: int) -> dict:
    """Summed log-probs of completions of 1–60 tokens (means −0.01…−4 per token), references ±3 off."""
    g = torch.Generator().manual_seed(seed)
    lc = torch.randint(1, 61, (n,), generator=g).double()
    lr = torch.randint(1, 61, (n,), generator=g).double()
    pc = -lc * (0.01 + 4 * torch.rand(n, generator=g, dtype=torch.float64))
    pr = -lr * (0.01 + 4 * torch.rand(n, generator=g, dtype=torch.float64))
    rc = pc + 3 * torch.randn(n, generator=g, dtype=torch.float64)
    rr = pr + 3 * torch.randn(n, generator=g, dtype=torch.float64)
    return dict(pc=pc, pr=pr, rc=rc, rr=rr, lc=lc, lr=lr)


def _edges() -> dict:
    """Policy = reference; ratios of ±60 (saturated sigmoids); one-token completions; a mean log-prob of
    −1e-5 (a near-certain completion) and of −30; chosen and rejected exactly alike."""
    d = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return dict(
        pc=d(-10.0, -5.0, -80.0, -1e-5, -30.0, -7.0, -3.0),
        pr=d(-12.0, -90.0, -5.0, -0.2, -1e-5, -7.0, -4.0),
        rc=d(-10.0, -65.0, -20.0, -1.0, -30.0, -7.0, -3.0),
        rr=d(-12.0, -30.0, -65.0, -0.2, -2.0, -7.0, -4.0),
        lc=d(5.0, 1.0, 40.0, 1.0, 1.0, 3.0, 1.0),
        lr=d(6.0, 30.0, 1.0, 2.0, 1.0, 3.0, 1.0),
    )


CASES = [("random-0", _random(32, 0)), ("random-1", _random(32, 1)), ("edges", _edges())]
BETAS = [0.01, 0.1, 1.0, 5.0]


def _ours(name: str, x: dict, **kw) -> torch.Tensor:
    return L.LOSSES[name](
        policy_chosen=x["pc"],
        policy_rejected=x["pr"],
        ref_chosen=x["rc"],
        ref_rejected=x["rr"],
        chosen_lengths=x["lc"],
        rejected_lengths=x["lr"],
        **kw,
    ).losses


@pytest.mark.parametrize("case", [c for c, _ in CASES])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", ["dpo", "hinge", "ipo", "apo-zero", "apo-down"])
def test_dpo_family_equals_trl_dpo_trainer(name, beta, case):
    from tests.train import trl_reference as R

    x = dict(CASES)[case]
    trl = R.dpo_family(name, x["pc"], x["pr"], x["rc"], x["rr"], x["lc"], x["lr"], beta=beta)
    torch.testing.assert_close(_ours(name, x, beta=beta), trl, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.49])
def test_robust_equals_trl_dpo_trainer_and_cdpo_equals_trl_cpo_loss_on_log_ratios(eps, case):
    from tests.train import trl_reference as R

    x = dict(CASES)[case]
    for beta in BETAS:
        trl = R.dpo_family(
            "robust", x["pc"], x["pr"], x["rc"], x["rr"], x["lc"], x["lr"], beta=beta, label_smoothing=eps
        )
        torch.testing.assert_close(_ours("robust", x, beta=beta, label_smoothing=eps), trl, rtol=0, atol=TOL)
        trl = R.cpo("sigmoid", x["pc"] - x["rc"], x["pr"] - x["rr"], beta=beta, label_smoothing=eps)
        torch.testing.assert_close(_ours("cdpo", x, beta=beta, label_smoothing=eps), trl, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
@pytest.mark.parametrize("beta, gamma", [(2.0, 0.5), (2.5, 1.6), (0.5, 0.0), (10.0, 0.3)])
def test_simpo_equals_trl_cpo_loss(beta, gamma, case):
    from tests.train import trl_reference as R

    x = dict(CASES)[case]
    trl = R.cpo("simpo", x["pc"] / x["lc"], x["pr"] / x["lr"], beta=beta, gamma=gamma)
    torch.testing.assert_close(_ours("simpo", x, beta=beta, gamma=gamma), trl, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
@pytest.mark.parametrize("beta", [0.1, 0.25, 1.0])
def test_orpo_equals_trl_orpo_trainer(beta, case):
    from tests.train import trl_reference as R

    x = dict(CASES)[case]
    trl = R.orpo(x["pc"], x["pr"], x["lc"], x["lr"], beta=beta)
    torch.testing.assert_close(_ours("orpo", x, beta=beta), trl, rtol=0, atol=TOL)


def test_orpo_in_float32_stays_within_1e6_of_trl_for_confident_completions():
    # both completions near-certain, mean log-probs −1e-3…−1e-5: log(1 − p) needs expm1 there (fp32
    # log1p(−eˣ) put the loss 2e-4 off)
    from tests.train import trl_reference as R

    lengths = torch.tensor([20.0, 7.0, 3.0, 50.0, 10.0])
    pc = torch.tensor([-1e-3, -1e-4, -1e-5, -2e-3, -3e-5]) * lengths
    pr = torch.tensor([-1e-4, -3e-4, -2e-5, -0.5, -1e-4]) * lengths
    ours = L.orpo(pc, pr, chosen_lengths=lengths, rejected_lengths=lengths, beta=1.0).losses
    trl = R.orpo(pc.double(), pr.double(), lengths, lengths, beta=1.0)
    torch.testing.assert_close(ours.double(), trl, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
def test_reward_model_equals_trl_reward_trainer(case):
    from tests.train import trl_reference as R

    x = dict(CASES)[case]
    chosen, rejected = x["pc"] / 10, x["pr"] / 10  # scores of any sign and size
    margin = torch.linspace(-1, 3, len(chosen), dtype=torch.float64)
    torch.testing.assert_close(
        L.bradley_terry(chosen, rejected).losses, R.reward_model(chosen, rejected), rtol=0, atol=TOL
    )
    torch.testing.assert_close(
        L.bradley_terry(chosen, rejected, margin=margin).losses,
        R.reward_model(chosen, rejected, margin),
        rtol=0,
        atol=TOL,
    )


@pytest.mark.parametrize("seed", range(6))
def test_kto_equals_trl_kto_trainer_on_random_micro_batches(seed):
    from tests.train import trl_reference as R

    g = torch.Generator().manual_seed(seed)
    n = [1, 2, 5, 8, 16, 3][seed]
    policy = -40 * torch.rand(n, generator=g, dtype=torch.float64)
    ref = policy + 3 * torch.randn(n, generator=g, dtype=torch.float64)
    kl_policy = -40 * torch.rand(n, generator=g, dtype=torch.float64)
    # KL rows' mean log-ratio above 0 on even seeds (z0 > 0), below 0 on odd ones (z0 clamped to 0)
    kl_ref = kl_policy - (1 if seed % 2 == 0 else -1) * torch.rand(n, generator=g, dtype=torch.float64) * 4
    labels = [torch.rand(n, generator=g) < 0.5, torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]
    for lab in labels:  # mixed, all desirable, all undesirable (TRL's empty-branch paths)
        for beta, wd, wu in [(0.1, 1.0, 1.0), (1.0, 1.0, 1.5), (5.0, 0.7, 1.0)]:
            kw = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)
            ours = L.kto(policy, ref, lab, kl_policy, kl_ref, **kw).losses.mean()
            trl = R.kto(policy, ref, lab, kl_policy, kl_ref, **kw)
            torch.testing.assert_close(ours, trl, rtol=0, atol=TOL)


@pytest.mark.parametrize("micro_batch_size", [8, 3, 1])
def test_kto_as_the_trainer_computes_it_equals_trl_on_the_step_as_one_batch(tmp_path, micro_batch_size):
    # Batches built the way the trainer builds them: KTO examples (unpaired preference rows, KL rows of
    # other prompts), a step's examples in the trainer's order, a real tiny policy and reference, the
    # reference pass of the cache, the KL rows' pass and the completions' micro-batches. TRL gets the
    # same step as one micro-batch, with the same KL rows.
    from prefkit.train.batching import collate, plan_micro_batches
    from prefkit.train.config import TrainConfig
    from prefkit.train.data import Tokenise, build_examples
    from prefkit.train.forward import SequenceLogps, run
    from prefkit.train.methods import METHODS
    from prefkit.train.refcache import compute
    from prefkit.train.tiny import make_model, make_tokenizer
    from prefkit.train.trainer import _step_indices, kto_kl_rows, micro_outputs

    from tests.train import trl_reference as R
    from tests.train.synth import BAD, GOOD, TOPIC, pairs

    tok = make_tokenizer(GOOD + BAD + TOPIC)
    policy = SequenceLogps(make_model(len(tok), seed=0))
    reference = SequenceLogps(make_model(len(tok), seed=1))
    examples = build_examples(pairs(24, 0), METHODS["kto"], Tokenise(tok), batch_size=8, seed=0)
    ref_lp = compute(reference, examples, packed=False, pad_id=tok.pad_token_id, device="cpu")
    cfg = TrainConfig(method="kto", beta=0.5, undesirable_weight=1.3, micro_batch_size=micro_batch_size)
    for step in range(3):
        idx = _step_indices(step, 6, len(examples), 8, seed=0)
        kw = dict(packed=False, pad_id=tok.pad_token_id, device=torch.device("cpu"), autocast=nullcontext)
        with torch.no_grad():
            z0, _, _ = kto_kl_rows(
                policy,
                examples,
                idx,
                idx[0],
                ref_lp,
                None,
                plans=plan_micro_batches(
                    [examples[i] for i in idx], micro_batch_size=micro_batch_size, max_tokens=None
                ),
                world=1,
                **kw,
            )
            total = 0.0
            for start in range(0, 8, micro_batch_size):
                rows = idx[start : start + micro_batch_size]
                mex = [examples[i] for i in rows]
                batch = collate(mex, packed=False, pad_id=tok.pad_token_id, parts="completion")
                o, _, _ = micro_outputs(METHODS["kto"], cfg, policy, batch, mex, ref_lp[rows], None, nullcontext, z0)
                total += float(o.losses.sum())
            step_ex = [examples[i] for i in idx]
            values = run(policy, collate(step_ex, packed=False, pad_id=tok.pad_token_id)).double()
        labels = torch.tensor([e.label for e in step_ex])
        trl = R.kto(
            values[:8],
            ref_lp[idx, 0].double(),
            labels,
            values[8:],
            ref_lp[idx, 1].double(),
            beta=0.5,
            desirable_weight=1.0,
            undesirable_weight=1.3,
        )
        assert total / 8 == pytest.approx(float(trl), abs=TOL)
