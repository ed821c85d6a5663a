"""Classification: :class:`NearestLabelClassifier`, its heads and calibration."""

from __future__ import annotations

from embedtasks.classify._estimator import NearestLabelClassifier

__all__ = ["NearestLabelClassifier"]
