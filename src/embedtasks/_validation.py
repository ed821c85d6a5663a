"""Input checks shared by every estimator.

This is the only module that imports scikit-learn's private helpers, so a change in
scikit-learn touches one file.
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from embedtasks._kernel._shard import to_local
from embedtasks.exceptions import InvalidTextError

__all__ = [
    "FLOAT_DTYPES",
    "HasMethods",
    "LocalCopyMixin",
    "Integral",
    "Interval",
    "Real",
    "StrOptions",
    "_fit_context",
    "check_embeddings",
    "check_is_fitted",
    "check_texts",
    "validate_data",
    "validate_params",
]

FLOAT_DTYPES = (np.float32, np.float64)


def check_embeddings(estimator: Any, X: Any, *, reset: bool, **kwargs: Any) -> Any:
    """Validate an embedding matrix and return it as C-contiguous float32.

    Wraps :func:`sklearn.utils.validation.validate_data` (finite values, 2-D, the
    width seen in ``fit``), then casts to float32, the dtype every kernel uses.
    """
    X = validate_data(
        estimator, X, reset=reset, dtype=FLOAT_DTYPES, order="C", **kwargs
    )
    if isinstance(X, tuple):  # validate_data returned (X, y)
        return X
    return np.ascontiguousarray(X, dtype=np.float32)


def _as_sequence(X: Any, estimator_name: str) -> list[Any]:
    if X is None:
        raise TypeError(
            f"{estimator_name} expected a sequence of texts, got None. Pass a list "
            "of str, a 1-D array, a pandas Series or a one-column DataFrame."
        )
    if isinstance(X, str | bytes):
        raise TypeError(
            f"{estimator_name} expected a sequence of texts, got a single "
            f"{type(X).__name__} ({X[:40]!r}). Wrap it in a list: [text]."
        )
    columns = getattr(X, "columns", None)
    if columns is not None:  # a DataFrame
        if len(columns) != 1:
            raise ValueError(
                f"{estimator_name} expected one text column, got a DataFrame with "
                f"{len(columns)} columns {list(columns)[:5]}. Select the column: "
                "df['text'] (or use a ColumnTransformer)."
            )
        return list(X.iloc[:, 0])
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"{estimator_name} expected a 1-D sequence of texts, got an array of "
                f"shape {X.shape}. Pass one text per row."
            )
        return list(X)
    if not isinstance(X, Iterable):
        raise TypeError(
            f"{estimator_name} expected a sequence of texts, got "
            f"{type(X).__name__}. Pass a list of str."
        )
    return list(X)


def check_texts(X: Any, *, estimator_name: str = "embedtasks") -> list[str]:
    """Return ``X`` as a list of non-empty ``str``, or raise a clear error.

    Accepts a list or tuple, a 1-D (or one-column 2-D) ndarray, a pandas Series or a
    one-column DataFrame. ``None``, NaN, non-strings and empty or whitespace-only
    strings raise :class:`~embedtasks.exceptions.InvalidTextError` naming the row.

    Examples
    --------
    >>> check_texts(["a cat", "a dog"])
    ['a cat', 'a dog']
    >>> check_texts(["a cat", ""])
    Traceback (most recent call last):
    ...
    embedtasks.exceptions.InvalidTextError: embedtasks got an empty or whitespace-only text at row 1 (''). ...
    """  # noqa: E501
    items = _as_sequence(X, estimator_name)
    if not items:
        raise ValueError(
            f"{estimator_name} got an empty sequence of texts; pass at least one text."
        )
    if set(map(type, items)) == {str} and all(map(str.strip, items)):
        return items  # the common case, checked at C speed
    texts: list[str] = []
    for row, item in enumerate(items):
        if isinstance(item, np.str_):
            item = str(item)
        if not isinstance(item, str):
            kind = "a missing value" if _is_missing(item) else type(item).__name__
            raise InvalidTextError(
                f"{estimator_name} expected str at row {row}, got {kind} "
                f"({item!r}). Drop or fill missing rows first, e.g. "
                "df['text'].dropna() or .fillna('').",
                row=row,
                value=item,
            )
        if not item.strip():
            raise InvalidTextError(
                f"{estimator_name} got an empty or whitespace-only text at row "
                f"{row} ({item!r}). Embedding endpoints reject empty input: drop "
                "such rows first.",
                row=row,
                value=item,
            )
        texts.append(item)
    return texts


def _is_missing(item: object) -> bool:
    if item is None:
        return True
    try:
        return bool(isinstance(item, Real) and np.isnan(float(item)))
    except TypeError:  # pragma: no cover - exotic numeric types
        return False


class LocalCopyMixin:
    """Adds ``to_local()`` to estimators that can hold a sharded corpus."""

    def to_local(self):
        """An in-memory copy of an estimator fitted on a dask array.

        Fitted on a dask array, the estimator keeps its corpus sharded on the Dask
        workers and refuses to pickle; this gathers the shards into one ndarray on
        the client (it must fit in memory). The copy pickles and answers exactly as
        the sharded estimator does. An in-memory estimator is returned as a copy.

        Returns
        -------
        estimator : object
            A fitted copy of the same class, holding its corpus in memory.
        """
        check_is_fitted(self)
        return to_local(self)
