"""Tests of NearestLabelClassifier: few-shot, zero-shot, blend, calibration, API."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from embedtasks import NearestLabelClassifier

DIM = 32
#: Tests of other behaviour on a few rows, where fit says probabilities are a guess.
UNCALIBRATED_IS_EXPECTED = pytest.mark.filterwarnings(
    "ignore:NearestLabelClassifier. predict_proba is not calibrated"
)


class HashingEmbedder(TransformerMixin, BaseEstimator):
    """Deterministic texts -> unit float32 rows: the sum of one fixed random vector
    per word (seeded by sha256 of the word), normalised."""

    def __init__(self, dim=DIM):
        self.dim = dim

    def fit(self, X, y=None):
        self.n_calls_ = 0
        return self

    def transform(self, X):
        self.n_calls_ += 1
        rows = []
        for text in X:
            v = np.zeros(self.dim)
            for word in str(text).lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8])
                v += np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def _clusters(n_per_class=20, n_classes=3, noise=0.3, seed=0, dim=DIM):
    """Unit rows around ``n_classes`` random directions, labels 'c0', 'c1', ..."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + noise * rng.standard_normal((y.size, dim)) * np.sqrt(dim) / 4
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.array([f"c{i}" for i in y])


def _near(embedder, texts, noise, seed=0):
    """Embeddings of ``texts`` plus noise: documents 'about' those texts."""
    rng = np.random.default_rng(seed)
    Z = embedder.fit(texts).transform(texts).astype(np.float64)
    Z = Z + noise * rng.standard_normal(Z.shape) / np.sqrt(Z.shape[1])
    return (Z / np.linalg.norm(Z, axis=1, keepdims=True)).astype(np.float32)


def _named_topics(shots):
    """Documents about four named topics, and ``shots`` examples of the first
    three (the fourth, "lost card", has none)."""
    emb = HashingEmbedder()
    labels = ["card arrival", "top up", "exchange rate", "lost card"]
    rng = np.random.default_rng(0)
    y_idx = rng.integers(0, 4, 400)
    X = _near(emb, [labels[i] for i in y_idx], noise=1.2)
    y = np.array(labels)[y_idx]
    few = np.concatenate([np.flatnonzero(y_idx == c)[:shots] for c in range(3)])
    return emb, labels, X, y, few


def test_centroid_fit_predict_shapes_and_dtypes():
    X, y = _clusters()
    clf = NearestLabelClassifier().fit(X, y)
    assert clf.classes_.tolist() == ["c0", "c1", "c2"]
    assert clf.centroids_.dtype == np.float32 and clf.centroids_.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(clf.centroids_, axis=1), 1, rtol=1e-5)
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert clf.score(X, y) == 1.0
    np.testing.assert_array_equal(clf.class_counts_, [20, 20, 20])


def test_centroid_is_the_normalised_mean_direction():
    X = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0], [-1.0, 0.2]])
    clf = NearestLabelClassifier().fit(X, [0, 0, 1, 1])
    expected = np.array([[1.0, 1.0], [-1.0, -1.0 + 0.2 / np.hypot(1, 0.2)]])
    expected[1, 0] = -1 / np.hypot(1, 0.2)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(clf.centroids_, expected, rtol=1e-5)


def test_knn_follows_classes_that_are_not_one_blob():
    # Class "a" sits at two opposite poles; class "b" sits near the middle, where
    # the mean direction of "a" is: only per-class nearest examples get it right.
    rng = np.random.default_rng(0)
    poles = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    a = np.repeat(poles, 10, axis=0) + 0.05 * rng.standard_normal((20, 3))
    b = np.array([0.0, 1.0, 0.0]) + 0.3 * rng.standard_normal((20, 3))
    X = np.vstack([a, b])
    y = np.array(["a"] * 20 + ["b"] * 20)
    queries = np.array([[0.95, 0.3, 0.0], [-0.95, 0.3, 0.0]])
    centroid = NearestLabelClassifier(method="centroid").fit(X, y)
    assert centroid.predict(queries).tolist() == ["b", "b"]
    knn = NearestLabelClassifier(method="knn", n_neighbors=3).fit(X, y)
    assert knn.predict(queries).tolist() == ["a", "a"]
    auto = NearestLabelClassifier().fit(X, y)  # the evidence says knn or linear
    assert auto.cv_scores_["centroid"] < max(auto.cv_scores_.values())
    assert auto.method_ != "centroid"
    assert auto.predict(queries).tolist() == ["a", "a"]


