from __future__ import annotations

import asyncio
import hashlib
import json
import pickle

import httpx
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import (
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
)
from sklearn.utils.fixes import parse_version

from embedtasks import OpenAIEmbedder
from embedtasks.embedders._base import Backend, BaseEmbedder
from embedtasks.embedders._cache import EmbeddingCache, make_keys
from embedtasks.exceptions import (
    BudgetExceededError,
    EmbeddingAPIError,
    EmbedTasksError,
    InvalidTextError,
)
from embedtasks.testing import fake_embedding, fake_openai_transport


def _unit(texts, dim=4):
    X = np.stack([fake_embedding(t, dim) for t in texts])
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_transform_batches_and_reuses_cache(tmp_path):
    calls = []
    transport = fake_openai_transport(dim=4, calls=calls)
    emb = OpenAIEmbedder(batch_size=2, cache_dir=tmp_path, transport=transport)
    first = emb.fit_transform(["a", "bb", "ccc"])
    again = emb.transform(["ccc", "a"])
    assert calls == [["a", "bb"], ["ccc"]]  # second call served from the cache
    assert first.dtype == np.float32 and first.shape == (3, 4)
    np.testing.assert_array_equal(again, first[[2, 0]])
    np.testing.assert_allclose(first, _unit(["a", "bb", "ccc"]), atol=1e-7)
    assert emb.embedding_dim_ == 4


def test_http_error_names_status_and_remedy():
    reply = httpx.Response(401, text="no key")
    transport = httpx.MockTransport(lambda request: reply)
    with pytest.raises(EmbeddingAPIError, match=r"401 Unauthorized.*api_key_env"):
        OpenAIEmbedder(transport=transport, cache_dir=None).fit(["hello"])


@pytest.mark.parametrize(
    "make",
    [
        list,
        np.array,
        lambda t: np.array(t, dtype=object).reshape(-1, 1),
        pd.Series,
        lambda t: pd.DataFrame({"text": t}),
    ],
    ids=["list", "ndarray", "column", "series", "frame"],
)
def test_accepts_common_text_containers(make):
    texts = ["x", "y", "x"]
    out = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=None).fit(texts)
    np.testing.assert_array_equal(out.transform(make(texts)), out.transform(texts))


def test_duplicates_are_embedded_once_per_call():
    calls = []
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(4, calls), cache_dir=None, batch_size=100
    )
    X = emb.fit_transform(["a", "b", "a", "a", "c", "b"])
    assert calls == [["a", "b", "c"]]
    np.testing.assert_array_equal(X[[0, 2, 3]], X[[0, 0, 0]])
    assert emb.usage_["unique_texts"] == 3 and emb.usage_["texts"] == 6


def test_empty_text_error_names_the_row():
    emb = OpenAIEmbedder(transport=fake_openai_transport(), cache_dir=None)
    with pytest.raises(InvalidTextError, match="row 2"):
        emb.fit(["a", "b", "  "])
    with pytest.raises(InvalidTextError, match="row 1, got a missing value"):
        emb.fit(["a", None])


def test_two_column_frame_is_rejected():
    emb = OpenAIEmbedder(transport=fake_openai_transport(), cache_dir=None)
    with pytest.raises(ValueError, match="one text column"):
        emb.fit(pd.DataFrame({"a": ["x"], "b": ["y"]}))


def test_usage_reports_requests_tokens_and_cache_hits():
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(4), cache_dir=":memory:", batch_size=2
    )
    emb.fit(["a", "b", "c"])
    usage = emb.usage_
    assert usage["requests"] == 2 and usage["embedded"] == 3
    assert usage["tokens"] == 3 and usage["retries"] == 0
    assert usage["cache_hits"] == 0 and usage["seconds"] > 0
    emb.transform(["a", "b", "d"])
    assert emb.usage_["cache_hits"] == 2 and emb.usage_["requests"] == 1
    emb.transform(["a"])
    assert emb.usage_["cache_hits"] == 1 and "requests" not in emb.usage_


