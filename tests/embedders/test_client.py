from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import numpy as np
import pytest

from embedtasks.embedders._http._client import (
    EmbeddingClient,
    TokenCounter,
    _retry_after,
    token_counter,
)
from embedtasks.exceptions import (
    BudgetExceededError,
    EmbeddingAPIError,
    TextTooLongError,
)
from embedtasks.testing import (
    FakeEmbeddingServer,
    fake_embedding,
    fake_openai_transport,
)

WORDS = TokenCounter(str.split, " ".join, name="words")  # an exact toy tokenizer


def _expected(texts, dim=8):
    return np.stack([fake_embedding(t, dim) for t in texts])


def _client(transport=None, **kwargs):
    kwargs.setdefault("backoff", 0.0)
    return EmbeddingClient("test-model", transport=transport, **kwargs)


class Recorder:
    """A MockTransport handler that records payloads and can answer scripted."""

    def __init__(self, script=(), dim=8):
        self.payloads = []
        self.requests = []
        self.script = list(script)
        self.fake = fake_openai_transport(dim=dim)

    def __call__(self, request):
        self.requests.append(request)
        self.payloads.append(json.loads(request.content))
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            if answer is not None:
                return answer
        return self.fake.handle_request(request)


# -- tokens -----------------------------------------------------------------------
def test_token_counter_byte_bound_counts_utf8_bytes():
    counts = TokenCounter().count(["abc", "é", "日本", "🙂"])
    assert counts.tolist() == [3, 2, 6, 4]
    assert counts.dtype == np.int64


def test_token_counter_split_keeps_characters_whole():
    text = "aé日🙂" * 50
    pieces = TokenCounter().split(text, 7)
    assert "".join(p for p, _ in pieces) == text
    assert all(n == len(p.encode()) <= 7 for p, n in pieces)
    assert TokenCounter().split("🙂🙂", 2) == [("🙂", 4), ("🙂", 4)]


def test_token_counter_exact_split_by_tokens():
    assert WORDS.exact and not TokenCounter().exact
    assert WORDS.split("a b c d e", 2) == [("a b", 2), ("c d", 2), ("e", 1)]
    assert repr(WORDS) == "TokenCounter('words')"


def test_token_counter_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: no BPE file
    token_counter.cache_clear()
    start = time.perf_counter()
    counter = token_counter("text-embedding-3-small")
    assert not counter.exact
    assert time.perf_counter() - start < 5  # no network attempt to time out
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # caching disabled
    token_counter.cache_clear()
    assert not token_counter("text-embedding-3-small").exact
    assert not token_counter("my-local-model").exact
    token_counter.cache_clear()


# -- packing --------------------------------------------------------------------------
def test_packing_respects_inputs_per_request():
    rec = Recorder()
    texts = [f"t{i}" for i in range(10)]
    out = _client(httpx.MockTransport(rec), batch_size=4).embed(texts)
    assert [len(p["input"]) for p in rec.payloads] == [4, 4, 2]
    np.testing.assert_array_equal(out, _expected(texts))


def test_packing_respects_tokens_per_request_and_per_input():
    rec = Recorder()
    texts = ["a b c", "d e", "f", "g h i j", "k"]
    client = _client(
        httpx.MockTransport(rec),
        tokens=WORDS,
        max_tokens_per_request=5,
        max_tokens_per_input=4,
    )
    out = client.embed(texts)
    assert [p["input"] for p in rec.payloads] == [
        ["a b c", "d e"],
        ["f", "g h i j"],
        ["k"],
    ]
    np.testing.assert_array_equal(out, _expected(texts))


def test_request_asks_for_base64_and_dimensions():
    rec = Recorder()
    client = _client(httpx.MockTransport(rec), dimensions=5)
    out = client.embed(["x"])
    assert rec.payloads[0] == {
        "model": "test-model",
        "input": ["x"],
        "encoding_format": "base64",
        "dimensions": 5,
    }
    assert out.dtype == np.float32 and out.shape == (1, 5)


