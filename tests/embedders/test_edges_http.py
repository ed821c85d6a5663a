"""The client at its edges: keys, odd answers, slow or huge bodies, 429 storms."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import pickle
import time

import httpx
import numpy as np
import pytest

from embedtasks import OpenAIEmbedder
from embedtasks.embedders._http._client import EmbeddingClient
from embedtasks.exceptions import EmbeddingAPIError
from embedtasks.testing import fake_embedding, fake_openai_transport

KEY = "sk-edge-0123456789abcdef"


def _client(transport, **kwargs):
    kwargs.setdefault("backoff", 0.0)
    return EmbeddingClient("test-model", transport=transport, **kwargs)


def _chain(exc):
    """Every exception reachable from ``exc`` (cause, context)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _assert_no_key(exc, key=KEY):
    for link in _chain(exc):
        assert key not in str(link) and key not in repr(link.args)
        assert key.encode() not in pickle.dumps(link)
    assert len(_chain(exc)) == 1, "no httpx error (holding the request) chained"


def _ok(request):
    return fake_openai_transport(4).handle_request(request)


# -- 5: keys with whitespace, non-ASCII keys ------------------------------------
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t"])
def test_key_with_trailing_line_break_is_stripped(suffix):
    seen = []

    def handler(request):
        seen.append(request.headers["authorization"])
        return _ok(request)

    client = _client(httpx.MockTransport(handler), api_key=KEY + suffix)
    assert client.embed(["a"]).shape == (1, 4)
    assert seen == [f"Bearer {KEY}"]


def test_key_from_a_crlf_env_file_works_in_the_embedder(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "\r\n")
    seen = []

    def handler(request):
        seen.append(request.headers["authorization"])
        return _ok(request)

    emb = OpenAIEmbedder(transport=httpx.MockTransport(handler), cache_dir=None)
    assert emb.fit_transform(["a"]).shape == (1, 4)
    assert seen == [f"Bearer {KEY}"]


@pytest.mark.parametrize(
    ("key", "what"),
    [
        (KEY[:8] + "\n" + KEY[8:], "space or line break at position 8"),
        (KEY[:5] + " " + KEY[5:], "space or line break at position 5"),
        (KEY + "é", "non-ASCII or control character"),
        (" \n", "empty or only whitespace"),
    ],
)
def test_bad_key_is_refused_without_showing_it(key, what):
    client = _client(httpx.MockTransport(_ok), api_key=key)
    with pytest.raises(ValueError, match=what) as err:
        client.embed(["a"])
    _assert_no_key(err.value, KEY[:8])  # no part of the key shows
    _assert_no_key(err.value, KEY[8:])


def test_non_ascii_header_value_is_refused_without_a_raw_unicode_error():
    client = _client(httpx.MockTransport(_ok), headers={"X-Team": "équipe"})
    with pytest.raises(ValueError, match="header 'X-Team' contains a non-ASCII"):
        client.embed(["a"])


# -- 6, 17: bodies that are not the gzip they claim, gzip-compressed errors ------
def test_bad_gzip_body_is_retried_then_a_clear_error_without_the_key():
    def handler(request):
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip"},
            stream=httpx.ByteStream(b"this is not gzip"),
        )

    client = _client(httpx.MockTransport(handler), api_key=KEY, max_retries=1)
    with pytest.raises(EmbeddingAPIError, match="after 1 retries.*DecodingError") as e:
        client.embed(["a"])
    _assert_no_key(e.value)
    assert client.last_stats.retries == 1


@pytest.mark.parametrize(
    ("status", "body", "hint"),
    [
        (401, {"error": {"message": "Incorrect API key"}}, "Check the API key"),
        (404, {"error": {"message": "no such model"}}, "Check base_url and model"),
        (500, {"error": {"message": "boom"}}, "after 0 retries; last error: 500"),
    ],
)
def test_gzip_compressed_error_answers_keep_their_message(status, body, hint):
    def handler(request):
        return httpx.Response(
            status,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
            stream=httpx.ByteStream(gzip.compress(json.dumps(body).encode())),
        )

    client = _client(httpx.MockTransport(handler), api_key=KEY, max_retries=0)
    with pytest.raises(EmbeddingAPIError, match=hint) as err:
        client.embed(["a"])
    assert err.value.status_code == status
    assert body["error"]["message"] in err.value.response.text
    _assert_no_key(err.value)