def test_knn_class_score_is_the_similarity_weighted_vote():
    X = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, -0.8], [-1.0, 0.0]])
    y = [0, 0, 0, 1, 1]
    clf = NearestLabelClassifier(method="knn", n_neighbors=3).fit(X, y)
    assert clf.n_neighbors_ == 3
    scores = clf.decision_function([[1.0, 0.0]])
    # neighbours 1.0 (class 0), 0.8 (class 0), 0.6 (class 1); binary: 1 minus 0
    np.testing.assert_allclose(scores, [(0.6 - 1.8) / 3], rtol=1e-6)


def test_auto_neighbour_count_is_chosen_by_cross_validation():
    X, y = _clusters(n_per_class=40, noise=0.9)
    clf = NearestLabelClassifier(method="knn").fit(X, y)
    assert clf.n_neighbors_ in (3, 10, 30)
    fixed = NearestLabelClassifier(method="knn", n_neighbors=7).fit(X, y)
    assert fixed.n_neighbors_ == 7


def test_temperature_is_fitted_and_calibrates():
    X, y = _clusters(n_per_class=60, n_classes=4, noise=0.9)
    X_test, y_test = _clusters(n_per_class=200, n_classes=4, noise=0.9, seed=0)
    fitted = NearestLabelClassifier().fit(X, y)
    assert 1e-3 < fitted.temperature_ < 10
    assert fitted.temperature_ != pytest.approx(0.05)

    def log_loss(clf):
        proba = clf.predict_proba(X_test)
        return -np.mean(
            np.log(proba[np.arange(y_test.size), clf._index_of(y_test, what="y")])
        )

    sharp = NearestLabelClassifier(temperature=fitted.temperature_ / 4).fit(X, y)
    soft = NearestLabelClassifier(temperature=fitted.temperature_ * 4).fit(X, y)
    assert log_loss(fitted) < log_loss(sharp)
    assert log_loss(fitted) < log_loss(soft)


def test_singleton_class_stays_out_of_calibration():
    # "b" has one example: held out, it has nothing left to be recognised by, so
    # that row is left out of the temperature fit (its score is -inf), not NaN.
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0]])
    clf = NearestLabelClassifier(method="centroid").fit(X, ["a", "a", "a", "b"])
    assert np.isfinite(clf.temperature_) and clf.temperature_ > 0
    assert clf.cv_scores_ == {"centroid": 0.75}


def test_fixed_temperature_is_used_verbatim():
    X, y = _clusters()
    clf = NearestLabelClassifier(temperature=0.2).fit(X, y)
    assert clf.temperature_ == 0.2
    S = clf.decision_function(X[:2]) / 0.2
    expected = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X[:2]), expected, rtol=1e-6)
    np.testing.assert_allclose(
        clf.predict_log_proba(X[:2]), np.log(expected), rtol=1e-6
    )


def test_binary_decision_function_is_one_column():
    X, y = _clusters(n_classes=2)
    clf = NearestLabelClassifier().fit(X, y)
    scores = clf.decision_function(X)
    assert scores.shape == (40,)
    assert ((scores > 0) == (clf.predict(X) == "c1")).all()


