"""scikit-learn's contract, checked explicitly for the text embedders.

``check_estimator`` skips estimators that take text, so the checks that apply are
run here by hand, on every embedder: construction, ``clone``, ``get_params`` /
``set_params``, pickling, ``NotFittedError``, feature names and ``set_output``, and
use inside ``Pipeline``, ``GridSearchCV`` and ``ColumnTransformer`` on a DataFrame.
The OpenAI embedder talks to ``fake_openai_transport`` (no network); the local one
runs the bundled model.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from embedtasks import (
    DotProductNeighbors,
    LocalEmbedder,
    NearestLabelClassifier,
    OpenAIEmbedder,
)
from embedtasks.testing import fake_embedding, fake_openai_transport

TEXTS = [f"text number {i} about {topic}" for i in range(6) for topic in "abc"]


def _openai(cache_dir=None):
    return OpenAIEmbedder(
        transport=fake_openai_transport(dim=8), cache_dir=cache_dir, progress=False
    )


def _local(cache_dir=None):
    pytest.importorskip("sentence_transformers")
    return LocalEmbedder(cache_dir=cache_dir, progress=False)


EMBEDDERS = [
    pytest.param(_openai, 8, id="OpenAIEmbedder"),
    pytest.param(_local, 384, id="LocalEmbedder", marks=pytest.mark.local_model),
]


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_sklearn_construction_checks(make, dim):
    embedder = make()
    name = type(embedder).__name__
    check_no_attributes_set_in_init(name, embedder)
    check_parameters_default_constructible(name, embedder)
    check_get_params_invariance(name, embedder)
    check_set_params(name, embedder)


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_clone_keeps_params_and_drops_fitted_state(make, dim):
    embedder = make().fit(TEXTS[:3])
    twin = clone(embedder)
    assert twin is not embedder
    assert twin.get_params().keys() == embedder.get_params().keys()
    assert twin.get_params()["cache_dir"] is None
    assert not hasattr(twin, "embedding_dim_")
    assert embedder.embedding_dim_ == dim


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_set_params_changes_what_get_params_reports(make, dim):
    embedder = make().set_params(progress=True)
    assert embedder.get_params()["progress"] is True
    with pytest.raises(ValueError, match="Invalid parameter 'no_such'"):
        embedder.set_params(no_such=1)


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_unfitted_transform_raises_not_fitted(make, dim):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        make().transform(TEXTS[:2])
    with pytest.raises(NotFittedError):
        make().get_feature_names_out()


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_pickle_round_trip_gives_identical_vectors(make, dim, tmp_path):
    embedder = make(cache_dir=tmp_path).fit(TEXTS)
    loaded = pickle.loads(pickle.dumps(embedder))
    assert loaded.get_params().keys() == embedder.get_params().keys()
    np.testing.assert_array_equal(loaded.transform(TEXTS), embedder.transform(TEXTS))
    assert loaded.usage_["embedded"] == 0  # the reopened cache served every text


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_feature_names_and_pandas_output(make, dim):
    embedder = make()
    frame = embedder.set_output(transform="pandas").fit_transform(pd.Series(TEXTS))
    prefix = type(embedder).__name__.lower()
    assert isinstance(frame, pd.DataFrame) and frame.shape == (len(TEXTS), dim)
    assert frame.columns.tolist() == [f"{prefix}{i}" for i in range(dim)]
    assert (frame.dtypes == np.float32).all()
    names = embedder.get_feature_names_out()
    assert names.tolist() == frame.columns.tolist()
    plain = make().fit_transform(TEXTS)
    np.testing.assert_array_equal(frame.to_numpy(), plain)


@pytest.mark.parametrize(("make", "dim"), EMBEDDERS)
def test_accepts_list_series_array_and_one_column_frame(make, dim):
    embedder = make().fit(TEXTS)
    expected = embedder.transform(TEXTS)
    for X in (
        pd.Series(TEXTS),
        np.array(TEXTS, dtype=object),
        pd.DataFrame({"text": TEXTS}),
        tuple(TEXTS),
    ):
        np.testing.assert_array_equal(embedder.transform(X), expected)


def test_openai_vectors_are_the_fake_servers():
    X = _openai().fit_transform(TEXTS[:2])
    np.testing.assert_allclose(X[0], fake_embedding(TEXTS[0], 8), rtol=1e-6)


def _labelled(n_per_class=8):
    """Texts whose (fake, hash-seeded) vectors are pulled towards their class."""
    texts, y = [], []
    for label in ("cat", "dog", "fox"):
        for i in range(n_per_class):
            texts.append(f"{label} {label} {label} story {i}")
            y.append(label)
    return texts, np.array(y)


class _ToyTopicEmbedder(OpenAIEmbedder):
    """Fake vectors plus a strong class direction: a classifier can learn it."""

    def _embed(self, X, *, expected_dim):
        base = super()._embed(X, expected_dim=expected_dim)
        out = base.copy()
        for row, text in enumerate(pd.Series(list(X)).tolist()):
            out[row, "cdf".index(text[0])] += 2.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_grid_search_over_a_text_pipeline_uses_the_cache(tmp_path):
    texts, y = _labelled()
    calls = []
    embedder = _ToyTopicEmbedder(
        transport=fake_openai_transport(dim=8, calls=calls),
        cache_dir=tmp_path,
        progress=False,
    )
    pipe = Pipeline([("embed", embedder), ("clf", NearestLabelClassifier())])
    grid = GridSearchCV(
        pipe, {"clf__method": ["centroid", "knn"], "clf__n_neighbors": [1, 3]}, cv=3
    )
    grid.fit(texts, y)
    assert grid.best_score_ == 1.0
    assert set(grid.best_params_) == {"clf__method", "clf__n_neighbors"}
    assert grid.predict(["dog dog dog tale"]).tolist() == ["dog"]
    # GridSearchCV clones the embedder (and deep-copies ``calls``), but every
    # clone shares the disk cache: a new embedder on it sends nothing.
    again = OpenAIEmbedder(
        transport=fake_openai_transport(dim=8, calls=calls), cache_dir=tmp_path
    )
    again.fit_transform(texts)
    assert calls == [] and again.usage_["cache_hits"] == len(texts)


def test_cross_val_score_on_a_text_pipeline(tmp_path):
    texts, y = _labelled()
    embedder = _ToyTopicEmbedder(
        transport=fake_openai_transport(dim=8), cache_dir=tmp_path, progress=False
    )
    scores = cross_val_score(
        make_pipeline(embedder, NearestLabelClassifier()), texts, y
    )
    assert scores.shape == (5,) and (scores == 1.0).all()


def test_column_transformer_on_a_dataframe_text_column(tmp_path):
    texts, y = _labelled()
    df = pd.DataFrame({"text": texts, "amount": np.arange(len(texts), dtype=float)})
    features = ColumnTransformer(
        [
            ("text", _openai(cache_dir=tmp_path), "text"),
            ("amount", StandardScaler(), ["amount"]),
        ]
    ).set_output(transform="pandas")
    table = features.fit_transform(df)
    assert table.shape == (len(texts), 9)
    assert table.columns[0] == "text__openaiembedder0"
    assert table.columns[-1] == "amount__amount"
    np.testing.assert_array_equal(
        table.iloc[:, :8].to_numpy(), _openai().fit_transform(texts)
    )
    model = make_pipeline(features, RidgeClassifier()).fit(df, y)
    assert model.predict(df.iloc[:2]).shape == (2,)


def test_one_column_dataframe_selection_also_works(tmp_path):
    texts, _ = _labelled()
    df = pd.DataFrame({"text": texts, "other": 1})
    features = ColumnTransformer([("text", _openai(cache_dir=tmp_path), ["text"])])
    np.testing.assert_array_equal(
        features.fit_transform(df), _openai().fit_transform(texts)
    )


def test_search_pipeline_with_a_text_embedder(tmp_path):
    pipe = make_pipeline(
        _openai(cache_dir=tmp_path), DotProductNeighbors(n_neighbors=2)
    )
    pipe.fit(TEXTS, TEXTS)
    scores, indices = pipe[-1].search(pipe[0].transform([TEXTS[4]]))
    assert indices[0, 0] == 4 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    loaded = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(loaded[-1].embeddings_, pipe[-1].embeddings_)
