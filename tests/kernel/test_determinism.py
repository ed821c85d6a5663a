"""Every score is bit-identical however the work is split (the kernel's guarantee).

Each scoring method is run on the whole input and on random splits of it (the
split sizes drawn by hypothesis), on one and on several threads, and with tiny
tiles: the results must be equal bit for bit, not approximately. The corpora hold
near-duplicates and exact copies, where a last-bit difference changes the order.
CI runs this file a second time with ``OPENBLAS_CORETYPE=Haswell``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from embedtasks import DiversityReport, DotProductNeighbors, OutlierScorer
from embedtasks._kernel import (
    above_threshold,
    l2_normalize,
    neighbour_scan,
    pair_dots,
    place_by_similarity,
    similarity,
    top_k,
)

SPLITS = st.lists(st.integers(1, 40), min_size=1, max_size=12)


def _corpus(n: int, d: int, seed: int) -> np.ndarray:
    """Unit rows with clusters of near-duplicates and a few exact copies."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[n // 2 : n // 2 + n // 5] = X[: n // 5] + 1e-4 * rng.standard_normal(
        (n // 5, d)
    ).astype(np.float32)
    X[-5:] = X[:5]
    return l2_normalize(X)


CORPORA = {shape: _corpus(*shape, seed=i) for i, shape in enumerate(
    [(700, 24), (400, 384), (150, 1536)]
)}  # fmt: skip
QUERIES = {
    shape: l2_normalize(
        X[np.random.default_rng(9).integers(0, len(X), 60)]
        + 0.05 * np.random.default_rng(10).standard_normal((60, X.shape[1]))
    )
    for shape, X in CORPORA.items()
}


def _pieces(n: int, sizes: list[int]) -> list[slice]:
    """Consecutive slices covering range(n), sized by ``sizes`` (cycled)."""
    out, start, i = [], 0, 0
    while start < n:
        stop = min(n, start + sizes[i % len(sizes)])
        out.append(slice(start, stop))
        start, i = stop, i + 1
    return out


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.int32 if a.dtype == np.float32 else np.int64)


