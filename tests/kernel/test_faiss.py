"""The optional faiss backend of DotProductNeighbors behind the same API."""

from __future__ import annotations

import copy
import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone

from embedtasks import DotProductNeighbors
from embedtasks._kernel import l2_normalize

faiss = pytest.importorskip("faiss")


@pytest.fixture
def corpus():
    return l2_normalize(np.random.default_rng(0).standard_normal((600, 16)))


@pytest.fixture
def clustered():
    """Embedding-like data: 40 topics, items scattered around each."""
    rng = np.random.default_rng(0)
    centres = l2_normalize(rng.standard_normal((40, 32)))
    items = centres[rng.integers(0, 40, 4000)] + 0.15 * rng.standard_normal((4000, 32))
    queries = centres[rng.integers(0, 40, 200)] + 0.15 * rng.standard_normal((200, 32))
    return l2_normalize(items), l2_normalize(queries)


def _pair(corpus, **params):
    exact = DotProductNeighbors(**params).fit(corpus, np.arange(len(corpus)))
    flat = DotProductNeighbors(backend="faiss", **params).fit(
        corpus, np.arange(len(corpus))
    )
    return exact, flat


def test_flat_backend_builds_an_inner_product_index(corpus):
    nn = DotProductNeighbors(backend="faiss").fit(corpus)
    assert isinstance(nn.index_, faiss.Index)
    assert nn.index_.ntotal == 600 and nn.index_.d == 16
    assert nn.index_.metric_type == faiss.METRIC_INNER_PRODUCT
    assert DotProductNeighbors().fit(corpus).index_ is None


def test_flat_search_equals_exact_backend(corpus):
    exact, flat = _pair(corpus, n_neighbors=7)
    queries = corpus[:50] + 0.05
    scores, indices = flat.search(queries)
    ref_scores, ref_indices = exact.search(queries)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert scores.dtype == np.float32 and indices.shape == (50, 7)


def test_flat_kneighbors_without_x_excludes_itself(corpus):
    exact, flat = _pair(corpus, n_neighbors=4)
    ind = flat.kneighbors(return_distance=False)
    np.testing.assert_array_equal(ind, exact.kneighbors(return_distance=False))
    assert not (ind == np.arange(600)[:, None]).any()


def test_flat_search_with_exclusions_pads_like_exact(corpus):
    exact, flat = _pair(corpus[:8], n_neighbors=5)
    exclude = [[0, 1, 2, 3, 4], [7]]
    scores, indices = flat.search(corpus[:2], exclude=exclude)
    ref_scores, ref_indices = exact.search(corpus[:2], exclude=exclude)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert indices[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()
    assert not np.isin(indices[1], [7]).any()


def test_flat_recommend_and_graph_equal_exact(corpus):
    exact, flat = _pair(corpus, n_neighbors=6)
    for kwargs in ({}, {"exclude": [5, 6]}, {"diversity": 0.5}):
        got = flat.recommend([1, 2, 3], **kwargs)
        ref = exact.recommend([1, 2, 3], **kwargs)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    graph = flat.kneighbors_graph(corpus[:10], mode="similarity")
    ref = exact.kneighbors_graph(corpus[:10], mode="similarity")
    np.testing.assert_array_equal(graph.indices, ref.indices)
    np.testing.assert_allclose(graph.toarray(), ref.toarray(), atol=1e-5)


def test_flat_maximum_inner_product_without_normalize(corpus):
    scaled = corpus * np.random.default_rng(1).uniform(0.5, 2.0, (600, 1))
    exact, flat = _pair(scaled.astype(np.float32), normalize=False, n_neighbors=5)
    np.testing.assert_array_equal(
        flat.search(corpus[:20])[1], exact.search(corpus[:20])[1]
    )


@pytest.mark.parametrize(
    ("description", "params"),
    [("IVF16,Flat", {"nprobe": 4}), ("HNSW16", {"efSearch": 64})],
)
def test_approximate_indexes_recall_most_neighbours(clustered, description, params):
    items, queries = clustered
    exact = DotProductNeighbors(n_neighbors=10).fit(items)
    approx = DotProductNeighbors(
        n_neighbors=10, backend="faiss", faiss_index=description, faiss_params=params
    ).fit(items)
    truth = exact.search(queries)[1]
    found = approx.search(queries)[1]
    recall = np.mean([np.isin(f, t).mean() for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9, recall
    assert found.shape == (200, 10) and (found >= 0).all()


def test_search_params_change_the_index(clustered):
    items, _ = clustered
    nn = DotProductNeighbors(
        backend="faiss", faiss_index="IVF16,Flat", faiss_params={"nprobe": 7}
    ).fit(items)
    assert faiss.extract_index_ivf(nn.index_).nprobe == 7


def test_pickle_round_trip_rebuilds_the_index(clustered):
    items, queries = clustered
    nn = DotProductNeighbors(
        backend="faiss", faiss_index="IVF16,Flat", faiss_params={"nprobe": 3}
    ).fit(items)
    before = nn.search(queries)
    loaded = pickle.loads(pickle.dumps(nn))
    assert isinstance(loaded.index_, faiss.Index)
    assert faiss.extract_index_ivf(loaded.index_).nprobe == 3
    after = loaded.search(queries)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert nn.index_ is not loaded.index_ and isinstance(nn.index_, faiss.Index)
    deep = copy.deepcopy(nn)
    np.testing.assert_array_equal(deep.search(queries)[1], before[1])


def test_clone_keeps_backend_params_not_the_index(corpus):
    nn = DotProductNeighbors(
        backend="faiss", faiss_index="HNSW8", faiss_params={"efSearch": 20}
    ).fit(corpus)
    twin = clone(nn)
    assert twin.get_params()["faiss_index"] == "HNSW8"
    assert twin.get_params()["faiss_params"] == {"efSearch": 20}
    assert not hasattr(twin, "index_")


def test_unknown_index_description_names_it():
    with pytest.raises(ValueError, match=r"faiss_index='Nonsense99'.*'HNSW32'"):
        DotProductNeighbors(backend="faiss", faiss_index="Nonsense99").fit(
            np.eye(4, dtype=np.float32)
        )


def test_unknown_search_parameter_names_it(corpus):
    with pytest.raises(ValueError, match=r"no parameter 'nprobe'.*'efSearch'"):
        DotProductNeighbors(
            backend="faiss", faiss_index="HNSW8", faiss_params={"nprobe": 4}
        ).fit(corpus)


def test_too_few_vectors_to_train_lists(corpus):
    with pytest.raises(ValueError, match=r"1024 lists but only 600 vectors"):
        DotProductNeighbors(backend="faiss", faiss_index="IVF1024,Flat").fit(corpus)


def test_backend_is_validated():
    with pytest.raises(ValueError, match=r"'backend' parameter.*'exact'"):
        DotProductNeighbors(backend="annoy").fit(np.eye(3))


def test_missing_faiss_says_how_to_install(monkeypatch, corpus):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'embedtasks\[faiss\]'"):
        DotProductNeighbors(backend="faiss").fit(corpus)
