"""scikit-learn conformance of every estimator that takes numbers (embeddings)."""

from __future__ import annotations

import importlib.util

from sklearn.utils.estimator_checks import parametrize_with_checks

import embedtasks


def _numeric_estimators():
    """Default and one non-default configuration of each numeric estimator."""
    configs = {
        "DotProductNeighbors": [{}, {"n_neighbors": 2, "normalize": False}]
        + ([{"backend": "faiss"}] if importlib.util.find_spec("faiss") else []),
        "NearestLabelClassifier": [{}],
        "OutlierScorer": [{}],
        "EmbeddingClusterer": [{}],
        "DiversityReport": [{}],
        "NearDuplicates": [{}, {"threshold": 0.5, "neighbors": "approximate"}],
    }
    for name, params_list in configs.items():
        cls = getattr(embedtasks, name, None)
        if cls is None:  # not part of this build yet
            continue
        for params in params_list:
            yield cls(**params)


@parametrize_with_checks(list(_numeric_estimators()))
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
