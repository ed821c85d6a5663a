"""Input checks shared by every estimator.

This is the only module that imports scikit-learn's private helpers, so a change in
scikit-learn touches one file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from sklearn.base import _fit_context as _sklearn_fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    make_constraint,
    validate_parameter_constraints,
)
from sklearn.utils._param_validation import (
    validate_params as _sklearn_validate_params,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from embedtasks._kernel import ShardedCorpus, is_dask_array, l2_normalize
from embedtasks.exceptions import InvalidTextError

__all__ = [
    "FLOAT_DTYPES",
    "HasMethods",
    "CorpusMixin",
    "InvalidParameterError",
    "LocalCopyMixin",
    "N_JOBS",
    "Integral",
    "Interval",
    "Real",
    "RealsIn",
    "StrOptions",
    "_fit_context",
    "check_argument",
    "check_embeddings",
    "check_param",
    "check_is_fitted",
    "check_texts",
    "validate_data",
    "validate_params",
]

FLOAT_DTYPES = (np.float32, np.float64)

_F = TypeVar("_F", bound=Callable[..., Any])


def _fit_context(*, prefer_skip_nested_validation: bool) -> Callable[[_F], _F]:
    """scikit-learn's ``_fit_context`` (validates the parameters, then fits), typed.

    scikit-learn ships no type information; this keeps the decorated ``fit``'s
    signature for the type checker.
    """
    decorator: Callable[[_F], _F] = _sklearn_fit_context(
        prefer_skip_nested_validation=prefer_skip_nested_validation
    )
    return decorator


def validate_params(
    parameter_constraints: dict[str, Any],
    *,
    prefer_skip_nested_validation: bool = True,
) -> Callable[[_F], _F]:
    """scikit-learn's ``validate_params`` for a public function, typed.

    The function's arguments are checked against ``parameter_constraints`` on each
    call (the decorated function keeps them as ``_parameter_constraints``, as an
    estimator class does, for :func:`check_param`), and a wrong one raises
    :class:`~sklearn.utils._param_validation.InvalidParameterError` (a
    ``ValueError`` and a ``TypeError``) worded as for estimator parameters.
    """
    validate: Callable[[_F], _F] = _sklearn_validate_params(
        parameter_constraints,
        prefer_skip_nested_validation=prefer_skip_nested_validation,
    )

    def decorator(function: _F) -> _F:
        checked = validate(function)
        # As on an estimator class: check_param (the CLI's flags) reads them here.
        checked._parameter_constraints = parameter_constraints  # type: ignore[attr-defined]
        return checked

    return decorator


# An Options subclass because scikit-learn's make_constraint accepts its own
# constraint classes only; scikit-learn ships no types (its classes are Any).
class RealsIn(Options):  # type: ignore[misc]
    """Constraint: a non-empty array-like of real numbers, each in [low, high].

    Examples
    --------
    >>> RealsIn(0, 1).is_satisfied_by((0.05, 0.5)), str(RealsIn(0, 1))
    (True, 'a non-empty array-like of numbers in [0, 1]')
    >>> RealsIn(0, 1).is_satisfied_by([0.5, 50]), RealsIn(0, 1).is_satisfied_by([])
    (False, False)
    """

    def __init__(self, low: float, high: float) -> None:
        super().__init__(object, set())
        self.low, self.high = low, high

    def is_satisfied_by(self, val: Any) -> bool:
        if isinstance(val, str | bytes):
            return False
        try:
            values: npt.NDArray[np.float64] = np.asarray(val, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        inside = (values >= self.low) & (values <= self.high)  # False for NaN
        return bool(values.size > 0 and inside.all())

    def __str__(self) -> str:
        return f"a non-empty array-like of numbers in [{self.low}, {self.high}]"


#: ``n_jobs`` of every estimator: a thread count, or negative as joblib counts
#: (``-1`` every core); 0 is refused. See :func:`embedtasks._kernel.n_threads`.
N_JOBS = [
    Interval(Integral, None, -1, closed="right"),
    Interval(Integral, 1, None, closed="left"),
]


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


class CorpusMixin:
    """The fit prologue of every estimator that takes a corpus of embeddings.

    :meth:`_fit_corpus` is the one place a fitted corpus is validated: a dask
    array stays sharded on its workers, anything else is checked and normalised.
    The estimator then builds a store (:func:`embedtasks._kernel.build_store`) and
    asks it questions, never which storage answers.
    """

    def _fit_corpus(self, X: Any, *, normalize: bool = True, min_rows: int = 1) -> Any:
        if is_dask_array(X):  # sharded on the workers, see _kernel._shard
            corpus = ShardedCorpus.from_dask(
                X, normalize=normalize, owner=type(self).__name__, min_rows=min_rows
            )
            self.n_features_in_ = corpus.n_features
            return corpus
        X = check_embeddings(self, X, reset=True, ensure_min_samples=min_rows)
        return l2_normalize(X) if normalize else X


class LocalCopyMixin(CorpusMixin):
    """Estimators that keep their corpus (a store in ``_store``): ``to_local()``."""

    def _expose_store(self) -> None:
        """Set the public attributes that are views of ``_store`` (if any)."""

    def to_local(self) -> Any:
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
        local = copy.copy(self)
        local._store = self._store.local()  # type: ignore[attr-defined]
        local._expose_store()
        return local


def _broken_rule(
    name: str, value: Any, constraints: list[Any], caller: str
) -> str | None:
    """The rule ``value`` breaks, as "must be ...", or None: sklearn's wording."""
    try:
        validate_parameter_constraints(
            {name: constraints}, {name: value}, caller_name=caller
        )
    except InvalidParameterError as exc:
        rule = str(exc).split(" must be ", 1)[-1].rsplit(". Got ", 1)[0]
        return f"must be {rule}"
    return None


