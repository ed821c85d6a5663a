"""The ``demo`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedtasks.cli._args import _common, owned
from embedtasks.cli._run import _cache_setting


def cmd_demo(args: argparse.Namespace) -> int:
    """Run every task on the docstrings of the installed packages."""
    from embedtasks.demo import run_demo

    progress = True if args.progress is None else args.progress
    run_demo(
        sys.stdout,
        n_texts=args.n_texts,
        cache_dir=_cache_setting(args),
        progress=progress,
    )
    return 0


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("demo", cmd_demo, "run every task on the docstrings of installed packages")
    owned(
        p,
        "--n-texts",
        spec="embedtasks.demo:run_demo",
        param="n_texts",
        help="corpus",
    )
    _common(p, data=False)
