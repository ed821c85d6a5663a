from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from embedtasks import DotProductNeighbors, search_pipeline
from embedtasks._kernel import l2_normalize


@pytest.fixture
def corpus():
    return l2_normalize(np.random.default_rng(0).standard_normal((400, 12)))


def test_fit_stores_unit_float32_and_ids(corpus):
    nn = DotProductNeighbors().fit(corpus * 3.0, np.arange(400) * 10)
    assert nn.embeddings_.dtype == np.float32 and nn.embeddings_.shape == (400, 12)
    np.testing.assert_allclose(np.linalg.norm(nn.embeddings_, axis=1), 1, rtol=1e-6)
    assert nn.n_samples_fit_ == 400 and nn.n_features_in_ == 12
    assert nn.ids_[3] == 30


def test_fit_does_not_modify_the_callers_array(corpus):
    X = corpus * 2.0
    before = X.copy()
    DotProductNeighbors().fit(X)
    np.testing.assert_array_equal(X, before)


def test_kneighbors_matches_sklearn_brute_cosine(corpus):
    queries = corpus[:30] + 0.1
    dist, ind = DotProductNeighbors(n_neighbors=7).fit(corpus).kneighbors(queries)
    ref = NearestNeighbors(n_neighbors=7, algorithm="brute", metric="cosine").fit(
        corpus
    )
    ref_dist, ref_ind = ref.kneighbors(queries)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    assert dist.dtype == np.float32 and np.all(np.diff(dist, axis=1) >= 0)


def test_kneighbors_none_excludes_itself_like_sklearn(corpus):
    ind = (
        DotProductNeighbors(n_neighbors=4).fit(corpus).kneighbors(return_distance=False)
    )
    ref = NearestNeighbors(n_neighbors=4, algorithm="brute", metric="cosine").fit(
        corpus
    )
    np.testing.assert_array_equal(ind, ref.kneighbors(return_distance=False))
    assert not (ind == np.arange(400)[:, None]).any()


def test_search_returns_scores_descending_and_frame(corpus):
    nn = DotProductNeighbors(n_neighbors=3).fit(corpus, [f"doc{i}" for i in range(400)])
    scores, indices = nn.search(corpus[[5, 9]])
    assert indices[:, 0].tolist() == [5, 9]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        scores, np.take_along_axis(corpus[[5, 9]] @ corpus.T, indices, 1), rtol=1e-5
    )
    frame = nn.search(corpus[[5, 9]], as_frame=True)
    assert list(frame.columns) == ["query", "rank", "index", "id", "score"]
    assert frame.shape == (6, 5)
    assert frame["id"].tolist()[0] == "doc5" and frame["query"].tolist() == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]


def test_search_exclude_drops_seen_items_and_pads(corpus):
    nn = DotProductNeighbors(n_neighbors=3).fit(corpus[:4])
    scores, indices = nn.search(corpus[:1], exclude=[[0, 1]])
    assert set(indices[0, :2]) == {2, 3} and indices[0, 2] == -1
    frame = nn.search(corpus[:1], exclude=[[0, 1]], as_frame=True)
    assert "id" not in frame.columns and len(frame) == 2


def test_recommend_excludes_items_and_exclusions(corpus):
    nn = DotProductNeighbors(n_neighbors=10).fit(corpus)
    scores, indices = nn.recommend(42)
    brute = corpus @ corpus[42]
    brute[42] = -np.inf
    np.testing.assert_array_equal(indices, np.argsort(-brute, kind="stable")[:10])
    _, several = nn.recommend([1, 2, 3], exclude=[indices[0]])
    assert not set(several) & {1, 2, 3, int(indices[0])}
    assert np.all(np.diff(scores) <= 0)


def test_recommend_liked_items_use_mean_direction(corpus):
    nn = DotProductNeighbors(n_neighbors=5).fit(corpus)
    _, indices = nn.recommend([7, 8])
    query = l2_normalize(corpus[[7, 8]].mean(axis=0))
    brute = corpus @ query
    brute[[7, 8]] = -np.inf
    np.testing.assert_array_equal(indices, np.argsort(-brute, kind="stable")[:5])


def test_recommend_diversity_spreads_results():
    base = np.array([1.0, 0.0, 0.0])
    near = [base + [0, 0.01 * i, 0] for i in range(1, 6)]
    other = [[0.7, 0.7, 0.0], [0.7, 0.0, 0.7]]
    X = l2_normalize(np.vstack([base, near, other]))
    nn = DotProductNeighbors(n_neighbors=3).fit(X)
    _, plain = nn.recommend(0)
    _, varied = nn.recommend(0, diversity=0.7)
    assert set(plain) <= {1, 2, 3, 4, 5}
    assert {6, 7} & set(varied)
    frame = nn.recommend(0, diversity=0.7, as_frame=True)
    assert list(frame.columns) == ["rank", "index", "score"] and len(frame) == 3


