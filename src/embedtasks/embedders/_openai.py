"""OpenAIEmbedder: texts -> float32 unit vectors from any OpenAI-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._validation import HasMethods, Integral, Interval, Real, StrOptions
from embedtasks.embedders._base import (
    Backend,
    BaseEmbedder,
    StoreFn,
    keys_with_policy,
)
from embedtasks.embedders._cache import make_keys
from embedtasks.embedders._http._client import (
    DEFAULT_BASE_URL,
    ClientSettings,
    EmbeddingClient,
)
from embedtasks.embedders._http._tokens import token_counter
from embedtasks.embedders._secrets import (
    Secret,
    check_url,
    is_sensitive,
    mask_headers,
)

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder(BaseEmbedder):
    """Embed texts with an OpenAI-compatible ``/embeddings`` endpoint.

    Requests are packed within every limit of the endpoint (inputs and tokens per
    request, tokens per input), sent concurrently, paced to rate limits, retried
    with backoff, and decoded from base64 straight to float32. Each distinct text
    is embedded once per call, and vectors are cached on disk, so running the
    same texts again costs no requests.

    Parameters
    ----------
    model : str, default="text-embedding-3-small"
        Embedding model name.
    dimensions : int, optional
        Shorter vectors from text-embedding-3 models.
    base_url : str, optional
        Endpoint root (``{base_url}/embeddings``). ``None`` reads
        ``$OPENAI_BASE_URL``, else ``https://api.openai.com/v1``. Any compatible
        server works: Azure, vLLM, Ollama, TEI, infinity.
    api_key : str or Secret, optional
        The key. Prefer ``api_key_env``. A key passed here is kept wrapped in a
        :class:`~embedtasks.embedders._secrets.Secret`: ``repr``, ``get_params()`` and
        ``clone()`` show ``'***'``, and pickles (joblib, Dask) never hold it (the
        unpickled copy reads ``api_key_env``).
    api_key_env : str, default="OPENAI_API_KEY"
        Environment variable read for the key at each call, when ``api_key`` is
        None. No key is sent if it is unset (local servers need none).
    api_version : str, optional
        Azure-style ``api-version`` query parameter; the key is then sent as the
        ``api-key`` header.
    headers : dict, optional
        Extra HTTP headers. Values of key-like names (``api-key``,
        ``Authorization``, ``X-Token``, ...) are kept as secrets like ``api_key``.
    batch_size : int, default=2048
        Most inputs per request.
    max_tokens_per_request : int, default=300_000
        Most tokens per request.
    max_tokens_per_input : int, default=8192
        Most tokens per text; longer texts follow ``long_text``.
    long_text : {"error", "truncate", "chunk"}, default="error"
        For texts over ``max_tokens_per_input``: raise
        :class:`~embedtasks.exceptions.TextTooLongError` naming the row, embed
        the first piece only, or embed every piece and average them weighted by
        token count (re-normalised). Token counts come from tiktoken when its
        file is cached locally; otherwise a safe upper bound (UTF-8 bytes) is
        used and, with "error", the server's own answer decides.
    max_concurrency : int, default=8
        Requests in flight at once.
    requests_per_minute, tokens_per_minute : float, optional
        Pace requests to these limits. Unknown limits are learned: from
        ``x-ratelimit-limit-*`` headers when the server announces them, else
        from its 429s and ``x-ratelimit-reset-*`` headers. Processes sharing a
        ``cache_dir`` and endpoint share what is learned.
    max_retries : int, default=8
        Retries per request (408/409/5xx, timeouts, dropped connections,
        malformed answers, a 429 without Retry-After) before raising. A 429
        that says when to come back is waited out without spending a retry.
    timeout : float, default=60.0
        Seconds per request.
    backoff : float, default=0.5
        First retry delay in seconds, doubled per attempt with jitter; a
        server's ``retry-after`` takes precedence.
    deadline : float, optional
        Seconds one ``fit``/``transform`` may take; past it, it stops with
        :class:`~embedtasks.exceptions.EmbeddingAPIError` (finished rows are
        cached, so running again continues).
    max_tokens : int, optional
        Token budget of one call: it stops with
        :class:`~embedtasks.exceptions.BudgetExceededError` before sending a
        request that would exceed it (finished rows are cached). See
        :meth:`estimate` for the price first.
    cache_dir : str, PathLike or None, default="default"
        Where vectors are cached: "default" is ``$EMBEDTASKS_CACHE_DIR`` or
        ``~/.cache/embedtasks``; ":memory:" keeps them in memory; None disables
        the cache. Keys hash (base_url, model, dimensions, text); texts and keys
        are not stored.
    progress : bool or "auto", default="auto"
        Show a tqdm bar; "auto" shows one in a terminal or notebook for 1,000
        texts or more.
    transport : httpx transport, optional
        Replaces the network, for tests (see
        :func:`embedtasks.testing.fake_openai_transport`).

    Attributes
    ----------
    embedding_dim_ : int
        Width of the vectors.
    usage_ : dict
        Statistics of the last call: ``texts``, ``unique_texts``, ``cache_hits``,
        ``embedded``, ``requests``, ``tokens``, ``retries``, ``rate_limited``,
        ``split_batches`` and ``seconds``.

    See Also
    --------
    embedtasks.testing.FakeEmbeddingServer : a local endpoint for tests.

    Examples
    --------
    >>> from embedtasks import OpenAIEmbedder
    >>> from embedtasks.testing import fake_openai_transport
    >>> embedder = OpenAIEmbedder(
    ...     transport=fake_openai_transport(dim=4), cache_dir=":memory:"
    ... )
    >>> X = embedder.fit_transform(["a cat", "a dog"])
    >>> X.dtype, X.shape
    (dtype('float32'), (2, 4))
    >>> embedder.transform(["a dog"]).shape
    (1, 4)
    >>> embedder.usage_["cache_hits"], embedder.usage_["embedded"]
    (1, 0)
    >>> embedder.get_feature_names_out()[:2].tolist()
    ['openaiembedder0', 'openaiembedder1']
    """

    _parameter_constraints: dict[str, list[Any]] = {
        **BaseEmbedder._parameter_constraints,
        "model": [str],
        "dimensions": [Interval(Integral, 1, None, closed="left"), None],
        "base_url": [str, None],
        "api_key": [str, Secret, None],
        "api_key_env": [str],
        "api_version": [str, None],
        "headers": [dict, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_tokens_per_request": [Interval(Integral, 1, None, closed="left")],
        "max_tokens_per_input": [Interval(Integral, 1, None, closed="left")],
        "long_text": [StrOptions({"error", "truncate", "chunk"})],
        "max_concurrency": [Interval(Integral, 1, None, closed="left")],
        "requests_per_minute": [Interval(Real, 0, None, closed="neither"), None],
        "tokens_per_minute": [Interval(Real, 0, None, closed="neither"), None],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "backoff": [Interval(Real, 0, None, closed="left")],
        "deadline": [Interval(Real, 0, None, closed="neither"), None],
        "max_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "transport": [
            HasMethods(["handle_async_request"]),
            HasMethods(["handle_request"]),
            None,
        ],
    }

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        api_version: str | None = None,
        headers: dict[str, str] | None = None,
        batch_size: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_tokens_per_input: int = 8192,
        long_text: str = "error",
        max_concurrency: int = 8,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 8,
        timeout: float = 60.0,
        backoff: float = 0.5,
        deadline: float | None = None,
        max_tokens: int | None = None,
        cache_dir: str | os.PathLike[str] | None = "default",
        progress: bool | str = "auto",
        transport: Any = None,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self.base_url = base_url
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.api_version = api_version
        self.headers = headers
        self.batch_size = batch_size
        self.max_tokens_per_request = max_tokens_per_request
        self.max_tokens_per_input = max_tokens_per_input
        self.long_text = long_text
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.deadline = deadline
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir
        self.progress = progress
        self.transport = transport

    # -- secrets: kept wrapped, so get_params/clone/pickle never hold them -------
    @property
    def api_key(self) -> Secret | None:
        return self.__dict__.get("api_key")

    @api_key.setter
    def api_key(self, value: Any) -> None:
        self.__dict__["api_key"] = Secret(value) if isinstance(value, str) else value

    @property
    def base_url(self) -> str | None:
        return self.__dict__.get("base_url")

    @base_url.setter
    def base_url(self, value: Any) -> None:
        # Refused at once: a key in a URL would show in get_params() (printed
        # by scikit-learn for a Pipeline), in httpx's log lines and in errors.
        if isinstance(value, str):
            check_url(value)
        self.__dict__["base_url"] = value

    @property
    def headers(self) -> dict[str, Any] | None:
        return self.__dict__.get("headers")

    @headers.setter
    def headers(self, value: Any) -> None:
        if isinstance(value, dict) and any(
            is_sensitive(str(k)) and isinstance(v, str) for k, v in value.items()
        ):
            value = {
                k: (Secret(v) if is_sensitive(str(k)) and isinstance(v, str) else v)
                for k, v in value.items()
            }
        self.__dict__["headers"] = value

    # -- BaseEmbedder hooks ----------------------------------------------------
    def _resolved_base_url(self) -> str:
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        check_url(url, "base_url (or $OPENAI_BASE_URL)")
        return url.rstrip("/")

    def _settings(self) -> ClientSettings:
        key = self.api_key if self.api_key else os.environ.get(self.api_key_env)
        cache = self._open_cache()
        shared = {
            name: getattr(self, name)
            for name in ClientSettings.names()
            if name in self._parameter_constraints
        }
        shared.update(
            base_url=self._resolved_base_url(),
            api_key=key or None,
            pacing_dir=None
            if cache is None or cache.path is None
            else cache.path.parent,
        )
        return ClientSettings(**shared)

    def _backend(self) -> _OpenAIBackend:
        return _OpenAIBackend(
            EmbeddingClient(self._settings(), transport=self.transport),
            identity={
                "kind": "openai",
                "endpoint": self._resolved_base_url(),
                "model": self.model,
                "dimensions": self.dimensions,
            },
            long_text=self.long_text,
            max_tokens=self.max_tokens_per_input,
            missing_key=self._missing_key(),
        )

    def _missing_key(self) -> str | None:
        """Why a request would fail for want of a key, or None. OpenAI's and
        Azure's hosted APIs need one; other servers (vLLM, Ollama, TEI) may not,
        and a caller's transport or Authorization header may bring its own."""
        key = self.api_key if self.api_key else os.environ.get(self.api_key_env)
        if key or self.transport is not None:
            return None
        url = self._resolved_base_url()
        host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
        hosted = host == "api.openai.com" or host.endswith(".openai.azure.com")
        auth = {str(k).lower() for k in (self.headers or {})}
        if not hosted or auth & {"authorization", "api-key"}:
            return None
        return (
            f"OpenAIEmbedder: no API key for {url}: the environment variable "
            f"{self.api_key_env} is not set or empty. Set it (export "
            f"{self.api_key_env}=...), or pass api_key_env= naming the variable "
            "that holds the key (--api-key-env on the command line)."
        )

    # -- repr: no key in the endpoint either -------------------------------------
    @contextmanager
    def _masked(self) -> Iterator[None]:
        headers = self.__dict__.get("headers")
        if headers is not None:
            self.__dict__["headers"] = mask_headers(headers)
        try:
            yield
        finally:
            self.__dict__["headers"] = headers

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        with self._masked():
            text: str = super().__repr__(N_CHAR_MAX)
            return text

    def _repr_html_inner(self) -> str:
        with self._masked():
            return str(super()._repr_html_inner())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        with self._masked():
            return dict(super()._repr_mimebundle_(**kwargs))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["api_key"] = None  # never pickle a secret (Secret would hold None)
        return state


