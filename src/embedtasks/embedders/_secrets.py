"""Keeping API keys out of reprs, messages, exceptions and pickles.

:class:`Secret` holds a key in memory only: its repr is ``'***'`` and a pickle
of it holds nothing (the unpickled copy is empty, so a worker process reads the
key from the environment instead). :func:`mask_url`, :func:`mask_headers` and
:func:`redact` hide keys placed in a URL, in headers or echoed in a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Secret", "is_sensitive", "mask_headers", "mask_url", "redact", "reveal"]

MASK = "***"
_SENSITIVE = re.compile(r"auth|key|token|secret|password|cookie|signature|sig$", re.I)


class Secret:
    """A string that never shows itself and never travels in a pickle.

    Examples
    --------
    >>> import pickle
    >>> key = Secret("sk-abc")
    >>> key, str(key), key.get()
    ('***', '***', 'sk-abc')
    >>> pickle.loads(pickle.dumps(key)).get() is None
    True
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | None = None) -> None:
        self._value = value

    def get(self) -> str | None:
        """The secret itself (``None`` after unpickling)."""
        return self._value

    def __repr__(self) -> str:
        return repr(MASK) if self._value is not None else "None"

    def __str__(self) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (None,))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def reveal(value: object) -> str | None:
    """The plain string of a :class:`Secret` or ``str`` (``None`` if empty)."""
    if isinstance(value, Secret):
        return value.get()
    return value if isinstance(value, str) and value else None


def is_sensitive(name: str) -> bool:
    """Whether a header or query parameter name is likely to carry a secret."""
    return bool(_SENSITIVE.search(name))


def mask_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """``headers`` with the values of sensitive names replaced by ``'***'``."""
    return {
        k: (MASK if is_sensitive(str(k)) else v) for k, v in dict(headers or {}).items()
    }


def mask_url(url: str) -> str:
    """``url`` without a password or sensitive query values.

    Examples
    --------
    >>> mask_url("https://user:pw@host/v1?api-key=abc&x=1")
    'https://user:***@host/v1?api-key=%2A%2A%2A&x=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = (user.split(":", 1)[0] + ":" + MASK if ":" in user else MASK) + "@"
        netloc += host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if is_sensitive(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(
    key: object = None, headers: Mapping[str, Any] | None = None, url: str = ""
) -> list[str]:
    """Every secret string to hide: the key, sensitive header and URL values."""
    found = [reveal(key)]
    for k, v in dict(headers or {}).items():
        if is_sensitive(str(k)):
            found.append(reveal(v))
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if is_sensitive(k)]
    except ValueError:
        pass
    out: list[str] = []
    for s in found:
        if s:
            out.append(s)
            if s.lower().startswith("bearer "):
                out.append(s[7:])
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (4 characters or more) replaced by ``'***'``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
