"""A persistent float32 embedding cache: SQLite (WAL) indexing float32 files.

Each vector is stored once as little-endian float32 in an append-only data file
(``vectors/<id>.f32`` next to the database, one file per writer and width), and
SQLite maps its 32-byte key, ``sha256(identity JSON, text)``, to (file, row).
The identity says which embedder made it (endpoint, model, dimensions, ...).
Texts are never stored, only their hashes. Reading many vectors is one index
lookup plus a gather from memory-mapped files, close to ``np.load`` speed.

Safety: a writer appends its rows and fsyncs the data file *before* committing
their index rows in one SQLite transaction, so a crash loses at most the batch
being written (unreferenced bytes at the end of a file), never what is already
indexed. Every process writes its own data files, so several processes can
write at once; SQLite serialises their (short) index commits. Each data file
has one width; a row of another width than the caller expects is reported as a
miss (and counted in ``mismatches``), never served.

``EmbeddingCache(None)`` keeps everything in memory, for tests and for
estimators that should not touch the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CACHE_FILENAME",
    "EmbeddingCache",
    "default_cache_dir",
    "make_key",
    "make_keys",
]

#: File name of the database inside a cache directory.
CACHE_FILENAME = "embeddings.sqlite3"

_SCHEMA_VERSION = 2
_BLOB_DTYPE = np.dtype("<f4")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    "CREATE TABLE IF NOT EXISTS files ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, dim INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, "
    "file INTEGER NOT NULL, row INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS identities (id BLOB PRIMARY KEY, dim INTEGER NOT NULL)",
)
_SCAN = "SELECT key, file, row FROM vectors"
# SQLite may bind at most 32,766 variables per statement (999 before 3.32).
_CHUNK = 900 if sqlite3.sqlite_version_info < (3, 32) else 16_000
#: Reads longer than this are split across threads (page-cache copies in parallel).
_PARALLEL_READ_BYTES = 32 * 2**20
_MAX_READ_THREADS = 4


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
        # dim -> (file id, rows written) of this writer; file id -> rows
        self._writers: dict[int, tuple[int, int]] = {}
        self._arrays: dict[int, npt.NDArray[np.float32]] = {}
        self._file_dims: dict[int, int] = {}
        self._writes = 0  # commits by this connection (see _index_snapshot)
        self._snapshot: tuple[Any, ...] | None = None
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
        c.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        if self.path is not None:
            self._enable_wal()
            c.execute("PRAGMA synchronous = NORMAL")  # WAL: durable up to a crash
        c.execute("BEGIN IMMEDIATE")  # one process creates the schema at a time
        try:
            for statement in _SCHEMA:
                c.execute(statement)
            c.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                (_SCHEMA_VERSION,),
            )
            (version,) = c.execute(
                "SELECT value FROM meta WHERE name = 'schema_version'"
            ).fetchone()
        finally:
            c.execute("COMMIT")
        if int(version) != _SCHEMA_VERSION:
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

    def identity_dim(self, identity: Mapping[str, object]) -> int | None:
        """The vector width first recorded for ``identity``, if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT dim FROM identities WHERE id = ?", (_identity_id(identity),)
            ).fetchone()
        return None if row is None else int(row[0])

    def record_identity_dim(self, identity: Mapping[str, object], dim: int) -> int:
        """Record ``dim`` for ``identity`` unless one is already known.

        Returns the recorded width (the earlier one, if it differs), so a caller
        can tell that the model behind an identity changed.
        """
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO identities VALUES (?, ?)",
                (_identity_id(identity), int(dim)),
            )
        recorded = self.identity_dim(identity)
        return int(dim) if recorded is None else recorded

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
        if out is not None:
            if out.shape[0] != n:
                raise ValueError(f"out has {out.shape[0]} rows for {n} keys.")
            dim = out.shape[1]
        with self._lock:
            files, rows = self._locate(keys)
            found = files >= 0
            present = np.unique(files[found])
            dims = {int(f): self._dim_of(int(f)) for f in present}
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
                self._gather(f, rows[sel], sel, result)
            if out is None and not found.all():
                result[~found] = 0
        return found, result

    def _locate(
        self, keys: Sequence[bytes]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(file id or -1, row) of each key."""
        n = len(keys)
        files = np.full(n, -1, dtype=np.int64)
        rows = np.zeros(n, dtype=np.int64)
        if n == 0:
            return files, rows
        if n * 4 >= self._count_estimate():
            # Most of the table: one scan in key order, then a vectorised search.
            sorted_keys, t_files, t_rows = self._index_snapshot()
            if not sorted_keys.size:
                return files, rows
            wanted = np.array(keys, dtype="S32")
            at = np.searchsorted(sorted_keys, wanted).clip(max=sorted_keys.size - 1)
            hit = sorted_keys[at] == wanted
            files[hit] = t_files[at[hit]]
            rows[hit] = t_rows[at[hit]]
            return files, rows
        position = {key: i for i, key in enumerate(keys)}
        for start in range(0, n, _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, file, row FROM vectors WHERE key IN ({marks})"
            for key, f, r in self._conn.execute(query, chunk):
                i = position[key]
                files[i], rows[i] = f, r
        if len(position) < n:  # repeated keys: copy the first occurrence
            first = np.array([position[k] for k in keys])
            files, rows = files[first], rows[first]
        return files, rows

    def _gather(
        self,
        file_id: int,
        rows: npt.NDArray[np.int64],
        dest: npt.NDArray[np.intp],
        out: npt.NDArray[np.float32],
    ) -> None:
        """Copy ``rows`` of a data file into ``out[dest]``.

        Runs of consecutive rows going to consecutive destinations (the usual
        case: texts asked for in the order they were stored) are read straight
        into ``out`` with one ``preadv`` each, as ``np.load`` reads a file.
        """
        if self.path is None:
            out[dest] = self._arrays[file_id][rows]
            return
        dim = self._dim_of(file_id)
        path = self._data_path(file_id)
        needed = int(rows.max()) + 1
        if path.stat().st_size < needed * 4 * dim:
            raise sqlite3.DatabaseError(
                f"The embedding cache index points past the end of {path}; "
                "delete the cache directory to rebuild it."
            )
        order = np.argsort(rows, kind="stable")
        rows, dest = rows[order], dest[order]
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(dest) != 1)) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [rows.size]])
        row_bytes = 4 * dim
        contiguous = out.flags.c_contiguous and out.dtype == _BLOB_DTYPE
        # (first row, destination row, row count) of each read; long runs are cut
        # into pieces so that several threads copy from the page cache at once
        # (preadv releases the GIL), which a single np.load cannot do.
        piece = max(1, _PARALLEL_READ_BYTES // row_bytes)
        reads = [
            (int(rows[a]) + o, int(dest[a]) + o, min(piece, b - a - o))
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
            for o in range(0, b - a, piece)
        ]

        def read(fd: int, first: int, to: int, count: int) -> None:
            target = out[to : to + count]
            got = -1
            if contiguous:
                got = os.preadv(fd, [target.data.cast("B")], first * row_bytes)
            if got != count * row_bytes:  # short read, or out not contiguous
                data = os.pread(fd, count * row_bytes, first * row_bytes)
                target[:] = np.frombuffer(data, dtype=_BLOB_DTYPE).reshape(-1, dim)

        fd = os.open(path, os.O_RDONLY)
        try:
            threads = min(len(reads), os.cpu_count() or 1, _MAX_READ_THREADS)
            if threads > 1:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda r: read(fd, *r), reads))
            else:
                for r in reads:
                    read(fd, *r)
        finally:
            os.close(fd)

    def _index_snapshot(
        self,
    ) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The whole index as sorted arrays, rebuilt only when it has changed.

        ``PRAGMA data_version`` changes when another connection commits; our own
        commits bump ``_writes``.
        """
        (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        stamp = (int(version), self._writes)
        if self._snapshot is None or self._snapshot[0] != stamp:
            table = self._conn.execute(_SCAN).fetchall()  # key order
            if table:
                t_keys, t_files, t_rows = zip(*table, strict=True)
            else:
                t_keys, t_files, t_rows = (), (), ()
            self._snapshot = (
                stamp,
                np.array(t_keys, dtype="S32"),
                np.asarray(t_files, dtype=np.int64),
                np.asarray(t_rows, dtype=np.int64),
            )
        return self._snapshot[1], self._snapshot[2], self._snapshot[3]

    def _count_estimate(self) -> int:
        if self._snapshot is not None:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            if self._snapshot[0] == (int(version), self._writes):
                return int(self._snapshot[1].size)
        (n,) = self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        return int(n)

    def _dim_of(self, file_id: int) -> int:
        if file_id not in self._file_dims:
            row = self._conn.execute(
                "SELECT dim FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            self._file_dims[file_id] = int(row[0]) if row else -1
        return self._file_dims[file_id]

    def _data_path(self, file_id: int) -> Path:
        assert self.path is not None
        return self.path.parent / "vectors" / f"{file_id}.f32"

    def put_many(self, keys: Sequence[bytes], vectors: npt.ArrayLike) -> None:
        """Store (or replace) many vectors; the batch is indexed atomically.

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
        if not len(keys):
            return
        with self._lock:
            file_id, first_row = self._append(matrix)
            rows = ((key, file_id, first_row + i) for i, key in enumerate(keys))
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._writes += 1

    def _new_file(self, dim: int) -> int:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = self._conn.execute("INSERT INTO files (dim) VALUES (?)", (dim,))
        finally:
            self._conn.execute("COMMIT")
        file_id = int(cursor.lastrowid or 0)
        self._file_dims[file_id] = dim
        return file_id

    def _append(self, matrix: npt.NDArray[np.float32]) -> tuple[int, int]:
        """Write rows durably to this writer's data file: (file id, first row)."""
        dim = matrix.shape[1]
        if self.path is None:
            file_id = self._new_file(dim)
            self._arrays[file_id] = matrix.copy()
            return file_id, 0
        writer = self._writers.get(dim)
        if writer is None:
            file_id = self._new_file(dim)
            self._data_path(file_id).parent.mkdir(exist_ok=True)
            writer = (file_id, 0)
        file_id, n_rows = writer
        try:
            with open(self._data_path(file_id), "ab") as handle:
                handle.write(matrix.tobytes())
                handle.flush()
                os.fsync(handle.fileno())  # data on disk before the index says so
        except BaseException:
            self._writers.pop(dim, None)  # a partial row may remain: new file next
            raise
        self._writers[dim] = (file_id, n_rows + matrix.shape[0])
        return file_id, n_rows

    def __getstate__(self) -> dict[str, object]:
        raise TypeError(
            "EmbeddingCache holds an open database connection and cannot be "
            "pickled; pickle the estimator instead (it reopens its cache)."
        )