def test_default_cache_dir_uses_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDTASKS_CACHE_DIR", str(tmp_path / "c"))
    calls = []
    OpenAIEmbedder(transport=fake_openai_transport(4, calls)).fit(["a"])
    OpenAIEmbedder(transport=fake_openai_transport(4, calls)).fit(["a"])
    assert calls == [["a"]]  # a fresh estimator found it on disk
    assert (tmp_path / "c" / "embeddings.sqlite3").exists()


def test_cache_dir_none_disables_caching():
    calls = []
    emb = OpenAIEmbedder(transport=fake_openai_transport(4, calls), cache_dir=None)
    emb.fit(["a"]).transform(["a"])
    assert calls == [["a"], ["a"]]


def test_cache_key_includes_model_dimensions_and_endpoint(tmp_path):
    calls = []
    t = fake_openai_transport(8, calls)
    OpenAIEmbedder(transport=t, cache_dir=tmp_path).fit(["a"])
    OpenAIEmbedder(transport=t, cache_dir=tmp_path, model="other").fit(["a"])
    X = OpenAIEmbedder(transport=t, cache_dir=tmp_path, dimensions=3).fit_transform(
        ["a"]
    )
    OpenAIEmbedder(transport=t, cache_dir=tmp_path, base_url="http://h/v1").fit(["a"])
    assert len(calls) == 4
    assert X.shape == (1, 3)


def test_cached_rows_of_another_width_are_refetched(tmp_path):
    emb = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=tmp_path)
    emb.fit(["a"])  # the cache learns that this model gives 4-d vectors
    keys = make_keys(emb._backend().identity, ["b"])
    with EmbeddingCache(tmp_path) as cache:
        assert cache.identity_dim(emb._backend().identity) == 4
        cache.put_many(keys, np.ones((1, 7), dtype=np.float32))  # a foreign row
    calls = []
    fresh = OpenAIEmbedder(
        transport=fake_openai_transport(4, calls), cache_dir=tmp_path
    )
    X = fresh.fit_transform(["b", "a"])
    assert X.shape == (2, 4) and calls == [["b"]]
    np.testing.assert_allclose(X, _unit(["b", "a"]), atol=1e-7)


def test_model_width_change_behind_same_identity_is_detected(tmp_path):
    OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=tmp_path).fit(["a"])
    emb = OpenAIEmbedder(transport=fake_openai_transport(6), cache_dir=tmp_path)
    with pytest.raises(EmbedTasksError, match="produced 6-d vectors, but 4-d"):
        emb.fit(["new text"])


def test_width_change_after_fit_is_detected():
    emb = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=None)
    emb.fit(["a"])
    emb.set_params(transport=fake_openai_transport(8))
    with pytest.raises(EmbedTasksError, match="produced 8-d vectors, but 4-d"):
        emb.transform(["b"])


def test_failure_keeps_finished_batches_in_cache(tmp_path):
    def handler(request):
        if "bad" in request.content.decode():
            error = {"message": "'$.input' is invalid: rejected", "param": None}
            return httpx.Response(400, json={"error": error})
        return fake_openai_transport(4).handle_request(request)

    texts = [f"t{i}" for i in range(30)] + ["bad"]
    emb = OpenAIEmbedder(
        transport=httpx.MockTransport(handler),
        cache_dir=tmp_path,
        batch_size=10,
        max_concurrency=1,
    )
    with pytest.raises(EmbeddingAPIError, match="row 30"):
        emb.fit(texts)
    calls = []
    emb.set_params(transport=fake_openai_transport(4, calls))
    emb.fit(texts[:30])
    assert calls == []  # all 30 were stored before the failing request


SKLEARN_KEEPS_SERIES_INDEX = parse_version(sklearn.__version__) >= parse_version("1.7")


def test_get_feature_names_out_and_pandas_output():
    emb = OpenAIEmbedder(transport=fake_openai_transport(3), cache_dir=None)
    emb.set_output(transform="pandas")
    frame = emb.fit_transform(pd.Series(["a", "b"], index=[10, 20]))
    assert list(frame.columns) == [
        "openaiembedder0",
        "openaiembedder1",
        "openaiembedder2",
    ]
    if SKLEARN_KEEPS_SERIES_INDEX:  # scikit-learn >= 1.7 keeps a Series' index
        assert list(frame.index) == [10, 20]
    assert emb.get_feature_names_out().tolist() == list(frame.columns)


