"""The ``embedtasks`` command line: data files in, results out.

Every data subcommand reads a CSV, TSV, Parquet, JSON Lines, JSON or text file,
takes its texts from one column (``--column``, default ``text``), embeds them (the
local model by default; an OpenAI-compatible endpoint with ``--base-url``), cached
on disk so a re-run costs nothing, and prints the estimator's DataFrame: a table
that fits the terminal, or CSV, JSON Lines or JSON (``--format``). ``-o`` writes
each artefact to a file (its format from its extension). Column names and 0-based
ranks are those of the Python DataFrames; ``index`` is the row of the input file
(0-based).

Arguments are checked before anything is embedded. Errors are one line on stderr
and a non-zero exit: 2 for bad arguments or input (a missing file or column, an
empty text), 1 for a failure while working.

The ``cli`` package is the only code in embedtasks that prints. It imports pandas,
scikit-learn and the models only when a command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from embedtasks import __version__
from embedtasks.cli import (
    _analyse,
    _cluster,
    _dedupe,
    _demo,
    _drift,
    _embed,
    _report,
    _search,
)
from embedtasks.cli._args import CLIError, resolve_defaults
from embedtasks.cli._run import _check_outputs, _warning_printer

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedtasks`` command."""
    parser = argparse.ArgumentParser(
        prog="embedtasks",
        description="Text embeddings at work: embed, search, recommend, cluster, "
        "flag outliers, measure diversity, classify and de-duplicate the texts of a "
        "data file, and test whether two files differ.",
        epilog="Start with: embedtasks demo",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Any, help: str, **kwargs: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, **kwargs)
        p.set_defaults(handler=handler)
        return p

    for module in (
        _demo,
        _embed,
        _search,
        _cluster,
        _analyse,
        _dedupe,
        _drift,
        _report,
    ):
        module.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``embedtasks`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_defaults(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a text that the terminal cannot show
            stream.reconfigure(errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args)
            _check_outputs(args)
            return int(args.handler(args))
    except CLIError as exc:
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `embedtasks search ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"embedtasks {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from embedtasks.exceptions import EmbedTasksError

        known = (EmbedTasksError, ImportError, ValueError, TypeError, OSError)
        if not isinstance(exc, known):
            raise
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