class _OpenAIBackend(Backend):
    """An OpenAI-compatible ``/embeddings`` endpoint, through the HTTP client."""

    def __init__(
        self,
        client: EmbeddingClient,
        *,
        identity: dict[str, object],
        long_text: str,
        max_tokens: int,
        missing_key: str | None = None,
    ) -> None:
        self.client, self.identity = client, identity
        self.missing_key = missing_key
        dims = identity.get("dimensions")
        self.expected_dim = dims if isinstance(dims, int) else None
        self.long_text, self.max_tokens = long_text, max_tokens

    def cache_keys(self, texts: Sequence[str]) -> list[bytes]:
        # Only the texts a long_text policy changes get their own keys: every
        # other text keeps the key (and the cached vector) it has under "error".
        if self.long_text == "error":
            return make_keys(self.identity, texts)
        model = str(self.identity["model"])
        counts = token_counter(model).count(texts)
        long_rows = np.flatnonzero(counts > self.max_tokens).tolist()
        policy = [self.long_text, self.max_tokens]
        return keys_with_policy(self.identity, texts, long_rows, policy)

    def embed(
        self,
        texts: list[str],
        rows: npt.NDArray[np.intp],
        progress: Any,
        store: StoreFn,
    ) -> tuple[npt.NDArray[np.float32], dict[str, object]]:
        if self.missing_key:  # before the first request, not from its failure
            raise ValueError(self.missing_key)

        def on_batch(
            positions: npt.NDArray[np.intp], vectors: npt.NDArray[np.float32]
        ) -> None:
            store(positions, vectors)
            progress.update(len(positions))

        vectors = self.client.embed(texts, on_batch=on_batch, rows=rows.tolist())
        stats = self.client.last_stats.as_dict()
        stats.pop("texts", None)
        stats.pop("seconds", None)
        return vectors, stats

    def estimate(self, texts: list[str]) -> dict[str, object]:
        return self.client.estimate(texts)
