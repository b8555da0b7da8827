"""Use what a run learned: implicit reward margins of pairs under a trained policy, reward-model scores.

Both read models and exported datasets only (the store-writing glue is `prefkit/score.py`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from prefkit.train.batching import collate, plan_micro_batches
from prefkit.train.data import Pair, Tokenise, build_examples, load_splits
from prefkit.train.forward import SequenceLogps, SequenceScores, run
from prefkit.train.methods import Kind, Method
from prefkit.train.trainer import TrainError, config_from_run


def _rewards(method: Method, beta: float, logps: torch.Tensor, ref: torch.Tensor | None, lengths: torch.Tensor):
    """The loss's implicit reward: β × the log-ratio (reference-free: the log-prob), per completion
    token where the method averages (IPO, SimPO, ORPO)."""
    value = logps - ref if method.reference else logps
    return beta * value / lengths if method.length_normalised else beta * value


@torch.no_grad()
def pair_margins(
    run_dir: str | Path, data: str | Path, split: str | None = None, batch_size: int = 16, device: str = "cpu"
) -> list[dict]:
    """For every preference row of `data` (all splits, or `split`): the implicit rewards of chosen and
    rejected under the run's final policy and its margin (chosen − rejected; negative = the model
    disagrees with the label). Row dicts carry `split` and `index` (the row's position in its split)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    cfg = config_from_run(run_dir)
    method = cfg.method_record()
    if method.kind is Kind.REWARD:
        raise TrainError(f"{run_dir} trained a reward model; score pairs with `prefkit score` instead")
    final = run_dir / "final"
    if not final.exists():
        raise TrainError(f"{run_dir}: no final/ model (did the run finish?)")
    tok = AutoTokenizer.from_pretrained(final)
    policy = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).to(device).eval()
    ref = None
    if method.reference:
        ref = AutoModelForCausalLM.from_pretrained(cfg.ref_model or cfg.model, dtype=torch.float32).to(device).eval()
    tokenise = Tokenise(tok, cfg.max_length, cfg.max_prompt_length)
    splits = load_splits(data)
    out = []
    for name in [split] if split else list(splits):
        rows = splits[name].to_list()
        examples = build_examples(rows, method.on_pairs or method, tokenise, batch_size=batch_size, seed=0)
        for plan in plan_micro_batches(examples, micro_batch_size=batch_size):
            ex = [examples[i] for i in plan]
            batch = collate(ex, packed=False, pad_id=tok.pad_token_id).to(device)
            n = len(ex)
            lp = run(SequenceLogps(policy), batch)
            rp = run(SequenceLogps(ref), batch) if ref is not None else None
            r = _rewards(method, cfg.resolved_beta(), lp, rp, batch.lengths.float())
            for j, i in enumerate(plan):
                out.append(
                    {
                        "split": name,
                        "index": i,
                        "chosen_reward": float(r[j]),
                        "rejected_reward": float(r[n + j]),
                        "margin": float(r[j] - r[n + j]),
                        "row": rows[i],
                    }
                )
    return out


@torch.no_grad()
def reward_scores(
    model_dir: str | Path,
    items: list[tuple[object, str]],
    batch_size: int = 16,
    device: str = "cpu",
    max_length: int = 1024,
) -> list[float]:
    """Scores of a reward model (`prefkit train rm`) for (prompt, response) items; prompt is text or messages."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    module = SequenceScores(model)
    tokenise = Tokenise(tok, max_length, max_length // 2)
    scores: list[float] = []
    for start in range(0, len(items), batch_size):
        ex = []
        for prompt, response in items[start : start + batch_size]:
            p, c = tokenise(
                prompt, response if isinstance(prompt, str) else [{"role": "assistant", "content": response}]
            )
            ex.append(Pair(p, c, c))  # the response in both places: its score is the first half's
        batch = collate(ex, packed=False, pad_id=tok.pad_token_id).to(device)
        scores += run(module, batch)[: len(ex)].tolist()
    return scores
