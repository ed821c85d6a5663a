from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embedtasks._kernel import (
    above_threshold,
    l2_normalize,
    mmr_rerank,
    top_k,
)


def brute_force(queries, corpus, k, exclude=None):
    """Reference: full score matrix, stable sort by (-score, index)."""
    scores = np.asarray(queries, np.float32) @ np.asarray(corpus, np.float32).T
    indices = np.full((scores.shape[0], k), -1)
    values = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    for i, row in enumerate(scores):
        allowed = np.ones(row.size, bool)
        if exclude is not None:
            allowed[np.asarray(exclude[i], dtype=int)] = False
        candidates = np.flatnonzero(allowed)
        order = candidates[np.lexsort((candidates, -row[candidates]))][:k]
        indices[i, : order.size] = order
        values[i, : order.size] = row[order]
    return indices, values


def unit(rng, n, d):
    return l2_normalize(rng.standard_normal((n, d)))


def test_l2_normalize_unit_rows_float32():
    X = np.random.default_rng(0).standard_normal((50, 7))
    out = l2_normalize(X)
    assert out.dtype == np.float32 and out.shape == (50, 7)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


def test_l2_normalize_keeps_zero_rows_zero():
    out = l2_normalize([[0.0, 0.0], [3.0, 4.0]])
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], [0.0, 0.0])


def test_l2_normalize_copy_false_works_in_place_and_copy_true_does_not():
    X = np.array([[3.0, 4.0]], dtype=np.float32)
    l2_normalize(X)
    np.testing.assert_array_equal(X, [[3.0, 4.0]])
    assert l2_normalize(X, copy=False) is X
    np.testing.assert_allclose(X, [[0.6, 0.8]])


def test_l2_normalize_1d_vector():
    np.testing.assert_allclose(l2_normalize([0.0, 2.0]), [0.0, 1.0])


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("budget", [1024, 64 * 1024, 8 * 2**20])
def test_top_k_matches_brute_force_random(n_jobs, budget):
    rng = np.random.default_rng(0)
    corpus, queries = unit(rng, 3000, 16), unit(rng, 300, 16)
    result = top_k(queries, corpus, 10, memory_budget=budget, n_jobs=n_jobs)
    ref_idx, ref_val = brute_force(queries, corpus, 10)
    np.testing.assert_array_equal(result.indices, ref_idx)
    np.testing.assert_allclose(result.scores, ref_val, rtol=1e-6, atol=1e-6)
    assert result.scores.dtype == np.float32 and result.indices.shape == (300, 10)


def test_top_k_ties_go_to_lower_index_across_tiles():
    # Exactly representable vectors: every score is exact, so ties are real ties.
    corpus = np.tile(
        np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], np.float32), (700, 1)
    )
    queries = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    result = top_k(queries, corpus, 5, memory_budget=1024)
    ref_idx, _ = brute_force(queries, corpus, 5)
    np.testing.assert_array_equal(result.indices, ref_idx)
    np.testing.assert_array_equal(result.indices[0], [0, 3, 6, 9, 12])


def test_top_k_all_duplicates_and_zero_vectors():
    corpus = np.zeros((40, 4), np.float32)
    corpus[::2] = [0.5, 0.5, 0.5, 0.5]
    result = top_k(corpus[:3], corpus, 25, memory_budget=1024)
    ref_idx, ref_val = brute_force(corpus[:3], corpus, 25)
    np.testing.assert_array_equal(result.indices, ref_idx)
    np.testing.assert_array_equal(result.scores, ref_val)


def test_top_k_pads_when_k_exceeds_corpus():
    corpus = np.eye(3, dtype=np.float32)
    result = top_k(corpus[:1], corpus, 5)
    np.testing.assert_array_equal(result.indices, [[0, 1, 2, -1, -1]])
    assert np.isneginf(result.scores[0, 3:]).all()


