"""`prefkit score` and `prefkit score-pairs`: what a trained model thinks, written back to the store.

The glue between `train` (which reads exported datasets only) and the store: scores become AI
judgements, so curation and the review page see them like any other label.

- `score`: a reward model (`prefkit train rm`) rates every response in the store → `rating` judgements.
- `score-pairs`: the implicit reward margin of every exported pair under a trained policy; the pairs
  the model most strongly disagrees with (lowest margin) → `pairwise` judgements giving the model's
  own preference, with the margin in `metadata`, for people to review.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import prompt_id, request_id, response_id
from prefkit.annotate.store import Store


class ScoreError(ValueError):
    """Bad input to score/score-pairs; the message says what to change."""


def _messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _content(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def disagreement_judgements(
    margins: list[dict], run_name: str, top: int, below: float | None = None
) -> list[Judgement]:
    """The `top` pairs with the lowest margin (only those under `below`, when given), as the model's
    pairwise judgement (response_ids in the dataset's order [chosen, rejected]; scores give the model's
    own preference, so a pair it still agrees with is recorded as agreement, not as a dispute)."""
    kept = [m for m in margins if below is None or m["margin"] < below]
    worst = sorted(kept, key=lambda m: m["margin"])[:top]
    annotator = f"ai:{run_name}:implicit-reward"
    out = []
    for m in worst:
        row = m["row"]
        pid = row.get("prompt_id") or prompt_id(_messages(row["prompt"]))
        ids = [response_id(pid, _content(row["chosen"])), response_id(pid, _content(row["rejected"]))]
        p_first = 1 / (1 + math.exp(-m["margin"]))  # Bradley–Terry: P(chosen ≻ rejected) under the policy
        out.append(
            Judgement(
                judgement_id=request_id({"score-pairs": run_name, "response_ids": ids}),
                prompt_id=pid,
                kind="pairwise",
                annotator=annotator,
                annotator_type="ai",
                response_ids=ids,
                scores=[1.0, 0.0] if m["margin"] > 0 else [0.0, 1.0],
                confidence=p_first,
                rationale=(
                    f"implicit reward margin {m['margin']:.3f} under {run_name}: "
                    + (
                        "the trained model prefers the response labelled rejected"
                        if m["margin"] < 0
                        else "one of the pairs the trained model is least sure of"
                    )
                    + "; worth a second look"
                ),
                guidelines=f"score-pairs:{run_name}",
                metadata=json.dumps(
                    {
                        "source": "score-pairs",
                        "margin": m["margin"],
                        "split": m["split"],
                        "index": m["index"],
                        "chosen_reward": m["chosen_reward"],
                        "rejected_reward": m["rejected_reward"],
                    }
                ),
            )
        )
    return out


def score_pairs(
    store: Store,
    run_dir: str | Path,
    data: str | Path,
    top: int = 50,
    split: str | None = None,
    below: float | None = None,
) -> list[Judgement]:
    from prefkit.train.scoring import pair_margins

    margins = pair_margins(run_dir, data, split)
    judgements = disagreement_judgements(margins, Path(run_dir).resolve().name, top, below)
    if judgements:
        store.append("judgements", judgements)
    return judgements


def score_responses(store: Store, model_dir: str | Path, limit: int | None = None) -> int:
    """Rate every response of the store not yet rated by this reward model; returns how many were written."""
    from prefkit.train.scoring import reward_scores

    annotator = f"ai:{Path(model_dir).resolve().name}:reward-model"
    con = store.connect()
    rows = con.execute(
        """
        SELECT r.response_id, r.prompt_id, p.messages, r.content
        FROM responses r JOIN prompts p USING (prompt_id)
        WHERE r.response_id NOT IN (
            SELECT unnest(response_ids) FROM judgements WHERE annotator = ? AND kind = 'rating')
        ORDER BY r.response_id
        """
        + (" LIMIT ?" if limit else ""),
        [annotator, limit] if limit else [annotator],
    ).fetchall()
    if not rows:
        return 0
    scores = reward_scores(model_dir, [(list(msgs), content) for _, _, msgs, content in rows])
    store.append(
        "judgements",
        [
            Judgement(
                judgement_id=request_id({"rm": annotator, "response_id": rid}),
                prompt_id=pid,
                kind="rating",
                annotator=annotator,
                annotator_type="ai",
                response_ids=[rid],
                scores=[float(s)],
                guidelines=f"reward-model:{annotator}",
            )
            for (rid, pid, _, _), s in zip(rows, scores, strict=True)
        ],
    )
    return len(rows)


# ---------------------------------------------------------------- CLI


ERRORS: tuple[type[BaseException], ...] = (ScoreError,)


def register(subparsers: argparse._SubParsersAction) -> None:
    from prefkit.cli import add_command, add_store_option

    p = add_command(
        subparsers,
        "score",
        _score_cmd,
        """\
        Rate every response in the store with a reward model trained by `prefkit train rm`.

        Each score becomes a `rating` judgement by `ai:<model folder>:reward-model`; responses this
        model already rated are skipped, so re-running only scores what is new.

        Example:
          prefkit score --model runs/rm1/final
        """,
    )
    p.add_argument("--model", required=True, help="the reward model folder (RUN_DIR/final of `prefkit train rm`)")
    p.add_argument("--limit", type=int, help="score at most N responses")
    add_store_option(p)

    p = add_command(
        subparsers,
        "score-pairs",
        _score_pairs_cmd,
        """\
        Find the exported pairs a trained policy disagrees with, and send them back for review.

        Computes each pair's implicit reward margin (chosen − rejected) under RUN's final model and
        writes the --top pairs with the lowest margin (with --below 0: only pairs it gets wrong) to the
        store as AI pairwise judgements (the model's own preference, margin in metadata), so the
        review page can show them to people.

        Example:
          prefkit score-pairs runs/dpo1 --data exports/helpful --top 20
        """,
    )
    p.add_argument("run", help="a finished `prefkit train` run folder")
    p.add_argument("--data", required=True, help="the exported dataset the pairs come from")
    p.add_argument("--split", help="one split only (default: all)")
    p.add_argument("--top", type=int, default=50, help="how many of the lowest-margin pairs to write (default 50)")
    p.add_argument("--below", type=float, help="only pairs whose margin is under this (0: only real disagreements)")
    add_store_option(p)


def _wrap(fn):
    from prefkit.train.config import ConfigError
    from prefkit.train.data import DataError
    from prefkit.train.trainer import TrainError

    try:
        return fn()
    except (TrainError, DataError, ConfigError, FileNotFoundError) as exc:
        raise ScoreError(str(exc)) from exc


def _score_cmd(args: argparse.Namespace) -> int:
    from prefkit.cli import store_path

    if not Path(args.model).exists():
        raise ScoreError(f"--model {args.model}: no such folder")
    n = _wrap(lambda: score_responses(Store(store_path(args)), args.model, args.limit))
    print(f"scored {n} responses")
    return 0


def _score_pairs_cmd(args: argparse.Namespace) -> int:
    from prefkit.cli import store_path

    if not (Path(args.run) / "config.yaml").exists():
        raise ScoreError(f"{args.run}: not a prefkit train run folder (no config.yaml)")
    written = _wrap(lambda: score_pairs(Store(store_path(args)), args.run, args.data, args.top, args.split, args.below))
    print(f"wrote {len(written)} disagreeing pairs as judgements")
    return 0
