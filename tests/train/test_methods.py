"""The method records: one table that the trainer, data, config, scoring and the CLI read, checked
against the documentation, the loss functions' signatures and the losses' own rewards."""

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch
from prefkit.train import losses as L
from prefkit.train.config import FIELDS, ConfigError, TrainConfig, from_mapping
from prefkit.train.methods import KTO_ON_PAIRS, LORA_LR_FACTOR, METHODS, Kind

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "train"


def _docs_table() -> dict[str, dict]:
    """docs/training.md's methods table: name → {reference, beta} as written there."""
    rows = {}
    for line in (ROOT / "docs" / "training.md").read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].startswith("`"):
            first = re.match(r"[0-9.]+", cells[3])
            rows[cells[0].strip("`")] = {
                "reference": {"yes": True, "no": False}[cells[2]],
                "beta": float(first.group()) if first else None,
            }
    return rows


def test_the_table_agrees_with_the_documented_methods():
    docs = _docs_table()
    assert list(docs) == list(METHODS)
    for name, m in METHODS.items():
        assert m.name == name
        assert m.reference == docs[name]["reference"], name
        assert m.beta == docs[name]["beta"], name


# "5e-7 for the DPO family and KTO, 1e-6 SimPO, 8e-6 ORPO, 1e-5 `rm`; ×10 with `--lora`" (docs/training.md)
DOCUMENTED_LR = {"simpo": 1e-6, "orpo": 8e-6, "rm": 1e-5}


@pytest.mark.parametrize("name", list(METHODS))
def test_defaults_resolve_from_the_record_and_flags_win(name):
    cfg = TrainConfig(method=name)
    assert cfg.resolved_lr() == DOCUMENTED_LR.get(name, 5e-7)
    assert TrainConfig(method=name, lora=True).resolved_lr() == pytest.approx(10 * cfg.resolved_lr())
    assert LORA_LR_FACTOR == 10
    assert cfg.resolved_beta() == _docs_table()[name]["beta"]
    assert TrainConfig(method=name, beta=0.7, lr=3e-4).resolved_beta() == 0.7
    assert TrainConfig(method=name, beta=0.7, lr=3e-4).resolved_lr() == 3e-4


def test_every_record_names_a_loss_whose_keywords_it_passes():
    for name, m in METHODS.items():
        fn = m.loss_fn
        assert fn is L.LOSSES[name] and fn.__module__ == L.__name__
        params = inspect.signature(fn).parameters
        for option in m.options:  # read from the config, passed by keyword
            assert option in FIELDS and params[option].kind is inspect.Parameter.KEYWORD_ONLY, (name, option)
        # length-normalised losses need the token counts; the others do not take them
        assert ("chosen_lengths" in params) == m.length_normalised, name
        assert ("beta" in params) == (m.beta is not None), name
    assert KTO_ON_PAIRS.loss_fn is L.dpo and not KTO_ON_PAIRS.reports_loss


def test_only_training_methods_are_choices():
    assert KTO_ON_PAIRS.name not in METHODS
    with pytest.raises(ConfigError, match="method: unknown `kto-on-pairs`"):
        from_mapping({"method": "kto-on-pairs"})
    assert [m.name for m in METHODS.values() if m.on_pairs] == ["kto"]
    assert all(m.on_pairs is None for m in METHODS.values() if m.kind is not Kind.UNPAIRED)


def _name_comparisons(source: str, names: set[str]) -> list[int]:
    """Lines that compare a value with a method name (`==`, `!=`, `in (…)`) or index a table by one."""

    def named(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(named(e) for e in node.elts)
        if isinstance(node, ast.IfExp):
            return named(node.body) or named(node.orelse)
        return False

    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(named(n) for n in [node.left, *node.comparators]):
            hits.append(node.lineno)
        elif isinstance(node, ast.Subscript) and named(node.slice):
            hits.append(node.lineno)
    return hits


def test_nothing_outside_the_table_dispatches_on_a_method_name():
    names = set(METHODS) | {"pairs", KTO_ON_PAIRS.name}
    assert _name_comparisons('if cfg.method == "kto" or m in ("simpo", "orpo"): LOSSES["rm"]', names) == [1, 1, 1]
    sources = {p: p.read_text() for p in sorted(TRAIN.glob("*.py")) if p.name != "methods.py"}
    sources[ROOT / "prefkit" / "cli" / "train.py"] = (ROOT / "prefkit" / "cli" / "train.py").read_text()
    found = {str(p.relative_to(ROOT)): lines for p, s in sources.items() if (lines := _name_comparisons(s, names))}
    assert found == {}


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.kind is not Kind.REWARD])
def test_score_pairs_rewards_are_the_losses_own_implicit_rewards(name):
    # scoring computes a method's reward from its record; the loss function computes it its own way
    from prefkit.train.scoring import _rewards

    g = torch.Generator().manual_seed(len(name))
    n = 9
    lengths = torch.randint(1, 40, (2 * n,), generator=g).double()
    logps = -lengths * 3 * torch.rand(2 * n, generator=g, dtype=torch.float64)
    ref = logps + torch.randn(2 * n, generator=g, dtype=torch.float64)
    m, beta = METHODS[name], 0.37
    ours = _rewards(m, beta, logps, ref if m.reference else None, lengths)
    if m.kind is Kind.UNPAIRED:  # KTO: β·ρ of each completion, desirable or not
        labels = torch.arange(2 * n) % 2 == 0
        out = m.loss_fn(logps, ref, labels, logps, ref, beta=beta)
        theirs = torch.where(labels, out.chosen_rewards, out.rejected_rewards)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        return
    kw = {"chosen_lengths": lengths[:n], "rejected_lengths": lengths[n:]} if m.length_normalised else {}
    out = m.loss_fn(
        policy_chosen=logps[:n], policy_rejected=logps[n:], ref_chosen=ref[:n], ref_rejected=ref[n:], beta=beta, **kw
    )
    torch.testing.assert_close(ours, torch.cat([out.chosen_rewards, out.rejected_rewards]), rtol=0, atol=1e-12)


def test_a_pair_runs_whole_and_a_completion_alone_or_with_its_kl_partner():
    from prefkit.train.batching import collate
    from prefkit.train.data import Completion, Pair

    kto = [Completion([5, 6], [7, 2], True, [8, 9, 2]), Completion([5], [9, 2], False, [7, 2])]
    assert collate(kto, packed=False, pad_id=0, parts="completion").lengths.tolist() == [2, 2]
    assert collate(kto, packed=False, pad_id=0, parts="kl").lengths.tolist() == [3, 2]
    assert collate(kto, packed=False, pad_id=0).lengths.tolist() == [2, 2, 3, 2]
    with pytest.raises(ValueError, match="a pair runs whole"):
        collate([Pair([5], [7, 2], [8, 2])], packed=False, pad_id=0, parts="kl")
