"""embedtasks: text embeddings at work inside scikit-learn.

Search, recommendations, clustering, anomaly detection, diversity measurement and
classification on unit-length float32 embeddings, as scikit-learn estimators that
compose with an embedder in one :class:`~sklearn.pipeline.Pipeline`.

The names below are imported on first use, so ``import embedtasks`` (and the
command line's ``--help``) does not load scikit-learn, pandas or ONNX Runtime.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "DiversityReport": "embedtasks.diversity",
    "DotProductNeighbors": "embedtasks.neighbors",
    "EmbedTasksError": "embedtasks.exceptions",
    "EmbeddingCache": "embedtasks._cache",
    "EmbeddingClusterer": "embedtasks.cluster",
    "InvalidTextError": "embedtasks.exceptions",
    "LocalEmbedder": "embedtasks.local",
    "NearDuplicates": "embedtasks.duplicates",
    "NearestLabelClassifier": "embedtasks.classify",
    "OpenAIEmbedder": "embedtasks.embedder",
    "OutlierScorer": "embedtasks.outliers",
    "Report": "embedtasks.report",
    "report": "embedtasks.report",
    "search_pipeline": "embedtasks.neighbors",
}

__all__ = [
    "DiversityReport",
    "DotProductNeighbors",
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
    from embedtasks._cache import EmbeddingCache
    from embedtasks.classify import NearestLabelClassifier
    from embedtasks.cluster import EmbeddingClusterer
    from embedtasks.diversity import DiversityReport
    from embedtasks.duplicates import NearDuplicates
    from embedtasks.embedder import OpenAIEmbedder
    from embedtasks.exceptions import EmbedTasksError, InvalidTextError
    from embedtasks.local import LocalEmbedder
    from embedtasks.neighbors import DotProductNeighbors, search_pipeline
    from embedtasks.outliers import OutlierScorer
    from embedtasks.report import Report, report


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedtasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """``embedtasks.report`` stays the function when its module is imported.

    Importing a submodule sets it as an attribute of the package; the function
    :func:`report` shares its module's name, so that attribute is not replaced
    (the module is ``sys.modules["embedtasks.report"]``), as with eager imports.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
