"""Offline stand-ins for an OpenAI-compatible embeddings endpoint.

* :func:`fake_openai_transport` -- an ``httpx.MockTransport`` for unit tests,
  docs and notebooks: no socket at all.
* :class:`FakeEmbeddingServer` -- a real HTTP server on 127.0.0.1 (stdlib only)
  that behaves like the endpoint: input and token limits, 400/401/429/5xx,
  ``retry-after-ms``, dropped connections, malformed JSON, shuffled ``index``
  order, latency and rate limits. For end-to-end tests and benchmarks.

Both answer with deterministic vectors: :func:`fake_embedding` seeds a generator
from ``sha256(text)`` and returns a unit float32 vector, so the same text always
gets bit-identical numbers. The package itself never imports this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

__all__ = [
    "FakeEmbeddingServer",
    "fake_embedding",
    "fake_openai_transport",
    "fake_token_count",
]


def fake_embedding(text: str, dim: int = 8) -> npt.NDArray[np.float32]:
    """The deterministic unit float32 vector the fakes return for ``text``.

    Examples
    --------
    >>> v = fake_embedding("hello", dim=4)
    >>> v.dtype, v.shape, round(float(v @ v), 5)
    (dtype('float32'), (4,), 1.0)
    >>> bool((v == fake_embedding("hello", dim=4)).all())
    True
    """
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    vector /= np.float32(np.linalg.norm(vector))
    return vector


def fake_token_count(text: str) -> int:
    """The fakes' tokenizer: one token per 4 UTF-8 bytes (about cl100k's rate)."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