def test_zero_shot_from_label_names_without_examples():
    emb = HashingEmbedder()
    labels = ["refund request", "card lost", "exchange rate"]
    docs = _near(emb, [labels[i] for i in [0, 1, 2, 2, 1, 0]], noise=0.5)
    clf = NearestLabelClassifier(embedder=emb, labels=labels, hub_correction=0)
    with pytest.warns(UserWarning, match=r"not calibrated.*6 rows are too few"):
        clf.fit(docs)
    assert clf.predict(docs).tolist() == [labels[i] for i in [0, 1, 2, 2, 1, 0]]
    assert clf.method_ == "zero-shot" and clf.cv_scores_ == {}
    assert clf.calibrated_ is False and clf.expected_accuracy_ is None
    spread = np.std(docs @ clf.label_embeddings_.T, axis=1).mean()
    assert clf.temperature_ == pytest.approx(0.40 * spread, rel=1e-5)
    assert clf.label_embeddings_.shape == (3, DIM)
    assert clf.class_counts_.tolist() == [0, 0, 0]
    # The no-data path: X=None, width from the label embeddings.
    no_data = NearestLabelClassifier(embedder=emb, labels=labels)
    with pytest.warns(UserWarning, match=r"not calibrated.*0 rows are too few"):
        no_data.fit(None)
    assert no_data.n_features_in_ == DIM and no_data.temperature_ == 0.05
    assert no_data.label_bias_.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(no_data.predict(docs), clf.predict(docs))


@UNCALIBRATED_IS_EXPECTED
def test_zero_shot_knn_method_uses_label_embeddings():
    emb = HashingEmbedder()
    labels = ["alpha beta", "gamma delta"]
    docs = _near(emb, labels, noise=0.3)
    clf = NearestLabelClassifier(method="knn", embedder=emb, labels=labels).fit(docs)
    assert clf.predict(docs).tolist() == labels


@UNCALIBRATED_IS_EXPECTED
def test_template_and_descriptions_change_the_embedded_text():
    emb = HashingEmbedder().fit(["x"])
    clf = NearestLabelClassifier(
        embedder=emb,
        labels=["a", "b"],
        label_descriptions={"b": "bravo words"},
        template="about {label}",
    ).fit(None)
    expected = emb.transform(["about a", "about bravo words"])
    np.testing.assert_allclose(clf.label_embeddings_, expected, rtol=1e-6)
    listed = NearestLabelClassifier(
        embedder=emb, labels=["b", "a"], label_descriptions=["bravo words", "alfa"]
    ).fit(None)
    np.testing.assert_allclose(
        listed.label_embeddings_, emb.transform(["alfa", "bravo words"]), rtol=1e-6
    )
    from_dict = NearestLabelClassifier(
        embedder=emb, label_descriptions={"b": "bravo words", "a": "alfa"}
    ).fit(None)
    assert from_dict.classes_.tolist() == ["a", "b"]
    np.testing.assert_allclose(
        from_dict.label_embeddings_, listed.label_embeddings_, rtol=1e-6
    )


@UNCALIBRATED_IS_EXPECTED
def test_fitted_embedder_is_reused_unfitted_one_is_cloned():
    fitted = HashingEmbedder().fit(["x"])
    NearestLabelClassifier(embedder=fitted, labels=["a", "b"]).fit(None)
    assert fitted.n_calls_ == 1
    unfitted = HashingEmbedder()
    NearestLabelClassifier(embedder=unfitted, labels=["a", "b"]).fit(None)
    assert not hasattr(unfitted, "n_calls_")  # the clone was fitted, not the param


