"""Clustering: :class:`EmbeddingClusterer`, its reduction, layout and topic names."""

from __future__ import annotations

from embedtasks.cluster._estimator import ClusterComparison, EmbeddingClusterer

__all__ = ["ClusterComparison", "EmbeddingClusterer"]
