"""The one owner of the cache folder: where it is and what each store is called.

Every store under the folder is named here, so a newcomer (and ``embedtasks cache``)
finds them in one place:

* ``embeddings.sqlite3`` + ``embeddings.vectors/``: the embedding cache
  (:mod:`embedtasks.embedders._cache`);
* ``pacing.sqlite3``: request pacing learned from the server, shared by processes
  (:mod:`embedtasks.embedders._http._pacing`);
* ``cluster/``: reduced layouts of :class:`~embedtasks.EmbeddingClusterer`;
* ``numba/``: compiled layout code;
* ``demo-corpus-*.json``: the main job's corpus (:func:`embedtasks.demo.build_corpus`).

``cache_dir`` settings mean the same everywhere: ``"default"`` is
:func:`default_cache_dir`, a path is that folder, and ``None`` (no cache) or
``":memory:"`` (a cache in memory) name no folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CLUSTER_DIRNAME",
    "DEMO_CORPUS_PREFIX",
    "EMBEDDINGS_FILENAME",
    "MARKER_FILENAME",
    "NUMBA_DIRNAME",
    "PACING_FILENAME",
    "default_cache_dir",
    "remove_pacing",
    "resolve_cache_dir",
]

#: The embedding cache's SQLite index (its vectors live in ``embeddings.vectors/``).
EMBEDDINGS_FILENAME = "embeddings.sqlite3"
#: Request pacing state shared by processes.
PACING_FILENAME = "pacing.sqlite3"
#: The marker inside ``embeddings.vectors/``: says the cache is ours, and its format.
#: Nothing without it (or an older cache's own index) is cleared or changed.
MARKER_FILENAME = "EMBEDTASKS_CACHE.json"
#: Reduced layouts of the clusterer.
CLUSTER_DIRNAME = "cluster"
#: numba's compiled code for the layout.
NUMBA_DIRNAME = "numba"
#: The main job's corpus, one JSON file per set of parameters.
DEMO_CORPUS_PREFIX = "demo-corpus-"


def default_cache_dir() -> Path:
    """The user-level cache directory used by ``cache_dir="default"``.

    ``$EMBEDTASKS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/embedtasks``, else
    ``~/.cache/embedtasks``.

    Examples
    --------
    >>> import os
    >>> os.environ["EMBEDTASKS_CACHE_DIR"] = "/tmp/my-cache"
    >>> str(default_cache_dir())
    '/tmp/my-cache'
    >>> del os.environ["EMBEDTASKS_CACHE_DIR"]
    """
    env = os.environ.get("EMBEDTASKS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "embedtasks"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The folder a ``cache_dir`` setting stands for; the one place that decides.

    ``"default"``: :func:`default_cache_dir`; ``None`` (no cache) and ``":memory:"``
    (a cache in memory): no folder; anything else: that path, ``~`` expanded.

    Examples
    --------
    >>> resolve_cache_dir(None) is None, resolve_cache_dir(":memory:") is None
    (True, True)
    >>> str(resolve_cache_dir("/tmp/x"))
    '/tmp/x'
    """
    if cache_dir is None or cache_dir == ":memory:":
        return None
    if cache_dir == "default":
        return default_cache_dir()
    return Path(cache_dir).expanduser()


def remove_pacing(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the pacing state of a cache folder (learned limits and pauses).

    It is only advisory state; ``embedtasks cache clear`` removes it with the
    vectors, so that a pause learned from a bad header does not outlive it.
    """
    removed = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        f = Path(folder) / (PACING_FILENAME + suffix)
        if f.exists():
            f.unlink()
            removed.append(f)
    return removed