@UNCALIBRATED_IS_EXPECTED
def test_label_prior_helps_few_shot_and_covers_classes_without_examples():
    emb, labels, X, y, few = _named_topics(shots=1)
    alone = NearestLabelClassifier().fit(X[few], y[few])
    blended = NearestLabelClassifier(embedder=emb, labels=labels, prior_weight=2.0).fit(
        X[few], y[few]
    )
    assert blended.class_counts_.tolist() == [1, 1, 0, 1]  # sorted: card, exch, lost
    assert "lost card" not in alone.classes_
    assert "lost card" in blended.predict(X)
    assert blended.score(X, y) > alone.score(X, y) + 0.1
    for method in ("centroid", "knn"):
        no_prior = NearestLabelClassifier(
            method=method, embedder=emb, labels=labels, prior_weight=0.0
        ).fit(X[few], y[few])
        # Classes with examples ignore their label; the one without still uses it.
        kept = NearestLabelClassifier(method=method).fit(X[few], y[few])
        shared = np.isin(no_prior.classes_, kept.classes_)
        np.testing.assert_allclose(
            no_prior.decision_function(X)[:, shared],
            kept.decision_function(X),
            rtol=1e-5,
            atol=1e-6,
        )


def test_abstain_threshold_returns_abstain_label():
    X, y = _clusters(noise=0.9)
    base = NearestLabelClassifier().fit(X, y)
    confidence = base.predict_proba(X).max(axis=1)
    cut = float(np.median(confidence))
    clf = NearestLabelClassifier(abstain_threshold=cut, abstain_label="unsure")
    pred = clf.fit(X, y).predict(X)
    assert ((pred == "unsure") == (confidence < cut)).all()
    assert (pred[confidence >= cut] == base.predict(X)[confidence >= cut]).all()
    numeric = NearestLabelClassifier(abstain_threshold=1.0).fit(X, y).predict(X[:3])
    assert numeric.dtype == object and numeric.tolist() == [-1, -1, -1]


def test_pipeline_with_embedder_and_cross_val_score():
    emb = HashingEmbedder()
    topics = ["cheap flights", "pasta recipe", "football match"]
    rng = np.random.default_rng(0)
    texts, y = [], []
    extras = ["today", "please", "now", "again", "best", "quick", "good", "new"]
    for _ in range(60):
        t = int(rng.integers(0, 3))
        texts.append(f"{topics[t]} {' '.join(rng.choice(extras, 2))}")
        y.append(t)
    scores = cross_val_score(
        make_pipeline(HashingEmbedder(), NearestLabelClassifier()), texts, y, cv=3
    )
    assert scores.mean() > 0.9
    zero_shot = make_pipeline(
        emb, NearestLabelClassifier(embedder=emb, labels=topics)
    ).fit(texts)
    assert zero_shot.score(texts, np.array(topics)[y]) > 0.9
    clone(zero_shot)
    again = pickle.loads(pickle.dumps(zero_shot))
    np.testing.assert_array_equal(again.predict(texts), zero_shot.predict(texts))


def test_not_fitted_raises():
    with pytest.raises(NotFittedError):
        NearestLabelClassifier().predict([[1.0, 0.0]])


def test_nan_and_wrong_width_are_rejected():
    X, y = _clusters()
    clf = NearestLabelClassifier().fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((1, DIM), np.nan))
    with pytest.raises(ValueError, match=f"expecting {DIM} features"):
        clf.predict(np.ones((1, DIM + 1)))


def test_unknown_label_in_y_is_rejected():
    emb = HashingEmbedder()
    X = np.eye(3, DIM, dtype=np.float32)
    clf = NearestLabelClassifier(embedder=emb, labels=["a", "b"])
    with pytest.raises(
        ValueError, match=r"y holds labels that are not in labels: \['z'\]"
    ):
        clf.fit(X, ["a", "z", "b"])


def test_unknown_label_in_descriptions_is_rejected():
    clf = NearestLabelClassifier(
        embedder=HashingEmbedder(), labels=["a"], label_descriptions={"q": "text"}
    )
    with pytest.raises(ValueError, match=r"label_descriptions holds labels .*\['q'\]"):
        clf.fit(None)


def test_labels_without_embedder_are_rejected():
    with pytest.raises(ValueError, match="no embedder to embed them"):
        NearestLabelClassifier(labels=["a", "b"]).fit(None)