def test_headers_auth_and_azure_api_version():
    rec = Recorder()
    _client(httpx.MockTransport(rec), api_key="sk-abc", headers={"X-Team": "t"}).embed(
        ["x"]
    )
    request = rec.requests[0]
    assert request.headers["authorization"] == "Bearer sk-abc"
    assert request.headers["x-team"] == "t"
    assert str(request.url) == "https://api.openai.com/v1/embeddings"
    rec = Recorder()
    _client(
        httpx.MockTransport(rec),
        api_key="azure-key",
        api_version="2024-02-01",
        base_url="https://r.openai.azure.com/openai/deployments/emb/",
    ).embed(["x"])
    request = rec.requests[0]
    assert request.headers["api-key"] == "azure-key"
    assert "authorization" not in request.headers
    assert str(request.url) == (
        "https://r.openai.azure.com/openai/deployments/emb/embeddings"
        "?api-version=2024-02-01"
    )


def test_no_key_sends_no_authorization():
    rec = Recorder()
    _client(httpx.MockTransport(rec)).embed(["x"])
    assert "authorization" not in rec.requests[0].headers


# -- decoding ---------------------------------------------------------------------
def _answer(items, status=200, headers=None):
    return httpx.Response(status, json={"data": items}, headers=headers)


def _b64(text, dim=8):
    return base64.b64encode(fake_embedding(text, dim).astype("<f4").tobytes()).decode()


_NAN_B64 = base64.b64encode(np.full(8, np.nan, dtype="<f4").tobytes()).decode()


def test_decode_restores_order_by_index_and_accepts_float_lists():
    items = [
        {"index": 2, "embedding": _b64("c")},
        {"index": 0, "embedding": fake_embedding("a").tolist()},
        {"index": 1, "embedding": _b64("b")},
    ]
    rec = Recorder([_answer(items)])
    out = _client(httpx.MockTransport(rec)).embed(["a", "b", "c"])
    np.testing.assert_array_equal(out, _expected(["a", "b", "c"]))


@pytest.mark.parametrize(
    "items",
    [
        [{"index": 0, "embedding": _b64("a")}, {"index": 0, "embedding": _b64("b")}],
        [{"index": 0, "embedding": _b64("a")}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 5, "embedding": _b64("b")}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": "!!"}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": "AAA="}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": _b64("b", 4)}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": ["x"]}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": 3}],
        [{"index": 0, "embedding": _b64("a")}, {"index": 1, "embedding": _NAN_B64}],
        [{"index": 0, "embedding": _b64("a")}, {"embedding": _b64("b")}],
    ],
    ids=[
        "duplicate",
        "missing",
        "out-of-range",
        "bad-b64",
        "partial-float",
        "wrong-width",
        "non-numeric",
        "bad-type",
        "nan",
        "no-index",
    ],
)
def test_malformed_answers_are_retried(items):
    rec = Recorder([_answer(items)])
    out = _client(httpx.MockTransport(rec)).embed(["a", "b"])
    assert len(rec.payloads) == 2
    np.testing.assert_array_equal(out, _expected(["a", "b"]))


def test_invalid_json_is_retried_then_reported():
    bad = httpx.Response(200, content=b'{"data": [')
    rec = Recorder([bad] * 10)
    client = _client(httpx.MockTransport(rec), max_retries=2)
    with pytest.raises(
        EmbeddingAPIError, match="still failed after 2 retries.*malformed"
    ):
        client.embed(["a"])
    assert len(rec.payloads) == 3


def test_base64_rejected_falls_back_to_floats():
    reject = httpx.Response(
        400, json={"error": {"message": "encoding_format 'base64' not supported"}}
    )
    rec = Recorder([reject])
    out = _client(httpx.MockTransport(rec)).embed(["a"])
    assert "encoding_format" not in rec.payloads[1]
    np.testing.assert_allclose(out, _expected(["a"]), rtol=1e-6)


# -- retries -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_retryable_statuses_are_retried(status):
    rec = Recorder([httpx.Response(status, json={"error": {"message": "busy"}})])
    client = _client(httpx.MockTransport(rec))
    out = client.embed(["a"])
    assert len(rec.payloads) == 2
    assert client.last_stats.retries == 1
    np.testing.assert_array_equal(out, _expected(["a"]))