def test_not_fitted_transform_raises():
    with pytest.raises(NotFittedError):
        OpenAIEmbedder(transport=fake_openai_transport(), cache_dir=None).transform(
            ["a"]
        )


def test_sklearn_contract_checks():
    check_no_attributes_set_in_init("OpenAIEmbedder", OpenAIEmbedder())
    check_parameters_default_constructible("OpenAIEmbedder", OpenAIEmbedder())
    tags = OpenAIEmbedder().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


def test_invalid_parameter_worded_by_sklearn():
    emb = OpenAIEmbedder(batch_size=0, transport=fake_openai_transport())
    with pytest.raises(ValueError, match="'batch_size' parameter of OpenAIEmbedder"):
        emb.fit(["a"])


def test_clone_and_pickle_round_trip_without_secrets(tmp_path):
    emb = OpenAIEmbedder(
        api_key="sk-top-secret", transport=fake_openai_transport(4), cache_dir=tmp_path
    )
    X = emb.fit_transform(["a", "b"])
    assert clone(emb).get_params()["api_key"].get() == "sk-top-secret"
    assert repr(clone(emb).get_params()["api_key"]) == "'***'"
    blob = pickle.dumps(emb)
    assert b"sk-top-secret" not in blob
    restored = pickle.loads(blob)
    assert restored.api_key is None and restored.embedding_dim_ == 4
    np.testing.assert_array_equal(restored.transform(["b", "a"]), X[::-1])
    assert restored.usage_["cache_hits"] == 2


def test_api_key_never_shown_in_repr_or_errors():
    reply = httpx.Response(401, text="bad")
    emb = OpenAIEmbedder(
        api_key="sk-top-secret", transport=httpx.MockTransport(lambda r: reply)
    )
    assert "sk-top-secret" not in repr(emb)
    assert "***" in repr(emb)
    assert "sk-top-secret" not in emb._repr_html_()
    assert "sk-top-secret" not in str(emb._repr_mimebundle_())
    assert emb.api_key.get() == "sk-top-secret"
    with pytest.raises(EmbeddingAPIError) as err:
        emb.set_params(cache_dir=None).fit(["a"])
    assert "sk-top-secret" not in str(err.value)


def test_api_key_read_from_named_environment_variable(monkeypatch):
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        return fake_openai_transport().handle_request(request)

    monkeypatch.setenv("MY_KEY", "k-123")
    OpenAIEmbedder(
        api_key_env="MY_KEY", transport=httpx.MockTransport(handler), cache_dir=None
    ).fit(["a"])
    assert seen == ["Bearer k-123"]


def test_base_url_from_environment(monkeypatch):
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return fake_openai_transport().handle_request(request)

    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1/")
    OpenAIEmbedder(transport=httpx.MockTransport(handler), cache_dir=None).fit(["a"])
    assert seen == ["http://localhost:9/v1/embeddings"]


def test_progress_bar_when_asked(capsys):
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(), cache_dir=None, progress=True
    )
    emb.fit(["a", "b"])
    assert "OpenAIEmbedder" in capsys.readouterr().err
    emb.set_params(progress="auto").fit(["c"])  # not a terminal: no bar
    assert capsys.readouterr().err == ""


def test_works_inside_a_running_event_loop():
    async def cell():
        emb = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=None)
        return emb.fit_transform(["a", "b"])

    np.testing.assert_allclose(asyncio.run(cell()), _unit(["a", "b"]), atol=1e-7)


def test_pipeline_with_a_classifier():
    texts = ["good", "great", "bad", "awful"] * 3
    y = [1, 1, 0, 0] * 3
    pipe = make_pipeline(
        OpenAIEmbedder(transport=fake_openai_transport(16), cache_dir=":memory:"),
        LogisticRegression(),
    )
    assert pipe.fit(texts, y).score(texts, y) == 1.0


