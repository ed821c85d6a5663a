"""Errors raised by embedtasks.

Every error subclasses :class:`EmbedTasksError`, and also the builtin it refines
(``ValueError``, ``TypeError``, ...) so existing ``except`` clauses keep working.
Every error pickles (to cross joblib or Dask boundaries) with its attributes, and
none holds an API key: an HTTP answer kept as evidence carries a sanitised
request (no ``Authorization``/``api-key`` header, key-free URL, no body).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetExceededError",
    "CacheError",
    "EmbedTasksError",
    "EmbeddingAPIError",
    "InvalidTextError",
    "TextTooLongError",
]


def _rebuild(cls: type[EmbedTasksError], message: str, attrs: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attrs)
    return error


class EmbedTasksError(Exception):
    """Base class of every error raised on purpose by embedtasks."""

    def __reduce__(self) -> tuple[Any, ...]:
        message = str(self.args[0]) if self.args else ""
        return (_rebuild, (type(self), message, dict(self.__dict__)))


class InvalidTextError(EmbedTasksError, ValueError):
    """A text input is missing, empty, not a string, or not encodable.

    Attributes
    ----------
    row : int
        Position of the first offending item in the input.
    value : object
        The offending item itself.
    """

    def __init__(self, message: str, *, row: int, value: object) -> None:
        self.row = int(row)
        self.value = value
        super().__init__(message)


class EmbeddingAPIError(EmbedTasksError, RuntimeError):
    """An embeddings endpoint refused a request, or kept failing after retries.

    The message names the URL (never the API key), the status, what the server
    said, and the fix.

    Attributes
    ----------
    status_code : int or None
        HTTP status of the last answer (``None`` for a network error or an
        unreadable body).
    response : httpx.Response or None
        The last answer, if there was one; its ``request`` is sanitised.
    row : int or None
        Position of the offending text in the user's input, when a single text
        caused it.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        response: object = None,
        row: int | None = None,
    ) -> None:
        self.status_code = status_code
        self.response = response
        self.row = None if row is None else int(row)
        super().__init__(message)


class TextTooLongError(EmbedTasksError, ValueError):
    """A text has more tokens than the model accepts per input.

    Attributes
    ----------
    row : int
        Position of the text in the user's input.
    n_tokens : int
        Its token count.
    limit : int
        The per-input limit.
    """

    def __init__(self, message: str, *, row: int, n_tokens: int, limit: int) -> None:
        self.row = int(row)
        self.n_tokens = int(n_tokens)
        self.limit = int(limit)
        super().__init__(message)


class BudgetExceededError(EmbedTasksError, RuntimeError):
    """Embedding stopped before exceeding ``max_tokens``; finished rows are cached.

    Attributes
    ----------
    max_tokens : int
        The budget.
    tokens_used : int
        Tokens spent before stopping.
    n_embedded : int
        Texts embedded (and cached) before stopping.
    """

    def __init__(
        self, message: str, *, max_tokens: int, tokens_used: int, n_embedded: int
    ) -> None:
        self.max_tokens = int(max_tokens)
        self.tokens_used = int(tokens_used)
        self.n_embedded = int(n_embedded)
        super().__init__(message)


class CacheError(EmbedTasksError, RuntimeError):
    """The embedding cache cannot be opened or read.

    Attributes
    ----------
    path : str
        The cache file concerned.
    """

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)
