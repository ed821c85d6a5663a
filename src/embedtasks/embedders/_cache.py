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

import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from embedtasks._cachedir import (
    EMBEDDINGS_FILENAME,
    default_cache_dir,
    resolve_cache_dir,
)
from embedtasks.embedders._secrets import mask_url
from embedtasks.exceptions import CacheError

__all__ = [
    "CACHE_FILENAME",
    "EmbeddingCache",
    "default_cache_dir",
    "make_key",
    "make_keys",
    "resolve_cache_dir",
]

#: File name of the database inside a cache directory.
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


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a damaged index met mid-use into a one-line :class:`CacheError`."""

    @functools.wraps(method)
    def wrapper(self: EmbeddingCache, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    return wrapper


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
    damaged : int
        Rows skipped by :meth:`get_many` because they failed verification
        (checksum, header or size); they are fetched again by the embedder.

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
    >>> cache.info()["vectors"]
    1
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
        self.damaged = 0
        self._lock = threading.RLock()
        self._writers: dict[int, int] = {}  # dim -> file id of this writer
        self._arrays: dict[int, npt.NDArray[np.float32]] = {}
        self._files: dict[int, tuple[int, bytes]] = {}  # id -> (dim, uuid)
        self._checked: dict[int, bool] = {}  # file id -> header matches
        self._writes = 0  # commits by this connection (see _index_snapshot)
        self._snapshot: tuple[Any, ...] | None = None
        try:
            self._conn = sqlite3.connect(
                target, timeout=timeout, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> CacheError:
        where = "memory" if self.path is None else str(self.path)
        folder = "<dir>" if self.path is None else str(self.path.parent)
        return CacheError(
            f"The embedding cache index {where} is damaged or unreadable ({exc}); "
            + _FIX.format(dir=folder, path=where)
            + ".",
            path=where,
        )

    @property
    def data_dir(self) -> Path | None:
        """Folder of this index's data files (``None`` in memory)."""
        if self.path is None:
            return None
        return self.path.parent / f"{self.path.stem}.vectors"

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        if self.path is not None:
            self._enable_wal()
            c.execute("PRAGMA synchronous = NORMAL")  # WAL: durable up to a crash
        c.execute("BEGIN IMMEDIATE")  # one process creates the schema at a time
        try:
            c.execute(_SCHEMA[0])
            row = c.execute(
                "SELECT value FROM meta WHERE name = 'schema_version'"
            ).fetchone()
            if row is not None and int(row[0]) < _SCHEMA_VERSION:
                # An older layout: its rows cannot be verified, so start afresh
                # (old data files are left alone; nothing aliases them).
                for table in ("vectors", "files", "identities"):
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                c.execute("DELETE FROM meta")
                row = None
            for statement in _SCHEMA[1:]:
                c.execute(statement)
            if row is None:
                c.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
                )
                version = _SCHEMA_VERSION
            else:
                version = int(row[0])
        finally:
            c.execute("COMMIT")
        if version != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version}, this embedtasks reads {_SCHEMA_VERSION}"
            )

    def _enable_wal(self) -> None:
        """Switch to WAL, waiting out other processes that open the file at once.

        Changing the journal mode of a new database needs an exclusive lock, and
        SQLite may answer "database is locked" at once instead of calling the busy
        handler, so the switch is retried until ``timeout``.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    @_guard
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
        """Close the database and data files (idempotent)."""
        with self._lock:
            self._writers.clear()
            self._arrays.clear()
            self._conn.close()

    # -- identities --------------------------------------------------------------
    @_guard
    def identity_dim(self, identity: Mapping[str, object]) -> int | None:
        """The vector width first recorded for ``identity``, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT dim FROM identities WHERE id = ?", (_identity_id(identity),)
            ).fetchone()
        return None if row is None else int(row[0])

    @_guard
    def record_identity_dim(self, identity: Mapping[str, object], dim: int) -> int:
        """Record ``dim`` for ``identity`` unless one is already known.

        Returns the recorded width (the earlier one, if it differs), so a caller
        can tell that the model behind an identity changed.
        """
        self._identity_num(identity, dim)
        recorded = self.identity_dim(identity)
        return int(dim) if recorded is None else recorded

    def _identity_num(self, identity: Mapping[str, object], dim: int) -> int:
        label = {
            k: (mask_url(v) if k == "endpoint" and isinstance(v, str) else v)
            for k, v in identity.items()
        }
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO identities (id, dim, label) VALUES (?, ?, ?)",
                (_identity_id(identity), int(dim), json.dumps(label, sort_keys=True)),
            )
            (num,) = self._conn.execute(
                "SELECT num FROM identities WHERE id = ?", (_identity_id(identity),)
            ).fetchone()
        return int(num)

    # -- reading -------------------------------------------------------------------
    @_guard
    def get_many(
        self,
        keys: Sequence[bytes],
        dim: int | None = None,
        *,
        out: npt.NDArray[np.float32] | None = None,
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
        """Look up many keys at once; every vector served is verified.

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
            Which keys were served (found and verified).
        vectors : ndarray of float32, shape (len(keys), dim)
            The vectors; rows of misses are zero (or untouched in ``out``).
            ``dim`` is 0 when nothing was found and no width was given.
        """
        n = len(keys)
        if out is not None:
            if out.shape[0] != n:
                raise ValueError(f"out has {out.shape[0]} rows for {n} keys.")
            dim = out.shape[1]
        with self._lock:
            files, rows, sums = self._locate(keys)
            found = files >= 0
            present = np.unique(files[found])
            dims = {int(f): self._file(int(f))[0] for f in present}
            if dim is None and present.size:
                dim = dims[int(files[np.argmax(found)])]
            result = out
            if result is None:
                result = np.empty((n, dim or 0), dtype=np.float32)
            for f in present.tolist():
                sel = np.flatnonzero(files == f)
                if dims[f] != dim:
                    self.mismatches += sel.size
                    found[sel] = False
                    continue
                ok = self._gather(f, rows[sel], sel, result)
                if ok.all():
                    ok = checksums(result[sel]) == sums[sel]
                else:
                    ok[ok] = checksums(result[sel[ok]]) == sums[sel[ok]]
                if not ok.all():
                    self.damaged += int((~ok).sum())
                    found[sel[~ok]] = False
            if out is None and not found.all():
                result[~found] = 0
        return found, result

    def _locate(
        self, keys: Sequence[bytes]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(file id or -1, row, checksum) of each key."""
        n = len(keys)
        files = np.full(n, -1, dtype=np.int64)
        rows = np.zeros(n, dtype=np.int64)
        sums = np.zeros(n, dtype=np.int64)
        if n == 0:
            return files, rows, sums
        if n * 4 >= self._count_estimate():
            # Most of the table: one scan in key order, then a vectorised search.
            sorted_keys, t_files, t_rows, t_sums = self._index_snapshot()
            if not sorted_keys.size:
                return files, rows, sums
            wanted = np.array(keys, dtype="S32")
            at = np.searchsorted(sorted_keys, wanted).clip(max=sorted_keys.size - 1)
            hit = sorted_keys[at] == wanted
            files[hit] = t_files[at[hit]]
            rows[hit] = t_rows[at[hit]]
            sums[hit] = t_sums[at[hit]]
            return files, rows, sums
        position = {key: i for i, key in enumerate(keys)}
        for start in range(0, n, _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"{_SCAN} WHERE key IN ({marks})"
            for key, f, r, s in self._conn.execute(query, chunk):
                i = position[key]
                files[i], rows[i], sums[i] = f, r, s
        if len(position) < n:  # repeated keys: copy the first occurrence
            first = np.array([position[k] for k in keys])
            files, rows, sums = files[first], rows[first], sums[first]
        return files, rows, sums

    def _gather(
        self,
        file_id: int,
        rows: npt.NDArray[np.int64],
        dest: npt.NDArray[np.intp],
        out: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.bool_]:
        """Copy ``rows`` of a data file into ``out[dest]``; which rows were read.

        A missing file, a header that does not name this file, or rows past the
        end are reported as unread (the caller treats them as damaged).
        """
        ok = np.ones(rows.size, dtype=bool)
        if self.path is None:
            out[dest] = self._arrays[file_id][rows]
            return ok
        dim, file_uuid = self._file(file_id)
        path = self._data_path(file_uuid)
        row_bytes = 4 * dim
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            ok[:] = False
            return ok
        try:
            if not self._header_ok(file_id, fd, file_uuid, dim):
                ok[:] = False
                return ok
            size = os.fstat(fd).st_size
            n_rows = (size - _HEADER) // row_bytes
            ok = rows < n_rows
            order = np.argsort(rows, kind="stable")
            r_sorted, d_sorted = rows[order], dest[order]
            keep = r_sorted < n_rows
            r_sorted, d_sorted = r_sorted[keep], d_sorted[keep]
            if not r_sorted.size:
                return ok
            breaks = np.flatnonzero((np.diff(r_sorted) != 1) | (np.diff(d_sorted) != 1))
            starts = np.concatenate([[0], breaks + 1])
            ends = np.concatenate([breaks + 1, [r_sorted.size]])
            contiguous = out.flags.c_contiguous and out.dtype == _BLOB_DTYPE
            # (first row, destination row, row count) of each read; long runs are
            # cut into pieces that several threads copy from the page cache at once
            # (preadv releases the GIL), which a single np.load cannot do.
            piece = max(1, _PARALLEL_READ_BYTES // row_bytes)
            reads = [
                (int(r_sorted[a]) + o, int(d_sorted[a]) + o, min(piece, b - a - o))
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
                for o in range(0, b - a, piece)
            ]

            def read(first: int, to: int, count: int) -> None:
                target = out[to : to + count]
                offset = _HEADER + first * row_bytes
                got = -1
                if contiguous:
                    got = os.preadv(fd, [target.data.cast("B")], offset)
                if got != count * row_bytes:  # short read, or out not contiguous
                    data = os.pread(fd, count * row_bytes, offset)
                    target[:] = np.frombuffer(data, dtype=_BLOB_DTYPE).reshape(-1, dim)

            threads = min(len(reads), os.cpu_count() or 1, _MAX_READ_THREADS)
            if threads > 1:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda r: read(*r), reads))
            else:
                for r in reads:
                    read(*r)
        finally:
            os.close(fd)
        return ok

    def _header_ok(self, file_id: int, fd: int, file_uuid: bytes, dim: int) -> bool:
        if file_id not in self._checked:
            head = os.pread(fd, _HEADER, 0)
            expected = _MAGIC + file_uuid + int(dim).to_bytes(4, "little")
            self._checked[file_id] = head[:28] == expected
        return self._checked[file_id]

    def _index_snapshot(
        self,
    ) -> tuple[
        npt.NDArray[np.bytes_],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
    ]:
        """The whole index as sorted arrays, rebuilt only when it has changed.

        ``PRAGMA data_version`` changes when another connection commits; our own
        commits bump ``_writes``.
        """
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        stamp = (int(version), self._writes)
        if self._snapshot is None or self._snapshot[0] != stamp:
            table = self._conn.execute(_SCAN).fetchall()  # key order
            columns: tuple[Any, ...] = (
                tuple(zip(*table, strict=True)) if table else ((), (), (), ())
            )
            self._snapshot = (
                stamp,
                np.array(columns[0], dtype="S32"),
                np.asarray(columns[1], dtype=np.int64),
                np.asarray(columns[2], dtype=np.int64),
                np.asarray(columns[3], dtype=np.int64),
            )
        return (
            self._snapshot[1],
            self._snapshot[2],
            self._snapshot[3],
            self._snapshot[4],
        )

    def _count_estimate(self) -> int:
        if self._snapshot is not None:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            if self._snapshot[0] == (int(version), self._writes):
                return int(self._snapshot[1].size)
        (n,) = self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        return int(n)

    def _file(self, file_id: int) -> tuple[int, bytes]:
        if file_id not in self._files:
            row = self._conn.execute(
                "SELECT dim, uuid FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            self._files[file_id] = (int(row[0]), bytes(row[1])) if row else (-1, b"")
        return self._files[file_id]

    def _data_path(self, file_uuid: bytes) -> Path:
        folder = self.data_dir
        assert folder is not None
        return folder / f"{file_uuid.hex()}.f32"

    # -- writing -------------------------------------------------------------------
    @_guard
    def put_many(
        self,
        keys: Sequence[bytes],
        vectors: npt.ArrayLike,
        *,
        identity: Mapping[str, object] | None = None,
    ) -> None:
        """Store (or replace) many vectors; the batch is indexed atomically.

        Parameters
        ----------
        keys : sequence of bytes
            Keys from :func:`make_key`, one per row of ``vectors``.
        vectors : array-like of shape (len(keys), dim)
            Vectors to store as little-endian float32.
        identity : mapping, optional
            The identity the keys were made with; counted per model by
            :meth:`info`.
        """
        matrix = np.ascontiguousarray(vectors, dtype=_BLOB_DTYPE)
        if matrix.ndim != 2 or matrix.shape[0] != len(keys):
            raise ValueError(
                f"put_many needs one vector per key: got {len(keys)} keys and an "
                f"array of shape {matrix.shape}."
            )
        if not len(keys):
            return
        sums = checksums(matrix).tolist()
        with self._lock:
            ident = None
            if identity is not None:
                ident = self._identity_num(identity, matrix.shape[1])
            file_id, first_row = self._append(matrix)
            rows = (
                (key, file_id, first_row + i, sums[i], ident)
                for i, key in enumerate(keys)
            )
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._writes += 1

    def _new_file(self, dim: int) -> int:
        file_uuid = uuid.uuid4().bytes
        if self.path is not None:
            path = self._data_path(file_uuid)
            path.parent.mkdir(exist_ok=True)
            with open(path, "xb") as handle:
                handle.write(_MAGIC + file_uuid + int(dim).to_bytes(4, "little"))
                handle.write(b"\x00" * (_HEADER - 28))
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._conn.execute(
                "INSERT INTO files (dim, uuid) VALUES (?, ?)", (dim, file_uuid)
            )
        finally:
            self._conn.execute("COMMIT")
        file_id = int(cursor.lastrowid or 0)
        self._files[file_id] = (dim, file_uuid)
        return file_id

    def _append(self, matrix: npt.NDArray[np.float32]) -> tuple[int, int]:
        """Write rows durably to this writer's data file: (file id, first row)."""
        dim = matrix.shape[1]
        if self.path is None:
            file_id = self._new_file(dim)
            self._arrays[file_id] = matrix.copy()
            return file_id, 0
        row_bytes = 4 * dim
        for _ in range(2):
            file_id = self._writers.get(dim) or self._new_file(dim)
            path = self._data_path(self._file(file_id)[1])
            try:
                with open(path, "r+b") as handle:
                    end = handle.seek(0, os.SEEK_END)
                    if end < _HEADER or (end - _HEADER) % row_bytes:
                        # Torn by a crash or damaged: never append after it.
                        self._writers.pop(dim, None)
                        continue
                    handle.write(matrix.tobytes())
                    handle.flush()
                    os.fsync(handle.fileno())  # data on disk before the index
            except FileNotFoundError:
                self._writers.pop(dim, None)  # removed by compact/clear
                continue
            except BaseException:
                self._writers.pop(dim, None)  # a partial row may remain
                raise
            self._writers[dim] = file_id
            return file_id, (end - _HEADER) // row_bytes
        raise OSError(f"Cannot append to the embedding cache in {self.data_dir}.")

    # -- maintenance ------------------------------------------------------------
    @_guard
    def info(self) -> dict[str, Any]:
        """Sizes and counts: vectors, bytes on disk and reclaimable, per model.

        Returns
        -------
        dict
            ``path``, ``vectors``, ``files``, ``index_bytes``, ``data_bytes``,
            ``live_bytes`` (indexed vectors and their file headers),
            ``reclaimable_bytes``,
            ``orphan_files`` (data files no index row points to) and ``models``
            (one dict per identity: its ``label``, ``dim`` and ``vectors``).
        """
        with self._lock:
            c = self._conn
            (n,) = c.execute("SELECT COUNT(*) FROM vectors").fetchone()
            (live,) = c.execute(
                "SELECT COALESCE(SUM(f.dim), 0) * 4 FROM vectors v "
                "JOIN files f ON f.id = v.file"
            ).fetchone()
            n_files = c.execute("SELECT COUNT(*) FROM files").fetchone()[0]
            models = [
                {"label": json.loads(label or "{}"), "dim": int(dim), "vectors": int(k)}
                for label, dim, k in c.execute(
                    "SELECT i.label, i.dim, COUNT(v.key) FROM identities i "
                    "LEFT JOIN vectors v ON v.ident = i.num GROUP BY i.num "
                    "ORDER BY i.num"
                )
            ]
            known = {bytes(u).hex() for (u,) in c.execute("SELECT uuid FROM files")}
        index_bytes = data_bytes = orphans = 0
        if self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                index_bytes += p.stat().st_size if p.exists() else 0
            for p in self._data_files():
                size = p.stat().st_size
                data_bytes += size
                orphans += p.stem not in known
                live += _HEADER if p.stem in known else 0
        else:
            data_bytes = sum(a.nbytes for a in self._arrays.values())
        return {
            "path": None if self.path is None else str(self.path),
            "vectors": int(n),
            "files": int(n_files),
            "index_bytes": index_bytes,
            "data_bytes": data_bytes,
            "live_bytes": int(live),
            "reclaimable_bytes": max(0, data_bytes - int(live)),
            "orphan_files": orphans,
            "models": models,
        }

    def _data_files(self) -> list[Path]:
        folder = self.data_dir
        if folder is None or not folder.is_dir():
            return []
        return sorted(folder.glob("*.f32"))

    def _scan_files(self) -> Iterable[tuple[int, list[tuple[bytes, int, int]]]]:
        c = self._conn
        for (file_id,) in c.execute("SELECT id FROM files ORDER BY id").fetchall():
            entries = c.execute(
                "SELECT key, row, sum FROM vectors WHERE file = ? ORDER BY row",
                (file_id,),
            ).fetchall()
            yield int(file_id), entries

    def _read_verified(
        self, file_id: int, entries: list[tuple[bytes, int, int]]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        dim = self._file(file_id)[0]
        out = np.zeros((len(entries), max(dim, 0)), dtype=np.float32)
        rows = np.array([e[1] for e in entries], dtype=np.int64)
        sums = np.array([e[2] for e in entries], dtype=np.int64)
        ok = self._gather(file_id, rows, np.arange(len(entries)), out)
        ok &= checksums(out) == sums
        return out, ok

    @_guard
    def verify(self, *, repair: bool = False) -> dict[str, int]:
        """Check every indexed vector (file header, size, checksum).

        Parameters
        ----------
        repair : bool, default=False
            Drop the index rows of damaged vectors (they are fetched again on
            next use) instead of only counting them.

        Returns
        -------
        dict
            ``checked``, ``ok``, ``damaged`` and ``missing_files``.
        """
        checked = good = missing = 0
        bad: list[bytes] = []
        with self._lock:
            for file_id, entries in self._scan_files():
                if not entries:
                    continue
                if (
                    self.path is not None
                    and not self._data_path(self._file(file_id)[1]).exists()
                ):
                    missing += 1
                _, ok = self._read_verified(file_id, entries)
                checked += len(entries)
                good += int(ok.sum())
                bad += [entries[i][0] for i in np.flatnonzero(~ok).tolist()]
            if repair and bad:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "DELETE FROM vectors WHERE key = ?", [(k,) for k in bad]
                )
                self._conn.execute("COMMIT")
                self._writes += 1
        return {
            "checked": checked,
            "ok": good,
            "damaged": len(bad),
            "missing_files": missing,
        }

    @_guard
    def compact(self) -> dict[str, int]:
        """Rewrite the verified live vectors into fresh files; delete the rest.

        Reclaims replaced rows, damaged rows, torn tails and orphan data files
        (left by a deleted index). Writers in other processes wait meanwhile;
        run it while no other process reads this cache.

        Returns
        -------
        dict
            ``vectors`` kept, ``dropped`` (damaged), ``bytes_before`` and
            ``bytes_after``.
        """
        before = self.info()["data_bytes"]
        kept = dropped = 0
        with self._lock:
            c = self._conn
            old = [int(i) for (i,) in c.execute("SELECT id FROM files").fetchall()]
            self._writers.clear()
            moved: list[tuple[int, int, bytes]] = []
            dead: list[bytes] = []
            for file_id, entries in self._scan_files():
                if not entries:
                    continue
                vectors, ok = self._read_verified(file_id, entries)
                dead += [entries[i][0] for i in np.flatnonzero(~ok).tolist()]
                good = np.flatnonzero(ok)
                if good.size:
                    new_id, first = self._append(vectors[good])
                    moved += [
                        (new_id, first + j, entries[i][0])
                        for j, i in enumerate(good.tolist())
                    ]
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    "UPDATE vectors SET file = ?, row = ? WHERE key = ?", moved
                )
                c.executemany("DELETE FROM vectors WHERE key = ?", [(k,) for k in dead])
                c.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in old])
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            self._writes += 1
            self._checked.clear()
            kept, dropped = len(moved), len(dead)
            self._remove_unreferenced()
            self._writers.clear()
        return {
            "vectors": kept,
            "dropped": dropped,
            "bytes_before": before,
            "bytes_after": self.info()["data_bytes"],
        }

    def _remove_unreferenced(self) -> None:
        if self.path is None:
            live = {int(i) for (i,) in self._conn.execute("SELECT id FROM files")}
            for file_id in list(self._arrays):
                if file_id not in live:
                    del self._arrays[file_id]
            return
        known = {
            bytes(u).hex() for (u,) in self._conn.execute("SELECT uuid FROM files")
        }
        for p in self._data_files():
            if p.stem not in known:
                p.unlink(missing_ok=True)

    @_guard
    def clear(self) -> int:
        """Delete every vector and data file of this index; how many vectors."""
        with self._lock:
            n = len(self)
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            for table in ("vectors", "files", "identities"):
                c.execute(f"DELETE FROM {table}")
            c.execute("COMMIT")
            self._writes += 1
            self._writers.clear()
            self._files.clear()
            self._checked.clear()
            self._remove_unreferenced()
            c.execute("VACUUM")
        return n

    @staticmethod
    def remove_files(path: str | os.PathLike[str]) -> list[Path]:
        """Delete a cache's index and data files without opening it.

        For an index too damaged to open; returns what was removed.
        """
        p = Path(path).expanduser()
        if p.suffix not in {".sqlite3", ".sqlite", ".db"}:
            p = p / CACHE_FILENAME
        removed = []
        for suffix in ("", "-wal", "-shm", "-journal"):
            f = Path(str(p) + suffix)
            if f.exists():
                f.unlink()
                removed.append(f)
        folder = p.parent / f"{p.stem}.vectors"
        if folder.is_dir():
            for f in folder.glob("*.f32"):
                f.unlink()
                removed.append(f)
        return removed

    def __getstate__(self) -> dict[str, object]:
        raise TypeError(
            "EmbeddingCache holds an open database connection and cannot be "
            "pickled; pickle the estimator instead (it reopens its cache)."
        )
