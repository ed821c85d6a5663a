"""The cache and pacing state at their edges: shared, foreign, damaged, upgraded."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time

import numpy as np
import pytest

from embedtasks.embedders._cache import CACHE_FILENAME, EmbeddingCache, make_keys
from embedtasks.embedders._http import _pacing
from embedtasks.embedders._http._pacing import (
    MAX_PAUSE,
    PACING_FILENAME,
    Pacer,
    PaceState,
    SqlitePaceStore,
    open_store,
)
from embedtasks.exceptions import CacheError

IDENTITY = {"kind": "test", "model": "m"}


def _vectors(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 8)).astype(np.float32)


# -- 2: only a folder the library made is changed -------------------------------
def _foreign_db(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("name", ["x.db", CACHE_FILENAME])
def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path, name):
    path = tmp_path / name
    before = _foreign_db(path)
    with pytest.raises(CacheError, match="is not an embedtasks cache.*customers"):
        EmbeddingCache(path if name == "x.db" else tmp_path)
    with pytest.raises(CacheError, match="not an embedtasks cache"):
        EmbeddingCache.remove_files(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_other_file_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my notes\n" * 100)
    with pytest.raises(CacheError, match="not an embedtasks cache.*another kind"):
        EmbeddingCache(path)
    assert path.read_text() == "my notes\n" * 100


def test_new_cache_carries_the_marker_and_reopens(tmp_path):
    keys = make_keys(IDENTITY, ["a"])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, _vectors(1, 0))
    marker = json.loads(
        (tmp_path / "embeddings.vectors/EMBEDTASKS_CACHE.json").read_text()
    )
    assert marker == {"library": "embedtasks", "format": 3}
    with EmbeddingCache(tmp_path) as cache:
        assert cache.get_many(keys)[0].all()


# -- 10: a newer format is refused, also by a process already running ------------
def test_newer_format_in_the_marker_is_refused_at_open(tmp_path):
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(make_keys(IDENTITY, ["a"]), _vectors(1, 0))
    marker = tmp_path / "embeddings.vectors/EMBEDTASKS_CACHE.json"
    marker.write_text(json.dumps({"library": "embedtasks", "format": 4}))
    with pytest.raises(CacheError, match=r"newer embedtasks \(format 4; this one"):
        EmbeddingCache(tmp_path)


def test_running_reader_refuses_a_cache_upgraded_under_it(tmp_path):
    keys = make_keys(IDENTITY, [f"t{i}" for i in range(100)])
    old = EmbeddingCache(tmp_path)
    old.put_many(keys, _vectors(100, 0))
    assert old.get_many(keys)[0].all()
    # A newer version upgrades the folder: new format, rows rewritten.
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        conn.execute("UPDATE meta SET value = 4 WHERE name = 'schema_version'")
        conn.execute("UPDATE vectors SET row = row + 1")
    conn.close()
    with pytest.raises(CacheError, match="newer embedtasks"):
        old.get_many(keys)
    with pytest.raises(CacheError, match="newer embedtasks"):
        old.put_many(make_keys(IDENTITY, ["new"]), _vectors(1, 1))
    old.close()


# -- 4: compact while other processes write ---------------------------------------
def _writer(args):
    folder, worker, n_batches = args
    done = []
    with EmbeddingCache(folder) as cache:
        for b in range(n_batches):
            texts = [f"w{worker}-b{b}-{i}" for i in range(16)]
            cache.put_many(make_keys(IDENTITY, texts), _vectors(16, worker * 1000 + b))
            done += texts
    return done


def test_compact_while_other_processes_write_loses_nothing(tmp_path):
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(make_keys(IDENTITY, ["seed"]), _vectors(1, 0))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = pool.map_async(_writer, [(tmp_path, w, 25) for w in range(2)])
        with EmbeddingCache(tmp_path) as cache:
            while not pending.ready():
                cache.compact()
        finished = [t for texts in pending.get() for t in texts]
    with EmbeddingCache(tmp_path) as cache:
        cache.compact()
        keys = make_keys(IDENTITY, finished)
        found, got = cache.get_many(keys)
        assert found.all(), f"{int((~found).sum())} finished vectors lost"
        report = cache.verify()
        assert report["damaged"] == 0 and report["checked"] == cache.info()["vectors"]
    worker_0 = [t for t in finished if t.startswith("w0-b0-")]
    np.testing.assert_array_equal(got[: len(worker_0)], _vectors(16, 0))


def test_verify_counts_rows_whose_file_the_index_lost(tmp_path):
    keys = make_keys(IDENTITY, ["a", "b"])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, _vectors(2, 0))
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        conn.execute("DELETE FROM files")
    conn.close()
    with EmbeddingCache(tmp_path) as cache:
        report = cache.verify()
        assert report["checked"] == cache.info()["vectors"] == 2
        assert report["damaged"] == 2


# -- 14: pauses and booked starts are bounded; cache clear forgets them -----------
def test_hour_long_reset_pauses_at_most_max_pause(tmp_path):
    pacer = Pacer(store=open_store(tmp_path, "http://h/v1", "m"))
    before = time.time()
    pacer.learn(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1h"}
    )
    end = pacer.store.update(lambda s: s.pause_end(time.time()))
    assert before < end <= time.time() + MAX_PAUSE
    pacer.store.close()


def test_pause_written_by_a_clock_running_ahead_is_not_waited_longer():
    state = PaceState()
    ahead = time.time() + 50.0  # another process, its clock 50 s ahead
    state.pause(ahead, 2.0)
    now = time.time()
    assert state.pause_end(now) <= now + 2.0


def test_start_booked_by_a_clock_running_ahead_does_not_stall(tmp_path):
    import asyncio

    store = open_store(tmp_path, "http://h/v1", "m")
    store.update(
        lambda s: (setattr(s, "req_rate", 5.0), setattr(s, "tat_req", time.time() + 50))
    )
    pacer = Pacer(store=store)

    async def one():
        ticket = await pacer.acquire(1)
        pacer.release()
        return ticket

    started = time.monotonic()
    asyncio.run(one())
    assert time.monotonic() - started < 5  # at most one interval, not 50 s
    store.close()


def test_cache_clear_forgets_pacing_state(tmp_path):
    store = open_store(tmp_path, "http://h/v1", "m")
    store.update(lambda s: s.pause(time.time(), 30.0))
    store.close()
    with EmbeddingCache(tmp_path) as cache:
        cache.clear()
    assert not (tmp_path / PACING_FILENAME).exists()
    fresh = open_store(tmp_path, "http://h/v1", "m")
    assert fresh.update(lambda s: s.pause_end(time.time())) <= time.time()
    fresh.close()


# -- 18: damaged pacing state is recreated -------------------------------------------
def test_damaged_pacing_file_is_recreated_with_a_warning(tmp_path):
    (tmp_path / PACING_FILENAME).write_bytes(b"garbage" * 1000)
    with pytest.warns(RuntimeWarning, match="pacing state .* was damaged.*recreated"):
        store = open_store(tmp_path, "http://h/v1", "m")
    assert isinstance(store, SqlitePaceStore)
    assert store.update(lambda s: s.cuts) == 0
    store.close()


def test_pacing_state_damaged_mid_use_is_recreated(tmp_path):
    store = open_store(tmp_path, "http://h/v1", "m")
    store.update(lambda s: None)
    with sqlite3.connect(tmp_path / PACING_FILENAME) as conn:
        conn.execute("UPDATE pace SET state = '{not json'")
    conn.close()
    with pytest.warns(RuntimeWarning, match="was damaged"):
        assert store.update(lambda s: s.req_rate) is None
    store.close()


def test_embedding_with_a_damaged_pacing_file_works(tmp_path):
    import httpx

    from embedtasks import OpenAIEmbedder
    from embedtasks.testing import fake_openai_transport

    (tmp_path / PACING_FILENAME).write_bytes(b"\x00not sqlite" * 500)
    emb = OpenAIEmbedder(
        transport=httpx.MockTransport(fake_openai_transport(4).handle_request),
        cache_dir=tmp_path,
    )
    with pytest.warns(RuntimeWarning, match="recreated"):
        assert emb.fit_transform(["a", "b"]).shape == (2, 4)
    assert _pacing.PACING_FILENAME == PACING_FILENAME


# -- 16: few 429s under an unannounced limit -------------------------------------------
def test_pacer_widens_gently_until_a_limit_is_known():
    from embedtasks.embedders._http._pacing import Ticket

    pacer = Pacer(max_concurrency=8)
    assert pacer.window == 1.0  # the first requests go one at a time
    for _ in range(3):
        pacer.succeeded(Ticket(0.0, 0.0, False), 1)
    assert pacer.window == pytest.approx(2.0)  # a third per answer, not one
    pacer.store.update(lambda s: setattr(s, "req_rate", 5.0))  # a limit learned
    pacer.succeeded(Ticket(0.0, 0.0, False), 1)
    assert pacer.window == pytest.approx(3.0)


def test_flow_measured_without_the_servers_clock_is_paced_well_under():
    from embedtasks.embedders._http._pacing import Ticket

    pacer = Pacer(max_concurrency=8)
    start = time.time() - 2.0
    for i in range(10):  # 10 accepted over 2 s: a flow of 5/s (burst included)
        pacer.store.log_success(_pacing.Event(start + 0.2 * i, 1, None, None))
    pacer.rate_limited(Ticket(time.time(), time.time(), False), {}, "", 0.5)
    rate = pacer.store.update(lambda s: s.req_rate)
    assert rate == pytest.approx(0.8 * 10 / (time.time() - start), rel=0.05)