def test_network_errors_are_retried():
    rec = Recorder([httpx.RemoteProtocolError("dropped"), httpx.ReadTimeout("slow")])
    client = _client(httpx.MockTransport(rec))
    client.embed(["a"])
    assert client.last_stats.retries == 2 and client.last_stats.requests == 1


def test_retry_after_headers_are_honoured():
    assert _retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert _retry_after(httpx.Headers({"retry-after": "2"})) == 2.0
    assert _retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015"})) is None
    assert _retry_after(httpx.Headers({})) is None
    slow = httpx.Response(429, headers={"retry-after-ms": "150"})
    rec = Recorder([slow])
    start = time.perf_counter()
    client = _client(httpx.MockTransport(rec))
    client.embed(["a"])
    assert time.perf_counter() - start >= 0.15  # waited as asked, not backoff=0
    assert client.last_stats.rate_limited == 1


def test_gives_up_after_max_retries_with_clear_error():
    rec = Recorder([httpx.Response(503, text="down")] * 5)
    with pytest.raises(
        EmbeddingAPIError, match=r"after 3 retries; last error: 503"
    ) as e:
        _client(httpx.MockTransport(rec), max_retries=3).embed(["a"])
    assert e.value.status_code == 503
    assert len(rec.payloads) == 4


def test_auth_error_is_not_retried_and_never_shows_the_key():
    rec = Recorder([httpx.Response(401, json={"error": {"message": "bad key"}})])
    client = _client(httpx.MockTransport(rec), api_key="sk-very-secret")
    with pytest.raises(
        EmbeddingAPIError, match="401 Unauthorized.*OPENAI_API_KEY"
    ) as e:
        client.embed(["a"])
    assert len(rec.payloads) == 1
    assert "sk-very-secret" not in str(e.value)
    assert "sk-very-secret" not in repr(client)
    assert e.value.status_code == 401


def test_not_found_error_points_at_base_url():
    rec = Recorder([httpx.Response(404, text="no such model")])
    with pytest.raises(EmbeddingAPIError, match="404 Not Found.*Check base_url"):
        _client(httpx.MockTransport(rec)).embed(["a", "b"])


def test_client_refuses_to_pickle():
    import pickle

    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(_client(api_key="k"))


def test_unknown_long_text_policy_is_rejected():
    with pytest.raises(ValueError, match="long_text must be one of"):
        _client(long_text="drop")


# -- over-long texts -------------------------------------------------------------------
def test_long_text_error_names_the_row():
    with pytest.raises(TextTooLongError, match="row 1 has 5 tokens.*limit of 4") as e:
        _client(fake_openai_transport(), tokens=WORDS, max_tokens_per_input=4).embed(
            ["ok", "a b c d e"]
        )
    assert (e.value.row, e.value.n_tokens, e.value.limit) == (1, 5, 4)


def test_long_text_truncate_sends_first_piece():
    rec = Recorder()
    client = _client(
        httpx.MockTransport(rec),
        tokens=WORDS,
        max_tokens_per_input=2,
        long_text="truncate",
    )
    out = client.embed(["a b c d e", "f"])
    assert rec.payloads[0]["input"] == ["a b", "f"]
    np.testing.assert_array_equal(out, _expected(["a b", "f"]))


