"""Shared fixtures: an isolated cache directory and loopback embedding servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from embedtasks.testing import FakeEmbeddingServer


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep every test off the user's cache and real credentials."""
    monkeypatch.setenv(
        "EMBEDTASKS_CACHE_DIR", str(tmp_path_factory.mktemp("embedtasks-cache"))
    )
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # Each test starts with no learned rate limits (they are kept per process).
    from embedtasks.embedders._http import _pacestore

    monkeypatch.setattr(_pacestore, "_LOCAL_STORES", {})


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeEmbeddingServer]]:
    """Start :class:`FakeEmbeddingServer` instances on 127.0.0.1 (port 0).

    Call it with the server's keyword arguments; every server is stopped at
    teardown.
    """
    servers: list[FakeEmbeddingServer] = []

    def start(**kwargs: Any) -> FakeEmbeddingServer:
        server = FakeEmbeddingServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
