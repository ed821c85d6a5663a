from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedtasks import _cache
from embedtasks._cache import (
    CACHE_FILENAME,
    EmbeddingCache,
    default_cache_dir,
    make_key,
    make_keys,
)

IDENTITY = {"endpoint": "http://x", "model": "m", "dimensions": None}


def _vectors(n, dim=6):
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def test_make_key_depends_on_every_identity_field_and_text():
    base = make_key(IDENTITY, "hello")
    assert len(base) == 32
    assert base == make_key(dict(reversed(IDENTITY.items())), "hello")
    assert base != make_key({**IDENTITY, "model": "other"}, "hello")
    assert base != make_key({**IDENTITY, "dimensions": 256}, "hello")
    assert base != make_key({**IDENTITY, "endpoint": "http://y"}, "hello")
    assert base != make_key(IDENTITY, "hello ")
    assert make_keys(IDENTITY, ["hello", "héllo"]) == [
        base,
        make_key(IDENTITY, "héllo"),
    ]


def test_default_cache_dir_prefers_env_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBEDTASKS_CACHE_DIR", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("EMBEDTASKS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "embedtasks"


@pytest.mark.parametrize("on_disk", [False, True])
def test_cache_round_trip_is_bit_exact(tmp_path, on_disk):
    X = _vectors(50)
    keys = make_keys(IDENTITY, [f"t{i}" for i in range(50)])
    with EmbeddingCache(tmp_path if on_disk else None) as cache:
        cache.put_many(keys[:30], X[:30])
        found, got = cache.get_many(keys)
        assert len(cache) == 30
    assert found.dtype == bool and found.tolist() == [True] * 30 + [False] * 20
    assert got.dtype == np.float32 and got.shape == (50, 6)
    np.testing.assert_array_equal(got[:30], X[:30])
    np.testing.assert_array_equal(got[30:], 0)


def test_cache_long_reads_split_across_threads_stay_exact(tmp_path, monkeypatch):
    # 24-byte rows, 100-byte pieces: every run is read as several 4-row pieces
    # by a pool of threads, including runs broken by a gap and out-of-order asks.
    monkeypatch.setattr(_cache, "_PARALLEL_READ_BYTES", 100)
    X = _vectors(200)
    keys = make_keys(IDENTITY, [f"t{i}" for i in range(200)])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, X)
        order = np.r_[0:90, 120:200, 95:100, 7]
        found, got = cache.get_many([keys[i] for i in order])
    assert found.all()
    np.testing.assert_array_equal(got, X[order])


def test_cache_persists_across_connections(tmp_path):
    X = _vectors(3)
    keys = make_keys(IDENTITY, ["a", "b", "c"])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, X)
    assert (tmp_path / CACHE_FILENAME).exists()
    with EmbeddingCache(tmp_path / CACHE_FILENAME) as cache:
        found, got = cache.get_many(keys[::-1])
    assert found.all()
    np.testing.assert_array_equal(got, X[::-1])


def test_cache_stores_little_endian_float32_and_no_text(tmp_path):
    X = _vectors(2)
    secret_text = "a very identifiable sentence about zebras"
    keys = make_keys(IDENTITY, [secret_text, "other"])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, X)
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        rows = conn.execute("SELECT key, file, row FROM vectors").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    (data_file,) = (tmp_path / "vectors").iterdir()
    assert data_file.read_bytes() == X.astype("<f4").tobytes()
    assert sorted(r[2] for r in rows) == [0, 1]
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret_text.encode() not in data
    assert b"zebras" not in data


def test_cache_lookup_paths_agree(tmp_path):
    X = _vectors(200)
    keys = make_keys(IDENTITY, [f"t{i}" for i in range(200)])
    with EmbeddingCache(tmp_path) as cache:
        for s in range(0, 200, 50):  # several appends to one data file
            cache.put_many(keys[s : s + 50], X[s : s + 50])
        few = cache.get_many(keys[7:12])  # B-tree probes
        many = cache.get_many(keys[::-1])  # one scan of the index
    np.testing.assert_array_equal(few[1], X[7:12])
    np.testing.assert_array_equal(many[1], X[::-1])
    assert few[0].all() and many[0].all()


def test_cache_truncated_data_file_is_reported(tmp_path):
    keys = make_keys(IDENTITY, ["a", "b"])
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, _vectors(2))
    (data_file,) = (tmp_path / "vectors").iterdir()
    data_file.write_bytes(data_file.read_bytes()[:30])
    with EmbeddingCache(tmp_path) as cache:
        with pytest.raises(sqlite3.DatabaseError, match="delete the cache directory"):
            cache.get_many(keys)


def test_cache_replaces_existing_rows():
    keys = make_keys(IDENTITY, ["a"])
    cache = EmbeddingCache(None)
    cache.put_many(keys, [[1.0, 0.0]])
    cache.put_many(keys, [[0.0, 1.0]])
    np.testing.assert_array_equal(cache.get_many(keys)[1], [[0.0, 1.0]])
    assert len(cache) == 1


