"""scikit-learn conformance of every estimator that takes numbers (embeddings).

The one place sklearn's common checks run: a default and non-default
configurations of each numeric estimator.
"""

from __future__ import annotations

import importlib.util

from sklearn.utils.estimator_checks import parametrize_with_checks

import embedtasks


def _numeric_estimators():
    """Default and one non-default configuration of each numeric estimator."""
    configs = {
        "DotProductNeighbors": [{}, {"n_neighbors": 2, "normalize": False}]
        + ([{"backend": "faiss"}] if importlib.util.find_spec("faiss") else []),
        "NearestLabelClassifier": [
            {},
            {"method": "knn", "n_neighbors": 2, "temperature": 0.1},
            {"method": "linear", "C": 1.0},
        ],
        "OutlierScorer": [
            {},
            {
                "method": "lof",
                "n_neighbors": 5,
                "novelty": True,
                "contamination": 0.1,
            },
            {"method": "mahalanobis", "novelty": True},
        ],
        "EmbeddingClusterer": [
            {},
            {"n_clusters": 3, "reduction": "pca", "n_components": 2},
            {"reduction": None, "min_cluster_size": 5, "assign_noise": True},
        ],
        "DiversityReport": [
            {},
            {"duplicate_threshold": 0.5, "max_pairs": 10, "n_bins": 5},
        ],
        "DriftTest": [{}, {"n_neighbors": 3, "n_clusters": 2, "max_samples": None}],
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
