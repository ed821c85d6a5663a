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
    "BadVector",
    "Malformed",
    "SyncTransportAdapter",
    "TooLarge",
    "about_inputs",
    "asks_for_floats",
    "decode_body",
    "decoded_headers",
    "max_response_bytes",
    "post_bounded",
    "quota_exhausted",
    "retry_after",
    "sanitized",
    "server_message",
]

RETRY_STATUSES = frozenset({408, 409, 425, 429})
SPLIT_STATUSES = frozenset({400, 413, 422})
_INPUT_WORDS = ("input", "token", "context length", "content", "too long", "string")


class Malformed(Exception):
    """A 2xx answer that cannot be trusted (retried like a 5xx)."""


class BadVector(Malformed):
    """A 2xx answer holding an all-zero or non-finite vector (at ``index``)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


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
            headers=decoded_headers(response.headers),
            content=response.content,
            request=request,
        )


def decoded_headers(headers: httpx.Headers) -> httpx.Headers:
    """``headers`` for a body already decoded: no content-encoding or length.

    Copying ``content-encoding: gzip`` onto decoded text would make httpx try to
    decompress it again (and fail on every compressed error answer).
    """
    out = httpx.Headers(headers)
    for name in ("content-encoding", "content-length", "transfer-encoding"):
        if name in out:
            del out[name]
    return out


class TooLarge(Exception):
    """An answer whose decoded body passed the size limit."""


async def post_bounded(
    http: httpx.AsyncClient,
    url: str,
    payload: Any,
    *,
    timeout: float,
    max_bytes: int,
) -> httpx.Response:
    """POST and read the whole answer within ``timeout`` s and ``max_bytes``.

    ``timeout`` bounds the request as a whole (connect, send, every byte of the
    answer), not each read as httpx's own timeout does: a server trickling one
    byte a second cannot hold a call. ``max_bytes`` bounds the decoded body
    (after gzip), so neither a huge answer nor a small one that expands to a huge
    one can take the memory. Raises :class:`TimeoutError` or :class:`TooLarge`;
    the answer returned holds its decoded body.
    """

    async def fetch() -> httpx.Response:
        request = http.build_request("POST", url, json=payload)
        response = await http.send(request, stream=True)
        try:
            length = response.headers.get("content-length", "")
            if (
                length.isdigit()
                and "content-encoding" not in response.headers
                and int(length) > max_bytes
            ):
                raise TooLarge(int(length))
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(size)
                chunks.append(chunk)
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=decoded_headers(response.headers),
            content=b"".join(chunks),
            request=request,
            extensions={"reason_phrase": response.reason_phrase.encode("ascii")},
        )

    return await asyncio.wait_for(fetch(), timeout)


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
    headers = {
        name: redact(str(value), secrets)
        for name, value in mask_headers(decoded_headers(response.headers)).items()
    }
    try:
        text = response.text
    except Exception:  # an undecodable body is not evidence worth keeping
        text = ""
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=redact(text, secrets).encode(),
        request=request,
        extensions={"reason_phrase": response.reason_phrase.encode("ascii", "replace")},
    )


#: Decoded bytes an answer may take: 1 MiB plus 160 KiB per input (a 4,096-wide
#: vector written as JSON floats takes about 90 KiB), at most 256 MiB.
_BASE_BYTES, _BYTES_PER_INPUT, _MOST_BYTES = 2**20, 160 * 2**10, 256 * 2**20


def max_response_bytes(n_inputs: int) -> int:
    """The largest decoded answer accepted for a request of ``n_inputs`` texts."""
    return min(_MOST_BYTES, _BASE_BYTES + _BYTES_PER_INPUT * max(1, n_inputs))


def server_message(response: httpx.Response) -> str:
    """The server's own words: ``error.message`` of a JSON body, else the text."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except Exception:
        pass
    try:
        return response.text.strip()[:300]
    except Exception:
        return ""


def quota_exhausted(response: httpx.Response) -> bool:
    """Whether a 429 says the quota (billing) is spent: waiting will not help."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") or error.get("type") if isinstance(error, dict) else ""
        if str(code) == "insufficient_quota":
            return True
    except Exception:
        pass
    low = server_message(response).lower()
    return "exceeded your current quota" in low or "insufficient_quota" in low


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
        return _decode_body(response, n, width)
    except Malformed:
        raise
    except Exception as exc:  # Overflow, Recursion, Memory...: not trustworthy
        raise Malformed(f"unreadable body: {type(exc).__name__}") from None


def _decode_body(
    response: httpx.Response, n: int, width: int | None
) -> tuple[list[npt.NDArray[np.float32]], int | None]:
    try:
        body = response.json()
        data = body["data"]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise Malformed(f"no JSON 'data' list: {type(exc).__name__}") from None
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
        if type(index) is not int or not 0 <= index < n:
            raise Malformed(f"index {index!r} out of range")
        if vectors[index] is not None:
            raise Malformed(f"index {index} arrived twice")
        vector = _vector(embedding)
        if width is None:
            width = vector.size
        if vector.ndim != 1 or vector.size != width or width == 0:
            raise Malformed(f"vector of {vector.size} values, expected {width}")
        if not np.isfinite(vector).all():
            raise BadVector(f"non-finite values in the vector of input {index}", index)
        if not vector.any():
            raise BadVector(f"an all-zero vector for input {index}", index)
        vectors[index] = vector
    usage = body.get("usage") if isinstance(body, dict) else None
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return [v for v in vectors if v is not None], (
        tokens if type(tokens) is int and 0 <= tokens < 2**53 else None
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
