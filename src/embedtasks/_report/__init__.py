"""The self-contained HTML report.

:func:`report` builds it; :class:`Report` holds it.
"""

from __future__ import annotations

from embedtasks._report._build import Report, report

__all__ = ["Report", "report"]
