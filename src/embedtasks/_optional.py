"""Import optional dependencies with an error that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(
    module: str, *, extra: str, purpose: str | None = None
) -> ModuleType:
    """Import ``module``, or raise an ImportError naming the extra that provides it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"sentence_transformers"``.
    extra : str
        The embedtasks extra that installs it, e.g. ``"plot"``.
    purpose : str, optional
        What needs it, e.g. ``"LocalEmbedder"``; starts the message.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    ImportError
        ``"<purpose> needs '<module>'. Install it with: pip install
        'embedtasks[<extra>]'"``, chained to the original error.

    Examples
    --------
    >>> import_optional("json", extra="plot").__name__
    'json'
    >>> import_optional("no_such_module_xyz", extra="plot", purpose="DiversityReport.plot")
    Traceback (most recent call last):
    ...
    ImportError: DiversityReport.plot needs 'no_such_module_xyz'. Install it with: pip install 'embedtasks[plot]'
    """  # noqa: E501
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        who = purpose or "This feature"
        top = module.split(".")[0]
        message = (
            f"{who} needs '{top}'. Install it with: pip install 'embedtasks[{extra}]'"
        )
        if extra == "sentence-transformers":
            # A bare torch requirement pulls a multi-GB CUDA build: CPU torch first.
            message += " (CPU-only torch first: pip install torch==2.13.0)"
        raise ImportError(message, name=top) from exc