def test_long_text_chunk_averages_pieces_weighted_by_tokens():
    rec = Recorder()
    calls = []
    client = _client(
        httpx.MockTransport(rec),
        tokens=WORDS,
        max_tokens_per_input=2,
        long_text="chunk",
    )
    out = client.embed(["x", "a b c d e"], on_batch=lambda p, v: calls.append(p))
    assert rec.payloads[0]["input"] == ["x", "a b", "c d", "e"]
    mean = 2 * fake_embedding("a b") + 2 * fake_embedding("c d") + fake_embedding("e")
    np.testing.assert_allclose(out[1], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_array_equal(out[0], fake_embedding("x"))
    assert np.allclose(np.linalg.norm(out, axis=1), 1)
    assert sorted(np.concatenate(calls).tolist()) == [0, 1]


def test_long_text_with_byte_bound_lets_server_decide(fake_server):
    server = fake_server(max_tokens_per_input=10)  # server: 4 bytes per token
    client = _client(base_url=server.url, max_tokens_per_input=10)
    ok = "x" * 30  # 30 bytes > 10 by the bound, but 8 tokens for the server
    out = client.embed([ok, "y"])
    np.testing.assert_array_equal(out, _expected([ok, "y"]))
    with pytest.raises(EmbeddingAPIError, match="row 1.*maximum context length") as e:
        client.embed(["y", "z" * 80])
    assert e.value.row == 1


# -- against a real loopback server --------------------------------------------------
def test_server_shuffled_answers_come_back_in_order(fake_server):
    server = fake_server(shuffle=True)
    texts = [f"sentence {i}" for i in range(300)]
    out = _client(base_url=server.url, batch_size=64).embed(texts)
    np.testing.assert_array_equal(out, _expected(texts))


def test_server_float_only_answers_are_accepted(fake_server):
    server = fake_server(float_only=True, dim=6)
    out = _client(base_url=server.url).embed(["a", "b"])
    np.testing.assert_allclose(out, _expected(["a", "b"], 6), rtol=1e-6)


def test_server_bad_item_is_isolated_by_splitting(fake_server):
    server = fake_server(reject=lambda t: t == "forbidden")
    texts = [f"t{i}" for i in range(16)]
    texts[11] = "forbidden"
    stored = []
    client = _client(base_url=server.url, max_concurrency=1)
    with pytest.raises(EmbeddingAPIError, match=r"400 Bad Request \(text at row 11\)"):
        client.embed(texts, on_batch=lambda p, v: stored.extend(p.tolist()))
    assert client.last_stats.split_batches == 4  # 16 -> 8 -> 4 -> 2 -> 1
    assert stored == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  # every good text so far


def test_server_drops_and_errors_are_survived(fake_server):
    server = fake_server(fault_rate=0.5, faults=("drop", "500", "malformed"))
    texts = [f"t{i}" for i in range(200)]
    client = _client(base_url=server.url, batch_size=10, max_retries=20)
    out = client.embed(texts)
    assert server.n_faults > 0
    assert client.last_stats.retries == server.n_faults
    np.testing.assert_array_equal(out, _expected(texts))


def test_server_api_key_checked(fake_server):
    server = fake_server(api_key="right")
    with pytest.raises(EmbeddingAPIError, match="401"):
        _client(base_url=server.url, api_key="wrong").embed(["a"])
    assert _client(base_url=server.url, api_key="right").embed(["a"]).shape == (1, 8)


def test_server_unknown_path_is_404(fake_server):
    server = fake_server()
    with pytest.raises(EmbeddingAPIError, match="404"):
        _client(base_url=server.url + "/nope").embed(["a"])


def test_fake_server_rejects_unknown_fault():
    with pytest.raises(ValueError, match="Unknown faults"):
        FakeEmbeddingServer(faults=("gremlins",))


def test_pacing_to_configured_limits_avoids_429s(fake_server):
    server = fake_server(requests_per_minute=1200, burst_seconds=0.06)
    texts = [f"t{i}" for i in range(40)]
    client = _client(base_url=server.url, batch_size=2, requests_per_minute=1200)
    start = time.perf_counter()
    out = client.embed(texts)
    elapsed = time.perf_counter() - start
    assert server.n_rate_limited == 0
    assert elapsed >= 19 * 60 / 1200  # 20 requests spaced 50 ms apart
    np.testing.assert_array_equal(out, _expected(texts))


def test_limits_are_learned_from_429_headers(fake_server):
    server = fake_server(tokens_per_minute=60_000, burst_seconds=0.05)
    texts = [f"text {i:04d}" for i in range(600)]  # 3 tokens each for the server
    client = _client(base_url=server.url, batch_size=10)
    out = client.embed(texts)
    np.testing.assert_array_equal(out, _expected(texts))
    # Announced in every answer's headers and paced at exactly that (a bucket
    # 50 ms deep may still refuse a few).
    assert client.last_stats.rate_limited == server.n_rate_limited


def test_sync_embed_works_inside_a_running_event_loop():
    async def notebook_cell():
        return _client(fake_openai_transport()).embed(["a", "b"])

    out = asyncio.run(notebook_cell())
    np.testing.assert_array_equal(out, _expected(["a", "b"]))


def test_async_embed():
    out = asyncio.run(_client(fake_openai_transport()).aembed(["a"]))
    np.testing.assert_array_equal(out, _expected(["a"]))


def test_sync_only_transport_is_adapted():
    class SyncOnly(httpx.BaseTransport):
        def __init__(self):
            self.inner = fake_openai_transport()

        def handle_request(self, request):
            return self.inner.handle_request(request)

    out = _client(SyncOnly()).embed(["a"])
    np.testing.assert_array_equal(out, _expected(["a"]))


def test_twenty_thousand_texts_with_faults_and_rate_limit_are_exact(fake_server):
    texts = [
        f"review {i}: {'great' if i % 3 else 'meh'} product" for i in range(20_000)
    ]
    clean = fake_server()
    reference = _client(base_url=clean.url, batch_size=500).embed(texts)
    faulty = fake_server(fault_rate=0.1, requests_per_minute=3000, burst_seconds=0.1)
    client = _client(base_url=faulty.url, batch_size=500, max_retries=30)
    out = client.embed(texts)
    assert faulty.n_faults > 0
    assert out.dtype == np.float32 and out.shape == (20_000, 8)
    np.testing.assert_array_equal(out, reference)
    np.testing.assert_array_equal(out[:5], _expected(texts[:5]))


# -- issue 10: pacing that learns ------------------------------------------------
from embedtasks.embedders._http._pacing import (  # noqa: E402
    Event,
    Pacer,
    PaceState,
    SqlitePaceStore,
    Ticket,
    _estimate,
    parse_duration,
)


def _quota_server(fake_server, **kwargs):
    kwargs.setdefault("announce_limits", False)
    kwargs.setdefault("misleading_remaining", True)
    kwargs.setdefault("burst_seconds", 0.2)
    return fake_server(**kwargs)


def test_fake_server_hides_its_limit_and_sends_reset_headers(fake_server):
    server = _quota_server(fake_server, requests_per_minute=60)
    answers = [
        httpx.post(server.url + "/embeddings", json={"input": ["a"]}) for _ in range(3)
    ]
    assert [a.status_code for a in answers][0] == 200 and answers[-1].status_code == 429
    for answer in answers:
        assert "x-ratelimit-limit-requests" not in answer.headers
        assert answer.headers["x-ratelimit-remaining-requests"] == "59"  # stuck
        assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
    assert float(answers[-1].headers["retry-after-ms"]) > 0
    assert "retry-after" in answers[-1].headers
    assert "for requests" in answers[-1].json()["error"]["message"]
    stats = httpx.get(server.url.replace("/v1", "/stats")).json()
    assert stats["requests"] == 3 and stats["answered_429"] >= 1


def test_fake_server_stalls_and_request_level_errors(fake_server):
    server = fake_server(stall_rate=1.0, stall_seconds=0.01, max_dimensions=4)
    ok = httpx.post(server.url + "/embeddings", json={"input": ["a"]})
    bad = httpx.post(server.url + "/embeddings", json={"input": ["a"], "dimensions": 8})
    assert ok.status_code == 200 and server.n_stalls == 1
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "dimensions"


def test_unannounced_request_limit_completes_with_default_settings(fake_server):
    # The case, scaled to seconds: the default 8 workers used to abort.
    server = _quota_server(fake_server, requests_per_minute=1200, latency=0.01)
    texts = [f"text {i}" for i in range(300)]
    client = _client(base_url=server.url, batch_size=10, backoff=0.5)
    out = client.embed(texts)
    np.testing.assert_array_equal(out, _expected(texts))
    assert client.last_stats.rate_limited == server.n_rate_limited
    assert server.n_rate_limited <= 0.5 * server.n_requests  # learned, not hammered


def test_unannounced_token_limit_completes_with_default_settings(fake_server):
    server = _quota_server(fake_server, tokens_per_minute=60_000, latency=0.01)
    texts = [f"a longer text number {i:04d}" for i in range(200)]  # 7 tokens
    client = _client(base_url=server.url, batch_size=20, backoff=0.5)
    out = client.embed(texts)
    np.testing.assert_array_equal(out, _expected(texts))
    assert server.n_rate_limited <= 0.1 * server.n_requests


def test_429_with_retry_after_is_retried_within_max_retries():
    later = httpx.Response(429, headers={"retry-after-ms": "1"}, json={})
    rec = Recorder([later] * 3)
    client = _client(httpx.MockTransport(rec), max_retries=3)
    np.testing.assert_array_equal(client.embed(["a"]), _expected(["a"]))
    assert client.last_stats.rate_limited == 3 and client.last_stats.retries == 3


def test_429_without_retry_after_counts_as_a_retry():
    rec = Recorder([httpx.Response(429, json={})] * 3)
    with pytest.raises(EmbeddingAPIError, match="after 1 retries; last error: 429"):
        _client(httpx.MockTransport(rec), max_retries=1).embed(["a"])


def test_deadline_bounds_a_run_that_is_always_told_later():
    always = httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"retry-after": "1"}, json={})
    )
    client = _client(always, deadline=0.3)
    with pytest.raises(EmbeddingAPIError, match=r"within deadline=0.3 s \(0 of 1"):
        client.embed(["a"])
    assert client.last_stats.requests == 1  # it did not wait a second to find out


