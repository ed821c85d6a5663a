from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedtasks.embedders import _cache
from embedtasks.embedders._cache import (
    CACHE_FILENAME,
    EmbeddingCache,
    default_cache_dir,
    make_key,
    make_keys,
)
from embedtasks.exceptions import CacheError

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
    monkeypatch.setattr(_cache._store, "_PARALLEL_READ_BYTES", 100)
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
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = data_file.read_bytes()
    assert raw[:5] == b"ETVEC" and bytes.fromhex(data_file.stem) == raw[8:24]
    assert raw[32:] == X.astype("<f4").tobytes()  # after a 32-byte header
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


def test_cache_truncated_data_file_is_a_miss_not_an_error(tmp_path):
    keys = make_keys(IDENTITY, ["a", "b"])
    X = _vectors(2)
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(keys, X)
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    data_file.write_bytes(data_file.read_bytes()[: 32 + 24 + 5])  # 1.2 rows of 6
    with EmbeddingCache(tmp_path) as cache:
        found, got = cache.get_many(keys)
        assert found.tolist() == [True, False] and cache.damaged == 1
    np.testing.assert_array_equal(got[0], X[0])


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
    with pytest.raises(CacheError, match="cache clear --cache-dir") as err:
        EmbeddingCache(path)
    assert "\n" not in str(err.value) and err.value.path == str(path)


def test_cache_repr_names_location(tmp_path):
    assert repr(EmbeddingCache(None)) == "EmbeddingCache('memory')"
    assert CACHE_FILENAME in repr(EmbeddingCache(tmp_path))