def test_radius_neighbors_threshold_and_self_exclusion():
    X = l2_normalize([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    nn = DotProductNeighbors(radius=0.9).fit(X)
    dist, ind = nn.radius_neighbors()
    assert [i.tolist() for i in ind] == [[1], [0], []]
    np.testing.assert_allclose(dist[0], 1 - X[0] @ X[1], rtol=1e-5)
    ind = nn.radius_neighbors([[1.0, 0.0]], radius=-1.0, return_distance=False)
    assert ind[0].tolist() == [0, 1, 2]


def test_kneighbors_graph_modes(corpus):
    nn = DotProductNeighbors(n_neighbors=2).fit(corpus)
    conn = nn.kneighbors_graph()
    assert conn.shape == (400, 400) and conn.nnz == 800 and conn.diagonal().sum() == 0
    sim = nn.kneighbors_graph(corpus[:3], mode="similarity").toarray()
    np.testing.assert_allclose(sim.max(axis=1), 1.0, rtol=1e-6)
    dist = nn.transform(corpus[:3])
    np.testing.assert_allclose(dist.data, 1 - sim[sim != 0], atol=1e-6)
    with pytest.raises(ValueError, match=r"mode must be a str among .*got 'weights'"):
        nn.kneighbors_graph(mode="weights")


def test_pipeline_from_raw_text_with_search_pipeline():
    vocab = ["cat", "dog", "car", "bus"]

    def bag_of_words(texts):
        return np.array([[t.split().count(w) + 0.01 for w in vocab] for t in texts])

    texts = ["cat cat dog", "car bus bus", "dog dog", "bus car car"]
    pipe = make_pipeline(
        FunctionTransformer(bag_of_words), DotProductNeighbors(n_neighbors=2)
    )
    pipe.fit(texts, texts)
    frame = search_pipeline(pipe, ["my dog"])
    assert frame["id"].tolist() == ["dog dog", "cat cat dog"]
    scores, indices = search_pipeline(pipe, ["buses"], 1, as_frame=False)
    assert indices.shape == (1, 1)
    graph = pipe.transform(["a car"])
    assert graph.shape == (1, 4) and graph.nnz == 2


def test_search_pipeline_rejects_other_estimators():
    with pytest.raises(TypeError, match="needs a DotProductNeighbors"):
        search_pipeline(make_pipeline(FunctionTransformer()), ["x"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_neighbors": 0}, r"'n_neighbors' parameter of search_pipeline must be an"),
        ({"as_frame": "yes"}, r"'as_frame' parameter of search_pipeline must be an"),
        ({"queries": "one text"}, r"'queries' parameter of search_pipeline must be an"),
    ],
)
def test_search_pipeline_checks_its_arguments(corpus, kwargs, message):
    nn = DotProductNeighbors().fit(corpus)
    arguments = {"model": nn, "queries": corpus[:1], **kwargs}
    with pytest.raises(ValueError, match=message):
        search_pipeline(**arguments)


def test_clone_and_pickle_round_trip(corpus):
    nn = DotProductNeighbors(n_neighbors=3, normalize=False).fit(corpus)
    again = pickle.loads(pickle.dumps(nn))
    np.testing.assert_array_equal(
        again.kneighbors(corpus[:5])[1], nn.kneighbors(corpus[:5])[1]
    )
    assert clone(nn).get_params() == nn.get_params()


def test_normalize_false_is_maximum_inner_product():
    X = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]], np.float32)
    _, ind = (
        DotProductNeighbors(n_neighbors=1, normalize=False).fit(X).search([[1.0, 0.0]])
    )
    assert ind[0, 0] == 1
    _, ind = DotProductNeighbors(n_neighbors=1).fit(X).search([[1.0, 0.0]])
    assert ind[0, 0] == 0


def test_float64_and_list_input_give_float32():
    nn = DotProductNeighbors(n_neighbors=1).fit([[1, 0], [0, 1]])
    scores, _ = nn.search(np.array([[1.0, 0.0]]))
    assert scores.dtype == np.float32


@pytest.mark.parametrize(
    ("X", "match"),
    [
        ([[np.nan, 1.0], [1.0, 0.0]], "Input X contains NaN"),
        ([[np.inf, 1.0], [1.0, 0.0]], "Input X contains infinity"),
        (np.empty((0, 3)), "0 sample"),
        ([["a", "b"]], "could not convert|dtype"),
        ([1.0, 2.0], "Expected 2D array, got 1D array"),
    ],
)
def test_fit_rejects_bad_embeddings(X, match):
    with pytest.raises(ValueError, match=match):
        DotProductNeighbors().fit(X)


def test_query_with_wrong_width_names_both_widths(corpus):
    nn = DotProductNeighbors().fit(corpus)
    with pytest.raises(
        ValueError, match="X has 5 features, but DotProductNeighbors is expecting 12"
    ):
        nn.search(np.ones((1, 5)))
    with pytest.raises(ValueError, match="contains NaN"):
        nn.kneighbors([[np.nan] * 12])


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_n_neighbors_at_call_time(corpus, k):
    nn = DotProductNeighbors().fit(corpus)
    with pytest.raises(
        ValueError,
        match=rf"n_neighbors must be an int in the range \[1, inf\), got {k}\.",
    ):
        nn.kneighbors(corpus[:1], n_neighbors=k)


