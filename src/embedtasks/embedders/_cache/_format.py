"""The cache's on-disk format: constants, checksums and keys."""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from embedtasks._cachedir import (
    EMBEDDINGS_FILENAME,
)

__all__ = ["CACHE_FILENAME", "checksums", "make_key", "make_keys"]

CACHE_FILENAME = EMBEDDINGS_FILENAME

_SCHEMA_VERSION = 3
_BLOB_DTYPE = np.dtype("<f4")
_MAGIC = b"ETVEC\x00\x03\x00"  # 8 bytes; then 16 bytes of UUID, dim (u32), 4 spare
_HEADER = 32
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "dim INTEGER NOT NULL, uuid BLOB NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, "
    "file INTEGER NOT NULL, row INTEGER NOT NULL, sum INTEGER NOT NULL, "
    "ident INTEGER) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS identities (num INTEGER PRIMARY KEY AUTOINCREMENT, "
    "id BLOB NOT NULL UNIQUE, dim INTEGER NOT NULL, label TEXT)",
)
_SCAN = "SELECT key, file, row, sum FROM vectors"
# SQLite may bind at most 32,766 variables per statement (999 before 3.32).
_CHUNK = 900 if sqlite3.sqlite_version_info < (3, 32) else 16_000
_SUM_ROWS = 65_536
#: Reads longer than this are split across threads (page-cache copies in parallel).
_PARALLEL_READ_BYTES = 32 * 2**20
_MAX_READ_THREADS = 4  # rows per checksum block (bounds the uint64 temporary)
_FIX = (
    "run `embedtasks cache clear --cache-dir {dir}` or delete {path} (it only "
    "holds cached vectors; they will be fetched again)"
)

T = TypeVar("T")


@functools.lru_cache(maxsize=8)
def _weights(dim: int) -> npt.NDArray[np.uint64]:
    rng = np.random.default_rng(0x5EED)
    w = rng.integers(0, 2**63, size=dim, dtype=np.uint64)
    return w * np.uint64(2) + np.uint64(1)  # odd: any changed word changes the sum


def checksums(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """A 64-bit checksum of each row's float32 bytes (weighted word sum mod 2**64).

    Any change of one 4-byte word changes it (the weights are odd).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.ones((2, 3), dtype=np.float32)
    >>> s = checksums(v)
    >>> bool(s[0] == s[1]), s.dtype
    (True, dtype('int64'))
    >>> v[1, 2] = np.nextafter(np.float32(1), np.float32(2))
    >>> bool(checksums(v)[1] != s[1])
    True
    """
    m = np.ascontiguousarray(matrix, dtype=_BLOB_DTYPE)
    out = np.empty(m.shape[0], dtype=np.uint64)
    w = _weights(m.shape[1])
    words = m.view(np.uint32)
    for s in range(0, m.shape[0], _SUM_ROWS):
        block = words[s : s + _SUM_ROWS].astype(np.uint64)
        block *= w
        out[s : s + _SUM_ROWS] = block.sum(axis=1, dtype=np.uint64)
    return out.view(np.int64)


def _identity_prefix(identity: Mapping[str, object]) -> bytes:
    blob = json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return blob.encode("utf-8") + b"\x00"


def _identity_id(identity: Mapping[str, object]) -> bytes:
    return hashlib.sha256(_identity_prefix(identity)).digest()


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