def test_cache_width_mismatch_is_a_miss_not_served():
    keys = make_keys(IDENTITY, ["a", "b"])
    cache = EmbeddingCache(None)
    cache.put_many(keys[:1], _vectors(1, dim=4))
    cache.put_many(keys[1:], _vectors(1, dim=6))
    found, got = cache.get_many(keys, dim=6)
    assert found.tolist() == [False, True]
    assert got.shape == (2, 6)
    assert cache.mismatches == 1
    found, got = cache.get_many(keys)  # width taken from the first row found
    assert found.sum() == 1 and cache.mismatches == 2


def test_cache_get_many_without_hits_or_width_returns_zero_columns():
    found, got = EmbeddingCache(None).get_many(make_keys(IDENTITY, ["a", "b"]))
    assert not found.any()
    assert got.shape == (2, 0) and got.dtype == np.float32


def test_cache_get_many_fills_out_in_place():
    keys = make_keys(IDENTITY, ["a", "b"])
    cache = EmbeddingCache(None)
    cache.put_many(keys[1:], [[1.0, 2.0]])
    out = np.full((2, 2), 7.0, dtype=np.float32)
    found, got = cache.get_many(keys, out=out)
    assert got is out
    np.testing.assert_array_equal(out, [[7.0, 7.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="out has 3 rows for 2 keys"):
        cache.get_many(keys, out=np.zeros((3, 2), dtype=np.float32))


def test_cache_put_many_needs_one_vector_per_key():
    with pytest.raises(ValueError, match="one vector per key: got 2 keys"):
        EmbeddingCache(None).put_many(make_keys(IDENTITY, ["a", "b"]), [[1.0]])


def test_cache_is_not_picklable():
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(EmbeddingCache(None))


def test_cache_corrupt_file_error_names_the_fix(tmp_path):
    path = tmp_path / CACHE_FILENAME
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="Delete the file"):
        EmbeddingCache(path)


def test_cache_repr_names_location(tmp_path):
    assert repr(EmbeddingCache(None)) == "EmbeddingCache('memory')"
    assert CACHE_FILENAME in repr(EmbeddingCache(tmp_path))


# Load _cache.py alone (stdlib + numpy): importing the package costs seconds.
_LOAD = textwrap.dedent(
    f"""
    import importlib.util
    spec = importlib.util.spec_from_file_location("c", {str(_cache.__file__)!r})
    c = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c)
    EmbeddingCache, make_keys = c.EmbeddingCache, c.make_keys
    """
)

_WRITER = _LOAD + textwrap.dedent(
    """
    import sys
    import numpy as np
    worker, path = int(sys.argv[1]), sys.argv[2]
    identity = {"model": "m"}
    cache = EmbeddingCache(path, timeout=30)
    for batch in range(10):
        texts = [f"w{worker}-{batch}-{i}" for i in range(50)]
        vectors = np.full((50, 4), worker * 1000 + batch, dtype=np.float32)
        cache.put_many(make_keys(identity, texts), vectors)
    """
)


def test_cache_several_processes_write_at_once(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(w), str(tmp_path)])
        for w in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with EmbeddingCache(tmp_path) as cache:
        assert len(cache) == 4 * 10 * 50
        texts = [f"w3-7-{i}" for i in range(50)]
        found, got = cache.get_many(make_keys({"model": "m"}, texts))
    assert found.all()
    np.testing.assert_array_equal(got, 3007)


_CRASHER = _LOAD + textwrap.dedent(
    """
    import os, sys
    import numpy as np
    cache = EmbeddingCache(sys.argv[1])
    identity = {"model": "m"}
    cache.put_many(make_keys(identity, ["kept-0", "kept-1"]), np.ones((2, 4)))
    keys = list(make_keys(identity, ["lost-0", "lost-1"]))
    original = cache._conn.executemany

    def dying(sql, params):
        def gen():
            for i, row in enumerate(params):
                if i == 1:
                    os._exit(3)  # the process dies in the middle of a write
                yield row
        return original(sql, gen())

    cache._conn = type("C", (), {"execute": cache._conn.execute,
                                  "executemany": staticmethod(dying)})()
    cache.put_many(keys, np.zeros((2, 4)))
    """
)


def test_cache_crash_mid_write_keeps_committed_rows_intact(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(tmp_path)])
    assert proc.returncode == 3
    with EmbeddingCache(tmp_path) as cache:
        keys = make_keys({"model": "m"}, ["kept-0", "kept-1", "lost-0", "lost-1"])
        found, got = cache.get_many(keys)
        (check,) = cache._conn.execute("PRAGMA integrity_check").fetchone()
    assert check == "ok"
    assert found.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(got[:2], 1.0)


def test_cache_records_first_width_per_identity():
    cache = EmbeddingCache(None)
    assert cache.identity_dim(IDENTITY) is None
    assert cache.record_identity_dim(IDENTITY, 384) == 384
    assert cache.record_identity_dim(IDENTITY, 768) == 384  # the earlier width wins
    assert cache.identity_dim({**IDENTITY, "model": "other"}) is None
