"""HTTP plumbing of the client: answers decoded and classified, evidence sanitised.

* :func:`decode_body` checks a 2xx body (every ``index`` once, one width, finite
  values) and decodes base64 little-endian float32 or float lists;
* :func:`about_inputs` tells a 4xx that blames the inputs (split the batch to find
  the text) from one that refuses the request itself;
* :func:`sanitized` copies an answer for an exception without any key;
* :func:`retry_after` reads ``retry-after-ms`` / ``retry-after``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from embedtasks.embedders._secrets import mask_headers, mask_url, redact

__all__ = [
    "RETRY_STATUSES",
    "SPLIT_STATUSES",
    "Malformed",
    "SyncTransportAdapter",
    "about_inputs",
    "asks_for_floats",
    "decode_body",
    "retry_after",
    "sanitized",
]

RETRY_STATUSES = frozenset({408, 409, 429})
SPLIT_STATUSES = frozenset({400, 413, 422})
_INPUT_WORDS = ("input", "token", "context length", "content", "too long", "string")


class Malformed(Exception):
    """A 2xx answer that cannot be trusted (retried like a 5xx)."""


class SyncTransportAdapter(httpx.AsyncBaseTransport):
    """Run a sync-only transport (``handle_request``) from the async client."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()

        def call() -> httpx.Response:
            response = self._transport.handle_request(request)
            response.read()
            return response

        response = await asyncio.to_thread(call)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=response.content,
            request=request,
        )


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``retry-after``)."""
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:  # an HTTP date: not worth parsing, use our backoff
        return None
    return None


def sanitized(response: httpx.Response, secrets: Sequence[str]) -> httpx.Response:
    """A copy of ``response`` safe to keep in an exception: no key anywhere.

    Its request keeps the method and a masked URL, no headers and no body.
    """
    request = httpx.Request(
        response.request.method, redact(mask_url(str(response.request.url)), secrets)
    )
    return httpx.Response(
        response.status_code,
        headers=mask_headers(response.headers),
        content=redact(response.text, secrets).encode(),
        request=request,
    )


def asks_for_floats(response: httpx.Response) -> bool:
    """Whether a 4xx complains about ``encoding_format="base64"``."""
    return "encoding_format" in response.text and "base64" in response.text


def about_inputs(response: httpx.Response) -> bool:
    """Whether a 4xx blames the inputs (split to find one) or the request."""
    if response.status_code == 413:
        return True
    try:
        error = response.json()["error"]
        message = str(error.get("message", ""))
        param = error.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, param = response.text, None
    if param is not None:
        return "input" in str(param)
    return any(word in message.lower() for word in _INPUT_WORDS)


def decode_body(
    response: httpx.Response, n: int, width: int | None
) -> tuple[list[npt.NDArray[np.float32]], int | None]:
    """The ``n`` vectors of a 2xx answer in input order, and its prompt tokens.

    Raises :class:`Malformed` for anything that cannot be trusted.
    """
    try:
        body = response.json()
        data = body["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Malformed(f"no JSON 'data' list: {type(exc).__name__}") from exc
    if not isinstance(data, list) or len(data) != n:
        raise Malformed(
            f"{len(data) if isinstance(data, list) else 'no'} items for {n} inputs"
        )
    vectors: list[npt.NDArray[np.float32] | None] = [None] * n
    for item in data:
        try:
            index, embedding = item["index"], item["embedding"]
        except (KeyError, TypeError) as exc:
            raise Malformed("an item lacks 'index' or 'embedding'") from exc
        if not isinstance(index, int) or not 0 <= index < n:
            raise Malformed(f"index {index!r} out of range")
        if vectors[index] is not None:
            raise Malformed(f"index {index} arrived twice")
        vector = _vector(embedding)
        if width is None:
            width = vector.size
        if vector.ndim != 1 or vector.size != width or width == 0:
            raise Malformed(f"vector of {vector.size} values, expected {width}")
        if not np.isfinite(vector).all():
            raise Malformed("non-finite values")
        vectors[index] = vector
    usage = body.get("usage") if isinstance(body, dict) else None
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return [v for v in vectors if v is not None], (
        tokens if isinstance(tokens, int) else None
    )


def _vector(embedding: Any) -> npt.NDArray[np.float32]:
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Malformed("bad base64") from exc
        if len(raw) % 4:
            raise Malformed("base64 is not whole float32 values")
        return np.frombuffer(raw, dtype="<f4")
    if isinstance(embedding, list):
        try:
            return np.asarray(embedding, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise Malformed("non-numeric embedding") from exc
    raise Malformed(f"embedding of type {type(embedding).__name__}")