def test_gzip_compressed_400_still_names_the_row():
    def handler(request):
        texts = json.loads(request.content)["input"]
        if "bad" in texts:
            body = json.dumps({"error": {"message": "bad input", "param": "input"}})
            return httpx.Response(
                400,
                headers={"content-encoding": "gzip"},
                stream=httpx.ByteStream(gzip.compress(body.encode())),
            )
        return _ok(request)

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(EmbeddingAPIError, match="text at row 2") as err:
        client.embed(["a", "b", "bad", "c"])
    assert err.value.row == 2


def test_key_echoed_in_a_response_header_is_masked_in_the_error():
    def handler(request):
        return httpx.Response(
            401, headers={"x-echo": f"you sent {KEY}"}, json={"error": "no"}
        )

    client = _client(httpx.MockTransport(handler), api_key=KEY)
    with pytest.raises(EmbeddingAPIError) as err:
        client.embed(["a"])
    assert KEY not in str(err.value.response.headers)
    _assert_no_key(err.value)


def test_no_key_in_httpx_log_lines(caplog):
    client = _client(httpx.MockTransport(_ok), api_key=KEY)
    with caplog.at_level(logging.DEBUG):
        client.embed(["a"])
    assert "embeddings" in caplog.text  # httpx did log the request
    assert KEY not in caplog.text


# -- 11: all-zero vectors --------------------------------------------------------
def test_all_zero_vector_is_rejected_naming_the_row_and_not_cached(tmp_path):
    def handler(request):
        texts = json.loads(request.content)["input"]
        data = [
            {"index": i, "embedding": [0.0] * 4 if t == "zero" else [1.0, 0, 0, 0]}
            for i, t in enumerate(texts)
        ]
        return httpx.Response(200, json={"data": data})

    emb = OpenAIEmbedder(
        transport=httpx.MockTransport(handler),
        cache_dir=tmp_path,
        max_retries=1,
        backoff=0,
        batch_size=1,
        max_concurrency=1,
    )
    with pytest.raises(EmbeddingAPIError, match="all-zero vector.*text at row 1"):
        emb.fit(["a", "zero", "b"])
    from embedtasks.embedders._cache import EmbeddingCache

    with EmbeddingCache(tmp_path) as cache:
        assert cache.info()["vectors"] == 1  # "a" only: nothing after the fault


# -- 12: a request already sent is bounded by timeout and deadline ----------------
class _Trickle(httpx.AsyncByteStream):
    def __init__(self, pause):
        self.pause = pause

    async def __aiter__(self):
        for _ in range(600):
            await asyncio.sleep(self.pause)
            yield b" "


def _trickling(pause=0.05):
    async def handler(request):
        return httpx.Response(200, stream=_Trickle(pause))

    return httpx.MockTransport(handler)