def test_long_text_chunk_policy_through_the_estimator(fake_server):
    server = fake_server(dim=4, max_tokens_per_input=3)
    long = "abcdefghij"  # 10 bytes: 4 pieces of <= 3 bytes by the safe bound
    emb = OpenAIEmbedder(
        base_url=server.url,
        max_tokens_per_input=3,
        long_text="chunk",
        cache_dir=None,
        backoff=0,
    )
    X = emb.fit_transform(["ok", long])
    pieces = _unit(["abc", "def", "ghi", "j"])
    mean = (pieces * np.array([3, 3, 3, 1])[:, None]).sum(axis=0)
    np.testing.assert_allclose(X[1], mean / np.linalg.norm(mean), atol=1e-6)
    # Only the long text is keyed apart; "ok" keeps its key under "error".
    identity = emb._backend().identity
    keys = emb._backend().cache_keys(["ok", long])
    plain = make_keys(identity, ["ok", long])
    assert keys[0] == plain[0] and keys[1] != plain[1]


def test_end_to_end_with_faults_then_zero_requests(fake_server, tmp_path):
    server = fake_server(dim=8, fault_rate=0.1, requests_per_minute=6000)
    texts = [f"doc {i}" for i in range(3000)]
    emb = OpenAIEmbedder(
        base_url=server.url, batch_size=100, cache_dir=tmp_path, backoff=0.01
    )
    X = emb.fit_transform(texts)
    np.testing.assert_allclose(X, _unit(texts, 8), atol=1e-7)
    before = server.n_requests
    again = OpenAIEmbedder(base_url=server.url, cache_dir=tmp_path).fit_transform(texts)
    assert server.n_requests == before  # a second run makes zero requests
    np.testing.assert_array_equal(again, X)


class _Fixed(Backend):
    identity = {"kind": "broken"}

    def __init__(self, owner):
        self.owner = owner

    def embed_batch(self, texts, rows, progress):
        return self.owner._vectors(texts), {}


class _Broken(BaseEmbedder):
    _parameter_constraints: dict = {**BaseEmbedder._parameter_constraints}

    def __init__(self, result=None, *, cache_dir=None, progress=False):
        self.result = result
        self.cache_dir = cache_dir
        self.progress = progress

    def _backend(self):
        return _Fixed(self)

    def _vectors(self, texts):
        return self.result


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (np.ones((1, 3)), r"shape \(1, 3\) for 2 texts"),
        (np.array([[1.0, np.nan], [1.0, 0.0]]), "non-finite vector for text 0"),
    ],
)
def test_base_rejects_bad_subclass_output(result, message):
    with pytest.raises(EmbedTasksError, match=message):
        _Broken(result).fit(["a", "b"])


def test_base_normalises_and_stores_in_chunks():
    class Counting(_Broken):
        def _backend(self):
            backend = _Fixed(self)
            backend.store_every = 2
            return backend

        def _vectors(self, texts):
            self.sizes_ = [*getattr(self, "sizes_", []), len(texts)]
            return np.tile([3.0, 4.0], (len(texts), 1))

    emb = Counting(cache_dir=":memory:")
    X = emb.fit_transform(["a", "b", "c", "d", "e"])
    assert emb.sizes_ == [2, 2, 1]
    np.testing.assert_allclose(X, np.tile([0.6, 0.8], (5, 1)))
    assert emb.transform(["e"]).shape == (1, 2) and emb.usage_["cache_hits"] == 1


def test_backend_counters_add_up_across_groups_into_usage():
    class Counted(_Fixed):
        store_every = 2
        kept_first = ("first",)

        def embed_batch(self, texts, rows, progress):
            vectors = np.tile([1.0, 0.0], (len(texts), 1))
            return vectors, {"tokens": len(texts), "first": int(rows[0])}

    class Emb(_Broken):
        def _backend(self):
            return Counted(self)

    emb = Emb(cache_dir=None)
    emb.fit(["a", "b", "c", "a", "d", "e"])  # five distinct texts, groups of 2
    assert emb.usage_["embedded"] == 5
    assert emb.usage_["tokens"] == 5 and emb.usage_["first"] == 0