def test_template_without_placeholder_is_rejected():
    clf = NearestLabelClassifier(
        embedder=HashingEmbedder(), labels=["a"], template="about it"
    )
    with pytest.raises(ValueError, match=r"template must contain '\{label\}'"):
        clf.fit(None)


def test_description_list_needs_labels_of_same_length():
    emb = HashingEmbedder()
    with pytest.raises(ValueError, match="needs labels= to say which label"):
        NearestLabelClassifier(embedder=emb, label_descriptions=["x"]).fit(None)
    with pytest.raises(ValueError, match="has 1 texts but labels has 2 entries"):
        NearestLabelClassifier(
            embedder=emb, labels=["a", "b"], label_descriptions=["x"]
        ).fit(None)


def test_empty_labels_are_rejected():
    with pytest.raises(ValueError, match="labels is empty"):
        NearestLabelClassifier(embedder=HashingEmbedder(), labels=[]).fit(None)


def test_embedder_of_other_width_is_rejected():
    clf = NearestLabelClassifier(embedder=HashingEmbedder(dim=8), labels=["a", "b"])
    with pytest.raises(ValueError, match="label embeddings of width 8, but X has 32"):
        clf.fit(np.eye(2, DIM))


def test_embedder_returning_garbage_is_rejected():
    class Broken(HashingEmbedder):
        def transform(self, X):
            return np.zeros((1, 3))

    clf = NearestLabelClassifier(embedder=Broken(), labels=["a", "b"])
    with pytest.raises(ValueError, match=r"map 2 label texts .* got shape \(1, 3\)"):
        clf.fit(None)


def test_missing_y_without_labels_uses_sklearn_message():
    with pytest.raises(ValueError, match="requires y to be passed"):
        NearestLabelClassifier().fit(np.eye(3))


def test_bad_parameters_are_rejected_by_sklearn():
    with pytest.raises(ValueError, match="'temperature' parameter"):
        NearestLabelClassifier(temperature=0).fit([[1.0]], [0])
    with pytest.raises(ValueError, match="'method' parameter"):
        NearestLabelClassifier(method="svm").fit([[1.0]], [0])


# --------------------------------------------------------------- method="auto"
def test_auto_records_its_evidence_and_takes_the_best_head():
    X, y = _clusters(n_per_class=30, noise=0.9)
    clf = NearestLabelClassifier().fit(X, y)
    assert set(clf.cv_scores_) == {"centroid", "knn", "linear"}
    assert all(0.0 <= v <= 1.0 for v in clf.cv_scores_.values())
    best = max(clf.cv_scores_.values())
    assert clf.cv_scores_[clf.method_] == best
    # Ties go to the simpler head, in the order centroid, knn, linear.
    first = next(h for h in ("centroid", "knn", "linear") if clf.cv_scores_[h] == best)
    assert clf.method_ == first


def test_fixed_method_cross_validates_only_that_head():
    X, y = _clusters()
    clf = NearestLabelClassifier(method="knn").fit(X, y)
    assert clf.method_ == "knn" and list(clf.cv_scores_) == ["knn"]
    fixed = NearestLabelClassifier(method="linear", temperature=1.0).fit(X, y)
    assert fixed.method_ == "linear" and fixed.cv_scores_ == {}
    assert fixed.temperature_ == 1.0


def test_auto_prefers_the_linear_head_where_only_a_hyperplane_separates():
    # Two classes that differ only along one axis, buried under wide shared noise
    # on the others: the centroids and neighbours see mostly noise, the linear
    # head finds the axis.
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 16)) * 3.0
    X[:, 0] = np.where(y == 1, 1.0, -1.0) * 0.6 + 0.2 * rng.standard_normal(n)
    X[:, 1] += 8.0  # every row points roughly the same way
    clf = NearestLabelClassifier().fit(X, y)
    assert clf.method_ == "linear"
    assert clf.cv_scores_["linear"] > clf.cv_scores_["centroid"] + 0.1
    assert clf.cv_scores_["linear"] > clf.cv_scores_["knn"] + 0.1


