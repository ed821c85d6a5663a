"""Probabilities of NearestLabelClassifier that mean what they say: zero-shot from
the inputs' self-consistency, few examples without certainty, abstention."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from embedtasks import NearestLabelClassifier

DIM = 32


class Lookup(TransformerMixin, BaseEstimator):
    """texts -> the rows of ``table`` (label name -> vector)."""

    def __init__(self, table=None):
        self.table = table

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return np.asarray([self.table[t] for t in X], dtype=np.float32)


def _topics(n_per_class, n_classes=5, noise=1.0, seed=0):
    """Unit rows around random unit directions (returned as ``centers``)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, DIM))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + noise * rng.standard_normal((y.size, DIM)) / np.sqrt(DIM)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y, centers


def _zero_shot(vectors):
    names = [f"topic {i}" for i in range(len(vectors))]
    embedder = Lookup(dict(zip(names, vectors, strict=True))).fit(names)
    return NearestLabelClassifier(embedder=embedder, labels=names), names


def test_zero_shot_probabilities_do_not_claim_more_than_the_accuracy():
    # Labels that are rough descriptions of the topics: right about 3 times in 4.
    X, y, centers = _topics(80, noise=0.6)
    rough = centers + 2.0 * np.random.default_rng(4).standard_normal(centers.shape) / 6
    clf, _ = _zero_shot(rough / np.linalg.norm(rough, axis=1, keepdims=True))
    clf.fit(X)
    proba = clf.predict_proba(X)
    accuracy = float(np.mean(proba.argmax(axis=1) == y))
    assert 0.6 < accuracy < 0.9  # neither trivial nor hopeless
    assert clf.calibrated_ is True
    confidence = proba.max(axis=1).mean()
    assert confidence == pytest.approx(clf.expected_accuracy_, abs=1e-6)
    # Self-consistency errs on the safe side: never above the accuracy, and far
    # above chance (1/5) when the labels explain the texts.
    assert 0.45 < confidence <= accuracy + 0.05
    assert proba.dtype == np.float64 and proba.shape == (400, 5)


def test_zero_shot_with_unrelated_labels_is_near_uniform():
    # Labels unrelated to the texts: a constant temperature would still print
    # confident answers; the inputs show the labels explain nothing.
    X, y, _ = _topics(80, noise=0.8)
    unrelated = np.random.default_rng(7).standard_normal((5, DIM))
    clf, _ = _zero_shot(unrelated / np.linalg.norm(unrelated, axis=1, keepdims=True))
    clf.fit(X)
    assert clf.calibrated_ is True
    assert clf.expected_accuracy_ < 0.35
    assert clf.predict_proba(X).max(axis=1).mean() < 0.35


def test_zero_shot_temperature_is_deterministic():
    X, _, centers = _topics(40, noise=1.6)
    first = _zero_shot(centers)[0].fit(X)
    again = _zero_shot(centers)[0].fit(X)
    assert first.temperature_ == again.temperature_
    assert first.expected_accuracy_ == again.expected_accuracy_


def test_fixed_temperature_is_not_called_calibrated_and_does_not_warn():
    X, _, centers = _topics(40)
    clf, names = _zero_shot(centers)
    clf.set_params(temperature=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(X[:5])
    assert clf.calibrated_ is False and clf.temperature_ == 0.1


def test_few_examples_never_give_certainty():
    # Three well-separated examples per class: every held-out fold is right, so
    # the log-loss alone would drive the temperature to its floor (p = 1.0).
    X, y, _ = _topics(3, n_classes=3, noise=0.2)
    clf = NearestLabelClassifier().fit(X, y)
    assert clf.cv_scores_[clf.method_] == 1.0
    assert clf.calibrated_ is True
    proba = clf.predict_proba(X)
    # Nine right out of nine support at most (9 + 1) / (9 + 2) on average.
    assert proba.max() < 0.99
    assert proba.max(axis=1).mean() <= 10 / 11 + 0.05


def test_target_precision_abstains_on_out_of_domain_rows():
    X, y, centers = _topics(3, n_classes=3, noise=0.2)
    clf = NearestLabelClassifier(target_precision=0.9, abstain_label=-1).fit(X, y)
    assert clf.abstain_similarity_ is not None
    far = -centers.sum(axis=0, keepdims=True)  # unlike every class
    near = centers[[1]]
    assert clf.predict(far).tolist() == [-1]
    assert clf.predict(near).tolist() == [1]
    assert clf.predict(X).tolist() == y.tolist()


def test_without_target_precision_no_similarity_floor_is_set():
    X, y, _ = _topics(3, n_classes=3, noise=0.2)
    clf = NearestLabelClassifier(abstain_threshold=0.5).fit(X, y)
    assert clf.abstain_similarity_ is None and clf.abstain_threshold_ == 0.5