def _body(
    inputs: Sequence[str],
    payload: dict[str, Any],
    dim: int,
    *,
    order: Sequence[int] | None = None,
    force_floats: bool = False,
) -> dict[str, Any]:
    width = payload.get("dimensions") or dim
    as_base64 = payload.get("encoding_format") == "base64" and not force_floats
    data = []
    for i in order if order is not None else range(len(inputs)):
        vector = fake_embedding(inputs[i], width)
        embedding: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
            if as_base64
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(fake_token_count(t) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": payload.get("model", ""),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _inputs(payload: Any) -> list[str] | str:
    """The request's inputs, or an error message in OpenAI's words."""
    if not isinstance(payload, dict) or "input" not in payload:
        return "'input' is a required property"
    inputs = payload["input"]
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return "'$.input' is invalid: expected a non-empty list"
    for i, item in enumerate(inputs):
        if not isinstance(item, str) or not item:
            return f"'$.input[{i}]' is invalid: expected a non-empty string"
    return inputs


class _FakeHandler:
    """Picklable MockTransport handler (see :func:`fake_openai_transport`)."""

    def __init__(self, dim: int, calls: list[list[str]] | None) -> None:
        self.dim = dim
        self.calls = calls

    def __call__(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        inputs = _inputs(payload)
        if isinstance(inputs, str):
            return httpx.Response(400, json={"error": {"message": inputs}})
        if self.calls is not None:
            self.calls.append(list(inputs))
        return httpx.Response(200, json=_body(inputs, payload, self.dim))


def fake_openai_transport(
    dim: int = 8, calls: list[list[str]] | None = None
) -> httpx.MockTransport:
    """An ``httpx.MockTransport`` answering ``/embeddings`` like OpenAI, offline.

    Parameters
    ----------
    dim : int, default=8
        Width of the vectors (a request's ``dimensions`` overrides it).
    calls : list, optional
        If given, the inputs of each request are appended to it.

    Returns
    -------
    httpx.MockTransport
        Pass it as ``transport=`` to :class:`~embedtasks.OpenAIEmbedder`.

    Examples
    --------
    >>> from embedtasks import OpenAIEmbedder
    >>> calls = []
    >>> embedder = OpenAIEmbedder(
    ...     transport=fake_openai_transport(dim=4, calls=calls), cache_dir=None
    ... )
    >>> embedder.fit_transform(["a cat", "a dog", "a cat"]).shape
    (3, 4)
    >>> calls  # each distinct text is sent once
    [['a cat', 'a dog']]
    """
    return httpx.MockTransport(_FakeHandler(dim, calls))


# ------------------------------------------------------------------ HTTP server
class _Gcra:
    """Server-side rate limit (generic cell rate algorithm) with a small burst."""

    def __init__(self, per_minute: float, burst_seconds: float) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = burst_seconds
        self.tat = 0.0

    def check(self, cost: float, now: float) -> float:
        """0 if allowed (and charged), else the seconds to wait."""
        tat = max(self.tat, now)
        wait = tat - now - self.tolerance
        if wait > 0:
            return wait
        self.tat = tat + cost * self.interval
        return 0.0


FAULTS = ("500", "503", "429", "drop", "malformed", "bad_index")


class FakeEmbeddingServer:
    """A loopback OpenAI-compatible embeddings server, run in a thread.

    Parameters
    ----------
    dim : int, default=8
        Vector width (a request's ``dimensions`` overrides it).
    port : int, default=0
        0 picks a free port; see :attr:`url`.
    latency : float, default=0.0
        Seconds each successful request takes.
    fault_rate : float, default=0.0
        Probability that a request fails with one of ``faults``.
    faults : sequence of str, default=all of FAULTS
        Among "500", "503", "429" (with retry-after-ms), "drop" (connection
        closed without an answer), "malformed" (truncated JSON), "bad_index"
        (an index repeated).
    requests_per_minute, tokens_per_minute : float, optional
        Rate limits, enforced as a token bucket (GCRA) refilling continuously:
        429 with ``retry-after``, ``retry-after-ms`` and
        ``x-ratelimit-reset-requests``/``-tokens`` (time until the bucket is
        full again, e.g. ``"1.25s"``).
    burst_seconds : float, default=0.25
        How far ahead of its rate a client may be before a 429 (bucket depth).
    announce_limits : bool, default=True
        Send ``x-ratelimit-limit-*`` headers; False makes the limit unannounced,
        as many gateways do.
    misleading_remaining : bool, default=False
        Send ``x-ratelimit-remaining-*`` headers stuck at a constant value that
        says nothing about the real budget.
    stall_rate : float, default=0.0
        Probability that a request stalls ``stall_seconds`` before answering.
    stall_seconds : float, default=2.0
        Length of a stall.
    max_dimensions : int, optional
        A request asking for more ``dimensions`` gets a request-level 400
        (``param: "dimensions"``).
    max_inputs, max_tokens_per_request, max_tokens_per_input : int
        Limits answered with 400, in OpenAI's words.
    shuffle : bool, default=True
        Answer items in a random order (each keeps its ``index``).
    api_key : str, optional
        If set, requests without ``Authorization: Bearer <api_key>`` get 401.
    reject : callable, optional
        ``text -> bool``; a request holding such a text gets 400.
    float_only : bool, default=False
        Ignore ``encoding_format`` and always answer float lists.
    seed : int, default=0
        Seeds the fault and shuffle generator.

    Attributes
    ----------
    n_requests : int
        Requests received (all outcomes).
    n_faults, n_rate_limited : int
        Injected faults and 429s for rate limits.
    n_429 : int
        Every 429 answered (rate limits and injected faults).
    n_stalls : int
        Stalled requests.
    n_texts_embedded : int
        Inputs of successful answers.
    headers_seen : list of dict
        Headers of every request.

    Examples
    --------
    >>> import httpx
    >>> with FakeEmbeddingServer(dim=3) as server:
    ...     r = httpx.post(server.url + "/embeddings", json={"input": ["hi"]})
    ...     len(r.json()["data"][0]["embedding"])
    3
    """

    def __init__(
        self,
        dim: int = 8,
        *,
        port: int = 0,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst_seconds: float = 0.25,
        announce_limits: bool = True,
        misleading_remaining: bool = False,
        stall_rate: float = 0.0,
        stall_seconds: float = 2.0,
        max_dimensions: int | None = None,
        max_inputs: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_tokens_per_input: int = 8192,
        shuffle: bool = True,
        api_key: str | None = None,
        reject: Callable[[str], bool] | None = None,
        float_only: bool = False,
        seed: int = 0,
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"Unknown faults {sorted(unknown)}; choose from {FAULTS}.")
        self.dim = dim
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.max_inputs = max_inputs
        self.max_tokens_per_request = max_tokens_per_request
        self.max_tokens_per_input = max_tokens_per_input
        self.shuffle = shuffle
        self.api_key = api_key
        self.reject = reject
        self.float_only = float_only
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.announce_limits = announce_limits
        self.misleading_remaining = misleading_remaining
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.max_dimensions = max_dimensions
        self._rpm = (
            _Gcra(requests_per_minute, burst_seconds) if requests_per_minute else None
        )
        self._tpm = (
            _Gcra(tokens_per_minute, burst_seconds) if tokens_per_minute else None
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.n_requests = 0
        self.n_faults = 0
        self.n_rate_limited = 0
        self.n_texts_embedded = 0
        self.n_429 = 0
        self.n_stalls = 0
        self.headers_seen: list[dict[str, str]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to pass as ``base_url`` (``http://127.0.0.1:<port>/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeEmbeddingServer:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name="FakeEmbeddingServer",
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FakeEmbeddingServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """The counters as a dict (also served at ``GET /stats``)."""
        with self._lock:
            return {
                "requests": self.n_requests,
                "faults": self.n_faults,
                "rate_limited": self.n_rate_limited,
                "answered_429": self.n_429,
                "stalls": self.n_stalls,
                "texts_embedded": self.n_texts_embedded,
            }

    def reset_counters(self) -> None:
        """Zero the request counters."""
        with self._lock:
            self.n_requests = self.n_faults = self.n_rate_limited = 0
            self.n_texts_embedded = self.n_429 = self.n_stalls = 0
            self.headers_seen.clear()

    # -- request handling (called from handler threads) --------------------------
    def _answer(
        self, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """(status, headers, body) for a request, or None to drop the connection."""
        with self._lock:
            self.n_requests += 1
            self.headers_seen.append(headers)
            fault = (
                self._rng.choice(self.faults)
                if self.fault_rate and self._rng.random() < self.fault_rate
                else None
            )
            seed = self._rng.random()
            stall = bool(self.stall_rate) and self._rng.random() < self.stall_rate
        answer = self._answer_inner(headers, raw, fault, seed, stall)
        if answer is not None and answer[0] == 429:
            with self._lock:
                self.n_429 += 1
        return answer

    def _answer_inner(
        self,
        headers: dict[str, str],
        raw: bytes,
        fault: str | None,
        seed: float,
        stall: bool,
    ) -> tuple[int, dict[str, str], bytes] | None:
        if self.api_key is not None and headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            given = headers.get("authorization", "").removeprefix("Bearer ")
            return _error(  # echoes the key it got, as some servers do
                401, f"Incorrect API key provided: {given}.", "invalid_api_key"
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        inputs = _inputs(payload)
        if isinstance(inputs, str):
            return _error(400, inputs)
        wanted = payload.get("dimensions")
        if self.max_dimensions is not None and isinstance(wanted, int):
            if not 1 <= wanted <= self.max_dimensions:
                return _error(
                    400,
                    f"Invalid value for 'dimensions' = {wanted}. Must be between "
                    f"1 and {self.max_dimensions}.",
                    param="dimensions",
                )
        if len(inputs) > self.max_inputs:
            return _error(
                400,
                f"'$.input' is invalid: {len(inputs)} items, the maximum is "
                f"{self.max_inputs}.",
            )
        counts = [fake_token_count(t) for t in inputs]
        if max(counts) > self.max_tokens_per_input:
            return _error(
                400,
                f"This model's maximum context length is {self.max_tokens_per_input}"
                f" tokens, however you requested {max(counts)} tokens in your input.",
            )
        tokens = sum(counts)
        if tokens > self.max_tokens_per_request:
            return _error(
                400,
                f"Requested {tokens} tokens, max {self.max_tokens_per_request} "
                "tokens per request.",
            )
        if self.reject is not None and any(self.reject(t) for t in inputs):
            return _error(400, "'$.input' is invalid: rejected by the content filter.")
        limited = self._rate_limit(tokens)
        if limited is not None:
            return limited
        if fault is not None:
            with self._lock:
                self.n_faults += 1
            if fault == "drop":
                return None
            if fault == "malformed":
                return 200, {"content-type": "application/json"}, b'{"data": [{"ind'
            if fault == "429":
                return _error(
                    429, "Rate limit reached.", headers={"retry-after-ms": "5"}
                )
            if fault != "bad_index":
                return _error(int(fault), "The server had an error.")
        if stall:
            with self._lock:
                self.n_stalls += 1
            time.sleep(self.stall_seconds)
        if self.latency:
            time.sleep(self.latency)
        order = list(range(len(inputs)))
        if self.shuffle:
            random.Random(seed).shuffle(order)
        if fault == "bad_index" and len(order) > 1:
            order[0] = order[1]
        elif fault == "bad_index":
            order.append(order[0])
        body = _body(
            inputs, payload, self.dim, order=order, force_floats=self.float_only
        )
        with self._lock:
            self.n_texts_embedded += len(inputs)
        extra = {"content-type": "application/json", **self._limit_headers()}
        return 200, extra, json.dumps(body).encode()

    def _limit_headers(self) -> dict[str, str]:
        headers = {}
        now = time.monotonic()
        for kind, limit, gcra in (
            ("requests", self.requests_per_minute, self._rpm),
            ("tokens", self.tokens_per_minute, self._tpm),
        ):
            if not limit or gcra is None:
                continue
            if self.announce_limits:
                headers[f"x-ratelimit-limit-{kind}"] = f"{limit:g}"
            if self.misleading_remaining:
                headers[f"x-ratelimit-remaining-{kind}"] = f"{limit - 1:g}"
            headers[f"x-ratelimit-reset-{kind}"] = f"{max(0.0, gcra.tat - now):.3f}s"
        return headers

    def _rate_limit(self, tokens: int) -> tuple[int, dict[str, str], bytes] | None:
        if self._rpm is None and self._tpm is None:
            return None
        with self._lock:
            now = time.monotonic()
            limits = [
                (name, g, c)
                for name, g, c in (
                    ("requests", self._rpm, 1.0),
                    ("tokens", self._tpm, tokens),
                )
                if g
            ]
            waits = [(max(g.tat, now) - now - g.tolerance, n) for n, g, _ in limits]
            wait, kind = max(waits)
            if wait <= 0:
                for _, gcra, cost in limits:
                    gcra.check(cost, now)
                return None
            self.n_rate_limited += 1
            limit_headers = self._limit_headers()
        headers = {
            "retry-after": str(math.ceil(wait)),
            "retry-after-ms": str(math.ceil(wait * 1000)),
            **limit_headers,
        }
        return _error(429, f"Rate limit reached for {kind}.", headers=headers)


def _error(
    status: int,
    message: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    return (
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def _make_handler(server: FakeEmbeddingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] not in ("/v1/embeddings", "/embeddings"):
                status, headers, body = _error(404, f"Unknown path {self.path}.")
            else:
                headers_in = {k.lower(): v for k, v in self.headers.items()}
                answer = server._answer(headers_in, raw)
                if answer is None:  # drop the connection without a word
                    self.close_connection = True
                    return
                status, headers, body = answer
            self._reply(status, headers, body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            """``/stats``: the counters as JSON (for benchmarks in other processes)."""
            if self.path.split("?")[0] != "/stats":
                status, headers, body = _error(404, f"Unknown path {self.path}.")
            else:
                status, headers = 200, {"content-type": "application/json"}
                body = json.dumps(server.stats()).encode()
                if "reset" in self.path:
                    server.reset_counters()
            self._reply(status, headers, body)

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

    return Handler
