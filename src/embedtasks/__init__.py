"""embedtasks: text embeddings at work inside scikit-learn.

Search, recommendations, clustering, anomaly detection, diversity measurement and
classification on unit-length float32 embeddings, as scikit-learn estimators that
compose with an embedder in one :class:`~sklearn.pipeline.Pipeline`.
"""

from __future__ import annotations

from embedtasks.exceptions import EmbedTasksError, InvalidTextError
from embedtasks.neighbors import DotProductNeighbors, search_pipeline

__version__ = "0.1.0"

__all__ = [
    "DotProductNeighbors",
    "EmbedTasksError",
    "InvalidTextError",
    "__version__",
    "search_pipeline",
]
