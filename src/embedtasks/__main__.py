"""``python -m embedtasks``: the same as the ``embedtasks`` command."""

from __future__ import annotations

import sys

from embedtasks.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
