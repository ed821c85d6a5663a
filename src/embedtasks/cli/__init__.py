"""The ``embedtasks`` command: the only code in the package that prints.

``_main`` builds the parser from the command modules (each declares its flags
beside its handler) and runs one; ``_args`` holds the argument types and the
flag groups shared by commands; ``_io`` reads and writes data files; ``_run``
holds what every data command shares (the embedder, notes, the output);
``_terminal`` fits tables to the terminal.
"""

from __future__ import annotations

from embedtasks.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
