"""Run embedtasks' fake embedding server in this process until killed (benchmarks).

``python benchmarks/_fake_server.py '{"dim": 8, ...}'`` prints ``READY <url>`` on
stdout once listening; the keyword arguments are those of
:class:`embedtasks.testing.FakeEmbeddingServer`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from embedtasks.testing import FakeEmbeddingServer


def serve(**kwargs: Any) -> None:
    """Serve until killed; print ``READY <url>`` once listening."""
    server = FakeEmbeddingServer(**kwargs)
    print("READY", server.url, flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    serve(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))
