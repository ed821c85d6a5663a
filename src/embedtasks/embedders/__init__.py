"""Embedders: texts in, float32 unit rows out, in input order, cached on disk.

:class:`OpenAIEmbedder` (any OpenAI-compatible endpoint) and :class:`LocalEmbedder`
(the bundled model, no network) share one base (deduplication, the cache,
progress, ``usage_``). The names are imported on first use, so reaching the cache
or the HTTP client does not load scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["ChatNamer", "EmbeddingCache", "LocalEmbedder", "OpenAIEmbedder"]

_EXPORTS = {
    "ChatNamer": "embedtasks.embedders._chat",
    "EmbeddingCache": "embedtasks.embedders._cache",
    "LocalEmbedder": "embedtasks.embedders._local",
    "OpenAIEmbedder": "embedtasks.embedders._openai",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from embedtasks.embedders._cache import EmbeddingCache
    from embedtasks.embedders._chat import ChatNamer
    from embedtasks.embedders._local import LocalEmbedder
    from embedtasks.embedders._openai import OpenAIEmbedder


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