def test_timeout_bounds_the_whole_answer_not_each_read():
    client = _client(_trickling(), timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(EmbeddingAPIError, match=r"within timeout=0.5 s \(the whole"):
        client.embed(["a"])
    assert time.monotonic() - started < 10  # the trickle alone takes 30 s


def test_deadline_bounds_a_request_already_sent():
    client = _client(_trickling(), timeout=60, deadline=0.5, max_retries=3)
    started = time.monotonic()
    with pytest.raises(EmbeddingAPIError, match=r"within deadline=0.5 s"):
        client.embed(["a"])
    assert time.monotonic() - started < 10


# -- 13: 429s are bounded by max_retries; a spent quota fails at once -------------
def test_429_with_retry_after_zero_stops_after_max_retries():
    calls = []

    def handler(request):
        calls.append(1)
        body = {"error": {"message": "Rate limit reached for requests"}}
        return httpx.Response(429, headers={"retry-after": "0"}, json=body)

    client = _client(httpx.MockTransport(handler), max_retries=2)
    with pytest.raises(
        EmbeddingAPIError, match="after 2 retries; last error: 429.*Rate limit reached"
    ):
        client.embed(["a"])
    assert len(calls) == 3


def test_default_max_retries_bounds_429s():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(429, headers={"retry-after-ms": "1"}, json={})

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(EmbeddingAPIError, match="after 8 retries"):
        client.embed(["a"])
    assert len(calls) == 9


def test_spent_quota_fails_at_once_with_the_servers_message():
    calls = []

    def handler(request):
        calls.append(1)
        error = {
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
        return httpx.Response(429, headers={"retry-after": "1"}, json={"error": error})

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(
        EmbeddingAPIError, match="exceeded your current quota.*plan and billing"
    ) as err:
        client.embed(["a"])
    assert len(calls) == 1 and err.value.status_code == 429


# -- 15: response size ------------------------------------------------------------
class _Endless(httpx.AsyncByteStream):
    async def __aiter__(self):
        for _ in range(512):
            yield b"x" * 2**20


def test_huge_body_is_refused_without_reading_it_all():
    async def handler(request):
        return httpx.Response(200, stream=_Endless())

    client = _client(httpx.MockTransport(handler), max_retries=3)
    with pytest.raises(EmbeddingAPIError, match=r"larger than 1 MiB once decoded"):
        client.embed(["a"])
    assert client.last_stats.requests == 0  # no answer was accepted


def test_gzip_bomb_is_refused_by_its_decoded_size():
    bomb = gzip.compress(b"\0" * (64 * 2**20), compresslevel=1)
    assert len(bomb) < 2**20

    def handler(request):
        return httpx.Response(
            200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(bomb)
        )

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(EmbeddingAPIError, match="once decoded"):
        client.embed(["a"])


# -- 19: odd 2xx bodies -------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"index": 0, "embedding": [1' + b"0" * 400 + b"]}]}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"data": [{"index": 0, "embedding": [1e999, 0]}]}',
        b'{"data": [{"index": true, "embedding": [1, 0]}]}',
        b'{"data": "x"}',
        b"\xff\xfe",
    ],
)
def test_odd_2xx_body_is_retried_then_served(body):
    script = [body]

    def handler(request):
        if script:
            return httpx.Response(200, content=script.pop())
        return _ok(request)

    client = _client(httpx.MockTransport(handler))
    out = client.embed(["a"])
    np.testing.assert_array_equal(out[0], fake_embedding("a", 4))
    assert client.last_stats.retries == 1


def test_odd_2xx_body_every_time_ends_in_a_clear_error():
    client = _client(
        httpx.MockTransport(lambda r: httpx.Response(200, content=b"[" * 100_000)),
        max_retries=1,
    )
    with pytest.raises(EmbeddingAPIError, match="malformed response body"):
        client.embed(["a"])


# -- 20: base_url with a query string -------------------------------------------------
def test_base_url_with_a_query_keeps_the_path():
    seen = []

    def handler(request):
        seen.append(request.url)
        return _ok(request)

    client = _client(
        httpx.MockTransport(handler),
        base_url="http://host:1/openai/v1?team=blue",
        api_version="2024-02-01",
    )
    client.embed(["a"])
    (url,) = seen
    assert url.path == "/openai/v1/embeddings"
    assert url.params["team"] == "blue" and url.params["api-version"] == "2024-02-01"


def test_key_in_openai_base_url_variable_is_refused_masked(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://example.com/v1?api-key={KEY}")
    emb = OpenAIEmbedder(transport=httpx.MockTransport(_ok), cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"OPENAI_BASE_URL\) must not carry") as err:
        emb.fit(["a"])
    _assert_no_key(err.value)
    assert not any(
        KEY.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    )
