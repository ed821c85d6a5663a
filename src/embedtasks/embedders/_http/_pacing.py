"""Pacing that learns a rate limit the server does not announce.

One :class:`Pacer` serves a whole worker pool (and, through a
:class:`~._pacestore.SqlitePaceStore` beside the cache, every process that
shares the cache directory and endpoint: they share one spacer, so they divide
the learned rate between them). It combines

* a GCRA / virtual-scheduling spacer on requests and tokens per second: each
  request reserves the earliest start both budgets allow, so workers resuming
  after a pause go one after another, not all at once;
* the server's clock: answers that carry ``x-ratelimit-reset-*`` say when the
  server's bucket would be full again. While the bucket stays in debt (each
  request sent before the previous answer's bucket was full), that clock moves
  by exactly the cost of each accepted request divided by the limit, so the
  limit is read off two or three answers, before any 429, in requests and in
  tokens (requests differ in size), and paced at 95% of it. Starts may run
  ahead of the pace by the debt the server was seen to accept (its burst);
  until a 429 shows the bucket's depth (its reset less its wait), that debt
  grows by one answer's cost per answer, then stays at 95% of the depth;
* AIMD on 429s, once per episode (answers to requests sent before the last cut
  do not compound it): with the server's clock the pace is set to 95% of the
  limit it shows (only a 429 lowers a limit read off the clock: a request
  charged but not yet answered makes a reading low); without it, to 80% of the
  accepted flow and at most 70% of the pace, or 70% of the pace where a limit
  is known; a 429 that names no budget cuts only those already paced. The pace
  then climbs 5% per answer back to 95% of the limit, and above it probes 2% at
  most once per :data:`PROBE_GAP` seconds (one window of a per-minute limit,
  the time an overshoot takes to show), shared by every process;
* a concurrency window (in flight at once) that starts at one, grows by a third
  per success until a limit is known (every request in flight at the first 429
  is lost) and by one after, up to ``max_concurrency``, and halves on a 429.

Announced limits (``x-ratelimit-limit-*``) are adopted at once and never probed
past; a remaining count of 0 (``x-ratelimit-remaining-*``) pauses new starts
until its reset, at most :data:`MAX_PAUSE` seconds (a reset of an hour is not
waited out blindly). Shared times are wall-clock seconds (``time.time()``), but
no process trusts another's clock: a pause is kept with its length and never
waited longer, a booked start is never further ahead than one interval, and
"was there a cut since" compares cut counters, not times.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from embedtasks._cachedir import PACING_FILENAME, remove_pacing
from embedtasks.embedders._http._pacestore import (
    MAX_PAUSE,
    Event,
    LocalPaceStore,
    PaceState,
    SqlitePaceStore,
    Ticket,
    open_store,
)

__all__ = [
    "MAX_PAUSE",
    "PACING_FILENAME",
    "PROBE_GAP",
    "Event",
    "LocalPaceStore",
    "PaceState",
    "Pacer",
    "SqlitePaceStore",
    "Ticket",
    "open_store",
    "parse_duration",
    "remove_pacing",
]

_CUT = 0.7  # multiplicative decrease when no better estimate exists
_MARGIN = 0.95  # pace this far under an estimated limit
_FAST = 0.05  # growth per success back up to _MARGIN x the estimate
_STEP = 0.02  # one probe above it
#: Seconds between probes above a learned limit: one window of a per-minute
#: limit, within which an overshoot shows as a 429.
PROBE_GAP = 60.0
_AHEAD = 0.5  # seconds ahead a request may book its start
_RECENT = 20.0  # seconds of successes an estimate looks back over
_FLOW_MARGIN = 0.8  # pace this far under a flow measured without the server's clock
_SLOW_START = 1.0 / 3.0  # window growth per success while no limit is known
_BETTER_THAN_FLOW = ("clock", "reading", "announced")  # sources of a ceiling
_KINDS = (("requests", "req", 2), ("tokens", "tok", 3))  # kind, state prefix, column


class Reading(NamedTuple):
    """What the server's clock says about one budget.

    ``rate`` is the limit (cost per second), ``solid`` whether three answers or
    more agree on it, ``clock`` the latest reading (when the bucket would be
    full) and ``debt`` the most it was seen to accept ahead of that clock.
    """

    rate: float
    solid: bool
    clock: float
    debt: float


def _cost(kind: str) -> Callable[[Event], float]:
    return (lambda e: 1.0) if kind == "requests" else (lambda e: float(e.tokens))


def _clock_reading(
    events: list[Event], kind: str, end: float | None = None
) -> Reading | None:
    """The server's rate for ``kind`` from its clock (``x-ratelimit-reset-*``).

    Over the trailing stretch of accepted requests each sent while the previous
    answer's bucket was still in debt (so the server charged it on top), the
    accepted cost divided by how far the server's clock moved is its rate
    exactly. A reading that does not move forward in the order of sending was
    taken late (a stalled answer, read after later requests were charged), and
    a clock that stands still (a fixed window, which resets in one jump) is not
    a rate: the stretch stops there. "Solid" takes three answers. ``end`` is
    the reading of a 429 (nothing charged), the latest clock if later.
    """
    column = 2 if kind == "requests" else 3
    cost = _cost(kind)
    stretch: list[Event] = []
    clocks: list[float] = []  # the stretch's clocks (never None), newest first
    for event in reversed(events):
        clock = event[column]
        if clock is None or (stretch and not stretch[-1].sent < clock < clocks[-1]):
            break
        stretch.append(event)
        clocks.append(float(clock))
    if not stretch:
        return None
    stretch.reverse()
    clocks.reverse()
    if end is not None and end > clocks[-1]:  # a 429: the clock, nothing charged
        clocks.append(end)
    steps = [
        (cost(e), b - a)
        for e, a, b in zip(stretch[1:], clocks, clocks[1:], strict=False)
        if b - a > 0.01
    ]
    if not steps or clocks[-1] - clocks[0] <= 0.05:
        return None
    # Each step moves the clock by one request's cost, or more where a request
    # the server charged is missing (in flight, or failed after it was counted):
    # the upper median of the steps' rates is robust to a minority of those.
    rates = sorted(c / d for c, d in steps)
    rate = rates[len(rates) // 2]
    solid = len(steps) >= 2
    debt = max(
        (a - b.sent for a, b in zip(clocks, stretch[1:], strict=False)),
        default=0.0,
    )
    return Reading(rate, solid, clocks[-1], max(0.0, debt))


def _estimate(
    events: list[Event], kind: str, now: float, reset: float | None
) -> tuple[float | None, bool]:
    """The server's rate for ``kind`` at a 429; (rate, solid).

    With reset headers, the server's clock (:func:`_clock_reading`; the 429's
    reading is ``now + reset``). Without them: the flow we measured since the
    first accepted request, which includes the bucket's burst (so two accepted
    requests at least, and never solid).
    """
    if not events:
        return None, False
    if reset is not None:
        reading = _clock_reading(events, kind, now + reset)
        if reading is not None:
            return reading.rate, reading.solid
    span = now - events[0].sent
    if span <= 0.05 or len(events) < 2:
        return None, False
    return sum(map(_cost(kind), events)) / span, False


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
                    # The debt the server was seen to accept may be spent (a
                    # bucket's burst): a start may be that far ahead of the pace.
                    ahead_req = s.req_debt if req else 0.0
                    ahead_tok = s.tok_debt if tok else 0.0
                    # Another process's clock may run ahead: a booked start is
                    # never further off than one interval past the booking window.
                    top = now + _AHEAD
                    s.tat_req = min(
                        s.tat_req, top + ahead_req + (1.0 / req if req else 0.0)
                    )
                    s.tat_tok = min(
                        s.tat_tok,
                        top + ahead_tok + (max(cost, tok) / tok if tok else 0.0),
                    )
                    start = max(now, s.tat_req - ahead_req, s.tat_tok - ahead_tok)
                    if start > top:
                        # Do not book slots far ahead at today's rate: a rate
                        # that climbs would leave them spaced at the old one.
                        return False, start - _AHEAD, s.cuts
                    if req:
                        s.tat_req = max(s.tat_req, start) + 1.0 / req
                    if tok:
                        s.tat_tok = max(s.tat_tok, start) + min(cost, tok * 60.0) / tok
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
            for short, limit in (("req", limit_req), ("tok", limit_tok)):
                if limit and limit > 0:
                    setattr(s, f"{short}_ceiling", limit / 60.0)
                    setattr(s, f"{short}_source", "announced")
                    if getattr(s, f"{short}_rate") is None:
                        setattr(s, f"{short}_rate", limit / 60.0)
            if pause:
                s.pause(now, pause)

        self.store.update(apply)

    def succeeded(
        self, ticket: Ticket, tokens: int, headers: Mapping[str, str] | None = None
    ) -> None:
        """The server accepted the request of ``ticket``, costing ``tokens``.

        Reads the server's clock (see :func:`_clock_reading`): a limit it shows
        is paced at 95% at once, never faster. The rates otherwise grow only
        when the pacer held this request back (a rate that does not bind proves
        nothing): 5% per answer up to 95% of the estimated limit, then one step
        of 2% per :data:`PROBE_GAP` seconds (announced limits are not probed).
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
        readings = {}
        if any(c is not None for c in clocks):
            recent = self.store.events(now - _RECENT)
            readings = {k: _clock_reading(recent, k) for k, _, _ in _KINDS}
        waited = ticket.waited

        def update(s: PaceState) -> Any:
            for kind, short, _ in _KINDS:
                cost = 1 if short == "req" else tokens
                _read_clock(s, short, readings.get(kind), cost)
                if waited:
                    _grow(s, short, now)
            return s.req_rate or s.tok_rate

        # Until a limit is known, every request in flight when the first 429
        # lands is lost (providers count it against the quota): widen gently.
        known = self.store.update(update)
        step = 1.0 if known else _SLOW_START
        self.window = min(float(self.max_concurrency), self.window + step)

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
            paced = {k for k, short, _ in _KINDS if getattr(s, f"{short}_rate")}
            for k, short, _ in _KINDS:
                if kind is not None and k != kind:
                    continue
                if kind is None and paced and k not in paced:
                    continue  # a 429 that names no budget invents none
                per_pause = max(1 if k == "requests" else tokens, 1) / max(delay, 0.05)
                reset = resets[k]
                reading = None
                if reset is not None:
                    reading = _clock_reading(recent, k, now + reset)
                if reading is not None:
                    # The server's clock gives the rate; the 429, the bucket's edge.
                    if reading.solid or getattr(s, f"{short}_rate") is None:
                        _cut(s, short, reading.rate, True, per_pause)
                else:
                    estimate, solid = _estimate(recent, k, now, None)
                    _cut(s, short, estimate, solid, per_pause)
                # The bucket is at its edge: its depth is the server's debt
                # (reset) less the wait it asks for; else halve the debt spent.
                debt = getattr(s, f"{short}_debt") / 2.0
                if reset is not None:
                    debt = _MARGIN * min(max(0.0, reset - delay), MAX_PAUSE)
                setattr(s, f"{short}_debt", debt)
                tat = f"tat_{short}"
                setattr(s, tat, max(getattr(s, tat), s.pause_end(now) + debt))
            s.last_cut = now
            s.burst_known = True
            s.probe_at = now + PROBE_GAP  # no probing within a window of a 429
            s.cuts += 1
            s.tat_req = max(s.tat_req, s.pause_end(now))
            s.tat_tok = max(s.tat_tok, s.pause_end(now))
            return True

        cut = self.store.update(apply)
        if cut:
            self.window = max(1.0, self.window / 2.0)
        return bool(cut)


