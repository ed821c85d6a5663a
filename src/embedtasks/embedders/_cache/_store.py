"""The :class:`EmbeddingCache`: reads and writes of vectors."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks.embedders._cache._folder import (
    _UNWRITABLE,
    _guard,
    index_path,
)
from embedtasks.embedders._cache._format import (
    _BLOB_DTYPE,
    _CHUNK,
    _HEADER,
    _MAGIC,
    _MAX_READ_THREADS,
    _PARALLEL_READ_BYTES,
    _SCAN,
    _SCHEMA,
    _SCHEMA_VERSION,
    _identity_id,
    checksums,
)
from embedtasks.embedders._cache._maintenance import MaintenanceMixin
from embedtasks.embedders._secrets import mask_url
from embedtasks.exceptions import CacheError

__all__ = ["EmbeddingCache"]


class EmbeddingCache(MaintenanceMixin):
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
    >>> from embedtasks.embedders._cache import make_keys
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
            p = index_path(path)
            self.path = p
            self._check_ours()
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._damaged(exc) from None
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
        except (sqlite3.DatabaseError, CacheError, OSError) as exc:
            self._conn.close()
            if isinstance(exc, OSError) and exc.errno not in _UNWRITABLE:
                raise
            error = self._damaged(exc)
            raise error from None

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
        if version > _SCHEMA_VERSION:
            raise self._newer(version)
        if version != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version}, this embedtasks reads {_SCHEMA_VERSION}"
            )
        self._write_marker()

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
            if file_id not in self._arrays:
                ok[:] = False
                return ok
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
            self._check_version()
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
            c = self._conn
            for locked in (False, True):
                # First append, then index under the write lock; if a compact
                # in another process retired the file in between, append again
                # holding the lock (nothing can retire it then).
                if locked:
                    c.execute("BEGIN IMMEDIATE")
                try:
                    if locked:
                        self._check_version()
                    file_id, first_row = self._append(matrix)
                    if not locked:
                        c.execute("BEGIN IMMEDIATE")
                        self._check_version()
                    alive = c.execute(
                        "SELECT 1 FROM files WHERE id = ?", (file_id,)
                    ).fetchone()
                    if alive:
                        c.executemany(
                            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)",
                            [
                                (key, file_id, first_row + i, sums[i], ident)
                                for i, key in enumerate(keys)
                            ],
                        )
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
                if alive:
                    self._writes += 1
                    return
                self._writers.pop(matrix.shape[1], None)
                self._files.pop(file_id, None)
            raise AssertionError("unreachable: the locked pass always indexes")

    def _new_file(self, dim: int) -> int:
        # Registered before it exists on disk, so that a data file no index row
        # names is always an orphan (compact and clear may remove it).
        file_uuid = uuid.uuid4().bytes
        c = self._conn
        own = not c.in_transaction
        if own:
            c.execute("BEGIN IMMEDIATE")
        try:
            cursor = c.execute(
                "INSERT INTO files (dim, uuid) VALUES (?, ?)", (dim, file_uuid)
            )
        finally:
            if own:
                c.execute("COMMIT")
        file_id = int(cursor.lastrowid or 0)
        if self.path is not None:
            path = self._data_path(file_uuid)
            path.parent.mkdir(exist_ok=True)
            with open(path, "xb") as handle:
                handle.write(_MAGIC + file_uuid + int(dim).to_bytes(4, "little"))
                handle.write(b"\x00" * (_HEADER - 28))
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
    def __getstate__(self) -> dict[str, object]:
        raise TypeError(
            "EmbeddingCache holds an open database connection and cannot be "
            "pickled; pickle the estimator instead (it reopens its cache)."
        )
