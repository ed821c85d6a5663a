"""The pacing state a :class:`~._pacing.Pacer` shares: in memory or in SQLite.

One process keeps it in a :class:`LocalPaceStore`; processes that share a cache
directory and endpoint keep it in a :class:`SqlitePaceStore` beside the cache
(``pacing.sqlite3``), which holds only learned rate limits.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from embedtasks._cachedir import PACING_FILENAME, remove_pacing
from embedtasks.exceptions import CacheError

__all__ = [
    "MAX_PAUSE",
    "Event",
    "LocalPaceStore",
    "PaceState",
    "SqlitePaceStore",
    "Ticket",
    "open_store",
]

WINDOW = 60.0  # seconds of successes kept
#: The longest pause a header or a 429 may impose on every process at once.
MAX_PAUSE = 60.0

T = TypeVar("T")


class Event(NamedTuple):
    """A request the server accepted: start, tokens, and the server's clock.

    ``clock_*`` is answer time + ``x-ratelimit-reset-*`` (when the bucket would
    be full again), or None without the header or when the reset was 0.
    """

    sent: float
    tokens: int
    clock_req: float | None
    clock_tok: float | None


class Ticket(NamedTuple):
    """A request's slot: when it was reserved, its start, whether it waited.

    ``cuts`` is the number of rate cuts seen when it was reserved.
    """

    reserved: float
    start: float
    waited: bool
    cuts: int = 0


@dataclass
class PaceState:
    """The pacing state shared by every worker (and process) of one quota.

    Rates are per second; ``None`` means unknown (not paced). ``*_ceiling`` is
    the limit as last estimated and ``*_source`` where it came from:
    ``"announced"`` (``x-ratelimit-limit-*``), ``"clock"`` (the server's reset
    clock; ``"reading"`` from two answers only), ``"flow"`` (what it accepted
    before a 429), ``"pause"`` (nothing accepted yet: one per pause) or ``""``.
    ``tat_*`` are the next free start times of the spacer, ``*_debt`` how far
    ahead of them a
    start may be (the server's burst, as seen accepted; ``burst_known`` once a
    429 showed its depth); ``probe_at`` is when the rate may next probe above
    its ceiling.
    """

    req_rate: float | None = None
    tok_rate: float | None = None
    req_ceiling: float | None = None
    tok_ceiling: float | None = None
    tat_req: float = 0.0
    tat_tok: float = 0.0
    pause_until: float = 0.0
    last_cut: float = 0.0
    pause_len: float = 0.0
    cuts: int = 0
    req_source: str = ""
    tok_source: str = ""
    probe_at: float = 0.0
    req_debt: float = 0.0
    tok_debt: float = 0.0
    burst_known: bool = False

    def pause_end(self, now: float) -> float:
        """When the pause ends, by this clock: never later than its own length."""
        if self.pause_until <= now:
            return self.pause_until
        return now + min(self.pause_until - now, self.pause_len, MAX_PAUSE)

    def pause(self, now: float, seconds: float) -> None:
        """Pause new starts for ``seconds`` (at most :data:`MAX_PAUSE`)."""
        seconds = min(max(0.0, seconds), MAX_PAUSE)
        if now + seconds > self.pause_end(now):
            self.pause_until = now + seconds
            self.pause_len = seconds


class LocalPaceStore:
    """Pacing state of one process (threads and event loops share it)."""

    def __init__(self) -> None:
        self._state = PaceState()
        self._lock = threading.RLock()
        self._events: deque[Event] = deque()

    def update(self, fn: Callable[[PaceState], T]) -> T:
        """Apply ``fn`` to the state atomically and return its result."""
        with self._lock:
            return fn(self._state)

    def log_success(self, event: Event) -> None:
        """Record a request the server accepted."""
        with self._lock:
            self._events.append(event)
            horizon = time.time() - WINDOW
            while self._events and self._events[0].sent < horizon:
                self._events.popleft()

    def events(self, since: float) -> list[Event]:
        """Accepted requests sent since ``since``, in order."""
        with self._lock:
            return sorted(e for e in self._events if e.sent >= since)

    def close(self) -> None:
        """Nothing to close."""


class SqlitePaceStore:
    """Pacing state in a small SQLite file shared by processes.

    The file only holds learned rate limits: a damaged one is recreated (with a
    warning), and if that fails the process paces alone. A full disk or a
    read-only folder raises :class:`~embedtasks.exceptions.CacheError` naming
    the folder and the fix.

    Parameters
    ----------
    path : str or PathLike
        The database file (e.g. ``<cache_dir>/pacing.sqlite3``).
    scope : str
        Names the quota (a hash of endpoint and model); no secret is stored.
    """

    def __init__(self, path: str | os.PathLike[str], scope: str) -> None:
        self.path = Path(path)
        self.scope = scope
        self._lock = threading.RLock()
        self._fallback: LocalPaceStore | None = None
        self._n_logged = 0
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if _unwritable(exc) or "unable to open" in str(exc):
                raise  # open_store paces alone
            self._conn = self._recreate(exc)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            for _ in range(200):  # a new file: another process may be creating it
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS pace (scope TEXT PRIMARY KEY, "
                        "state TEXT NOT NULL)"
                    )
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS events (scope TEXT, sent REAL, "
                        "tokens INTEGER, clock_req REAL, clock_tok REAL)"
                    )
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
                    time.sleep(0.01)
            conn.execute("PRAGMA synchronous = OFF")  # advisory state only
            conn.execute("SELECT COUNT(*) FROM pace").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _recreate(self, exc: BaseException) -> sqlite3.Connection:
        warnings.warn(
            f"The pacing state {self.path} was damaged ({type(exc).__name__}: "
            f"{exc}); it only holds learned rate limits, so it was recreated.",
            RuntimeWarning,
            stacklevel=3,
        )
        remove_pacing(self.path.parent)
        return self._connect()

    def _do(self, op: Callable[[sqlite3.Connection], T], local: Callable[[], T]) -> T:
        with self._lock:
            if self._fallback is not None:
                return local()
            try:
                return op(self._conn)
            except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
                if isinstance(exc, sqlite3.DatabaseError) and _unwritable(exc):
                    raise _unwritable_error(self.path, exc) from None
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                damage = exc
            try:
                self._conn.close()
                self._conn = self._recreate(damage)
                return op(self._conn)
            except (sqlite3.DatabaseError, OSError):
                self._fallback = LocalPaceStore()  # pace alone
                return local()

    def update(self, fn: Callable[[PaceState], T]) -> T:
        """Apply ``fn`` to the state in one transaction and return its result."""

        def op(c: sqlite3.Connection) -> T:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT state FROM pace WHERE scope = ?", (self.scope,)
                ).fetchone()
                state = PaceState(**json.loads(row[0])) if row else PaceState()
                result = fn(state)
                c.execute(
                    "INSERT OR REPLACE INTO pace VALUES (?, ?)",
                    (self.scope, json.dumps(asdict(state))),
                )
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return result

        return self._do(op, lambda: self._local().update(fn))

    def _local(self) -> LocalPaceStore:
        assert self._fallback is not None
        return self._fallback

    def log_success(self, event: Event) -> None:
        """Record a request the server accepted."""

        def op(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (self.scope, *event))
            self._n_logged += 1
            if self._n_logged % 50 == 0:
                c.execute("DELETE FROM events WHERE sent < ?", (time.time() - WINDOW,))

        self._do(op, lambda: self._local().log_success(event))

    def events(self, since: float) -> list[Event]:
        """Accepted requests sent since ``since``, in order."""

        def op(c: sqlite3.Connection) -> list[Event]:
            rows = c.execute(
                "SELECT sent, tokens, clock_req, clock_tok FROM events "
                "WHERE scope = ? AND sent >= ? ORDER BY sent",
                (self.scope, since),
            ).fetchall()
            return [Event(*row) for row in rows]

        return self._do(op, lambda: self._local().events(since))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()


def _unwritable(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "disk is full" in text


def _unwritable_error(path: Path, exc: BaseException) -> CacheError:
    folder = path.parent
    if "full" in str(exc).lower():
        fix = "free some space, or pass another cache_dir (or cache_dir=None)"
        what = "the disk is full"
    else:
        fix = "make it writable, or pass another cache_dir (or cache_dir=None)"
        what = "the folder is read-only"
    return CacheError(
        f"Cannot write the pacing state in the cache folder {folder}: {what} "
        f"({exc}); {fix}.",
        path=str(path),
    )


_LOCAL_STORES: dict[str, LocalPaceStore] = {}


def open_store(directory: Path | None, endpoint: str, model: str) -> Any:
    """The pace store shared by every user of ``endpoint`` and ``model``.

    ``directory/pacing.sqlite3`` (shared by processes) when a directory (the
    cache's) is given, else one store per process.
    """
    scope = hashlib.sha256(f"{endpoint}\x00{model}".encode()).hexdigest()[:32]
    if directory is not None:
        try:
            return SqlitePaceStore(Path(directory) / PACING_FILENAME, scope)
        except (sqlite3.Error, OSError):  # read-only directory: pace alone
            pass
    return _LOCAL_STORES.setdefault(scope, LocalPaceStore())