def _read_clock(s: PaceState, short: str, reading: Reading | None, cost: float) -> None:
    """Adopt what the server's clock says about one budget.

    Until a 429 shows the bucket's depth, the debt a start may run ahead grows
    by this answer's ``cost`` (a slow start of the burst).
    """
    if reading is None or getattr(s, f"{short}_source") == "announced":
        return
    rate = getattr(s, f"{short}_rate")
    source = getattr(s, f"{short}_source")
    if reading.solid and source == "clock":
        # A request charged but missing here (in flight, or failed) makes a
        # reading low: only a 429 lowers a limit read off the clock. A reading
        # within the margin is the clock's jitter, not a higher limit.
        if _MARGIN * reading.rate > (getattr(s, f"{short}_ceiling") or 0.0):
            setattr(s, f"{short}_ceiling", reading.rate)
    elif reading.solid:
        setattr(s, f"{short}_ceiling", reading.rate)
        setattr(s, f"{short}_source", "clock")
        if rate is None or rate > _MARGIN * reading.rate:
            setattr(s, f"{short}_rate", _MARGIN * reading.rate)
    elif rate is None or source == "pause":  # two answers: enough to start
        setattr(s, f"{short}_rate", _MARGIN * reading.rate)
        setattr(s, f"{short}_source", "reading")
    # Keep in step with the server's clock; spend at most 95% of the debt it
    # was seen to accept (a 429's retry-after finds the bucket's very edge).
    tat = f"tat_{short}"
    setattr(s, tat, max(getattr(s, tat), reading.clock))
    debt = max(getattr(s, f"{short}_debt"), _MARGIN * reading.debt)
    if not s.burst_known:
        debt += cost / reading.rate
    setattr(s, f"{short}_debt", min(MAX_PAUSE, debt))