# -- issue 10 ----------------------------------------------------------------------
class _KeyChecker:
    """A picklable MockTransport handler that wants one key."""

    def __init__(self, key):
        self.digest = hashlib.sha256(f"Bearer {key}".encode()).digest()
        self.seen = []  # digests: the test pickles this handler too
        self.fake = fake_openai_transport(4)

    def __call__(self, request):
        given = request.headers.get("authorization", "").encode()
        self.seen.append(hashlib.sha256(given).digest())
        if self.seen[-1] != self.digest:
            return httpx.Response(401, json={"error": {"message": "bad key"}})
        return self.fake.handle_request(request)


def test_no_key_in_get_params_clone_pickle_or_repr():
    checker = _KeyChecker("sk-param-secret")
    emb = OpenAIEmbedder(
        api_key="sk-param-secret",
        headers={"api-key": "hdr-secret", "X-Team": "blue"},
        transport=httpx.MockTransport(checker),
        cache_dir=None,
    )
    emb.fit(["a", "b"])
    twin = clone(emb)
    twin.fit(["c"])  # the clone still sends the key, in this process
    assert checker.seen[-1] == checker.digest
    checker.seen.clear()
    for thing in (emb, emb.get_params(), twin, twin.get_params(), emb.headers):
        blob = pickle.dumps(thing)
        assert b"sk-param-secret" not in blob and b"hdr-secret" not in blob
    for text in (repr(emb), str(emb.get_params()), repr(twin)):
        assert "sk-param-secret" not in text and "hdr-secret" not in text
    assert emb.get_params()["headers"]["X-Team"] == "blue"
    assert pickle.loads(pickle.dumps(emb)).api_key is None


@pytest.mark.parametrize(
    "url",
    [
        "http://user:sk-url-secret@127.0.0.1:9/v1",
        "http://127.0.0.1:9/v1?api-key=sk-url-secret",
        "http://127.0.0.1:9/api?code=sk-url-secret",
        "http://127.0.0.1:9/keys/sk-url-secret0123/v1",
    ],
)
def test_key_inside_base_url_is_refused_without_showing_it(url):
    with pytest.raises(ValueError, match="base_url must not carry a credential") as e:
        OpenAIEmbedder(base_url=url, cache_dir=None)
    assert "sk-url-secret" not in str(e.value)
    assert b"sk-url-secret" not in pickle.dumps(e.value)
    emb = OpenAIEmbedder(cache_dir=None)
    with pytest.raises(ValueError, match="must not carry a credential"):
        emb.set_params(base_url=url)
    assert emb.base_url is None


def test_errors_name_the_row_of_the_users_input(tmp_path):
    def handler(request):
        if "bad" in json.loads(request.content)["input"]:
            error = {"message": "'$.input' is invalid", "param": None}
            return httpx.Response(400, json={"error": error})
        return fake_openai_transport(4).handle_request(request)

    texts = [f"t{i}" for i in range(100)]
    emb = OpenAIEmbedder(transport=httpx.MockTransport(handler), cache_dir=tmp_path)
    emb.fit(texts)  # all cached: the next call only sends rows 100 onwards
    more = texts + texts[:20] + ["bad", "x"]  # "bad" is row 120 of this input
    with pytest.raises(EmbeddingAPIError, match="text at row 120") as err:
        emb.fit(more)
    assert err.value.row == 120 and type(err.value.row) is int


def test_vectors_served_before_a_fatal_error_are_cached(fake_server, tmp_path):
    server = fake_server(dim=4, latency=0.2, reject=lambda t: t == "bad")
    emb = OpenAIEmbedder(
        base_url=server.url, batch_size=9, cache_dir=tmp_path, backoff=0
    )
    with pytest.raises(EmbeddingAPIError, match="row 80"):
        emb.fit([f"t{i}" for i in range(80)] + ["bad"])
    assert len(EmbeddingCache(tmp_path)) == server.n_texts_embedded > 0


def test_long_text_policy_keeps_the_cache_of_short_texts(tmp_path):
    calls = []
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(4, calls),
        cache_dir=tmp_path,
        max_tokens_per_input=20,
    )
    emb.fit(["short one", "short two"])
    emb.set_params(long_text="truncate").fit(["short one", "short two", "x" * 30])
    assert calls == [["short one", "short two"], ["x" * 30]]


