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

__all__ = [
    "Secret",
    "check_header_value",
    "check_key",
    "check_url",
    "is_sensitive",
    "mask_headers",
    "mask_url",
    "redact",
    "reveal",
]

MASK = "***"
_SENSITIVE = re.compile(r"auth|key|token|secret|password|cookie|signature|sig$", re.I)
#: Query parameters that carry a credential (Azure Functions' ``code``, SAS ``sig``).
_URL_SECRET = re.compile(
    r"auth|key|token|secret|password|passwd|pwd|cookie|signature|^sig$|^code$|"
    r"^credential|^session",
    re.I,
)
#: A path segment that looks like a key: a known prefix, or a long random word
#: (upper and lower case letters and digits; hex ids and UUIDs do not match).
_KEYLIKE = re.compile(
    r"^(?:sk|pk|rk|key|hf|gsk|xai|api)[-_][A-Za-z0-9_\-]{12,}$|"
    r"^(?=[^/]*[a-z])(?=[^/]*[A-Z])(?=[^/]*[0-9])[A-Za-z0-9_\-]{32,}$"
)


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


def _url_secret_name(name: str) -> bool:
    return bool(_URL_SECRET.search(name))


def mask_url(url: str) -> str:
    """``url`` without credentials: user info, key-like query values and path parts.

    Examples
    --------
    >>> mask_url("https://user:pw@host/v1?api-key=abc&x=1")
    'https://***@host/v1?api-key=%2A%2A%2A&x=1'
    >>> mask_url("https://host/keys/sk-abcdefghijklmnop/v1")
    'https://host/keys/***/v1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _url_secret_name(k) else v) for k, v in pairs])
    path = "/".join(
        MASK if _KEYLIKE.match(segment) else segment
        for segment in parts.path.split("/")
    )
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def url_credential(url: str) -> str | None:
    """Where ``url`` carries a credential (a phrase for messages), or None.

    Examples
    --------
    >>> url_credential("https://host/v1?api-version=2024-02-01") is None
    True
    >>> url_credential("https://host/v1?code=abc")
    "the query parameter 'code'"
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an unreadable form"
    if "@" in parts.netloc:
        return "a user:password part before the host"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _url_secret_name(name):
            return f"the query parameter {name!r}"
    if any(_KEYLIKE.match(segment) for segment in parts.path.split("/")):
        return "a path segment that looks like a key"
    return None


def check_url(url: str, what: str = "base_url") -> None:
    """Refuse a URL that carries a credential; the message masks it.

    A key in a URL reaches logs (httpx logs every request URL), reprs and
    scikit-learn's printed parameters, so it is never accepted.
    """
    where = url_credential(url)
    if where is not None:
        raise ValueError(
            f"{what} must not carry a credential, but {mask_url(url)!r} has one in "
            f"{where}. Remove it from the URL: pass the key as api_key (or in the "
            "environment variable named by api_key_env) and any other secret in "
            "headers= (e.g. headers={'x-functions-key': ...})."
        )


def _bad_char(value: str) -> tuple[int, str] | None:
    for i, ch in enumerate(value):
        if ch.isspace():
            return i, "a space or line break"
        if not 33 <= ord(ch) <= 126:
            return i, "a non-ASCII or control character"
    return None


def check_key(value: str, what: str = "The API key") -> str:
    """``value`` without surrounding whitespace; refuses inner spaces and non-ASCII.

    A key read from a file or a CRLF ``.env`` ends in a line break: stripped. The
    error never shows the key, only its length and the position of the fault.

    Examples
    --------
    >>> check_key("sk-abc\r\n")
    'sk-abc'
    """
    stripped = value.strip()
    if not stripped:
        raise ValueError(
            f"{what} is empty or only whitespace. Set it (e.g. the variable named "
            "by api_key_env) to the key itself."
        )
    bad = _bad_char(stripped)
    if bad is not None:
        raise ValueError(
            f"{what} ({len(stripped)} characters) contains {bad[1]} at position "
            f"{bad[0]}; a key is printable ASCII without spaces. Check the value "
            "(a quote, a line break or a word copied with it)."
        )
    return stripped


def check_header_value(name: str, value: str) -> str:
    """A header value safe to send: keys checked like :func:`check_key`."""
    if is_sensitive(name):
        return check_key(value, f"The value of header {name!r}")
    if any(not 32 <= ord(ch) <= 126 and ch != "\t" for ch in value):
        raise ValueError(
            f"The value of header {name!r} contains a non-ASCII or control "
            "character; HTTP headers are ASCII. Fix the value."
        )
    return value


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
        if parts.username:
            found.append(parts.username)
        found += [v for k, v in parse_qsl(parts.query) if _url_secret_name(k)]
        found += [seg for seg in parts.path.split("/") if _KEYLIKE.match(seg)]
    except ValueError:
        pass
    out: list[str] = []
    for s in found:
        if s:
            for form in (s, s.strip()):
                out.append(form)
                if form.lower().startswith("bearer "):
                    out.append(form[7:].strip())
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (4 characters or more) replaced by ``'***'``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