def test_linear_head_scores_are_the_logistic_regression_logits():
    X, y = _clusters(n_per_class=30, n_classes=4, noise=0.9)
    clf = NearestLabelClassifier(method="linear").fit(X, y)
    assert clf.linear_ is not None
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(
        clf.decision_function(X),
        clf.linear_.decision_function(Xn),
        rtol=1e-4,
        atol=1e-4,
    )
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[clf.linear_.predict(Xn)])


@pytest.mark.parametrize("method", ["centroid", "knn", "linear", "zero-shot"])
def test_predict_proba_is_bit_identical_in_any_batches(method):
    X, y = _clusters(n_per_class=40, n_classes=5, noise=0.9)
    X_new, _ = _clusters(n_per_class=40, n_classes=5, noise=0.9, seed=1)
    if method == "zero-shot":
        emb = HashingEmbedder()
        names = ["alpha", "beta", "gamma delta", "epsilon", "zeta eta"]
        X = _near(emb, names * 40, noise=0.8)
        clf = NearestLabelClassifier(embedder=emb, labels=names).fit(X)
        X_new = _near(emb, names * 40, noise=0.8, seed=1)
    else:
        clf = NearestLabelClassifier(method=method).fit(X, y)
    whole = clf.predict_proba(X_new)
    rng = np.random.default_rng(0)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(X_new)), 4, replace=False))
        pieces = [clf.predict_proba(part) for part in np.split(X_new, cuts)]
        np.testing.assert_array_equal(np.vstack(pieces), whole)
        single = [clf.predict_proba(X_new[i : i + 1]) for i in (0, 57, 199)]
        np.testing.assert_array_equal(np.vstack(single), whole[[0, 57, 199]])
    assert whole.dtype == np.float64 and whole.shape == (len(X_new), 5)


def test_groups_keep_near_copies_out_of_their_own_evaluation():
    # Random labels, every row twice. Copies far apart in the input: the copy is
    # often in the training part and the nearest neighbour looks good; split by
    # group, it is chance (1/3).
    rng = np.random.default_rng(0)
    base = rng.standard_normal((60, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    X, y = np.vstack([base, base]), np.concatenate([labels, labels])
    groups = np.tile(np.arange(60), 2)
    leaky = NearestLabelClassifier(method="knn", n_neighbors=1).fit(X, y)
    honest = NearestLabelClassifier(method="knn", n_neighbors=1).fit(X, y, groups)
    assert leaky.cv_scores_["knn"] > 0.6
    assert honest.cv_scores_["knn"] < 0.5


def test_default_folds_keep_neighbouring_rows_together():
    # The same copies next to each other (chunks of one document usually are):
    # contiguous folds within each class keep them on one side.
    rng = np.random.default_rng(0)
    base = rng.standard_normal((60, 8)).astype(np.float32)
    X, y = np.repeat(base, 2, axis=0), np.repeat(rng.integers(0, 3, 60), 2)
    clf = NearestLabelClassifier(method="knn", n_neighbors=1).fit(X, y)
    assert clf.cv_scores_["knn"] < 0.5


def test_groups_of_the_wrong_shape_or_a_single_group_are_rejected():
    X, y = _clusters()
    with pytest.raises(ValueError, match="one group per row of X: got shape \\(3,\\)"):
        NearestLabelClassifier().fit(X, y, groups=[0, 1, 2])
    with pytest.raises(ValueError, match="a single group"):
        NearestLabelClassifier().fit(X, y, groups=np.zeros(len(y)))


def test_label_prior_joins_the_linear_head():
    emb, labels, X, y, few = _named_topics(shots=2)
    clf = NearestLabelClassifier(method="linear", embedder=emb, labels=labels)
    clf.fit(X[few], y[few])
    assert "lost card" in clf.predict(X)  # a class known only by its name
    alone = NearestLabelClassifier(method="linear").fit(X[few], y[few])
    assert clf.score(X, y) > alone.score(X, y) + 0.1


# ------------------------------------------------------------------ abstaining
def test_target_precision_sets_the_threshold_from_held_out_folds():
    X, y = _clusters(n_per_class=80, n_classes=4, noise=1.6)
    X_new, y_new = _clusters(n_per_class=300, n_classes=4, noise=1.6, seed=0)
    plain = NearestLabelClassifier().fit(X, y)
    assert plain.abstain_threshold_ is None
    clf = NearestLabelClassifier(target_precision=0.95, abstain_label="unsure")
    clf.fit(X, y)
    assert 0 < clf.abstain_threshold_ < 1
    pred = clf.predict(X_new)
    kept = pred != "unsure"
    assert 0.05 < kept.mean() < 0.95  # it abstains on some rows, not all
    assert np.mean(pred[kept] == y_new[kept]) > 0.9
    assert np.mean(plain.predict(X_new) == y_new) < 0.9  # so abstaining helped


def test_unreachable_target_precision_warns_and_abstains_everywhere():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8))
    y = rng.integers(0, 3, 60)  # labels unrelated to X
    clf = NearestLabelClassifier(target_precision=0.999)
    with pytest.warns(UserWarning, match="No probability threshold reaches"):
        clf.fit(X, y)
    assert (clf.predict(X) == -1).all()