def test_top_k_self_offset_excludes_itself():
    rng = np.random.default_rng(1)
    corpus = unit(rng, 500, 8)
    result = top_k(corpus, corpus, 3, self_offset=0, memory_budget=1024)
    ref_idx, _ = brute_force(corpus, corpus, 3, exclude=[[i] for i in range(500)])
    np.testing.assert_array_equal(result.indices, ref_idx)
    assert not (result.indices == np.arange(500)[:, None]).any()


def test_top_k_exclude_lists_and_negative_indices():
    rng = np.random.default_rng(2)
    corpus, queries = unit(rng, 200, 8), unit(rng, 3, 8)
    exclude = [[0, 5, -1], [], list(range(195))]
    result = top_k(queries, corpus, 8, exclude=exclude, memory_budget=1024)
    ref_idx, ref_val = brute_force(
        queries, corpus, 8, exclude=[[0, 5, 199], [], list(range(195))]
    )
    np.testing.assert_array_equal(result.indices, ref_idx)
    assert (result.indices[2, 5:] == -1).all()


def test_top_k_empty_inputs():
    result = top_k(np.empty((0, 4)), np.ones((3, 4)), 2)
    assert result.indices.shape == (0, 2)
    result = top_k(np.ones((2, 4)), np.empty((0, 4)), 2)
    assert (result.indices == -1).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be a positive integer"),
        ({"queries": np.ones((2, 3))}, ValueError, "same number of features"),
        ({"exclude": [[1]]}, ValueError, "one array of corpus indices per query"),
        ({"exclude": [[10], [0]]}, IndexError, r"outside the corpus of 4 rows: \[10\]"),
    ],
)
def test_top_k_rejects_bad_arguments(kwargs, error, match):
    args = {"queries": np.ones((2, 4)), "corpus": np.ones((4, 4)), "k": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        top_k(args.pop("queries"), args.pop("corpus"), args.pop("k"), **args)


@settings(max_examples=60, deadline=None)
@given(
    data=arrays(
        np.float32,
        st.tuples(st.integers(1, 60), st.just(3)),
        elements=st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]),
    ),
    n_queries=st.integers(1, 5),
    k=st.integers(1, 70),
    budget=st.sampled_from([1024, 4096, 2**20]),
)
def test_top_k_property_equals_brute_force(data, n_queries, k, budget):
    """Degenerate data (many exact ties, zero rows, duplicates) against a full sort."""
    queries = data[:n_queries]
    result = top_k(queries, data, k, memory_budget=budget, n_jobs=1)
    ref_idx, ref_val = brute_force(queries, data, k)
    np.testing.assert_array_equal(result.indices, ref_idx)
    np.testing.assert_array_equal(result.scores, ref_val)


def test_above_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    corpus, queries = unit(rng, 800, 4), unit(rng, 5, 4)
    found = above_threshold(queries, corpus, 0.7, memory_budget=1024)
    scores = queries @ corpus.T
    for (indices, values), row in zip(found, scores, strict=True):
        expected = np.flatnonzero(row >= 0.7)
        expected = expected[np.lexsort((expected, -row[expected]))]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(values, row[expected], rtol=1e-6)


def test_above_threshold_self_offset():
    corpus = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    found = above_threshold(corpus, corpus, 0.9, self_offset=0)
    assert [f[0].tolist() for f in found] == [[1], [0], []]


def test_mmr_diversity_zero_is_relevance_order():
    rng = np.random.default_rng(4)
    corpus, query = unit(rng, 30, 5), unit(rng, 1, 5)[0]
    cand = np.arange(30)
    picked = mmr_rerank(query, cand, corpus, 10, 0.0)
    np.testing.assert_array_equal(
        picked, np.argsort(-(corpus @ query), kind="stable")[:10]
    )


def test_mmr_diversity_avoids_near_duplicates():
    corpus = l2_normalize([[1.0, 0.0], [1.0, 0.01], [1.0, 0.02], [0.6, 0.8]])
    picked = mmr_rerank([1.0, 0.1], np.arange(4), corpus, 2, 0.5)
    assert 3 in picked.tolist()
