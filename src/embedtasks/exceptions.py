"""Errors raised by embedtasks.

Every error subclasses :class:`EmbedTasksError`, and also the builtin it refines
(``ValueError``, ``TypeError``, ...) so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "EmbedTasksError",
    "InvalidTextError",
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