def test_target_precision_with_abstain_threshold_or_without_examples_is_rejected():
    X, y = _clusters()
    both = NearestLabelClassifier(target_precision=0.9, abstain_threshold=0.5)
    with pytest.raises(ValueError, match="set one of them"):
        both.fit(X, y)
    zero_shot = NearestLabelClassifier(
        embedder=HashingEmbedder(), labels=["a", "b"], target_precision=0.9
    )
    with pytest.raises(ValueError, match="needs labelled examples"):
        zero_shot.fit(None)
    one_row = NearestLabelClassifier(target_precision=0.9)
    with pytest.raises(ValueError, match="too few examples to cross-validate"):
        one_row.fit(X[:1], y[:1])


# ------------------------------------------------------------------ explain
def test_explain_lists_nearest_examples_of_the_predicted_class():
    X, y = _clusters(n_per_class=20, n_classes=3, noise=0.9)
    clf = NearestLabelClassifier(method="centroid").fit(X, y)
    X_new = X[[0, 25, 50]] + 0.01
    table = clf.explain(X_new, n_examples=2)
    assert list(table.columns) == [
        "row",
        "prediction",
        "probability",
        "kind",
        "label",
        "example",
        "similarity",
        "score",
    ]
    assert len(table) == 6 and set(table["kind"]) == {"example"}
    assert (table["label"] == table["prediction"]).all()
    assert (y[table["example"]] == table["prediction"]).all()  # user's row numbers
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = X_new / np.linalg.norm(X_new, axis=1, keepdims=True)
    expected = np.sum(Qn[table["row"]] * Xn[table["example"]], axis=1)
    np.testing.assert_allclose(table["similarity"], expected, rtol=1e-5)
    first = table[table["row"] == 0]
    assert first["similarity"].is_monotonic_decreasing
    nearest = np.argmax(np.where(y == first["prediction"].iloc[0], Xn @ Qn[0], -2))
    assert first["example"].iloc[0] == nearest
    np.testing.assert_allclose(
        table.groupby("row")["probability"].first(),
        clf.predict_proba(X_new).max(axis=1),
    )


