"""embedtasks: text embeddings at work inside scikit-learn.

Search, recommendations, clustering, anomaly detection, diversity measurement and
classification on unit-length float32 embeddings, as scikit-learn estimators that
compose with an embedder in one :class:`~sklearn.pipeline.Pipeline`.

The names below are imported on first use, so ``import embedtasks`` (and the
command line's ``--help``) does not load scikit-learn, pandas or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "ChatNamer": "embedtasks.embedders",
    "DiversityReport": "embedtasks.diversity",
    "DotProductNeighbors": "embedtasks.neighbors",
    "DriftResult": "embedtasks.drift",
    "DriftTest": "embedtasks.drift",
    "EmbedTasksError": "embedtasks.exceptions",
    "EmbeddingCache": "embedtasks.embedders",
    "EmbeddingClusterer": "embedtasks.cluster",
    "InvalidTextError": "embedtasks.exceptions",
    "LocalEmbedder": "embedtasks.embedders",
    "NearDuplicates": "embedtasks.duplicates",
    "NearestLabelClassifier": "embedtasks.classify",
    "OpenAIEmbedder": "embedtasks.embedders",
    "OutlierScorer": "embedtasks.outliers",
    "Report": "embedtasks._report",
    "report": "embedtasks._report",
    "search_pipeline": "embedtasks.neighbors",
}

__all__ = [
    "ChatNamer",
    "DiversityReport",
    "DotProductNeighbors",
    "DriftResult",
    "DriftTest",
    "EmbedTasksError",
    "EmbeddingCache",
    "EmbeddingClusterer",
    "InvalidTextError",
    "LocalEmbedder",
    "NearDuplicates",
    "NearestLabelClassifier",
    "OpenAIEmbedder",
    "OutlierScorer",
    "Report",
    "__version__",
    "report",
    "search_pipeline",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from embedtasks._report import Report, report
    from embedtasks.classify import NearestLabelClassifier
    from embedtasks.cluster import EmbeddingClusterer
    from embedtasks.diversity import DiversityReport
    from embedtasks.drift import DriftResult, DriftTest
    from embedtasks.duplicates import NearDuplicates
    from embedtasks.embedders import (
        ChatNamer,
        EmbeddingCache,
        LocalEmbedder,
        OpenAIEmbedder,
    )
    from embedtasks.exceptions import EmbedTasksError, InvalidTextError
    from embedtasks.neighbors import DotProductNeighbors, search_pipeline
    from embedtasks.outliers import OutlierScorer


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedtasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
