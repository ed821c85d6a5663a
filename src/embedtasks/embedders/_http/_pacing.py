"""Pacing that learns a rate limit the server does not announce.

One :class:`Pacer` serves a whole worker pool (and, through a
:class:`SqlitePaceStore` beside the cache, every process that shares the cache
directory and endpoint). It combines

* a GCRA / virtual-scheduling spacer on requests and tokens per second: each
  request reserves the earliest start both budgets allow, so workers resuming
  after a pause go one after another, not all at once;
* a rate learned from 429s: the requests and tokens the server accepted since
  the previous reading divided by how far its clock moved (the
  ``x-ratelimit-reset-*`` headers give that clock; without them the flow we
  measured is used), times 0.95 (0.8 for a measured flow, which includes the
  bucket's burst);
* a concurrency window (in flight at once) that starts at one, grows by a third
  per success until a limit is known (every request in flight at the first 429
  is lost) and by one after, up to ``max_concurrency``, and halves on a 429;
* fast recovery: after a cut the rate climbs 5% per success up to 97% of the
  last estimate, then probes upward by 0.3% per success (2% while no limit is
  known); it grows only while it holds requests back.

Announced limits (``x-ratelimit-limit-*``) are adopted at once; a remaining
count of 0 (``x-ratelimit-remaining-*``) pauses new starts until its reset, at
most :data:`MAX_PAUSE` seconds (a reset of an hour is not waited out blindly).
Shared times are wall-clock seconds (``time.time()``), but no process trusts
another's clock: a pause is kept with its length and never waited longer, a
booked start is never further ahead than one interval, and "was there a cut
since" compares cut counters, not times.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from embedtasks._cachedir import PACING_FILENAME, remove_pacing
from embedtasks.exceptions import CacheError

__all__ = [
    "MAX_PAUSE",
    "PACING_FILENAME",
    "LocalPaceStore",
    "PaceState",
    "Pacer",
    "SqlitePaceStore",
    "Ticket",
    "parse_duration",
    "remove_pacing",
]

#: File name of the shared pacing state inside a cache directory.

_WINDOW = 60.0  # seconds of successes kept for measuring the flow
_CUT = 0.7  # multiplicative decrease when no better estimate exists
_MARGIN = 0.95  # pace this far under an estimated limit
_FAST, _SLOW = 0.05, 0.003  # growth per success below / above 97% of the estimate
_PROBE = 0.04  # growth per success while no limit is known
_AHEAD = 0.5  # seconds ahead a request may book its start
_RECENT = 20.0  # seconds of successes an estimate looks back over
_FLOW_MARGIN = 0.8  # pace this far under a flow measured without the server's clock
_SLOW_START = 1.0 / 3.0  # window growth per success while no limit is known
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

    Rates are per second; ``None`` means unknown (not paced). ``tat_*`` are the
    next free start times of the spacer; ``mark_*`` the server clock reading
    (time + reset) at the last cut.
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
            horizon = time.time() - _WINDOW
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
                c.execute("DELETE FROM events WHERE sent < ?", (time.time() - _WINDOW,))

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


def _estimate(
    events: list[Event], kind: str, now: float, reset: float | None
) -> tuple[float | None, bool]:
    """The server's rate for ``kind`` from accepted requests; (rate, solid).

    With reset headers: over the trailing stretch of answers whose bucket was
    in debt (reset > 0, so the server's clock ran ahead of ours), the accepted
    cost divided by how far the server's clock moved is its rate exactly
    ("solid" with 3 answers or more). Without them: the flow we measured over
    the stretch, a lower bound.
    """
    column = 2 if kind == "requests" else 3
    cost = (lambda e: 1.0) if kind == "requests" else (lambda e: float(e.tokens))
    if not events:
        return None, False
    if reset is not None:
        stretch: list[Event] = []
        for event in reversed(events):
            if event[column] is None:
                break
            stretch.append(event)
        stretch.reverse()
        if len(stretch) >= 2:
            origin = float(stretch[0][column] or 0.0)
            span = now + reset - origin
            if span > 0.05:
                total = sum(cost(e) for e in stretch[1:])
                return total / span, len(stretch) >= 3
    span = now - events[0].sent
    if span <= 0.05:
        return None, False
    return sum(cost(e) for e in events) / span, False


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


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: str | None) -> float | None:
    """Seconds in a reset header: ``"1s"``, ``"6m0s"``, ``"20ms"`` or ``"0.5"``.

    Examples
    --------
    >>> parse_duration("6m0.5s"), parse_duration("20ms"), parse_duration("2")
    (360.5, 0.02, 2.0)
    >>> parse_duration("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def limit_kind(headers: Mapping[str, str], text: str) -> str | None:
    """Which budget a 429 names: ``"requests"``, ``"tokens"`` or None (unknown)."""
    low = text.lower()
    if "tokens per min" in low or "for tokens" in low or "(tpm)" in low:
        return "tokens"
    if "requests per min" in low or "for requests" in low or "(rpm)" in low:
        return "requests"
    reset_req = parse_duration(headers.get("x-ratelimit-reset-requests"))
    reset_tok = parse_duration(headers.get("x-ratelimit-reset-tokens"))
    if reset_req is not None and reset_tok is not None and reset_req != reset_tok:
        return "requests" if reset_req > reset_tok else "tokens"
    return None


class Pacer:
    """Spaces the starts of a pool's requests and learns the server's limits.

    Parameters
    ----------
    requests_per_minute, tokens_per_minute : float, optional
        Limits the user knows; the learned rate never exceeds them.
    max_concurrency : int
        Most requests in flight.
    store : LocalPaceStore or SqlitePaceStore, optional
        Shared state; a private one by default.

    Examples
    --------
    >>> import asyncio
    >>> pacer = Pacer(requests_per_minute=6000, max_concurrency=2)
    >>> async def two():
    ...     a = await pacer.acquire(1)
    ...     pacer.release()
    ...     b = await pacer.acquire(1)
    ...     pacer.release()
    ...     return round(b.start - a.start, 2) >= 0.01
    >>> asyncio.run(two())
    True
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        max_concurrency: int = 8,
        store: Any = None,
    ) -> None:
        self.req_cap = requests_per_minute / 60.0 if requests_per_minute else None
        self.tok_cap = tokens_per_minute / 60.0 if tokens_per_minute else None
        self.max_concurrency = max_concurrency
        self.window = 1.0  # slow start (see _SLOW_START)
        self.store = store if store is not None else LocalPaceStore()
        self.in_flight = 0
        self._wakeup: asyncio.Event | None = None

    # -- rates -----------------------------------------------------------------
    def _rates(self, s: PaceState) -> tuple[float | None, float | None]:
        req = min((r for r in (s.req_rate, self.req_cap) if r), default=None)
        tok = min((r for r in (s.tok_rate, self.tok_cap) if r), default=None)
        return req, tok

    def rates(self) -> tuple[float | None, float | None]:
        """Current (requests/s, tokens/s) pacing rates; None = not paced."""
        return self.store.update(self._rates)

    # -- acquire / release -----------------------------------------------------
    async def acquire(
        self, tokens: int | Callable[[], int], deadline: float | None = None
    ) -> Ticket:
        """Wait until a request costing ``tokens`` may start; its :class:`Ticket`.

        ``tokens`` may be a callable, asked once a slot is free (the cost per
        counted token is learned while requests wait). Raises
        :class:`TimeoutError` if the start is past ``deadline`` (a
        ``time.time()`` value).
        """
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        while self.in_flight >= max(1, int(self.window)):
            self._wakeup.clear()
            await self._wakeup.wait()
        self.in_flight += 1
        try:
            while True:
                cost = tokens() if callable(tokens) else tokens
                now = time.time()

                def reserve(
                    s: PaceState, now: float = now, cost: int = cost
                ) -> tuple[bool, float, int]:
                    end = s.pause_end(now)
                    if end > now:
                        return False, end, s.cuts
                    req, tok = self._rates(s)
                    # Another process's clock may run ahead: a booked start is
                    # never further off than one interval past the booking window.
                    top = now + _AHEAD
                    s.tat_req = min(s.tat_req, top + (1.0 / req if req else 0.0))
                    s.tat_tok = min(
                        s.tat_tok, top + (max(cost, tok) / tok if tok else 0.0)
                    )
                    start = max(now, s.tat_req, s.tat_tok)
                    if start > top:
                        # Do not book slots far ahead at today's rate: a rate
                        # that climbs would leave them spaced at the old one.
                        return False, start - _AHEAD, s.cuts
                    if req:
                        s.tat_req = start + 1.0 / req
                    if tok:
                        s.tat_tok = start + min(cost, tok * 60.0) / tok
                    return True, start, s.cuts

                go, at, cuts = self.store.update(reserve)
                if deadline is not None and at > deadline:
                    raise TimeoutError
                if not go:  # paused or busy: come back staggered, with jitter
                    await asyncio.sleep(at - now + random.uniform(0.0, 0.05))
                    continue
                if at > now:
                    await asyncio.sleep(at - now)
                # A 429 since this slot was reserved: the slot was spaced for the
                # old rate (or falls in a pause), so reserve again.
                later = time.time()

                def check(s: PaceState, t: float = later) -> tuple[float, int]:
                    return s.pause_end(t), s.cuts

                paused, cut = self.store.update(check)
                if paused <= later and cut == cuts:
                    return Ticket(now, at, at > now + 0.001, cuts)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """A request acquired with :meth:`acquire` is over."""
        self.in_flight -= 1
        if self._wakeup is not None:
            self._wakeup.set()

    # -- feedback ----------------------------------------------------------------
    def learn(self, headers: Mapping[str, str]) -> None:
        """Adopt announced limits; pause when a remaining count reaches 0."""
        limit_req = _header_float(headers, "x-ratelimit-limit-requests")
        limit_tok = _header_float(headers, "x-ratelimit-limit-tokens")
        pauses = [
            parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
            for kind in ("requests", "tokens")
            if _header_float(headers, f"x-ratelimit-remaining-{kind}") == 0
        ]
        pause = max((p for p in pauses if p is not None), default=None)
        if limit_req is None and limit_tok is None and pause is None:
            return
        now = time.time()

        def apply(s: PaceState) -> None:
            if limit_req and limit_req > 0:
                s.req_ceiling = limit_req / 60.0
                s.req_rate = s.req_rate or s.req_ceiling
            if limit_tok and limit_tok > 0:
                s.tok_ceiling = limit_tok / 60.0
                s.tok_rate = s.tok_rate or s.tok_ceiling
            if pause:
                s.pause(now, pause)

        self.store.update(apply)

    def succeeded(
        self, ticket: Ticket, tokens: int, headers: Mapping[str, str] | None = None
    ) -> None:
        """The server accepted the request of ``ticket``, costing ``tokens``.

        The rates grow only when the pacer held this request back (a rate that
        does not bind proves nothing).
        """
        now = time.time()
        clocks = [  # None unless the bucket is in debt (reset > 0)
            None if reset is None or reset <= 0.01 else now + reset
            for reset in (
                parse_duration((headers or {}).get(f"x-ratelimit-reset-{k}"))
                for k in ("requests", "tokens")
            )
        ]
        self.store.log_success(Event(ticket.start, tokens, *clocks))
        # Until a limit is known, every request in flight when the first 429
        # lands is lost (providers count it against the quota): widen gently.
        known = self.store.update(lambda s: s.req_rate or s.tok_rate)
        step = 1.0 if known else _SLOW_START
        self.window = min(float(self.max_concurrency), self.window + step)
        if not ticket.waited:
            return

        def grow(s: PaceState) -> None:
            for rate, ceiling in (
                ("req_rate", "req_ceiling"),
                ("tok_rate", "tok_ceiling"),
            ):
                value, top = getattr(s, rate), getattr(s, ceiling)
                if value is None:
                    continue
                if top is None:
                    value *= 1.0 + _PROBE
                elif value < 0.97 * top:
                    value = min(value * (1.0 + _FAST), 0.97 * top)
                else:
                    value *= 1.0 + _SLOW
                setattr(s, rate, value)

        self.store.update(grow)

    def rate_limited(
        self,
        ticket: Ticket,
        headers: Mapping[str, str],
        text: str,
        delay: float,
        tokens: int = 1,
    ) -> bool:
        """The request of ``ticket``, costing ``tokens``, got a 429.

        Pauses everyone for ``delay`` and cuts the rates (once per episode:
        answers to requests sent before the last cut do not compound it) to what
        the server is seen to accept. Returns whether this answer cut the rate.
        """
        now = time.time()
        kind = limit_kind(headers, text)
        resets = {
            k: parse_duration(headers.get(f"x-ratelimit-reset-{k}"))
            for k in ("requests", "tokens")
        }

        def apply(s: PaceState) -> bool:
            s.pause(now, delay)
            if s.cuts != ticket.cuts:  # another answer cut since it was booked
                return False
            recent = self.store.events(now - _RECENT)
            for k, cost in (("requests", 1), ("tokens", tokens)):
                if kind is not None and k != kind:
                    continue
                short = "req" if k == "requests" else "tok"
                reset = resets[k]
                estimate, solid = _estimate(recent, k, now, reset)
                current = getattr(s, f"{short}_rate")
                new = math.inf if current is None else current * _CUT
                if estimate is None and current is not None:
                    continue  # no evidence of the rate: the pause is enough
                if estimate is not None and solid:
                    new = estimate * _MARGIN  # the server's own clock says so
                    setattr(s, f"{short}_ceiling", estimate)
                elif estimate is not None:
                    # A measured flow includes the bucket's burst: aim lower.
                    new = min(new, estimate * _FLOW_MARGIN)
                if new == math.inf:  # nothing accepted yet: one per pause
                    new = max(cost, 1) / max(delay, 0.05)
                setattr(s, f"{short}_rate", new)
            s.last_cut = now
            s.cuts += 1
            s.tat_req = max(s.tat_req, s.pause_end(now))
            s.tat_tok = max(s.tat_tok, s.pause_end(now))
            return True

        cut = self.store.update(apply)
        if cut:
            self.window = max(1.0, self.window / 2.0)
        return bool(cut)