def _grow(s: PaceState, short: str, now: float) -> None:
    """Additive increase after a request the rate held back."""
    rate, top = getattr(s, f"{short}_rate"), getattr(s, f"{short}_ceiling")
    if rate is None:
        return
    source = getattr(s, f"{short}_source")
    if top is None:  # nothing accepted before the first 429: climb back
        rate *= 1.0 + _FAST
    elif source == "announced":
        rate = min(rate * (1.0 + _FAST), top)
    elif rate < _MARGIN * top:
        rate = min(rate * (1.0 + _FAST), _MARGIN * top)
    elif now >= s.probe_at:  # probe once per window of the limit, for everyone
        rate *= 1.0 + _STEP
        s.probe_at = now + PROBE_GAP
    setattr(s, f"{short}_rate", rate)


def _cut(
    s: PaceState, short: str, estimate: float | None, solid: bool, per_pause: float
) -> None:
    """Multiplicative decrease of one budget after a 429."""
    current = getattr(s, f"{short}_rate")
    if estimate is None:  # no evidence of the rate: the pause is enough
        if current is None and getattr(s, f"{short}_ceiling") is None:
            setattr(s, f"{short}_rate", per_pause)  # nothing accepted yet
            setattr(s, f"{short}_source", "pause")
        return
    if solid:  # the server's own clock says so
        setattr(s, f"{short}_rate", estimate * _MARGIN)
        setattr(s, f"{short}_ceiling", estimate)
        setattr(s, f"{short}_source", "clock")
        return
    if current is not None and getattr(s, f"{short}_source") in _BETTER_THAN_FLOW:
        # The limit is known better than any flow shows (the flow is our own
        # pace): a 429 without the server's clock only cuts the pace.
        setattr(s, f"{short}_rate", current * _CUT)
        return
    # A measured flow includes the bucket's burst: aim lower, and below the
    # rate that was just refused.
    new = estimate * _FLOW_MARGIN
    if current is not None:
        new = min(new, current * _CUT)
    setattr(s, f"{short}_rate", new)
    if getattr(s, f"{short}_source") in ("", "flow", "pause"):
        setattr(s, f"{short}_ceiling", estimate)
        setattr(s, f"{short}_source", "flow")