@UNCALIBRATED_IS_EXPECTED
def test_explain_zero_shot_lists_the_best_labels_with_their_correction():
    emb = HashingEmbedder()
    labels = ["refund request", "card lost", "exchange rate"]
    docs = _near(emb, labels * 3, noise=0.5)
    clf = NearestLabelClassifier(embedder=emb, labels=labels).fit(docs)
    table = clf.explain(docs[:2], n_examples=2)
    assert len(table) == 4 and set(table["kind"]) == {"label"}
    assert (table["example"] == -1).all()
    top = table.groupby("row").first()
    assert (top["label"] == top["prediction"]).all()
    col = np.searchsorted(clf.classes_, table["label"])
    np.testing.assert_allclose(
        table["score"] - table["similarity"], clf.label_bias_[col], atol=1e-6
    )


def test_explain_with_labels_adds_the_label_similarity():
    emb = HashingEmbedder()
    labels = ["alpha beta", "gamma delta"]
    X = _near(emb, labels * 5, noise=0.5)
    y = np.array(labels * 5)
    clf = NearestLabelClassifier(method="knn", embedder=emb, labels=labels).fit(X, y)
    table = clf.explain(X[:1], n_examples=3)
    assert table["kind"].tolist() == ["example"] * 3 + ["label"]


def test_explain_rejects_bad_n_examples_and_checks_the_fit():
    X, y = _clusters()
    with pytest.raises(NotFittedError):
        NearestLabelClassifier().explain(X)
    clf = NearestLabelClassifier().fit(X, y)
    with pytest.raises(ValueError, match="n_examples must be a positive int, got 0"):
        clf.explain(X, n_examples=0)
    with pytest.raises(ValueError, match=f"expecting {DIM} features"):
        clf.explain(np.ones((1, 3)))


# -------------------------------------------------------------- label hubs
def test_hub_correction_stops_a_label_that_is_close_to_everything():
    # Four topics; every input also shares a common direction v (a house style),
    # and a fifth label ("hub") is v itself: raw similarity gives it half the
    # inputs though it has no members.
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((DIM, 5)))[0].T
    topics, v = basis[:4], basis[4]
    y = np.repeat(np.arange(4), 50)
    X = topics[y] + v + 0.25 * rng.standard_normal((200, DIM))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    vectors = dict(zip(["t0", "t1", "t2", "t3", "hub"], [*topics, v], strict=True))

    class Lookup(HashingEmbedder):
        def transform(self, X):
            return np.asarray([vectors[t] for t in X], dtype=np.float32)

    names = list(vectors)
    raw = NearestLabelClassifier(embedder=Lookup(), labels=names, hub_correction=0)
    fixed = NearestLabelClassifier(embedder=Lookup(), labels=names)
    raw_pred, fixed_pred = raw.fit(X).predict(X), fixed.fit(X).predict(X)
    truth = np.array(names)[y]
    assert np.mean(raw_pred == "hub") > 0.45
    assert np.mean(fixed_pred == "hub") < 0.6 * np.mean(raw_pred == "hub")
    assert np.mean(fixed_pred == truth) > np.mean(raw_pred == truth) + 0.15
    hub_col = int(np.flatnonzero(fixed.classes_ == "hub")[0])
    assert fixed.label_bias_[hub_col] == fixed.label_bias_.min() < 0


def test_empty_x_is_rejected():
    with pytest.raises(ValueError, match="0 sample"):
        NearestLabelClassifier().fit(np.empty((0, DIM)), [])


def test_one_example_per_class_is_few_shot_not_a_warning():
    # scikit-learn hints that y may be continuous when classes outnumber half the
    # rows; with one example per class that is few-shot, and fit stays silent
    # (pytest turns warnings into errors).
    # No held-out prediction can be made (each class's one example is its
    # class), so the only warning is that the probabilities are not calibrated.
    X, y = _clusters(n_per_class=1, n_classes=30, noise=0.1)
    with pytest.warns(UserWarning, match="not calibrated.*no held-out prediction"):
        clf = NearestLabelClassifier().fit(X, y)
    assert clf.classes_.shape == (30,)
    assert clf.calibrated_ is False and clf.expected_accuracy_ is None
    assert clf.temperature_ == 0.05
