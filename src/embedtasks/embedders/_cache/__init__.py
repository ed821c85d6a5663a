"""A persistent float32 embedding cache that never serves a wrong vector.

Each vector is stored once as little-endian float32 in an append-only data file
(``<name>.vectors/<uuid>.f32`` next to the database, one file per writer and
width), and SQLite maps its 32-byte key, ``sha256(identity JSON, text)``, to
(file, row, checksum). The identity says which embedder made it (endpoint,
model, dimensions, ...). Texts are never stored, only their hashes.

Why it cannot lie:

* Data files identify themselves: each is named by a random UUID that its
  32-byte header repeats, and the index records that UUID. A new or reset index
  (deleted, 0-byte, or a second database in the same folder) never reuses a name,
  and a file whose header does not match is not read.
* A row's position comes from the real end of the file when it is written, not
  from a counter.
* Every vector read is checked against a 64-bit checksum kept in the index; a
  damaged, truncated or unverifiable vector is a miss (refetched), never served.
* A writer appends and fsyncs its rows *before* committing their index rows in
  one SQLite transaction, so a crash (even ``kill -9``) loses at most the batch
  being written.

A damaged index raises :class:`~embedtasks.exceptions.CacheError`, one line
naming the file and the fix. ``EmbeddingCache.info``, ``verify``, ``compact``
and ``clear`` (also ``embedtasks cache info|verify|compact|clear``) report,
check and reclaim space.

``EmbeddingCache(None)`` keeps everything in memory, for tests and for
estimators that should not touch the disk.
"""

from __future__ import annotations

from embedtasks._cachedir import default_cache_dir, resolve_cache_dir
from embedtasks.embedders._cache._folder import index_path, is_cache, read_marker
from embedtasks.embedders._cache._format import (
    CACHE_FILENAME,
    checksums,
    make_key,
    make_keys,
)
from embedtasks.embedders._cache._store import EmbeddingCache

__all__ = [
    "CACHE_FILENAME",
    "EmbeddingCache",
    "checksums",
    "default_cache_dir",
    "index_path",
    "is_cache",
    "make_key",
    "make_keys",
    "read_marker",
    "resolve_cache_dir",
]
