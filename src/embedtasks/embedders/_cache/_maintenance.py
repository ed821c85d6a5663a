"""Maintenance of an :class:`EmbeddingCache`: info, verify, compact, clear."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from embedtasks._cachedir import (
    MARKER_FILENAME,
    remove_pacing,
)
from embedtasks.embedders._cache._folder import (
    FolderMixin,
    _foreign,
    _guard,
    index_path,
)
from embedtasks.embedders._cache._format import (
    _HEADER,
    checksums,
)
from embedtasks.exceptions import CacheError

__all__ = ["MaintenanceMixin"]


class MaintenanceMixin(FolderMixin):
    """info, verify, compact and clear (the ``embedtasks cache`` commands)."""

    _lock: Any
    _writes: int
    _writers: dict[int, int]
    _files: dict[int, tuple[int, bytes]]
    _checked: dict[int, bool]
    _arrays: dict[int, npt.NDArray[np.float32]]

    if TYPE_CHECKING:  # provided by EmbeddingCache

        def __len__(self) -> int: ...
        def _file(self, file_id: int) -> tuple[int, bytes]: ...
        def _data_path(self, file_uuid: bytes) -> Path: ...
        def _append(self, matrix: npt.NDArray[np.float32]) -> tuple[int, int]: ...
        def _gather(
            self,
            file_id: int,
            rows: npt.NDArray[np.int64],
            dest: npt.NDArray[np.intp],
            out: npt.NDArray[np.float32],
        ) -> npt.NDArray[np.bool_]: ...

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
        """Index rows grouped by data file, including files the index lost."""
        c = self._conn
        ids = c.execute(
            "SELECT id FROM files UNION SELECT DISTINCT file FROM vectors ORDER BY 1"
        ).fetchall()
        for (file_id,) in ids:
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
                file_uuid = self._file(file_id)[1]
                if not file_uuid or (
                    self.path is not None and not self._data_path(file_uuid).exists()
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
        (left by a deleted index). It holds the write lock throughout: writers
        in other processes wait, and a writer whose file was retired meanwhile
        writes its rows again, so no finished vector is lost.

        Returns
        -------
        dict
            ``vectors`` kept, ``dropped`` (damaged), ``bytes_before`` and
            ``bytes_after``.
        """
        before = self.info()["data_bytes"]
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                self._check_version()
                kept, dropped = self._compact_locked()
            except BaseException:
                c.execute("ROLLBACK")
                self._writers.clear()
                raise
            c.execute("COMMIT")
            self._writes += 1
            self._checked.clear()
            self._writers.clear()
            self._remove_unreferenced()
        return {
            "vectors": kept,
            "dropped": dropped,
            "bytes_before": before,
            "bytes_after": self.info()["data_bytes"],
        }

    def _compact_locked(self) -> tuple[int, int]:
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
        c.executemany("UPDATE vectors SET file = ?, row = ? WHERE key = ?", moved)
        c.executemany("DELETE FROM vectors WHERE key = ?", [(k,) for k in dead])
        c.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in old])
        return len(moved), len(dead)

    def _remove_unreferenced(self) -> None:
        if self.path is None:
            live = {int(i) for (i,) in self._conn.execute("SELECT id FROM files")}
            for file_id in list(self._arrays):
                if file_id not in live:
                    del self._arrays[file_id]
            return
        # Under the write lock: a writer registers a file (committed, or in a
        # transaction it holds the lock for) before creating it, so a data file
        # that no committed row names is an orphan, never a file being born.
        c = self._conn
        own = not c.in_transaction
        if own:
            c.execute("BEGIN IMMEDIATE")
        try:
            on_disk = self._data_files()
            known = {bytes(u).hex() for (u,) in c.execute("SELECT uuid FROM files")}
            for p in on_disk:
                if p.stem not in known:
                    p.unlink(missing_ok=True)
        finally:
            if own:
                c.execute("COMMIT")

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
        if self.path is not None:  # learned rate limits and pauses go too
            remove_pacing(self.path.parent)
        return n

    @staticmethod
    def remove_files(path: str | os.PathLike[str]) -> list[Path]:
        """Delete a cache's index and data files without opening it.

        For an index too damaged to open; returns what was removed.
        """
        p = index_path(path)
        foreign = _foreign(p)
        if foreign is not None:
            raise CacheError(
                f"{p} is not an embedtasks cache ({foreign}, without the "
                f"{MARKER_FILENAME} marker), so it is not deleted.",
                path=str(p),
            )
        removed = []
        for suffix in ("", "-wal", "-shm", "-journal"):
            f = Path(str(p) + suffix)
            if f.exists():
                f.unlink()
                removed.append(f)
        removed += remove_pacing(p.parent)
        folder = p.parent / f"{p.stem}.vectors"
        if folder.is_dir():
            for f in folder.glob("*.f32"):
                f.unlink()
                removed.append(f)
        return removed