def _run(coro):
    return asyncio.run(coro)


def test_pacer_resumes_workers_staggered_after_a_429():
    pacer = Pacer(max_concurrency=8)
    pacer.store.update(lambda s: setattr(s, "req_rate", 50.0))

    async def burst():
        first = await pacer.acquire(1)
        pacer.release()
        pacer.rate_limited(first, {}, "", 0.05)
        pacer.window = 8.0
        tickets = await asyncio.gather(*(pacer.acquire(1) for _ in range(4)))
        for _ in tickets:
            pacer.release()
        return first, sorted(t.start for t in tickets)

    first, starts = _run(burst())
    state = pacer.store.update(lambda s: (s.req_rate, s.pause_until))
    assert state[0] == pytest.approx(50.0)  # no reading of the rate: kept
    assert starts[0] >= state[1] - 1e-6  # nobody starts during the pause
    gaps = np.diff(starts)
    assert (gaps >= 1 / 50.0 - 1e-3).all()  # one after another, not at once


def test_pacer_429_halves_the_window_once_per_episode():
    pacer = Pacer(max_concurrency=8)
    pacer.window = 8.0
    old = Ticket(reserved=0.0, start=0.0, waited=False)
    assert pacer.rate_limited(Ticket(time.time(), time.time(), False), {}, "", 0.0)
    assert pacer.window == 4.0
    assert not pacer.rate_limited(old, {}, "", 0.0)  # sent before the cut
    assert pacer.window == 4.0


