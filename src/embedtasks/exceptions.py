"""Errors raised by embedtasks.

Every error subclasses :class:`EmbedTasksError`, and also the builtin it refines
(``ValueError``, ``TypeError``, ...) so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "EmbedTasksError",
    "EmbeddingAPIError",
    "InvalidTextError",
    "TextTooLongError",
]


class EmbedTasksError(Exception):
    """Base class of every error raised on purpose by embedtasks."""


class InvalidTextError(EmbedTasksError, ValueError):
    """A text input is missing, empty, or not a string.

    Attributes
    ----------
    row : int
        Position of the first offending item in the input.
    value : object
        The offending item itself.
    """

    def __init__(self, message: str, *, row: int, value: object) -> None:
        self.row = row
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
        The last answer, if there was one.
    row : int or None
        Position of the offending text in the input, when a single text caused it.
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
        self.row = row
        super().__init__(message)


class TextTooLongError(EmbedTasksError, ValueError):
    """A text has more tokens than the model accepts per input.

    Attributes
    ----------
    row : int
        Position of the text in the input.
    n_tokens : int
        Its token count.
    limit : int
        The per-input limit.
    """

    def __init__(self, message: str, *, row: int, n_tokens: int, limit: int) -> None:
        self.row = row
        self.n_tokens = n_tokens
        self.limit = limit
        super().__init__(message)