def check_argument(name: str, value: Any, constraints: list[Any]) -> None:
    """Check a method's argument (not a constructor parameter) against constraints.

    The one wording of such checks: ``constraints`` are scikit-learn's (as in
    ``_parameter_constraints``: often the constructor parameter's own, when a
    method argument overrides it), and a broken one raises
    :class:`~sklearn.utils._param_validation.InvalidParameterError` (a
    ``ValueError`` and a ``TypeError``) saying "<name> must be <rule>, got <value>.".
    A bool is refused where a number is asked for (scikit-learn counts it an int).

    Examples
    --------
    >>> check_argument("n_neighbors", 3, [Interval(Integral, 1, None, closed="left")])
    >>> check_argument("n_neighbors", 0, [Interval(Integral, 1, None, closed="left")])
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: n_neighbors must be an int in the range [1, inf), got 0.
    """  # noqa: E501
    rule = _broken_rule(name, value, constraints, name)
    if rule is None and isinstance(value, bool | np.bool_):
        if not any(c == "boolean" or c is bool for c in constraints):
            rules = [str(make_constraint(c)) for c in constraints]
            head = ", ".join(rules[:-1])
            rule = f"must be {head} or {rules[-1]}" if head else f"must be {rules[0]}"
    if rule is not None:
        raise InvalidParameterError(f"{name} {rule}, got {value!r}.")


def check_param(owner: Any, name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``owner``'s parameter ``name``, or None.

    Uses the owner's own ``_parameter_constraints`` (the one statement of each
    range), so a command-line flag is checked exactly as the estimator checks it.
    Returns the rule as "must be ...", for a caller to word (e.g. with a flag).

    Examples
    --------
    >>> from embedtasks import OutlierScorer
    >>> check_param(OutlierScorer, "n_neighbors", 5) is None
    True
    >>> check_param(OutlierScorer, "n_neighbors", 0)
    'must be an int in the range [1, inf)'
    """
    constraints = getattr(owner, "_parameter_constraints", {}).get(name)
    if constraints is None:
        return None
    return _broken_rule(name, value, constraints, owner.__name__)
