"""An OpenAI-compatible ``/embeddings`` client: packed, concurrent, paced, retried.

:class:`EmbeddingClient` turns a list of texts into a float32 matrix in input
order. It

* packs requests within every limit at once: inputs per request, summed tokens
  per request and tokens per input (see :func:`token_counter`);
* sends them with bounded concurrency on one ``httpx.AsyncClient``, paced to
  requests- and tokens-per-minute limits (configured, or learned from
  ``x-ratelimit-limit-*`` headers) and slowing down after each 429;
* asks for ``encoding_format="base64"`` and decodes little-endian float32 straight
  into a preallocated matrix (float lists are accepted from servers that ignore
  it), restoring order by each item's ``index`` and checking that every index
  arrived exactly once;
* retries 408/409/429/5xx, timeouts, dropped connections and malformed bodies
  with exponential backoff and full jitter, honouring ``retry-after-ms`` and
  ``retry-after``; splits a batch that a 400/413/422 rejects until the bad text is
  isolated and named.

It knows nothing of scikit-learn; the sync :meth:`EmbeddingClient.embed` also
works inside a running event loop (Jupyter) by running in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import math
import os
import random
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from embedtasks._similarity import pool_chunks
from embedtasks.exceptions import EmbeddingAPIError, TextTooLongError

__all__ = [
    "DEFAULT_BASE_URL",
    "EmbeddingClient",
    "TokenCounter",
    "UsageStats",
    "token_counter",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429})
SPLIT_STATUSES = frozenset({400, 413, 422})
LONG_TEXT_POLICIES = ("error", "truncate", "chunk")

OnBatch = Callable[[npt.NDArray[np.intp], npt.NDArray[np.float32]], None]


# --------------------------------------------------------------------------- tokens
class TokenCounter:
    """Counts tokens and splits over-long texts, exactly or by a safe bound.

    The fallback bound counts UTF-8 bytes. Every token of a byte-level BPE (the
    ``cl100k_base`` / ``o200k_base`` family used by OpenAI's embedding models)
    covers at least one byte, so ``n_tokens <= n_bytes`` always holds: batches
    packed with it never exceed a token limit, at the cost of more, smaller
    requests (English averages ~4 bytes per token).

    Parameters
    ----------
    encode : callable, optional
        ``str -> list[int]`` token ids (e.g. a tiktoken encoding's
        ``encode_ordinary``); ``None`` uses the byte bound.
    decode : callable, optional
        ``list[int] -> str``, needed with ``encode`` to split long texts.
    name : str, default="utf8-bytes"
        Shown in messages.

    Examples
    --------
    >>> counter = TokenCounter()
    >>> counter.count(["hello", "héllo"]).tolist()  # bytes: a safe upper bound
    [5, 6]
    >>> [piece for piece, _ in counter.split("abcdefg", 3)]
    ['abc', 'def', 'g']
    """

    def __init__(
        self,
        encode: Callable[[str], Sequence[int]] | None = None,
        decode: Callable[[Sequence[int]], str] | None = None,
        *,
        name: str = "utf8-bytes",
    ) -> None:
        self.encode = encode
        self.decode = decode
        self.name = name

    @property
    def exact(self) -> bool:
        """Whether counts come from the real tokenizer (not the byte bound)."""
        return self.encode is not None

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r})"

    def count(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Tokens (or the byte bound) of each text."""
        if self.encode is not None:
            encode = self.encode
            return np.fromiter(
                (len(encode(t)) for t in texts), dtype=np.int64, count=len(texts)
            )
        return np.fromiter(
            (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts),
            dtype=np.int64,
            count=len(texts),
        )

    def split(self, text: str, limit: int) -> list[tuple[str, int]]:
        """Cut ``text`` into consecutive pieces of at most ``limit`` tokens.

        Returns ``(piece, n_tokens)`` pairs; the pieces joined give back the text
        (up to characters cut at a token boundary, with a real tokenizer).
        """
        if self.encode is not None and self.decode is not None:
            ids = list(self.encode(text))
            # Re-encoding a decoded window can differ slightly at its edges.
            step = max(1, limit - 16) if limit > 64 else limit
            return [
                (self.decode(ids[s : s + step]), len(ids[s : s + step]))
                for s in range(0, len(ids), step)
            ]
        data = text.encode("utf-8")
        pieces = []
        start = 0
        while start < len(data):
            end = min(start + limit, len(data))
            while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
                end -= 1  # do not cut a multi-byte character
            if end == start:  # limit below one character: take it whole
                end = start + 1
                while end < len(data) and (data[end] & 0xC0) == 0x80:
                    end += 1
            pieces.append((data[start:end].decode("utf-8"), end - start))
            start = end
        return pieces


_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def _tiktoken_file(encoding_name: str) -> str | None:
    """Path where tiktoken caches an encoding's BPE file, or None if disabled."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None
    url = _TIKTOKEN_URL.format(encoding_name)
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


@functools.lru_cache(maxsize=16)
def token_counter(model: str) -> TokenCounter:
    """The best offline :class:`TokenCounter` for ``model``.

    Uses tiktoken when it knows the model and its BPE file is already in
    tiktoken's cache (``$TIKTOKEN_CACHE_DIR``); it never downloads. Otherwise it
    returns the byte bound, which is always >= the real count for OpenAI's
    byte-level BPE tokenizers.

    Examples
    --------
    >>> token_counter("some-local-model").exact  # unknown to tiktoken
    False
    """
    try:
        import tiktoken

        name = tiktoken.encoding_name_for_model(model)
    except (ImportError, KeyError):
        return TokenCounter()
    path = _tiktoken_file(name)
    if path is None or not os.path.exists(path):
        return TokenCounter()
    try:
        enc = tiktoken.get_encoding(name)
    except Exception:  # a corrupt cache file would trigger a download: give up
        return TokenCounter()
    return TokenCounter(enc.encode_ordinary, enc.decode, name=name)


# ---------------------------------------------------------------------- pacing
class RateLimiter:
    """Spaces request starts to stay within requests/tokens-per-minute limits.

    Each request reserves the earliest start at which both budgets allow it
    (a GCRA / virtual-scheduling limiter: no bursts, no idle gaps). After a 429 the
    rate drops by 20% and every sender pauses for the server's retry-after; each
    success wins back 2%.
    """

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.factor = 1.0
        self._next_request = 0.0
        self._next_token = 0.0
        self._pause_until = 0.0

    async def acquire(self, tokens: int) -> None:
        """Wait until a request costing ``tokens`` may start."""
        while True:
            now = time.monotonic()
            if self._pause_until > now:
                await asyncio.sleep(self._pause_until - now)
                continue
            start = max(now, self._next_request, self._next_token)
            if self.rpm:
                self._next_request = start + 60.0 / (self.rpm * self.factor)
            if self.tpm:
                cost = min(tokens, self.tpm)  # one request may use a whole minute
                self._next_token = start + 60.0 * cost / (self.tpm * self.factor)
            if start > now:
                await asyncio.sleep(start - now)
            if self._pause_until <= time.monotonic():
                return

    def learn(self, headers: httpx.Headers) -> None:
        """Adopt the limits a server announces when none were configured."""
        for attr, name in (
            ("rpm", "x-ratelimit-limit-requests"),
            ("tpm", "x-ratelimit-limit-tokens"),
        ):
            if getattr(self, attr) is None and name in headers:
                try:
                    value = float(headers[name])
                except ValueError:
                    continue
                if value > 0:
                    setattr(self, attr, value)

    def rate_limited(self, delay: float) -> None:
        """A 429 arrived: slow down and pause everyone for ``delay`` seconds.

        The rate drops once per pause: requests that were already in flight
        when the first 429 came back do not compound it.
        """
        now = time.monotonic()
        if now >= self._pause_until:
            self.factor = max(0.1, self.factor * 0.8)
        self._pause_until = max(self._pause_until, now + delay)

    def succeeded(self) -> None:
        """A request went through: recover some rate."""
        self.factor = min(1.0, self.factor * 1.02)


# ----------------------------------------------------------------------- stats
@dataclass
class UsageStats:
    """Counters of one :meth:`EmbeddingClient.embed` call."""

    texts: int = 0
    requests: int = 0
    tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    split_batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return asdict(self)


class _Malformed(Exception):
    """A 2xx answer that cannot be trusted (retried like a 5xx)."""


class _SyncTransportAdapter(httpx.AsyncBaseTransport):
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


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms`` or ``retry-after``)."""
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        if "retry-after" in headers:
            return max(0.0, float(headers["retry-after"]))
    except ValueError:  # an HTTP date: not worth parsing, use our backoff
        return None
    return None


# ---------------------------------------------------------------------- client
class EmbeddingClient:
    """Embed texts with an OpenAI-compatible ``/embeddings`` endpoint.

    Parameters
    ----------
    model : str
        Model name sent in each request.
    base_url : str, default="https://api.openai.com/v1"
        Endpoint root; requests go to ``{base_url}/embeddings``.
    api_key : str, optional
        Sent as ``Authorization: Bearer`` (or ``api-key`` with ``api_version``).
        Never shown in ``repr`` or messages.
    dimensions : int, optional
        Ask text-embedding-3 models for shorter vectors.
    api_version : str, optional
        Azure-style ``api-version`` query parameter.
    headers : mapping, optional
        Extra HTTP headers.
    max_inputs_per_request, max_tokens_per_request, max_tokens_per_input : int
        Packing limits (OpenAI: 2,048, 300,000 and 8,192).
    max_concurrency : int, default=8
        Requests in flight at once.
    requests_per_minute, tokens_per_minute : float, optional
        Pace to these limits (learned from ``x-ratelimit-limit-*`` headers if
        ``None``).
    max_retries : int, default=8
        Retries per request before giving up.
    timeout : float, default=60.0
        Seconds per request.
    long_text : {"error", "truncate", "chunk"}, default="error"
        What to do with a text over ``max_tokens_per_input``: raise
        :class:`~embedtasks.exceptions.TextTooLongError`, keep its first piece, or
        embed all pieces and average them weighted by length (then re-normalise).
    backoff : float, default=0.5
        First retry delay in seconds (doubles per attempt, full jitter, capped at
        ``max_backoff``); 0 retries at once (tests).
    max_backoff : float, default=30.0
        Largest retry delay, also the cap on a server's retry-after.
    transport : httpx transport, optional
        For tests (e.g. ``httpx.MockTransport``); sync-only transports work too.
    tokens : TokenCounter, optional
        Defaults to :func:`token_counter` of ``model``.

    Examples
    --------
    >>> from embedtasks.testing import fake_openai_transport
    >>> client = EmbeddingClient("m", transport=fake_openai_transport(dim=3))
    >>> client.embed(["a", "b"]).shape
    (2, 3)
    >>> client.last_stats.requests
    1
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        api_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_inputs_per_request: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_tokens_per_input: int = 8192,
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 8,
        timeout: float = 60.0,
        long_text: str = "error",
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: Any = None,
        tokens: TokenCounter | None = None,
    ) -> None:
        if long_text not in LONG_TEXT_POLICIES:
            raise ValueError(
                f"long_text must be one of {LONG_TEXT_POLICIES}, got {long_text!r}."
            )
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key
        self.dimensions = dimensions
        self.api_version = api_version
        self.headers = dict(headers or {})
        self.max_inputs_per_request = max_inputs_per_request
        self.max_tokens_per_request = max_tokens_per_request
        self.max_tokens_per_input = max_tokens_per_input
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_retries = max_retries
        self.timeout = timeout
        self.long_text = long_text
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.transport = transport
        self.tokens = tokens if tokens is not None else token_counter(model)
        self.last_stats = UsageStats()
        self._float_format = False  # set when a server rejects base64

    def __repr__(self) -> str:
        key = "None" if self._api_key is None else "'***'"
        return (
            f"EmbeddingClient(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key={key})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("EmbeddingClient is not picklable (it may hold an API key).")

    # -- public ----------------------------------------------------------------
    def embed(
        self, texts: Sequence[str], *, on_batch: OnBatch | None = None
    ) -> npt.NDArray[np.float32]:
        """Embed ``texts``; a float32 array of shape ``(len(texts), d)``.

        Works with or without a running event loop (in one, it runs on a worker
        thread). ``on_batch(positions, vectors)`` is called (from a worker thread)
        as each group of texts is finished, e.g. to cache them.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aembed(texts, on_batch=on_batch))
        with ThreadPoolExecutor(1, thread_name_prefix="embedtasks") as pool:
            return pool.submit(
                asyncio.run, self.aembed(texts, on_batch=on_batch)
            ).result()

    async def aembed(
        self, texts: Sequence[str], *, on_batch: OnBatch | None = None
    ) -> npt.NDArray[np.float32]:
        """Async :meth:`embed`."""
        return await _Run(self, list(texts), on_batch).run()

    # -- plumbing used by _Run ---------------------------------------------------
    def _client_kwargs(self) -> dict[str, Any]:
        headers = {"User-Agent": "embedtasks"}
        if self._api_key:
            if self.api_version is not None:
                headers["api-key"] = self._api_key
            else:
                headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(self.headers)
        transport = self.transport
        if transport is not None and not hasattr(transport, "handle_async_request"):
            transport = _SyncTransportAdapter(transport)
        return {
            "base_url": self.base_url + "/",
            "headers": headers,
            "params": {"api-version": self.api_version} if self.api_version else {},
            "timeout": httpx.Timeout(self.timeout),
            "limits": httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
            "transport": transport,
        }

    def _payload(self, inputs: list[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "input": inputs}
        if not self._float_format:
            payload["encoding_format"] = "base64"
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        return payload


class _Run:
    """State of one embed call: pieces, batches, output matrix, counters."""

    def __init__(
        self, client: EmbeddingClient, texts: list[str], on_batch: OnBatch | None
    ) -> None:
        self.c = client
        self.texts = texts
        self.on_batch = on_batch
        self.stats = UsageStats(texts=len(texts))
        self.limiter = RateLimiter(client.requests_per_minute, client.tokens_per_minute)
        self.out: npt.NDArray[np.float32] | None = None
        self._started = time.perf_counter()
        self._counted_estimate = 0
        self._counted_real = 0
        self._prepare()

    # -- packing -----------------------------------------------------------------
    def _prepare(self) -> None:
        c = self.c
        counts = c.tokens.count(self.texts)
        limit = c.max_tokens_per_input
        long_rows = np.flatnonzero(counts > limit)
        if long_rows.size == 0 or (c.long_text == "error" and not c.tokens.exact):
            # One piece per text (with the byte bound an "over-long" text may be
            # fine: the server decides, and a rejection names the row).
            self.piece_text = self.texts
            self.piece_owner = None
            self.piece_tokens = counts
        elif c.long_text == "error":
            row = int(long_rows[0])
            raise TextTooLongError(
                f"Text at row {row} has {int(counts[row])} tokens ({c.tokens.name}), "
                f"over the limit of {limit} per input for model {c.model!r}. Shorten "
                "it, or set long_text='truncate' or long_text='chunk'.",
                row=row,
                n_tokens=int(counts[row]),
                limit=limit,
            )
        else:
            texts: list[str] = []
            owners: list[int] = []
            tokens: list[int] = []
            long_set = set(long_rows.tolist())
            for i, text in enumerate(self.texts):
                if i in long_set:
                    pieces = c.tokens.split(text, limit)
                    if c.long_text == "truncate":
                        pieces = pieces[:1]
                else:
                    pieces = [(text, int(counts[i]))]
                for piece, n_tok in pieces:
                    texts.append(piece)
                    owners.append(i)
                    tokens.append(n_tok)
            self.piece_text = texts
            self.piece_owner = np.asarray(owners, dtype=np.intp)
            self.piece_tokens = np.asarray(tokens, dtype=np.int64)
            self.pieces_per_text = np.bincount(
                self.piece_owner, minlength=len(self.texts)
            )
        self.batches = self._pack()

    def _pack(self) -> list[npt.NDArray[np.intp]]:
        c = self.c
        batches: list[npt.NDArray[np.intp]] = []
        start, total = 0, 0
        max_n, max_tok = c.max_inputs_per_request, c.max_tokens_per_request
        for i, n_tok in enumerate(self.piece_tokens.tolist()):
            if i > start and (i - start >= max_n or total + n_tok > max_tok):
                batches.append(np.arange(start, i))
                start, total = i, 0
            total += n_tok
        if len(self.piece_tokens) > start:
            batches.append(np.arange(start, len(self.piece_tokens)))
        return batches

    def _token_ratio(self) -> float:
        """Real tokens per counted token, from the server's ``usage`` (<= 1).

        The byte bound over-counts; pacing to a tokens-per-minute limit with it
        would waste most of the budget, so pacing uses what the server reports.
        """
        if self._counted_estimate <= 0 or self._counted_real <= 0:
            return 1.0
        return min(1.0, self._counted_real / self._counted_estimate)

    def _row(self, piece: int) -> int:
        return piece if self.piece_owner is None else int(self.piece_owner[piece])

    # -- running -------------------------------------------------------------------
    async def run(self) -> npt.NDArray[np.float32]:
        queue = deque(self.batches)
        async with httpx.AsyncClient(**self.c._client_kwargs()) as http:

            async def worker() -> None:
                while queue:
                    await self._send(http, queue.popleft())

            tasks: list[asyncio.Future[None]] = []
            try:
                if queue and not self.c.tokens.exact and self.limiter.tpm:
                    # Probe: learn real tokens per counted token (``usage``)
                    # before reserving tokens-per-minute budget for many requests.
                    await self._send(http, queue.popleft())
                n_workers = max(1, min(self.c.max_concurrency, len(queue)))
                tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                self.stats.seconds = time.perf_counter() - self._started
                self.c.last_stats = self.stats
        return await self._finish()

    async def _finish(self) -> npt.NDArray[np.float32]:
        out = self.out
        assert out is not None  # every batch succeeded, so a width is known
        if self.piece_owner is None:
            return out
        owners = self.piece_owner
        n = len(self.texts)
        counts = self.pieces_per_text
        if (counts == 1).all():
            return out  # truncation only: one piece per text, in order
        result = pool_chunks(out, owners, self.piece_tokens, n)
        multi = np.flatnonzero(counts > 1)
        if self.on_batch is not None:
            await asyncio.to_thread(self.on_batch, multi, result[multi])
        return result

    def _delay(self, attempt: int, server: float | None) -> float:
        if server is not None:
            return min(server, self.c.max_backoff)
        cap = min(self.c.max_backoff, self.c.backoff * 2.0 ** (attempt - 1))
        return random.uniform(cap / 2, cap) if cap > 0 else 0.0

    async def _send(self, http: httpx.AsyncClient, batch: npt.NDArray[np.intp]) -> None:
        c = self.c
        inputs = [self.piece_text[i] for i in batch.tolist()]
        tokens = int(self.piece_tokens[batch].sum())
        attempt = 0
        while True:
            await self.limiter.acquire(math.ceil(tokens * self._token_ratio()))
            failure: str
            response: httpx.Response | None = None
            server_delay: float | None = None
            try:
                response = await http.post("embeddings", json=c._payload(inputs))
            except httpx.TransportError as exc:  # timeouts, dropped connections
                failure = f"{type(exc).__name__}: {exc}"
            else:
                self.stats.requests += 1
                self.limiter.learn(response.headers)
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        self._decode(response, batch)
                    except _Malformed as exc:
                        failure = f"malformed response body ({exc})"
                    else:
                        self.limiter.succeeded()
                        await self._report(batch)
                        return
                elif status in RETRY_STATUSES or status >= 500:
                    failure = f"{status} {response.reason_phrase}"
                    server_delay = _retry_after(response.headers)
                    if status == 429:
                        self.stats.rate_limited += 1
                        self.limiter.rate_limited(
                            self._delay(attempt + 1, server_delay)
                        )
                elif (
                    status in SPLIT_STATUSES
                    and not c._float_format
                    and self._asks_for_floats(response)
                ):
                    c._float_format = True
                    continue
                elif status in SPLIT_STATUSES and len(batch) > 1:
                    self.stats.split_batches += 1
                    half = len(batch) // 2
                    await self._send(http, batch[:half])
                    await self._send(http, batch[half:])
                    return
                else:
                    raise self._api_error(response, batch)
            attempt += 1
            if attempt > c.max_retries:
                raise EmbeddingAPIError(
                    f"Embedding request to {c.base_url}/embeddings (model "
                    f"{c.model!r}, {len(batch)} inputs from row {self._row(batch[0])}) "
                    f"still failed after {c.max_retries} retries; last error: "
                    f"{failure}. Check that the server is up and reachable; raise "
                    "max_retries or lower requests_per_minute / max_concurrency if "
                    "it is overloaded.",
                    status_code=None if response is None else response.status_code,
                    response=response,
                )
            self.stats.retries += 1
            delay = self._delay(attempt, server_delay)
            if delay > 0:
                await asyncio.sleep(delay)

    @staticmethod
    def _asks_for_floats(response: httpx.Response) -> bool:
        return "encoding_format" in response.text and "base64" in response.text

    def _api_error(
        self, response: httpx.Response, batch: npt.NDArray[np.intp]
    ) -> EmbeddingAPIError:
        c = self.c
        status = response.status_code
        row = self._row(batch[0]) if len(batch) == 1 else None
        if status in (401, 403):
            hint = (
                "Check the API key: set the environment variable named by "
                "api_key_env (OPENAI_API_KEY by default) or pass api_key"
            )
        elif status == 404:
            hint = "Check base_url and model (an Azure base_url names the deployment)"
        elif row is not None:
            hint = (
                f"The server rejected the text at row {row} on its own: fix or drop "
                "it (if it is too long, set long_text='truncate' or 'chunk')"
            )
        else:
            hint = "Check the request parameters (model, dimensions)"
        where = f" (text at row {row})" if row is not None else ""
        return EmbeddingAPIError(
            f"Embedding request to {c.base_url}/embeddings failed with {status} "
            f"{response.reason_phrase}{where} for model {c.model!r}. Server said: "
            f"{response.text[:300]!r}. {hint}.",
            status_code=status,
            response=response,
            row=row,
        )

    def _decode(self, response: httpx.Response, batch: npt.NDArray[np.intp]) -> None:
        """Check a 2xx body and write its vectors into ``self.out``."""
        try:
            body = response.json()
            data = body["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _Malformed(f"no JSON 'data' list: {type(exc).__name__}") from exc
        if not isinstance(data, list) or len(data) != len(batch):
            raise _Malformed(
                f"{len(data) if isinstance(data, list) else 'no'} items for "
                f"{len(batch)} inputs"
            )
        width = None if self.out is None else self.out.shape[1]
        vectors: list[npt.NDArray[np.float32] | None] = [None] * len(batch)
        for item in data:
            try:
                index, embedding = item["index"], item["embedding"]
            except (KeyError, TypeError) as exc:
                raise _Malformed("an item lacks 'index' or 'embedding'") from exc
            if not isinstance(index, int) or not 0 <= index < len(batch):
                raise _Malformed(f"index {index!r} out of range")
            if vectors[index] is not None:
                raise _Malformed(f"index {index} arrived twice")
            if isinstance(embedding, str):
                try:
                    raw = base64.b64decode(embedding, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise _Malformed("bad base64") from exc
                if len(raw) % 4:
                    raise _Malformed("base64 is not whole float32 values")
                vector = np.frombuffer(raw, dtype="<f4")
            elif isinstance(embedding, list):
                try:
                    vector = np.asarray(embedding, dtype=np.float32)
                except (TypeError, ValueError) as exc:
                    raise _Malformed("non-numeric embedding") from exc
            else:
                raise _Malformed(f"embedding of type {type(embedding).__name__}")
            if width is None:
                width = vector.size
            if vector.ndim != 1 or vector.size != width or width == 0:
                raise _Malformed(f"vector of {vector.size} values, expected {width}")
            if not np.isfinite(vector).all():
                raise _Malformed("non-finite values")
            vectors[index] = vector
        if self.out is None:
            assert width is not None  # the batch held at least one vector
            self.out = np.empty((len(self.piece_text), width), dtype=np.float32)
        matrix = self.out
        for row, filled in zip(batch.tolist(), vectors, strict=True):
            matrix[row] = filled
        usage = body.get("usage") if isinstance(body, dict) else None
        prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(prompt_tokens, int):
            self.stats.tokens += prompt_tokens
            self._counted_estimate += int(self.piece_tokens[batch].sum())
            self._counted_real += prompt_tokens
        else:
            self.stats.tokens += int(self.piece_tokens[batch].sum())

    async def _report(self, batch: npt.NDArray[np.intp]) -> None:
        if self.on_batch is None:
            return
        assert self.out is not None
        if self.piece_owner is None:
            positions, vectors = batch, self.out[batch]
        else:
            owners = self.piece_owner
            single = batch[self.pieces_per_text[owners[batch]] == 1]
            positions, vectors = owners[single], self.out[single]
        if len(positions):
            await asyncio.to_thread(self.on_batch, positions, vectors)