def test_constructor_parameter_validated_at_fit(corpus):
    with pytest.raises(
        ValueError, match="'n_neighbors' parameter of DotProductNeighbors"
    ):
        DotProductNeighbors(n_neighbors=0).fit(corpus)


def test_k_larger_than_fitted_points_is_a_clear_error():
    nn = DotProductNeighbors(n_neighbors=3).fit(np.eye(3))
    with pytest.raises(
        ValueError, match="Expected n_neighbors <= 2 .*other than the query"
    ):
        nn.kneighbors()
    with pytest.raises(ValueError, match="Expected n_neighbors <= 3"):
        nn.kneighbors(np.eye(3), n_neighbors=4)


def test_recommend_bad_items(corpus):
    nn = DotProductNeighbors().fit(corpus)
    with pytest.raises(IndexError, match=r"outside the 400 fitted rows"):
        nn.recommend(400)
    with pytest.raises(TypeError, match="fitted row indices"):
        nn.recommend("doc 1")
    with pytest.raises(ValueError, match="items is empty"):
        nn.recommend([])
    with pytest.raises(
        ValueError,
        match=r"diversity must be a float in the range \[0.0, 1.0\], got 2.0",
    ):
        nn.recommend(1, diversity=2.0)
    with pytest.raises(ValueError, match=r"n_neighbors must be an int .*, got 0\."):
        nn.recommend(1, n_neighbors=0)


def test_ids_length_mismatch(corpus):
    with pytest.raises(ValueError, match="one id per row of X"):
        DotProductNeighbors().fit(corpus, ["a", "b"])


def test_radius_must_be_finite(corpus):
    nn = DotProductNeighbors().fit(corpus)
    with pytest.raises(
        ValueError, match=r"radius must be a float in the range \(-inf, inf\), got nan"
    ):
        nn.radius_neighbors(corpus[:1], radius=np.nan)


def test_unfitted_methods_raise_not_fitted():
    nn = DotProductNeighbors()
    for call in (
        lambda: nn.kneighbors([[1.0]]),
        lambda: nn.search([[1.0]]),
        lambda: nn.recommend(0),
        lambda: nn.radius_neighbors([[1.0]]),
        lambda: nn.transform([[1.0]]),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_unicode_ids_survive_in_frame():
    nn = DotProductNeighbors(n_neighbors=1).fit(np.eye(2), ["café ☕", "日本語"])
    frame = nn.search([[0.0, 1.0]], as_frame=True)
    assert isinstance(frame, pd.DataFrame) and frame["id"].iloc[0] == "日本語"


def _mapped_corpus(path, rows):
    rows.astype(np.float32).tofile(path)
    return np.memmap(path, dtype=np.float32, mode="r", shape=rows.shape)


def _unit_rows(n, d, seed):
    rows = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_pickle_over_a_rewritten_mapped_file_is_refused(tmp_path):
    import os

    path = tmp_path / "corpus.f32"
    nn = DotProductNeighbors(n_neighbors=3).fit(
        _mapped_corpus(path, _unit_rows(50, 8, 0))
    )
    blob = pickle.dumps(nn)
    stat = path.stat()
    _unit_rows(50, 8, 1).tofile(path)  # rewritten at the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the same time
    with pytest.raises(ValueError, match=r"corpus.f32 changed since .*content"):
        pickle.loads(blob)


def test_pickle_over_a_mapped_file_with_a_nan_row_is_refused(tmp_path):
    path = tmp_path / "corpus.f32"
    rows = _unit_rows(50, 8, 0)
    nn = DotProductNeighbors(n_neighbors=3).fit(_mapped_corpus(path, rows))
    blob = pickle.dumps(nn)
    rows[17] = np.nan
    rows.tofile(path)
    with pytest.raises(ValueError, match="changed since"):
        pickle.loads(blob)


def test_pickle_over_an_unchanged_mapped_file_round_trips(tmp_path):
    path = tmp_path / "corpus.f32"
    X = _mapped_corpus(path, _unit_rows(50, 8, 0))
    nn = DotProductNeighbors(n_neighbors=3).fit(X)
    again = pickle.loads(pickle.dumps(nn))
    np.testing.assert_array_equal(again.kneighbors(X[:5])[1], nn.kneighbors(X[:5])[1])


def test_mapped_corpus_with_a_nan_row_is_refused_naming_it(tmp_path):
    rows = _unit_rows(50, 8, 0)
    rows[17] = np.nan
    with pytest.raises(ValueError, match="Row 17 of the memory-mapped corpus"):
        DotProductNeighbors().fit(_mapped_corpus(tmp_path / "c.f32", rows))


@pytest.mark.parametrize("estimator", ["DotProductNeighbors", "OutlierScorer"])
def test_n_jobs_minus_one_is_every_core_and_zero_is_refused(estimator):
    import embedtasks

    X = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    cls = getattr(embedtasks, estimator)
    cls(n_jobs=-1).fit(X)
    with pytest.raises(ValueError, match=r"'n_jobs' parameter .* Got 0 instead"):
        cls(n_jobs=0).fit(X)
