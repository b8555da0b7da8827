"""`prefkit demo`: the whole loop on a copy of the demo store (prefkit/demo.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefkit.cli import add_command
from prefkit.demo import OUT, DemoError, run_demo

ERRORS = (DemoError,)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole loop on a copy of the demo store: curate, export, train, score.

    Copies data/demo/ to --out, builds a tiny model on the spot (no download, no GPU), then runs
    the same commands you would type — each printed before it runs — so you see every stage's
    output and files. With --base-url it also generates, judges and revises with a real model
    on any OpenAI-compatible server (the API key comes from OPENAI_API_KEY).

    Example:
      prefkit demo
      prefkit demo --out /tmp/demo --steps 40
      prefkit demo --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-1.5B-Instruct"""

    run_demo(Path(args.out), args.base_url, args.model, args.steps)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "demo", cmd_demo)
    p.add_argument("--out", default=str(OUT), help="folder for the demo's store, exports and runs")
    p.add_argument("--base-url", help="an OpenAI-compatible server, to run the AI stages too")
    p.add_argument("--model", help="the model name on that server")
    p.add_argument("--steps", type=int, default=20, help="training steps per method (default: 20)")