# The cache package alone (stdlib + numpy; embedtasks imports lazily).
_LOAD = textwrap.dedent(
    """
    from embedtasks.embedders._cache import EmbeddingCache, make_keys
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


# -- a cache that cannot lie (issue 10) --------------------------------------------
def _fill(path, texts, value, identity=IDENTITY):
    with EmbeddingCache(path) as cache:
        cache.put_many(
            make_keys(identity, texts),
            np.full((len(texts), 4), value, np.float32),
            identity=identity,
        )


def _read(path, texts, identity=IDENTITY):
    with EmbeddingCache(path) as cache:
        return cache.get_many(make_keys(identity, texts), dim=4)


def test_cache_deleted_index_never_aliases_old_data_files(tmp_path):
    _fill(tmp_path, [f"old{i}" for i in range(800)], 1.0)
    (tmp_path / CACHE_FILENAME).unlink()  # what the old error message advised
    new = [f"new{i}" for i in range(1000)]
    _fill(tmp_path, new, 2.0)
    found, got = _read(tmp_path, new)
    assert found.all()
    np.testing.assert_array_equal(got, 2.0)  # not one vector from the old file
    assert not _read(tmp_path, ["old0"])[0].any()


def test_cache_zero_byte_index_starts_afresh_without_aliasing(tmp_path):
    _fill(tmp_path, [f"old{i}" for i in range(50)], 1.0)
    (tmp_path / CACHE_FILENAME).write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (tmp_path / (CACHE_FILENAME + suffix)).unlink(missing_ok=True)
    _fill(tmp_path, ["a", "b"], 3.0)
    found, got = _read(tmp_path, ["a", "b", "old1"])
    assert found.tolist() == [True, True, False]
    np.testing.assert_array_equal(got[:2], 3.0)


def test_cache_two_indexes_in_one_folder_keep_their_own_vectors(tmp_path):
    a, b = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    _fill(a, ["x", "y"], 1.0)
    _fill(b, ["x", "y", "z"], 2.0)
    _fill(a, ["z"], 5.0)
    np.testing.assert_array_equal(_read(a, ["x", "y", "z"])[1][:, 0], [1, 1, 5])
    np.testing.assert_array_equal(_read(b, ["x", "y", "z"])[1][:, 0], [2, 2, 2])


def test_cache_flipped_bytes_are_never_served(tmp_path):
    texts = [f"t{i}" for i in range(20)]
    X = _vectors(20, dim=4)
    with EmbeddingCache(tmp_path) as cache:
        cache.put_many(make_keys(IDENTITY, texts), X)
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = bytearray(data_file.read_bytes())
    raw[32 + 16 * 5 + 2] ^= 0x40  # one bit of row 5
    raw[32 + 16 * 9] ^= 0xFF  # a byte of row 9
    data_file.write_bytes(bytes(raw))
    with EmbeddingCache(tmp_path) as cache:
        found, got = cache.get_many(make_keys(IDENTITY, texts))
        assert cache.damaged == 2
        few = cache.get_many(make_keys(IDENTITY, texts[4:6]))[0]  # probe path
    assert np.flatnonzero(~found).tolist() == [5, 9]
    assert few.tolist() == [True, False]
    np.testing.assert_array_equal(got[found], X[found])


def test_cache_header_of_another_file_is_not_read(tmp_path):
    _fill(tmp_path, ["a"], 1.0)
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = bytearray(data_file.read_bytes())
    raw[10] ^= 1  # the UUID in the header no longer names this file
    data_file.write_bytes(bytes(raw))
    assert not _read(tmp_path, ["a"])[0].any()


def test_cache_torn_tail_is_not_appended_after(tmp_path):
    _fill(tmp_path, ["a"], 1.0)
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    with open(data_file, "ab") as handle:
        handle.write(b"\x01\x02\x03")  # half a row left by a crash
    with EmbeddingCache(tmp_path) as cache:
        cache._writers[4] = 1  # this process believes it owns that file
        cache.put_many(make_keys(IDENTITY, ["b", "c"]), np.full((2, 4), 7, np.float32))
    found, got = _read(tmp_path, ["a", "b", "c"])
    assert found.all()
    np.testing.assert_array_equal(got[:, 0], [1, 7, 7])


_KILLER = _LOAD + textwrap.dedent(
    """
    import sys
    import numpy as np
    cache = EmbeddingCache(sys.argv[1])
    for batch in range(100_000):
        texts = [f"k{batch}-{i}" for i in range(200)]
        cache.put_many(make_keys({"model": "m"}, texts),
                       np.full((200, 4), batch, dtype=np.float32))
        if batch == 2:
            print("writing", flush=True)
    """
)


def test_cache_kill_9_during_writes_never_serves_a_wrong_vector(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLER, str(tmp_path)], stdout=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"writing"
    proc.kill()  # SIGKILL, mid-write
    proc.wait()
    proc.stdout.close()
    with EmbeddingCache(tmp_path) as cache:
        n = len(cache)
        texts = [f"k{b}-{i}" for b in range(n // 200 + 2) for i in range(200)]
        found, got = cache.get_many(make_keys({"model": "m"}, texts), dim=4)
        report = cache.verify()
    assert found[: 3 * 200].all() and report["damaged"] == 0
    batch = np.repeat(np.arange(len(texts) // 200), 200).astype(np.float32)
    np.testing.assert_array_equal(got[found, 0], batch[found])


def test_cache_info_verify_compact_clear(tmp_path):
    identity = {**IDENTITY, "endpoint": "http://h/v1?api-key=sk-hidden"}
    texts = [f"t{i}" for i in range(100)]
    keys = make_keys(identity, texts)
    with EmbeddingCache(tmp_path) as cache:
        for value in (1.0, 2.0):  # the second write replaces the first
            cache.put_many(
                keys, np.full((100, 4), value, np.float32), identity=identity
            )
        info = cache.info()
        assert info["vectors"] == 100 and info["reclaimable_bytes"] >= 1600
        (model,) = info["models"]
        assert model["vectors"] == 100 and model["dim"] == 4
        assert "sk-hidden" not in str(model["label"])
        assert cache.verify() == {
            "checked": 100,
            "ok": 100,
            "damaged": 0,
            "missing_files": 0,
        }
        report = cache.compact()
        assert (
            report["vectors"] == 100 and report["bytes_after"] < report["bytes_before"]
        )
        found, got = cache.get_many(keys)
        assert found.all() and (got == 2.0).all()
        assert cache.info()["reclaimable_bytes"] == 0
        assert cache.clear() == 100 and len(cache) == 0
        assert not list((tmp_path / "embeddings.vectors").glob("*.f32"))


def test_cache_verify_repair_and_compact_drop_damaged_rows(tmp_path):
    _fill(tmp_path, [f"t{i}" for i in range(10)], 1.0)
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = bytearray(data_file.read_bytes())
    raw[32 + 16 * 3] ^= 1
    data_file.write_bytes(bytes(raw))
    with EmbeddingCache(tmp_path) as cache:
        assert cache.verify()["damaged"] == 1
        assert cache.verify(repair=True)["damaged"] == 1
        assert cache.verify()["damaged"] == 0 and len(cache) == 9


def test_cache_compact_removes_orphan_files_of_a_deleted_index(tmp_path):
    _fill(tmp_path, ["a", "b"], 1.0)
    (tmp_path / CACHE_FILENAME).unlink()
    _fill(tmp_path, ["c"], 2.0)
    with EmbeddingCache(tmp_path) as cache:
        assert cache.info()["orphan_files"] == 1
        cache.compact()
        assert cache.info()["orphan_files"] == 0
    assert len(list((tmp_path / "embeddings.vectors").glob("*.f32"))) == 1
    assert _read(tmp_path, ["c"])[0].all()


def _cli(*argv):
    from embedtasks.cli import main

    return main(list(argv))


def test_cli_cache_commands(tmp_path, capsys):
    _fill(tmp_path, [f"t{i}" for i in range(5)], 1.0, identity={"model": "m-1"})
    assert _cli("cache", "info", "--cache-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "5 vectors" in out and "m-1" in out
    assert _cli("cache", "verify", "--cache-dir", str(tmp_path)) == 0
    assert "5 ok, 0 damaged" in capsys.readouterr().out
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = bytearray(data_file.read_bytes())
    raw[40] ^= 1
    data_file.write_bytes(bytes(raw))
    assert _cli("cache", "verify", "--cache-dir", str(tmp_path)) == 1
    assert "1 damaged" in capsys.readouterr().out
    assert _cli("cache", "compact", "--cache-dir", str(tmp_path)) == 0
    assert "4 vectors (1 damaged dropped)" in capsys.readouterr().out
    assert _cli("cache", "clear", "--cache-dir", str(tmp_path)) == 0
    assert "cleared 4 vectors" in capsys.readouterr().out


def test_cli_corrupt_index_is_one_line_with_the_fix(tmp_path, capsys):
    (tmp_path / CACHE_FILENAME).write_bytes(b"not a database" * 200)
    assert _cli("cache", "info", "--cache-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cache clear" in err
    assert _cli("cache", "clear", "--cache-dir", str(tmp_path)) == 0
    assert "removed the damaged cache" in capsys.readouterr().out
    assert _cli("cache", "info", "--cache-dir", str(tmp_path)) == 0
