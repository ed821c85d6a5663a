"""embedtasks: text embeddings at work inside scikit-learn.

Search, recommendations, clustering, anomaly detection, diversity measurement and
classification on unit-length float32 embeddings, as scikit-learn estimators that
compose with an embedder in one :class:`~sklearn.pipeline.Pipeline`.
"""

from __future__ import annotations

from embedtasks._cache import EmbeddingCache
from embedtasks.classify import NearestLabelClassifier
from embedtasks.cluster import EmbeddingClusterer
from embedtasks.diversity import DiversityReport
from embedtasks.embedder import OpenAIEmbedder
from embedtasks.exceptions import EmbedTasksError, InvalidTextError
from embedtasks.local import LocalEmbedder
from embedtasks.neighbors import DotProductNeighbors, search_pipeline
from embedtasks.outliers import OutlierScorer
from embedtasks.report import Report, report

__version__ = "0.1.0"

__all__ = [
    "DiversityReport",
    "DotProductNeighbors",
    "EmbedTasksError",
    "EmbeddingCache",
    "EmbeddingClusterer",
    "InvalidTextError",
    "LocalEmbedder",
    "NearestLabelClassifier",
    "OpenAIEmbedder",
    "OutlierScorer",
    "Report",
    "__version__",
    "report",
    "search_pipeline",
]
