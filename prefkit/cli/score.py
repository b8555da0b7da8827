"""`prefkit score` and `prefkit score-pairs`: a trained model's view, written back to the store
(prefkit/score.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefkit.annotate.store import Store
from prefkit.cli import add_command, add_store_option, store_path
from prefkit.score import ScoreError, score_pairs, score_responses

ERRORS: tuple[type[BaseException], ...] = (ScoreError,)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "score", _score_cmd)
    p.add_argument("--model", required=True, help="the reward model folder (RUN_DIR/final of `prefkit train rm`)")
    p.add_argument("--limit", type=int, help="score at most N responses")
    add_store_option(p)

    p = add_command(subparsers, "score-pairs", _score_pairs_cmd)
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
    """\
    Rate every response in the store with a reward model trained by `prefkit train rm`.

    Each score becomes a `rating` judgement by `ai:<model folder>:reward-model`; responses this
    model already rated are skipped, so re-running only scores what is new.

    Example:
      prefkit score --model runs/rm1/final
    """

    if not Path(args.model).exists():
        raise ScoreError(f"--model {args.model}: no such folder")
    n = _wrap(lambda: score_responses(Store(store_path(args)), args.model, args.limit))
    print(f"scored {n} responses")
    return 0


def _notice(message: str) -> None:
    print(f"prefkit score-pairs: {message}", file=sys.stderr)


def _score_pairs_cmd(args: argparse.Namespace) -> int:
    """\
    Find the exported pairs a trained policy disagrees with, and send them back for review.

    Computes each pair's implicit reward margin (chosen − rejected) under RUN's final model and
    writes the --top pairs with the lowest margin (with --below 0: only pairs it gets wrong) to the
    store as AI pairwise judgements (the model's own preference, margin in metadata), so the
    review page can show them to people.

    Example:
      prefkit score-pairs runs/dpo1 --data exports/helpful --top 20
    """

    if not (Path(args.run) / "config.yaml").exists():
        raise ScoreError(f"{args.run}: not a prefkit train run folder (no config.yaml)")
    store = Store(store_path(args))
    # A dataset exported before the ids were kept is scored by re-hashed ids; `_notice` says so on stderr.
    written = _wrap(lambda: score_pairs(store, args.run, args.data, args.top, args.split, args.below, notice=_notice))
    print(f"wrote {len(written)} disagreeing pairs as judgements")
    return 0
