"""Whose folder it is: the marker, foreign files refused, errors worded."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedtasks._cachedir import (
    MARKER_FILENAME,
)
from embedtasks.embedders._cache._format import (
    _FIX,
    _SCHEMA_VERSION,
    CACHE_FILENAME,
    T,
)
from embedtasks.exceptions import CacheError

__all__ = ["FolderMixin", "index_path", "is_cache", "read_marker"]


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    """Turn a damaged index met mid-use into a one-line :class:`CacheError`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            error = self._damaged(exc)
        except OSError as exc:
            if exc.errno not in _UNWRITABLE:
                raise
            error = self._damaged(exc)
        raise error

    return wrapper


_UNWRITABLE = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}


def read_marker(index: Path) -> dict[str, Any] | None:
    """The marker of the cache whose index is ``index`` (None if it has none)."""
    marker = index.parent / f"{index.stem}.vectors" / MARKER_FILENAME
    try:
        data = json.loads(marker.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("library") != "embedtasks":
        return None
    return data


def index_path(path: str | os.PathLike[str]) -> Path:
    """The index file of a cache given as a folder or as its index file."""
    p = Path(path).expanduser()
    return p if p.suffix in {".sqlite3", ".sqlite", ".db"} else p / CACHE_FILENAME


def _foreign(index: Path) -> str | None:
    """What ``index`` is, if not an embedtasks index (None: ours, or new).

    Ours: the marker, or (caches made before markers) our ``meta`` table, or a
    damaged file under our own file name.
    """
    if read_marker(index) is not None:
        return None
    if not index.exists() or index.stat().st_size == 0:
        return None
    if index.is_dir():
        return "a folder"
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        ) as probe:
            tables = {
                name
                for (name,) in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            ours = (
                "meta" in tables
                and probe.execute(
                    "SELECT 1 FROM meta WHERE name = 'schema_version'"
                ).fetchone()
            )
    except sqlite3.DatabaseError:
        if index.name == CACHE_FILENAME:
            return None  # ours, damaged: the open says so and names the fix
        return "a file of another kind"
    if ours:
        return None
    if not tables and index.name == CACHE_FILENAME:
        return None
    return (
        f"an SQLite database with tables {', '.join(sorted(tables))}"
        if tables
        else "an SQLite database of another program"
    )


def is_cache(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a cache embedtasks made (or a damaged one of ours)."""
    index = index_path(path)
    return index.exists() and _foreign(index) is None


class FolderMixin:
    """Ownership and format checks of an :class:`EmbeddingCache` index."""

    path: Path | None
    _conn: sqlite3.Connection

    @property
    def data_dir(self) -> Path | None:
        """Folder of this index's data files (``None`` in memory)."""
        if self.path is None:
            return None
        return self.path.parent / f"{self.path.stem}.vectors"

    def _check_ours(self) -> None:
        """Refuse an index that is not an embedtasks cache, or is a newer one."""
        assert self.path is not None
        marker = read_marker(self.path)
        if marker is not None:
            version = marker.get("format")
            if isinstance(version, int) and version > _SCHEMA_VERSION:
                raise self._newer(version)
            return
        foreign = _foreign(self.path)
        if foreign is not None:
            raise CacheError(
                f"{self.path} is not an embedtasks cache ({foreign}, without the "
                f"{MARKER_FILENAME} marker), so it is left untouched. Pass a "
                "folder of its own as cache_dir (e.g. ~/.cache/embedtasks).",
                path=str(self.path),
            )

    def _write_marker(self) -> None:
        folder = self.data_dir
        if folder is None:
            return
        folder.mkdir(exist_ok=True)
        marker = folder / MARKER_FILENAME
        text = json.dumps({"library": "embedtasks", "format": _SCHEMA_VERSION})
        if not marker.exists() or marker.read_text("utf-8") != text:
            tmp = folder / f".{MARKER_FILENAME}.{uuid.uuid4().hex}"
            tmp.write_text(text, "utf-8")
            os.replace(tmp, marker)

    def _newer(self, version: object) -> CacheError:
        return CacheError(
            f"The embedding cache {self.path} was written by a newer embedtasks "
            f"(format {version}; this one reads format {_SCHEMA_VERSION}), so it is "
            "not read. Upgrade embedtasks (pip install -U embedtasks) or pass "
            "another cache_dir.",
            path=str(self.path),
        )

    def _check_version(self) -> None:
        """A newer embedtasks may upgrade the index while this process runs."""
        row = self._conn.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone()
        if row is None or int(row[0]) != _SCHEMA_VERSION:
            raise self._newer("unknown" if row is None else row[0])

    def _damaged(self, exc: BaseException) -> CacheError:
        where = "memory" if self.path is None else str(self.path)
        folder = "<dir>" if self.path is None else str(self.path.parent)
        if isinstance(exc, CacheError):
            return exc
        text = str(exc).lower()
        if isinstance(exc, OSError):
            text += " read-only" if exc.errno in (errno.EROFS, errno.EACCES) else ""
            text += " disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        elif "unable to open" in text and self.path is not None:
            parent = self.path.parent
            if parent.is_dir() and not os.access(parent, os.W_OK):
                text += " read-only"
        if "disk is full" in text or "readonly" in text or "read-only" in text:
            what, fix = (
                ("the disk is full", "free some space")
                if "full" in text
                else ("the folder is read-only", "make it writable")
            )
            return CacheError(
                f"Cannot write the embedding cache in {folder}: {what} ({exc}); "
                f"{fix}, or pass another cache_dir (or cache_dir=None to keep "
                "vectors in memory).",
                path=where,
            )
        return CacheError(
            f"The embedding cache index {where} is damaged or unreadable ({exc}); "
            + _FIX.format(dir=folder, path=where)
            + ".",
            path=where,
        )
