"""An OpenAI-compatible ``/embeddings`` client: packed, concurrent, paced, retried.

:class:`EmbeddingClient` turns a list of texts into a float32 matrix in input
order, configured by one :class:`ClientSettings`. It

* packs requests within every limit at once: inputs per request, summed tokens
  per request and tokens per input (:mod:`embedtasks.embedders._http._tokens`);
* sends them on one ``httpx.AsyncClient`` through one
  :class:`~._pacing.Pacer` for the pool, which learns unannounced rate
  limits from 429s and, beside a cache, shares that knowledge between processes;
* asks for ``encoding_format="base64"`` and decodes little-endian float32 straight
  into a preallocated matrix, restoring order by each item's ``index`` and
  checking that every index arrived exactly once;
* retries 5xx, 408/409, timeouts, dropped connections and malformed bodies with
  exponential backoff and full jitter (``max_retries``); a 429 that says when to
  come back (Retry-After) is waited out without spending a retry, bounded by
  ``deadline``;
* splits a batch that a 400/413/422 rejects because of an input until the bad
  text is isolated and named by its row in the user's input; a request-level
  400 (e.g. an invalid ``dimensions``), refused connections and invalid URLs
  fail at once;
* on a fatal error lets requests already in flight finish and hands their
  vectors to ``on_batch`` (the cache) before raising.

It knows nothing of scikit-learn; the sync :meth:`EmbeddingClient.embed` also
works inside a running event loop (Jupyter) by running in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import numpy as np
import numpy.typing as npt

from embedtasks.embedders._http._run import OnBatch, _Run
from embedtasks.embedders._http._settings import (
    DEFAULT_BASE_URL,
    LONG_TEXT_POLICIES,
    ClientSettings,
    UsageStats,
)
from embedtasks.embedders._http._tokens import (
    TokenCounter,
    token_counter,
)
from embedtasks.embedders._http._transport import (
    SyncTransportAdapter,
    retry_after,
    sanitized,
)
from embedtasks.embedders._secrets import (
    check_header_value,
    check_key,
    mask_url,
    redact,
    reveal,
)
from embedtasks.embedders._secrets import secrets_of as _secrets_of
from embedtasks.exceptions import (
    EmbeddingAPIError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "LONG_TEXT_POLICIES",
    "ClientSettings",
    "EmbeddingClient",
    "TokenCounter",
    "UsageStats",
    "token_counter",
]

_retry_after = retry_after  # the name older tests import


# ---------------------------------------------------------------------- client
class EmbeddingClient:
    """Embed texts with an OpenAI-compatible ``/embeddings`` endpoint.

    Parameters
    ----------
    settings : ClientSettings or str
        The configuration, or a model name (then ``options`` are its fields).
    transport : httpx transport, optional
        For tests (e.g. ``httpx.MockTransport``); sync-only transports work too.
    tokens : TokenCounter, optional
        Defaults to :func:`._tokens.token_counter` of the model.
    **options
        :class:`ClientSettings` fields, when ``settings`` is a model name.

    Examples
    --------
    >>> from embedtasks.testing import fake_openai_transport
    >>> client = EmbeddingClient("m", transport=fake_openai_transport(dim=3))
    >>> client.embed(["a", "b"]).shape
    (2, 3)
    >>> client.last_stats.requests
    1
    >>> client.estimate(["a", "b"])["requests"]
    1
    """

    def __init__(
        self,
        settings: ClientSettings | str,
        *,
        transport: Any = None,
        tokens: TokenCounter | None = None,
        **options: Any,
    ) -> None:
        if isinstance(settings, str):
            settings = ClientSettings(model=settings, **options)
        elif options:
            settings = replace(settings, **options)
        self.settings = settings
        self.transport = transport
        self.tokens = tokens if tokens is not None else token_counter(settings.model)
        self.last_stats = UsageStats()
        self._float_format = False  # set when a server rejects base64
        self._secrets = _secrets_of(
            settings.api_key, settings.headers, settings.base_url
        )
        #: The endpoint as shown in messages (no key in it).
        self.display_url = mask_url(settings.base_url)

    def __repr__(self) -> str:
        s = self.settings
        key = "None" if reveal(s.api_key) is None else "'***'"
        return (
            f"EmbeddingClient(model={s.model!r}, base_url={self.display_url!r}, "
            f"api_key={key})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("EmbeddingClient is not picklable (it may hold an API key).")

    # -- public ----------------------------------------------------------------
    def embed(
        self,
        texts: Sequence[str],
        *,
        on_batch: OnBatch | None = None,
        rows: Sequence[int] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed ``texts``; a float32 array of shape ``(len(texts), d)``.

        Works with or without a running event loop (in one, it runs on a worker
        thread). ``on_batch(positions, vectors)`` is called (from a worker thread)
        as each group of texts is finished, e.g. to cache them. ``rows[i]`` is the
        user's row of ``texts[i]``, used in error messages.
        """
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False  # (no error raised below chains to this one)
        if not in_loop:
            return asyncio.run(self.aembed(texts, on_batch=on_batch, rows=rows))
        with ThreadPoolExecutor(1, thread_name_prefix="embedtasks") as pool:
            return pool.submit(
                asyncio.run, self.aembed(texts, on_batch=on_batch, rows=rows)
            ).result()

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        on_batch: OnBatch | None = None,
        rows: Sequence[int] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Async :meth:`embed`."""
        return await _Run(self, list(texts), on_batch, rows).run()

    def estimate(self, texts: Sequence[str]) -> dict[str, Any]:
        """What embedding ``texts`` would send, without sending anything.

        Returns
        -------
        dict
            ``tokens`` (counted; an upper bound unless ``tokens_exact``),
            ``tokens_exact``, ``requests``, and ``seconds``: the least time the
            known rate limits allow (``None`` when no limit is known).
        """
        run = _Run(self, list(texts), None, None)
        n_tokens = int(run.piece_tokens.sum())
        s = self.settings
        bounds = []
        if s.requests_per_minute:
            bounds.append(60.0 * len(run.batches) / s.requests_per_minute)
        if s.tokens_per_minute:
            bounds.append(60.0 * n_tokens / s.tokens_per_minute)
        return {
            "tokens": n_tokens,
            "tokens_exact": self.tokens.exact,
            "requests": len(run.batches),
            "seconds": max(bounds) if bounds else None,
        }

    # -- plumbing used by _Run ---------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        s = self.settings
        headers = {"User-Agent": "embedtasks"}
        key = reveal(s.api_key)
        if key is not None:
            key = check_key(key)
        if key:
            if s.api_version is not None:
                headers["api-key"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        for name, value in dict(s.headers or {}).items():
            plain = reveal(value)
            if plain is not None:
                headers[name] = check_header_value(str(name), plain)
        transport = self.transport
        if transport is not None and not hasattr(transport, "handle_async_request"):
            transport = SyncTransportAdapter(transport)
        # A query in base_url travels as parameters: the path stays right.
        parts = urlsplit(s.base_url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if s.api_version:
            params["api-version"] = s.api_version
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return {
            "base_url": root + "/",
            "headers": headers,
            "params": params,
            "timeout": httpx.Timeout(s.timeout),
            "limits": httpx.Limits(
                max_connections=s.max_concurrency,
                max_keepalive_connections=s.max_concurrency,
            ),
            "transport": transport,
        }

    def _payload(self, inputs: list[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.settings.model, "input": inputs}
        if not self._float_format:
            payload["encoding_format"] = "base64"
        if self.settings.dimensions is not None:
            payload["dimensions"] = self.settings.dimensions
        return payload

    def _error(self, message: str, **kwargs: Any) -> EmbeddingAPIError:
        """An :class:`EmbeddingAPIError` with every secret masked."""
        response = kwargs.pop("response", None)
        if response is not None:
            response = sanitized(response, self._secrets)
        return EmbeddingAPIError(
            redact(message, self._secrets), response=response, **kwargs
        )
