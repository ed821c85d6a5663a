"""The pacer against an unannounced limit, in simulated time (issue 21, item 16).

A token bucket (GCRA) stands for the server; the pacer's clock and its sleeps
are simulated, so each run is exact and instant. Providers count rejected
requests against the quota: the bar is few 429s at close to the ideal pace.
"""

from __future__ import annotations

import asyncio
import time
import types

import numpy as np
import pytest

from embedtasks.embedders._http import _pacestore, _pacing
from embedtasks.embedders._http._pacing import (
    PROBE_GAP,
    Event,
    Pacer,
    SqlitePaceStore,
    _clock_reading,
)


class Clock:
    """Simulated wall clock; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def time(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    fake_time = types.SimpleNamespace(
        time=c.time, sleep=time.sleep, monotonic=time.monotonic
    )
    monkeypatch.setattr(_pacing, "time", fake_time)
    monkeypatch.setattr(_pacestore, "time", fake_time)
    monkeypatch.setattr(
        _pacing, "asyncio", types.SimpleNamespace(sleep=c.sleep, Event=asyncio.Event)
    )
    monkeypatch.setattr(_pacing.random, "uniform", lambda a, b: a)
    return c


class Bucket:
    """The server's limit: ``rate`` cost per second, ``burst`` seconds deep."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate, self.burst, self.tat = rate, burst, 0.0

    def send(self, now: float, cost: float) -> tuple[bool, float]:
        """(accepted, seconds until the bucket is full again)."""
        tat = max(self.tat, now)
        if tat - now > self.burst:
            return False, tat - now
        self.tat = tat + cost / self.rate
        return True, self.tat - now


def _drive(clock, pacers, bucket, costs, kind="requests", latency=0.05, headers=True):
    """Send ``costs`` one after another, taking turns between ``pacers``.

    Returns (number of 429s, cost accepted per second).
    """
    n_429, start = 0, clock.t

    async def run():
        nonlocal n_429
        for i, cost in enumerate(costs):
            pacer = pacers[i % len(pacers)]
            while True:
                ticket = await pacer.acquire(cost)
                accepted, reset = bucket.send(clock.t, cost)
                clock.t += latency
                pacer.release()
                left = max(0.0, reset - latency)
                reset_header = {f"x-ratelimit-reset-{kind}": f"{left:.3f}s"}
                answer = reset_header if headers else {}
                if accepted:
                    pacer.succeeded(ticket, cost, answer)
                    break
                n_429 += 1
                wait = max(0.0, left - bucket.burst)
                pacer.rate_limited(
                    ticket, answer, f"Rate limit reached for {kind}.", wait, cost
                )

    asyncio.run(run())
    return n_429, sum(costs) / (clock.t - start)


def test_request_limit_is_read_off_the_servers_clock_before_any_429(clock):
    pacer = Pacer()
    n_429, _ = _drive(clock, [pacer], Bucket(5.0), [1] * 6)
    assert n_429 == 0  # the rate is known from the first answers
    assert pacer.rates()[0] == pytest.approx(0.95 * 5.0, rel=0.02)


def test_request_limit_costs_one_429_to_find_the_burst_then_none(clock):
    pacer = Pacer()
    n_429, pace = _drive(clock, [pacer], Bucket(5.0, burst=2.0), [1] * 100)
    assert n_429 == 1  # the bucket's depth shows only at its edge
    assert pacer.rates()[0] == pytest.approx(0.95 * 5.0, rel=0.02)
    # 95% of the rate, plus most of the 2 s burst: about 100 / (19 + 2 * 0.95).
    assert pace >= 100 / (100 / 4.75 - 0.9 * 2.0)


