"""Tests of OutlierScorer: scores, threshold, novelty semantics, explanations."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from embedtasks import OutlierScorer
from embedtasks.outliers import OutlierExplanation

METHODS = ["knn", "centroid", "mahalanobis", "lof"]


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _topics_with_strays(n_topics=4, per_topic=50, n_strays=6, dim=16, seed=0):
    """Tight topics plus a few items in unrelated directions (the last rows)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_topics, dim))
    y = np.repeat(np.arange(n_topics), per_topic)
    inliers = centers[y] + 0.25 * rng.standard_normal((y.size, dim))
    strays = rng.standard_normal((n_strays, dim))
    return _unit(np.vstack([inliers, strays])), np.r_[
        np.zeros(y.size), np.ones(n_strays)
    ]


def test_knn_score_is_minus_mean_distance_to_neighbors_without_itself():
    X = _unit([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    scorer = OutlierScorer(n_neighbors=2).fit(X)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    top2 = np.sort(S, axis=1)[:, -2:]
    np.testing.assert_allclose(
        scorer.training_scores_, top2.mean(axis=1) - 1, atol=1e-6
    )
    assert scorer.training_scores_.dtype == np.float64


@pytest.mark.parametrize("method", METHODS)
def test_every_method_ranks_strays_lowest(method):
    X, truth = _topics_with_strays()
    scores = OutlierScorer(method=method, n_neighbors=10).fit(X).training_scores_
    assert scores.shape == (X.shape[0],)
    # Global methods see one mean direction, not the topics: a weaker ranking.
    threshold = 0.99 if method in ("knn", "lof") else 0.8
    assert roc_auc_score(truth, -scores) > threshold


def test_lof_matches_sklearn_on_cosine_distance():
    X, _ = _topics_with_strays(seed=1)
    ours = OutlierScorer(method="lof", n_neighbors=10).fit(X).training_scores_
    ref = LocalOutlierFactor(n_neighbors=10, metric="cosine").fit(X)
    np.testing.assert_allclose(ours, ref.negative_outlier_factor_, rtol=1e-3)


def test_mahalanobis_and_centroid_scores():
    X, _ = _topics_with_strays(seed=2)
    maha = OutlierScorer(method="mahalanobis").fit(X)
    D = X.astype(np.float64) - maha.center_
    expected = -np.einsum("ij,jk,ik->i", D, maha.precision_.astype(np.float64), D)
    np.testing.assert_allclose(maha.training_scores_, expected, rtol=1e-4)
    cent = OutlierScorer(method="centroid").fit(X)
    direction = X.mean(axis=0) / np.linalg.norm(X.mean(axis=0))
    np.testing.assert_allclose(cent.training_scores_, X @ direction - 1, atol=1e-6)


def test_contamination_fraction_sets_offset_at_that_quantile():
    X, _ = _topics_with_strays()
    scorer = OutlierScorer(contamination=0.1)
    labels = scorer.fit_predict(X)
    assert labels.dtype.kind == "i" and set(labels.tolist()) == {-1, 1}
    assert np.sum(labels == -1) == round(0.1 * X.shape[0])
    assert scorer.offset_ == np.percentile(scorer.training_scores_, 10)


def test_auto_contamination_is_the_lower_tukey_fence():
    X, truth = _topics_with_strays()
    scorer = OutlierScorer()
    labels = scorer.fit_predict(X)
    q1, q3 = np.percentile(scorer.training_scores_, [25, 75])
    assert scorer.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    assert (labels[truth == 1] == -1).all()
    assert np.mean(labels[truth == 0] == -1) < 0.05


def test_novelty_scores_new_items_against_training_set():
    X, truth = _topics_with_strays()
    inliers, strays = X[truth == 0], X[truth == 1]
    scorer = OutlierScorer(novelty=True).fit(inliers[::2])
    new = np.vstack([inliers[1::2], strays])
    new_truth = np.r_[np.zeros(len(inliers[1::2])), np.ones(len(strays))]
    scores = scorer.score_samples(new)
    np.testing.assert_allclose(scorer.decision_function(new), scores - scorer.offset_)
    labels = scorer.predict(new)
    assert labels.dtype.kind == "i"
    assert (labels[new_truth == 1] == -1).all()
    assert np.mean(labels[new_truth == 0] == -1) < 0.15
    assert roc_auc_score(new_truth, -scores) == 1.0


def test_novelty_false_hides_new_data_methods():
    X, _ = _topics_with_strays()
    scorer = OutlierScorer().fit(X)
    for name in ("predict", "decision_function", "score_samples"):
        assert not hasattr(scorer, name)
        with pytest.raises(AttributeError) as excinfo:
            getattr(scorer, name)
        assert f"{name} is not available when novelty=False" in str(
            excinfo.value.__cause__
        )


def test_novelty_true_hides_fit_predict():
    with pytest.raises(AttributeError) as excinfo:
        OutlierScorer(novelty=True).fit_predict  # noqa: B018
    assert "fit_predict is not available when novelty=True" in str(
        excinfo.value.__cause__
    )


def test_explain_training_items_excludes_self():
    X, truth = _topics_with_strays()
    scorer = OutlierScorer(n_neighbors=5).fit(X)
    why = scorer.explain()
    assert isinstance(why, OutlierExplanation)
    assert why.indices.shape == (X.shape[0], 5) and why.similarities.shape == (
        X.shape[0],
        5,
    )
    assert not (why.indices == np.arange(X.shape[0])[:, None]).any()
    np.testing.assert_array_equal(why.scores, scorer.training_scores_)
    np.testing.assert_allclose(why.similarities.mean(axis=1) - 1, why.scores, atol=1e-6)
    # Strays have far less similar neighbours than inliers.
    assert why.similarities[truth == 1, 0].max() < why.similarities[truth == 0, 0].min()
    more = scorer.explain(n_neighbors=8)
    assert more.indices.shape == (X.shape[0], 8)
    np.testing.assert_array_equal(more.indices[:, :5], why.indices)


@pytest.mark.parametrize("method", ["centroid", "mahalanobis"])
def test_explain_works_for_global_methods_and_new_items(method):
    X, _ = _topics_with_strays()
    scorer = OutlierScorer(method=method, novelty=True).fit(X[:100])
    why = scorer.explain(X[100:103], n_neighbors=3)
    np.testing.assert_array_equal(why.scores, scorer.score_samples(X[100:103]))
    S = X[100:103] @ X[:100].T
    np.testing.assert_allclose(why.similarities, -np.sort(-S, axis=1)[:, :3], atol=1e-6)
    assert scorer.explain().indices.shape == (100, 10)


def test_explain_rejects_nonpositive_neighbors():
    scorer = OutlierScorer().fit(np.eye(3))
    with pytest.raises(
        ValueError, match=r"n_neighbors must be an int in the range \[1, inf\), got 0\."
    ):
        scorer.explain(n_neighbors=0)


def test_small_data_lowers_n_neighbors_without_warning():
    scorer = OutlierScorer(n_neighbors=10).fit(np.eye(4))
    assert scorer.n_neighbors_ == 3
    assert scorer.explain().indices.min() >= 0


def test_one_sample_is_rejected():
    with pytest.raises(ValueError, match="at least 2 samples to fit, got 1 sample"):
        OutlierScorer().fit([[1.0, 0.0]])


def test_bad_input_gets_clear_errors():
    scorer = OutlierScorer(novelty=True).fit(np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        scorer.score_samples([[np.nan, 0, 0, 0]])
    with pytest.raises(ValueError, match="expecting 4 features"):
        scorer.predict(np.ones((2, 5)))
    with pytest.raises(NotFittedError):
        OutlierScorer(novelty=True).predict(np.eye(4))


@pytest.mark.parametrize("contamination", [0.0, 0.6, -0.1, "high"])
def test_contamination_out_of_range_is_rejected(contamination):
    with pytest.raises(ValueError, match="'contamination' parameter of OutlierScorer"):
        OutlierScorer(contamination=contamination).fit(np.eye(4))


def test_pipeline_and_pickle():
    X, truth = _topics_with_strays()
    pipe = make_pipeline(FunctionTransformer(), OutlierScorer())
    labels = pipe.fit_predict(X)
    np.testing.assert_array_equal(labels, OutlierScorer().fit_predict(X))
    assert (labels[truth == 1] == -1).all()
    again = pickle.loads(pickle.dumps(pipe[-1]))
    np.testing.assert_array_equal(again.training_scores_, pipe[-1].training_scores_)


def test_float32_input_is_not_needed():
    X, _ = _topics_with_strays()
    s64 = OutlierScorer().fit(X.astype(np.float64)).training_scores_
    s32 = OutlierScorer().fit(X).training_scores_
    np.testing.assert_allclose(s64, s32, atol=1e-6)