def assert_bits_equal(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(_bits(a), _bits(b))
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", list(CORPORA))
@settings(max_examples=15, deadline=None, derandomize=True)
@given(sizes=SPLITS, n_jobs=st.sampled_from([1, 2]))
def test_top_k_split_invariant(shape, sizes, n_jobs):
    X, Q = CORPORA[shape], QUERIES[shape]
    whole = top_k(Q, X, 10)
    parts = [top_k(Q[s], X, 10, n_jobs=n_jobs) for s in _pieces(len(Q), sizes)]
    assert_bits_equal(np.vstack([p.indices for p in parts]), whole.indices)
    assert_bits_equal(np.vstack([p.scores for p in parts]), whole.scores)


@pytest.mark.parametrize("shape", list(CORPORA))
def test_top_k_same_bits_whatever_tiles_threads_and_order(shape):
    X, Q = CORPORA[shape], QUERIES[shape]
    whole = top_k(Q, X, 10)
    tiny = top_k(Q, X, 10, memory_budget=4096, n_jobs=1)
    with threadpool_limits(limits=1):
        one_thread = top_k(Q, X, 10)
    order = np.random.default_rng(0).permutation(len(Q))
    shuffled = top_k(Q[order], X, 10)
    for other in (tiny, one_thread):
        assert_bits_equal(other.indices, whole.indices)
        assert_bits_equal(other.scores, whole.scores)
    assert_bits_equal(shuffled.scores, whole.scores[order])
    assert_bits_equal(shuffled.indices, whole.indices[order])


def test_scores_are_the_canonical_dot_product():
    """A score is the float64 sum of exact products, rounded once to float32."""
    X, Q = CORPORA[(400, 384)], QUERIES[(400, 384)]
    result = top_k(Q[:5], X, 3)
    for q, (row, scores) in enumerate(zip(result.indices, result.scores, strict=True)):
        for i, s in zip(row, scores, strict=True):
            exact = math.fsum(Q[q].astype(np.float64) * X[i].astype(np.float64))
            assert s == np.float32(exact)
    assert_bits_equal(pair_dots(Q[:5], X[:5]), similarity(Q[:5], X[:5]).diagonal())


@settings(max_examples=15, deadline=None, derandomize=True)
@given(sizes=SPLITS)
def test_similarity_split_invariant_on_both_axes(sizes):
    X, Q = CORPORA[(400, 384)], QUERIES[(400, 384)]
    whole = similarity(Q, X)
    by_rows = np.vstack([similarity(Q[s], X) for s in _pieces(len(Q), sizes)])
    by_cols = np.hstack([similarity(Q, X[s]) for s in _pieces(len(X), sizes)])
    assert_bits_equal(by_rows, whole)
    assert_bits_equal(by_cols, whole)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(sizes=SPLITS)
def test_above_threshold_split_invariant(sizes):
    X, Q = CORPORA[(700, 24)], QUERIES[(700, 24)]
    whole = above_threshold(Q, X, 0.5)
    parts = [r for s in _pieces(len(Q), sizes) for r in above_threshold(Q[s], X, 0.5)]
    for (i1, s1), (i2, s2) in zip(whole, parts, strict=True):
        assert_bits_equal(i1, i2)
        assert_bits_equal(s1, s2)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(sizes=SPLITS)
def test_neighbors_estimator_methods_split_invariant(sizes):
    X, Q = CORPORA[(700, 24)], QUERIES[(700, 24)]
    nn = DotProductNeighbors(n_neighbors=5, radius=0.6).fit(X)
    pieces = _pieces(len(Q), sizes)
    dist, ind = nn.kneighbors(Q)
    parts = [nn.kneighbors(Q[s]) for s in pieces]
    assert_bits_equal(np.vstack([p[0] for p in parts]), dist)
    assert_bits_equal(np.vstack([p[1] for p in parts]), ind)
    scores, indices = nn.search(Q)
    parts = [nn.search(Q[s]) for s in pieces]
    assert_bits_equal(np.vstack([p[0] for p in parts]), scores)
    graph = nn.kneighbors_graph(Q, mode="distance").toarray()
    parts = [nn.kneighbors_graph(Q[s], mode="distance").toarray() for s in pieces]
    assert_bits_equal(np.vstack(parts), graph)
    rdist, rind = nn.radius_neighbors(Q)
    parts = [nn.radius_neighbors(Q[s]) for s in pieces]
    got_d = [d for p in parts for d in p[0]]
    for a, b in zip(got_d, rdist, strict=True):
        assert_bits_equal(a, b)


@pytest.mark.parametrize("method", ["knn", "lof", "centroid", "mahalanobis"])
@settings(max_examples=8, deadline=None, derandomize=True)
@given(sizes=SPLITS)
def test_outlier_scores_split_invariant(method, sizes):
    X, Q = CORPORA[(400, 384)], QUERIES[(400, 384)]
    scorer = OutlierScorer(method=method, n_neighbors=5, novelty=True).fit(X)
    whole = scorer.score_samples(Q)
    parts = [scorer.score_samples(Q[s]) for s in _pieces(len(Q), sizes)]
    assert_bits_equal(np.concatenate(parts), whole)
    with threadpool_limits(limits=1):
        assert_bits_equal(scorer.score_samples(Q), whole)


def test_symmetric_scan_same_bits_whatever_tiles_and_threads():
    X = CORPORA[(700, 24)]
    ref = neighbour_scan(X, 0.95, 50, memory_budget=2**22, n_jobs=1)
    nn1 = top_k(X, X, 1, self_offset=0)
    assert_bits_equal(ref.nn_idx, nn1.indices[:, 0])  # the scan agrees with top_k
    assert_bits_equal(ref.nn_sim, nn1.scores[:, 0])
    for budget, n_jobs in [(32 * 32 * 4, 1), (64 * 64 * 4, 2), (16 * 16 * 4, 3)]:
        scan = neighbour_scan(X, 0.95, 50, memory_budget=budget, n_jobs=n_jobs)
        assert_bits_equal(scan.nn_idx, ref.nn_idx)
        assert_bits_equal(scan.nn_sim, ref.nn_sim)
        assert_bits_equal(scan.pairs, ref.pairs)
        assert_bits_equal(scan.pair_scores, ref.pair_scores)
        assert scan.n_pairs == ref.n_pairs


def test_diversity_report_same_bits_on_any_thread_count():
    X = CORPORA[(700, 24)]
    groups = np.arange(len(X)) % 3
    ref = DiversityReport(max_pairs=5_000, random_state=0).fit(X, groups=groups)
    with threadpool_limits(limits=1):
        again = DiversityReport(max_pairs=5_000, random_state=0).fit(X, groups=groups)
    for name in (
        "nn_similarity_",
        "nn_indices_",
        "duplicate_pairs_",
        "duplicate_similarities_",
        "similarity_quantiles_",
        "group_similarity_",
    ):
        assert_bits_equal(getattr(again, name), getattr(ref, name))
    assert again.mean_similarity_ == ref.mean_similarity_
    assert again.std_similarity_ == ref.std_similarity_
    assert again.vendi_score_ == ref.vendi_score_


@settings(max_examples=10, deadline=None, derandomize=True)
@given(sizes=SPLITS)
def test_placement_split_invariant(sizes):
    X, Q = CORPORA[(400, 384)], QUERIES[(400, 384)]
    layout = np.random.default_rng(1).standard_normal((len(X), 5))
    whole = place_by_similarity(Q, X, layout, 15)
    parts = [place_by_similarity(Q[s], X, layout, 15) for s in _pieces(len(Q), sizes)]
    assert_bits_equal(np.vstack(parts), whole)