def test_token_limit_is_learned_in_tokens_for_requests_of_any_size(clock):
    # Each request (800-1,600 tokens) is larger than the bucket (1,000 tokens):
    # a ramp that paces by the burst it saw overshoots by a factor.
    costs = np.random.default_rng(0).integers(800, 1600, size=60).tolist()
    pacer = Pacer()
    n_429, pace = _drive(clock, [pacer], Bucket(1000.0), costs, kind="tokens")
    assert n_429 <= 1  # the second request cannot know
    req, tok = pacer.rates()
    assert req is None and tok == pytest.approx(950.0, rel=0.05)  # a probe or two
    assert pace >= 0.9 * 1000.0


def test_processes_sharing_a_limit_divide_the_rate_and_probe_once_per_window(
    clock, tmp_path
):
    pacers = [
        Pacer(store=SqlitePaceStore(tmp_path / "pacing.sqlite3", "scope"))
        for _ in range(4)
    ]
    n_429, pace = _drive(clock, pacers, Bucket(5.0), [1] * 600)  # two minutes
    assert n_429 <= 0.02 * 600
    assert 0.9 * 5.0 <= pace <= 5.0 * 1.05
    probes = pacers[0].store.update(lambda s: s.probe_at)
    assert probes <= clock.t + PROBE_GAP
    for pacer in pacers:
        pacer.store.close()


def test_limit_without_the_servers_clock_backs_off_and_probes_slowly(clock):
    pacer = Pacer()
    n_429, pace = _drive(clock, [pacer], Bucket(5.0), [1] * 600, headers=False)
    assert n_429 <= 0.1 * 600
    assert pace >= 0.7 * 5.0


def test_a_clock_that_jumps_is_not_read_as_a_rate():
    # A fixed window: every answer says the same reset time, then it jumps.
    events = [Event(100.0 + i, 1, 160.0, None) for i in range(5)]
    events += [Event(161.0 + i, 1, 220.0, None) for i in range(3)]
    reading = _clock_reading(events, "requests")
    assert reading is None or not reading.solid


def test_the_next_start_keeps_within_the_debt_the_server_accepted(clock):
    pacer = Pacer()
    bucket = Bucket(2.0, burst=1.0)
    _drive(clock, [pacer], bucket, [1] * 3)  # 3 at once: debt 1.5 s - latency
    tat = pacer.store.update(lambda s: s.tat_req)
    accepted, _ = bucket.send(max(tat, clock.t), 1)
    assert accepted


def test_a_429_naming_no_budget_cuts_only_the_paced_one(clock):
    pacer = Pacer()
    _drive(clock, [pacer], Bucket(5.0), [1] * 6)  # requests paced from the clock
    before = pacer.store.update(lambda s: (s.req_rate, s.req_ceiling))
    cuts = pacer.store.update(lambda s: s.cuts)
    ticket = _pacing.Ticket(clock.t, clock.t, False, cuts)
    # A gateway's 429 with no reset headers and no word of which budget.
    assert pacer.rate_limited(ticket, {}, "Rate limit reached.", 0.005, 600)
    req, tok = pacer.rates()
    assert tok is None  # no token limit invented from the flow
    assert req == pytest.approx(0.7 * before[0])  # the pace is cut...
    assert pacer.store.update(lambda s: s.req_ceiling) == before[1]  # ...not the limit


def test_a_limit_read_off_the_clock_moves_only_past_the_margin():
    state = _pacestore.PaceState(
        req_rate=4.75, req_ceiling=5.0, req_source="clock", burst_known=True
    )
    low = _pacing.Reading(2.5, True, 0.0, 0.0)  # a request charged, not yet answered
    _pacing._read_clock(state, "req", low, 1)
    jitter = _pacing.Reading(5.2, True, 0.0, 0.0)
    _pacing._read_clock(state, "req", jitter, 1)
    assert (state.req_rate, state.req_ceiling) == (4.75, 5.0)
    _pacing._read_clock(state, "req", _pacing.Reading(8.0, True, 0.0, 0.0), 1)
    assert state.req_ceiling == 8.0  # a higher limit: climbed to at 5% an answer