def test_lone_surrogate_names_the_row():
    emb = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=None)
    with pytest.raises(InvalidTextError, match="row 1 .*lone surrogate") as err:
        emb.fit(["fine", "bad \ud800 text"])
    assert err.value.row == 1


def test_dict_input_is_rejected_not_its_keys_embedded():
    emb = OpenAIEmbedder(transport=fake_openai_transport(4), cache_dir=None)
    with pytest.raises(
        TypeError, match="got a dict; iterating it would embed its keys"
    ):
        emb.fit({"a": "text a", "b": "text b"})


def test_estimate_reports_rows_unique_cached_tokens_requests_and_time(tmp_path):
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(4),
        cache_dir=tmp_path,
        batch_size=2,
        requests_per_minute=60,
    )
    emb.fit(["aaaa", "bbbb"])
    est = emb.estimate(["aaaa", "bbbb", "cccc", "dddd", "eeee", "cccc"])
    assert est["texts"] == 6 and est["unique_texts"] == 5
    assert est["cached"] == 2 and est["to_embed"] == 3
    assert est["requests"] == 2 and est["tokens"] == 12 and est["seconds"] == 2.0
    assert emb.usage_["texts"] == 2  # estimating embeds nothing


def test_max_tokens_stops_cleanly_and_a_rerun_continues(tmp_path):
    calls = []
    texts = [f"{i:04d}" for i in range(100)]  # 1 real token, 4 counted, each
    emb = OpenAIEmbedder(
        transport=fake_openai_transport(4, calls),
        cache_dir=tmp_path,
        batch_size=10,
        max_tokens=42,
    )
    with pytest.raises(BudgetExceededError, match="max_tokens=42") as err:
        emb.fit(texts)
    assert err.value.n_embedded == 40 == sum(map(len, calls))
    assert err.value.tokens_used == 40
    calls.clear()
    emb.set_params(max_tokens=None).fit(texts)
    assert sum(map(len, calls)) == 60  # the rest only


def test_damaged_cached_vector_is_refetched_not_served(tmp_path):
    calls = []
    emb = OpenAIEmbedder(transport=fake_openai_transport(4, calls), cache_dir=tmp_path)
    X = emb.fit_transform(["a", "b", "c"])
    (data_file,) = (tmp_path / "embeddings.vectors").glob("*.f32")
    raw = bytearray(data_file.read_bytes())
    raw[32 + 16 + 3] ^= 0x80  # a bit of the vector of "b"
    data_file.write_bytes(bytes(raw))
    calls.clear()
    again = OpenAIEmbedder(
        transport=fake_openai_transport(4, calls), cache_dir=tmp_path
    )
    np.testing.assert_array_equal(again.fit_transform(["a", "b", "c"]), X)
    assert calls == [["b"]]


def test_cli_embed_dry_run_sends_nothing(fake_server, tmp_path, capsys):
    from embedtasks.cli import main

    server = fake_server(dim=4)
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a cat", "a dog", "a cat"]}).to_csv(data, index=False)
    argv = ["embed", str(data), "--base-url", server.url, "--cache-dir", str(tmp_path)]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 rows, 2 unique, 0 already cached, 2 to embed" in out
    assert "tokens" in out and "1 requests" in out
    assert server.n_requests == 0
    assert main([*argv, "-o", str(tmp_path / "v.npy"), "--quiet"]) == 0
    assert main([*argv, "--dry-run"]) == 0
    assert "2 already cached, 0 to embed" in capsys.readouterr().out


def test_every_error_pickles_with_its_attributes():
    from embedtasks.exceptions import CacheError, TextTooLongError

    errors = [
        EmbeddingAPIError("m", status_code=400, row=np.int64(3)),
        TextTooLongError("m", row=1, n_tokens=9, limit=8),
        BudgetExceededError("m", max_tokens=5, tokens_used=4, n_embedded=2),
        CacheError("m", path="/x"),
        InvalidTextError("m", row=2, value=None),
    ]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == "m"
        assert vars(again) == vars(error)
    assert type(errors[0].row) is int
