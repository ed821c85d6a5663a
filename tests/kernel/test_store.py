"""The corpus store: one builder picks the kind; every kind answers alike."""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest

from embedtasks._kernel import build_store, l2_normalize, n_threads, top_k
from embedtasks._kernel._store import Indexed, InMemory, Int8, is_mapped

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _corpus(n=400, d=16, seed=0):
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, d)))


def test_build_store_picks_the_kind_from_the_settings():
    X = _corpus()
    assert type(build_store(X)) is InMemory
    assert type(build_store(X, storage="int8")) is Int8
    if HAS_FAISS:
        assert type(build_store(X, backend="faiss")) is Indexed


@pytest.mark.parametrize(
    "settings",
    [{}, {"storage": "int8"}] + ([{"backend": "faiss"}] if HAS_FAISS else []),
)
def test_every_kind_gives_the_exact_top_k_and_pickles(settings):
    X, Q = _corpus(), _corpus(20, seed=1)
    want = top_k(Q, X, 5)
    store = build_store(X, **settings)
    got = store.top_k(Q, 5)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    again = pickle.loads(pickle.dumps(store)).top_k(Q, 5)
    np.testing.assert_array_equal(again.indices, want.indices)
    hits = store.above_threshold(Q[:2], 0.3)
    assert all((scores >= 0.3).all() for _, scores in hits)


def test_a_mapped_file_is_pickled_by_its_location(tmp_path):
    X = _corpus()
    path = tmp_path / "rows.f32"
    X.tofile(path)
    rows = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    assert is_mapped(rows) and not is_mapped(X)
    blob = pickle.dumps(build_store(rows))
    assert len(blob) < X.nbytes // 4  # the location, not the rows
    back = pickle.loads(blob)
    assert isinstance(back.rows, np.memmap)
    np.testing.assert_array_equal(back.take([3, 1]), X[[3, 1]])


def test_n_jobs_has_one_meaning():
    cores = os.cpu_count() or 1
    assert n_threads(None) == n_threads(-1) == cores
    assert n_threads(-2) == max(1, cores - 1)
    assert n_threads(3) == 3