def test_pacer_reads_the_limit_from_reset_headers():
    now = time.time()
    # The server's clock (answer time + reset) moved 2 s while it accepted 10
    # more requests, each answer in debt: 5 requests/s exactly.
    events = [Event(now - 2 + 0.2 * i, 7, now + 0.2 * i - 1.0, None) for i in range(11)]
    rate, solid = _estimate(events, "requests", now, reset=1.0 + 1e-9)
    assert solid and rate == pytest.approx(5.0, rel=0.01)
    rate, solid = _estimate(events, "tokens", now, reset=None)  # measured flow
    assert not solid and rate == pytest.approx(77 / 2, rel=0.05)


def test_pacer_recovers_fast_after_a_cut_then_probes_once_per_window():
    pacer = Pacer()
    pacer.store.update(
        lambda s: (setattr(s, "req_rate", 50.0), setattr(s, "req_ceiling", 100.0))
    )
    waited = Ticket(time.time(), time.time(), True)
    for _ in range(10):
        pacer.succeeded(waited, 1)
    rate = pacer.rates()[0]
    assert rate == pytest.approx(50 * 1.05**10, rel=1e-6)  # 5% a success
    for _ in range(4):
        pacer.succeeded(waited, 1)
    assert pacer.rates()[0] == pytest.approx(95.0)  # capped at 95% of the limit
    for _ in range(3):
        pacer.succeeded(waited, 1)
    assert pacer.rates()[0] == pytest.approx(95.0 * 1.02)  # one probe per window
    pacer.store.update(lambda s: setattr(s, "probe_at", 0.0))  # a window later
    pacer.succeeded(Ticket(time.time(), time.time(), False), 1)
    assert pacer.rates()[0] == pytest.approx(95.0 * 1.02)  # did not bind: no probe
    pacer.succeeded(waited, 1)
    assert pacer.rates()[0] == pytest.approx(95.0 * 1.02**2)


