"""The `prefkit` command line: a thin layer over the library.

One module here per stage (`prefkit/cli/annotate.py`, `ai.py`, `app.py`, `curate.py`, `export.py`,
`train.py`, `score.py`, `demo.py`) registers that stage's subcommands (`register(subparsers)`): it
reads the arguments, calls one library function, and prints what happened. The stages are libraries
and never import this package. Errors the stages raise on bad input (listed in each module's
`ERRORS`) become a one-line message and exit status 1 here, in one place; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from collections.abc import Callable
from types import ModuleType

from prefkit import __version__


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int | None],
    doc: str | None = None,
) -> argparse.ArgumentParser:
    """Add a subcommand whose `--help` is `doc`, by default the command function's docstring (so
    what a command does is written once, where it is done): first line the summary, the rest (with
    an `Example:` block) shown as written."""
    doc = doc if doc is not None else func.__doc__
    if not doc:
        raise TypeError(f"the command {name!r} has no help: give {func.__name__} a docstring")
    doc = inspect.cleandoc(doc)  # the first line may be unindented, the rest indented
    summary = doc.splitlines()[0]
    parser = subparsers.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(func=func, command=name)
    return parser


def add_store_option(parser: argparse.ArgumentParser) -> None:
    from prefkit.annotate.store import default_store_path

    parser.add_argument(
        "--store",
        default=None,
        help=f"the store folder, or s3://BUCKET/PREFIX (default: $PREFKIT_STORE, else ./{default_store_path()})",
    )


def store_path(args: argparse.Namespace) -> str:
    from prefkit.annotate.store import default_store_path

    return args.store or default_store_path()


def command_modules() -> list[ModuleType]:
    """The command modules, in pipeline order. Imported here, not at the top, so that
    `python -m prefkit.cli.ai` loads only its own module; each imports its heavy libraries lazily."""
    from prefkit.cli import ai, annotate, app, curate, demo, export, score, train

    return [annotate, app, ai, curate, export, train, score, demo]


def build_parser() -> tuple[argparse.ArgumentParser, tuple[type[BaseException], ...]]:
    parser = argparse.ArgumentParser(
        prog="prefkit",
        description=textwrap.dedent(
            """\
            Turn model responses into preference data, and preference data into aligned models.

            The pipeline: import → label (app, AI jobs) → curate → export → train.
            Every command takes --store (default $PREFKIT_STORE, else ./prefkit-store).

            Example:
              prefkit import ../shared/data/pandalm/testset-v1.json
              prefkit stats
              prefkit app"""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"prefkit {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    errors: list[type[BaseException]] = []
    for module in command_modules():
        module.register(subparsers)
        errors.extend(module.ERRORS)  # each module lists the errors its stage raises on bad input
    return parser, tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser, errors = build_parser()
    return run(parser, errors, argv)


def run(parser: argparse.ArgumentParser, errors: tuple[type[BaseException], ...], argv: list[str] | None) -> int:
    """Parse `argv`, call the command, and turn the stage's own errors into one line and exit 1."""
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: `prefkit batches resume` re-runs it
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        from prefkit.annotate.text import printable  # messages quote input text: no escapes reach the terminal

        print(f"prefkit {args.command}: error: {printable(exc, newlines=False)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"prefkit {args.command}: interrupted", file=sys.stderr)
        return 130
