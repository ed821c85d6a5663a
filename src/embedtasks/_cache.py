"""A persistent float32 embedding cache in SQLite (WAL).

Each vector is stored as a little-endian float32 blob under a 32-byte key,
``sha256(identity JSON, text)``, where the identity says which embedder made it
(endpoint, model, dimensions, ...). The texts themselves are never stored, only
their hashes, so the cache holds no readable copy of the corpus.

Safety comes from SQLite itself: every :meth:`EmbeddingCache.put_many` is one
transaction (a crash loses at most the batch being written, never what is
already stored), WAL mode lets readers and one writer work at once, and several
processes may write the same file (writers wait up to ``timeout`` seconds for
the lock). Each row records its width; a row of another width than the caller
expects is reported as a miss (and counted in ``mismatches``), never served.

``EmbeddingCache(None)`` keeps everything in memory, for tests and for
estimators that should not touch the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["CACHE_FILENAME", "EmbeddingCache", "default_cache_dir", "make_key"]

#: File name of the database inside a cache directory.
CACHE_FILENAME = "embeddings.sqlite3"

_SCHEMA_VERSION = 1
_BLOB_DTYPE = np.dtype("<f4")
# SQLite may bind at most 32,766 variables per statement (999 before 3.32).
_CHUNK = 900 if sqlite3.sqlite_version_info < (3, 32) else 16_000


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


def _identity_prefix(identity: Mapping[str, object]) -> bytes:
    blob = json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return blob.encode("utf-8") + b"\x00"


def make_key(identity: Mapping[str, object], text: str) -> bytes:
    """The 32-byte cache key of ``text`` embedded by ``identity``.

    ``identity`` is a JSON-serialisable mapping naming everything that changes the
    vector (endpoint, model, dimensions, ...); key order does not matter.

    Examples
    --------
    >>> key = make_key({"model": "m", "dimensions": 8}, "hello")
    >>> len(key), key == make_key({"dimensions": 8, "model": "m"}, "hello")
    (32, True)
    >>> key == make_key({"model": "m", "dimensions": 16}, "hello")
    False
    """
    return hashlib.sha256(_identity_prefix(identity) + text.encode("utf-8")).digest()


def make_keys(identity: Mapping[str, object], texts: Iterable[str]) -> list[bytes]:
    """:func:`make_key` for many texts (the identity is hashed once)."""
    prefix = hashlib.sha256(_identity_prefix(identity))
    keys = []
    for text in texts:
        h = prefix.copy()
        h.update(text.encode("utf-8"))
        keys.append(h.digest())
    return keys


class EmbeddingCache:
    """Float32 vectors keyed by :func:`make_key`, in SQLite (WAL) or in memory.

    Parameters
    ----------
    path : str or PathLike or None
        Database file, or a directory (the file ``embeddings.sqlite3`` is used
        inside it; the directory is created). ``None`` keeps the cache in memory.
    timeout : float, default=60.0
        Seconds a writer waits for another process's write lock.

    Attributes
    ----------
    path : Path or None
        The database file (``None`` in memory).
    mismatches : int
        Rows skipped by :meth:`get_many` because their width differed from
        the one asked for.

    Examples
    --------
    >>> import numpy as np
    >>> cache = EmbeddingCache(None)
    >>> keys = make_keys({"model": "m"}, ["a", "b"])
    >>> cache.put_many(keys[:1], np.array([[0.6, 0.8]], dtype=np.float32))
    >>> found, vectors = cache.get_many(keys)
    >>> found
    array([ True, False])
    >>> vectors[0]
    array([0.6, 0.8], dtype=float32)
    >>> cache.get_many(keys, dim=3)[0]  # another width is a miss, not served
    array([False, False])
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0
    ) -> None:
        if path is None:
            self.path: Path | None = None
            target = ":memory:"
        else:
            p = Path(path).expanduser()
            if p.suffix not in {".sqlite3", ".sqlite", ".db"}:
                p = p / CACHE_FILENAME
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
            target = str(p)
        self.timeout = timeout
        self.mismatches = 0
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            target, timeout=timeout, check_same_thread=False, isolation_level=None
        )
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise sqlite3.DatabaseError(
                f"Cannot open the embedding cache at {target}: {exc}. Delete the "
                "file (it only holds cached vectors) or choose another cache_dir."
            ) from exc

    def _setup(self) -> None:
        c = self._conn
        c.execute("PRAGMA busy_timeout = %d" % int(self.timeout * 1000))
        # Page size only applies to a new database: 16 KiB holds a 3,072-d row.
        c.execute("PRAGMA page_size = 16384")
        if self.path is not None:
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("PRAGMA synchronous = NORMAL")  # WAL: durable up to a crash
        c.execute(
            "CREATE TABLE IF NOT EXISTS vectors ("
            "key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL)"
        )
        c.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)")
        c.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
            (_SCHEMA_VERSION,),
        )
        (version,) = c.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone()
        if int(version) != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version}, this embedtasks reads {_SCHEMA_VERSION}"
            )

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        return int(n)

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        return f"EmbeddingCache({where!r})"

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def get_many(
        self,
        keys: Sequence[bytes],
        dim: int | None = None,
        *,
        out: npt.NDArray[np.float32] | None = None,
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
        """Look up many keys at once.

        Parameters
        ----------
        keys : sequence of bytes
            Keys from :func:`make_key`.
        dim : int, optional
            Expected width. Rows of another width are misses. ``None`` takes the
            width of the first row found.
        out : ndarray of float32, shape (len(keys), dim), optional
            Where to write the vectors (rows of misses are left untouched).

        Returns
        -------
        found : ndarray of bool, shape (len(keys),)
            Which keys were served.
        vectors : ndarray of float32, shape (len(keys), dim)
            The vectors; rows of misses are zero (or untouched in ``out``).
            ``dim`` is 0 when nothing was found and no width was given.
        """
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        position = {key: i for i, key in enumerate(keys)}
        width = dim if out is None else out.shape[1]
        result = out
        if result is not None and result.shape[0] != n:
            raise ValueError(f"out has {result.shape[0]} rows for {n} keys.")
        with self._lock:
            for start in range(0, n, _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, dim, vec FROM vectors WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, row_dim, blob in rows:
                    if width is None:
                        width = row_dim
                    if result is None:
                        result = np.zeros((n, width), dtype=np.float32)
                    if row_dim != width or len(blob) != 4 * width:
                        self.mismatches += 1
                        continue
                    i = position[key]
                    result[i] = np.frombuffer(blob, dtype=_BLOB_DTYPE)
                    found[i] = True
        if result is None:
            result = np.zeros((n, width or 0), dtype=np.float32)
        return found, result

    def put_many(self, keys: Sequence[bytes], vectors: npt.ArrayLike) -> None:
        """Store (or replace) many vectors in one transaction.

        Parameters
        ----------
        keys : sequence of bytes
            Keys from :func:`make_key`, one per row of ``vectors``.
        vectors : array-like of shape (len(keys), dim)
            Vectors to store as little-endian float32.
        """
        matrix = np.ascontiguousarray(vectors, dtype=_BLOB_DTYPE)
        if matrix.ndim != 2 or matrix.shape[0] != len(keys):
            raise ValueError(
                f"put_many needs one vector per key: got {len(keys)} keys and an "
                f"array of shape {matrix.shape}."
            )
        dim = matrix.shape[1]
        rows = ((key, dim, row.tobytes()) for key, row in zip(keys, matrix))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def __getstate__(self) -> dict[str, object]:
        raise TypeError(
            "EmbeddingCache holds an open database connection and cannot be "
            "pickled; pickle the estimator instead (it reopens its cache)."
        )