def test_pacer_pauses_when_remaining_is_zero_and_ignores_stuck_counts():
    pacer = Pacer()
    pacer.learn(
        {"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "5s"}
    )
    assert pacer.store.update(lambda s: s.pause_until) == 0.0
    pacer.learn({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m"})
    assert pacer.store.update(lambda s: s.pause_until) == pytest.approx(
        time.time() + 60, abs=1
    )
    pacer.learn({"x-ratelimit-limit-requests": "600"})
    assert pacer.rates()[0] == pytest.approx(10.0)


def test_pacing_state_is_shared_by_processes_using_one_cache_dir(tmp_path):
    one = Pacer(store=SqlitePaceStore(tmp_path / "pacing.sqlite3", "scope"))
    two = Pacer(store=SqlitePaceStore(tmp_path / "pacing.sqlite3", "scope"))
    other = Pacer(store=SqlitePaceStore(tmp_path / "pacing.sqlite3", "another"))
    one.rate_limited(Ticket(time.time(), time.time(), False), {}, "", 0.5)
    assert two.rates()[0] == one.rates()[0] == pytest.approx(2.0)  # 1 per 0.5 s
    assert two.store.update(lambda s: s.pause_until) > time.time()
    assert other.rates() == (None, None)
    state = PaceState(**two.store.update(lambda s: vars(s).copy()))
    assert state.last_cut > 0


def test_parse_duration_formats():
    assert parse_duration("1m30s") == 90.0 and parse_duration("250ms") == 0.25
    assert parse_duration(None) is None and parse_duration("1x") is None


# -- issue 10: the right cause, fast ---------------------------------------------
def test_request_level_400_is_reported_at_once(fake_server):
    server = fake_server(max_dimensions=4)
    client = _client(base_url=server.url, dimensions=8, batch_size=2)
    with pytest.raises(EmbeddingAPIError, match="request itself was refused") as err:
        client.embed([f"t{i}" for i in range(50)])
    assert server.n_requests <= 2  # not split into dozens of requests
    assert err.value.row is None and "dimensions" in str(err.value)
    assert "long_text" not in str(err.value)


def test_connection_refused_fails_fast():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = _client(base_url=f"http://127.0.0.1:{port}/v1", backoff=5.0)
    with pytest.raises(
        EmbeddingAPIError, match="Cannot connect to .* server is running"
    ):
        client.embed(["a"])
    assert client.last_stats.retries == 0


@pytest.mark.parametrize("url", ["api.openai.com/v1", "localhost:8000", "ftp://x"])
def test_url_without_scheme_is_rejected_before_sending(url):
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        _client(base_url=url)


def test_errors_name_the_users_row():
    def handler(request):
        body = json.loads(request.content)
        if "bad" in body["input"]:
            return httpx.Response(
                400, json={"error": {"message": "'$.input' is invalid"}}
            )
        return fake_openai_transport().handle_request(request)

    client = _client(httpx.MockTransport(handler), batch_size=4)
    texts = ["x", "y", "bad", "z"]
    with pytest.raises(EmbeddingAPIError, match="text at row 120") as err:
        client.embed(texts, rows=[7, 50, 120, 121])
    assert err.value.row == 120 and type(err.value.row) is int


def test_text_too_long_names_the_users_row():
    client = _client(fake_openai_transport(), tokens=WORDS, max_tokens_per_input=2)
    with pytest.raises(TextTooLongError, match="row 42") as err:
        client.embed(["a b", "a b c"], rows=[3, 42])
    assert err.value.row == 42 and type(err.value.row) is int


def test_served_results_are_handed_over_before_a_fatal_error(fake_server):
    server = fake_server(latency=0.2, reject=lambda t: t == "bad")
    stored = []
    texts = [f"t{i}" for i in range(80)] + ["bad"]
    client = _client(base_url=server.url, batch_size=9, max_concurrency=8)
    with pytest.raises(EmbeddingAPIError, match="row 80"):
        client.embed(texts, on_batch=lambda p, v: stored.extend(p.tolist()))
    # Everything the server answered (and billed) reached on_batch (the cache).
    assert len(stored) == server.n_texts_embedded > 0
    assert len(set(stored)) == len(stored)


def test_max_tokens_budget_stops_before_exceeding_it(fake_server):
    server = fake_server()
    texts = [f"{i:04d}" for i in range(100)]  # 4 bytes: 1 server token, 4 counted
    stored = []
    client = _client(base_url=server.url, batch_size=10, max_tokens=50)
    with pytest.raises(BudgetExceededError, match="max_tokens=50") as err:
        client.embed(texts, on_batch=lambda p, v: stored.extend(p.tolist()))
    # The probe (40 counted, 10 real) teaches 1 real token per 4 counted: four
    # more requests of 10 fit, a fifth would exceed the budget.
    assert err.value.tokens_used == 50 and err.value.n_embedded == len(stored) == 50
    assert server.n_texts_embedded == 50


def test_estimate_counts_tokens_requests_and_time():
    client = _client(
        fake_openai_transport(), batch_size=10, requests_per_minute=60, tokens=WORDS
    )
    est = client.estimate(["a b c"] * 25)
    assert est == {"tokens": 75, "tokens_exact": True, "requests": 3, "seconds": 3.0}


def test_truncate_without_tokenizer_keeps_about_the_window(fake_server):
    server = fake_server(max_tokens_per_input=5)  # 5 server tokens = 20 bytes
    calls = []
    client = _client(base_url=server.url, max_tokens_per_input=5, long_text="truncate")
    text = "abcdefghij" * 4  # 40 bytes
    client.embed([text], on_batch=lambda p, v: calls.append(v))
    np.testing.assert_array_equal(calls[0][0], fake_embedding(text[:20]))


def test_truncate_halves_a_piece_the_server_still_finds_too_long(fake_server):
    server = fake_server(max_tokens_per_input=3)  # 12 bytes
    client = _client(base_url=server.url, max_tokens_per_input=5, long_text="truncate")
    out = client.embed(["abcdefghij" * 4])  # 20 bytes refused, then 10 accepted
    np.testing.assert_array_equal(out[0], fake_embedding("abcdefghij"))


def test_secrets_never_reach_errors_or_their_pickles(fake_server):
    import pickle

    server = fake_server(api_key="right-key")
    with pytest.raises(
        ValueError, match=r"must not carry a credential.*\*\*\*@"
    ) as bad:
        _client(base_url=server.url.replace("http://", "http://user:sk-in-url@"))
    assert "sk-in-url" not in str(bad.value)
    client = _client(
        base_url=server.url,
        api_key="sk-wrong-secret",
        headers={"X-Api-Token": "tok-in-header"},
    )
    with pytest.raises(EmbeddingAPIError) as err:
        client.embed(["a"])
    blob = pickle.dumps(err.value)
    for secret in ("sk-wrong-secret", "tok-in-header"):
        assert secret not in str(err.value) and secret.encode() not in blob
        assert secret not in repr(client)
    request = err.value.response.request
    assert "authorization" not in request.headers and request.content == b""
    again = pickle.loads(blob)
    assert again.status_code == 401 and str(again) == str(err.value)
