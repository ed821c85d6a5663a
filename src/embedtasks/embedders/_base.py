"""The embedder contract: texts -> float32 (n, d) unit rows, in input order.

:class:`BaseEmbedder` does everything that does not depend on where vectors come
from: it validates the texts (:func:`~embedtasks._validation.check_texts`),
embeds each distinct text once per call, serves what it can from the
:class:`~embedtasks.EmbeddingCache`, asks the subclass only for the misses,
stores them as they arrive, normalises them, and records ``usage_``.

How to subclass
---------------
An embedder is a scikit-learn estimator that builds a :class:`Backend`: one small
object (httpx's ``BaseTransport.handle_request`` is the model) that knows where
vectors come from, and nothing else.

1. Declare your own parameters **and** the common ones, ``cache_dir`` and
   ``progress``, in ``__init__`` (store them verbatim) and in
   ``_parameter_constraints`` (start from ``BaseEmbedder._parameter_constraints``)::

       class MyEmbedder(BaseEmbedder):
           _parameter_constraints: dict = {
               **BaseEmbedder._parameter_constraints,
               "model": [str],
           }

           def __init__(self, model="m", *, cache_dir="default", progress="auto"):
               self.model = model
               self.cache_dir = cache_dir
               self.progress = progress

           def _backend(self):
               return MyBackend(self.model)

2. Subclass :class:`Backend`: set ``identity`` (a JSON-serialisable dict of
   everything that changes the vectors: model and revision, endpoint,
   dimensions, prompt, ...; hashed with each text into its cache key, so two
   embedders share cache rows exactly when their identities are equal) and
   implement ``embed_batch(texts, rows, progress)``: embed a list of distinct,
   non-empty ``str`` and return ``(vectors, stats)``, a float32 array of shape
   ``(len(texts), d)`` in the same order and a dict of counters merged into
   ``usage_``. ``rows[i]`` is the row of the user's input ``texts[i]`` came
   from, for error messages; call ``progress.update(n)`` as ``n`` more texts are
   done. Rows need not be unit length: the base normalises them. Each batch of
   at most ``store_every`` texts is cached before the next, so a crash loses at
   most that many.
3. Optionally set ``expected_dim`` (the width, when known in advance), override
   ``embed`` to stream (calling ``store(positions, vectors)`` as groups finish),
   ``cache_keys`` (e.g. to key texts a ``long_text`` policy changes apart from
   the others, with :func:`keys_with_policy`) and ``estimate`` (figures for
   :meth:`BaseEmbedder.estimate`).

Caching: ``cache_dir="default"`` uses :func:`~embedtasks._cachedir.default_cache_dir`
(``$EMBEDTASKS_CACHE_DIR`` or ``~/.cache/embedtasks``); a path uses that directory;
``":memory:"`` keeps a cache in memory for the estimator's lifetime; ``None``
disables caching (texts are still de-duplicated within a call).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)

from embedtasks._kernel import l2_normalize
from embedtasks._validation import (
    StrOptions,
    _fit_context,
    check_is_fitted,
    check_texts,
)
from embedtasks.embedders._cache import EmbeddingCache, make_keys, resolve_cache_dir
from embedtasks.exceptions import EmbedTasksError, InvalidTextError

__all__ = ["Backend", "BaseEmbedder", "NoProgress", "keys_with_policy"]

StoreFn = Callable[[npt.NDArray[np.intp], npt.NDArray[np.float32]], None]


class NoProgress:
    """A do-nothing stand-in for a tqdm bar (``update``, ``close``, ``disable``)."""

    disable = True

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""


class Backend:
    """Where vectors come from; the embedder owns the rest.

    Built by an embedder's ``_backend()`` for each call, from its parameters; it
    holds no state between calls. See the module docstring for the contract.
    """

    #: Everything that changes a vector; hashed with each text into its cache key.
    identity: dict[str, object] = {}
    #: The vector width when known before embedding (e.g. ``dimensions=``).
    expected_dim: int | None = None
    #: Most texts per :meth:`embed_batch` call (each is cached before the next).
    store_every: int = 4096
    #: Counters of :meth:`embed_batch` that keep their first value across groups
    #: (the others add up).
    kept_first: tuple[str, ...] = ()

    def cache_keys(self, texts: Sequence[str]) -> list[bytes]:
        """The cache key of each text (``sha256(identity, text)``)."""
        return make_keys(self.identity, texts)

    def embed_batch(
        self, texts: list[str], rows: npt.NDArray[np.intp], progress: Any
    ) -> tuple[npt.NDArray[np.float32], dict[str, object]]:  # pragma: no cover
        """Vectors of ``texts`` (one row each, in order) and counters."""
        raise NotImplementedError

    def embed(
        self,
        texts: list[str],
        rows: npt.NDArray[np.intp],
        progress: Any,
        store: StoreFn,
    ) -> tuple[npt.NDArray[np.float32], dict[str, object]]:
        """Embed every text, calling ``store(positions, vectors)`` as groups finish.

        By default in groups of :attr:`store_every` texts through
        :meth:`embed_batch`, their counters added up. ``store`` checks each group
        (shape, finite values) before it is cached.
        """
        parts, stats = [], {}
        step = max(1, int(self.store_every))
        for s in range(0, len(texts), step):
            part, counts = self.embed_batch(
                texts[s : s + step], rows[s : s + step], progress
            )
            store(np.arange(s, s + len(texts[s : s + step])), part)
            parts.append(part)
            for name, value in counts.items():
                if name not in stats:
                    stats[name] = value
                elif name not in self.kept_first:
                    stats[name] += value  # type: ignore[operator]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), stats

    def estimate(self, texts: list[str]) -> dict[str, object]:
        """What embedding ``texts`` would cost (requests, tokens, seconds...)."""
        return {}


def keys_with_policy(
    identity: dict[str, object],
    texts: Sequence[str],
    long_rows: Sequence[int],
    policy: object,
) -> list[bytes]:
    """Cache keys where only ``long_rows`` carry a ``long_text`` policy.

    A text the policy does not change (it fits the model) keeps the key, and so
    the cached vector, it has under any policy; ``policy`` (e.g. ``["truncate",
    8192]``) keys the texts it cuts or chunks apart.
    """
    keys = make_keys(identity, texts)
    if long_rows:
        marked = {**identity, "long_text": policy}
        cut = make_keys(marked, [texts[r] for r in long_rows])
        for row, key in zip(long_rows, cut, strict=True):
            keys[row] = key
    return keys


def checked_vectors(vectors: Any, n: int, who: str) -> npt.NDArray[np.float32]:
    """``vectors`` as float32 ``(n, d)``, finite; else an error naming ``who``."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n or array.shape[1] == 0:
        raise EmbedTasksError(
            f"{who} returned an array of shape {array.shape} for {n} texts; "
            f"expected ({n}, d) with d > 0."
        )
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise EmbedTasksError(
            f"{who} returned a non-finite vector for text {bad} of this batch; "
            "refusing to cache or return it."
        )
    return array


# scikit-learn ships no type information: its base classes are Any to mypy.
class BaseEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Base class of embedders: texts -> float32 (n, d) unit rows in input order.

    Not used directly; see the module docstring for how to subclass it.

    Attributes
    ----------
    embedding_dim_ : int
        Width of the vectors, learned by :term:`fit`.
    usage_ : dict
        Statistics of the last ``fit``/``transform`` call: ``texts`` (rows in),
        ``unique_texts``, ``cache_hits``, ``embedded`` (texts sent to the model),
        ``seconds``, plus subclass counters (``requests``, ``tokens``, ...).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "cache_dir": [str, os.PathLike, None],
        "progress": ["boolean", StrOptions({"auto"})],
    }

    #: Below this many texts to embed, ``progress="auto"`` shows no bar.
    _progress_min_texts: int = 1000

    # -- what subclasses implement ---------------------------------------------
    def _backend(self) -> Backend:  # pragma: no cover - abstract
        """The backend of the current parameters (see the module docstring)."""
        raise NotImplementedError

    # -- scikit-learn API ------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> BaseEmbedder:
        """Embed ``X`` once (filling the cache) and learn the vector width.

        Parameters
        ----------
        X : list of str, ndarray, pandas Series or one-column DataFrame
            Texts, none empty.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted embedder.
        """
        self.fit_transform(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: Any, y: Any = None) -> npt.NDArray[np.float32]:
        """Embed ``X`` and learn the vector width.

        Parameters
        ----------
        X : list of str, ndarray, pandas Series or one-column DataFrame
            Texts, none empty.
        y : None
            Ignored.

        Returns
        -------
        ndarray of float32, shape (n_texts, embedding_dim_)
            Unit-length rows in input order.
        """
        embeddings = self._embed(X, expected_dim=None)
        self.embedding_dim_ = int(embeddings.shape[1])
        return embeddings

    def transform(self, X: Any) -> npt.NDArray[np.float32]:
        """Embed ``X``.

        Parameters
        ----------
        X : list of str, ndarray, pandas Series or one-column DataFrame
            Texts, none empty.

        Returns
        -------
        ndarray of float32, shape (n_texts, embedding_dim_)
            Unit-length rows in input order.
        """
        check_is_fitted(self)
        return self._embed(X, expected_dim=self.embedding_dim_)

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # a 1-D sequence of str, not a matrix
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def estimate(self, X: Any) -> dict[str, object]:
        """What embedding ``X`` would cost, without embedding anything.

        Parameters
        ----------
        X : list of str, ndarray, pandas Series or one-column DataFrame
            Texts, none empty.

        Returns
        -------
        dict
            ``texts`` (rows), ``unique_texts``, ``cached`` (served by the cache),
            ``to_embed``, plus what the subclass knows of the rest (for
            :class:`~embedtasks.OpenAIEmbedder`: ``tokens``, ``requests`` and
            ``seconds`` implied by the known rate limits).
        """
        texts, unique, _ = self._distinct(X)
        cache = self._open_cache()
        backend = self._backend()
        missing = list(unique)
        if cache is not None:
            dim = backend.expected_dim or cache.identity_dim(backend.identity)
            found, _ = cache.get_many(backend.cache_keys(unique), dim=dim)
            missing = [
                t for t, hit in zip(unique, found.tolist(), strict=True) if not hit
            ]
        return {
            "texts": len(texts),
            "unique_texts": len(unique),
            "cached": len(unique) - len(missing),
            "to_embed": len(missing),
            **(backend.estimate(missing) if missing else {}),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_cache_handle", None)
        return state

    # -- machinery -------------------------------------------------------------
    def _open_cache(self) -> EmbeddingCache | None:
        """The cache for the current ``cache_dir`` (opened once, reused)."""
        cache_dir = self.cache_dir
        if cache_dir is None:
            return None
        where = resolve_cache_dir(cache_dir)  # None: a cache in memory
        handle = getattr(self, "_cache_handle", None)
        if handle is not None and handle[0] == (cache_dir, where):
            return handle[1]  # type: ignore[no-any-return]
        cache = EmbeddingCache(where)
        self._cache_handle = ((cache_dir, where), cache)
        return cache

    def _make_progress(self, n_texts: int) -> Any:
        setting = self.progress
        if setting == "auto":
            interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
            setting = interactive and n_texts >= self._progress_min_texts
        if not setting:
            return NoProgress()
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:  # pragma: no cover - tqdm is a dependency
            raise ImportError(
                f"{type(self).__name__}(progress=True) needs 'tqdm'. Install it "
                "with: pip install tqdm"
            ) from exc
        return tqdm(total=n_texts, unit="text", desc=type(self).__name__)

    def _distinct(
        self, X: Any
    ) -> tuple[list[str], list[str], npt.NDArray[np.intp] | None]:
        """(texts, distinct texts, inverse or None when all are distinct)."""
        name = type(self).__name__
        if isinstance(X, Mapping):
            raise TypeError(
                f"{name} got a {type(X).__name__}; iterating it would embed its "
                "keys. Pass a list of texts, e.g. list(d.values())."
            )
        texts = check_texts(X, estimator_name=name)
        for row, text in enumerate(texts):
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InvalidTextError(
                        f"{name} got a text at row {row} that is not valid Unicode "
                        f"(a lone surrogate {text[exc.start]!r} at character "
                        f"{exc.start}); it cannot be sent as UTF-8. Decode the "
                        "source with errors='replace', or drop the row.",
                        row=row,
                        value=text,
                    ) from None
        n = len(texts)
        distinct = dict.fromkeys(texts)
        if len(distinct) == n:  # no repeats (the usual case): no remapping
            return texts, texts, None
        position = {t: i for i, t in enumerate(distinct)}
        inverse = np.fromiter((position[t] for t in texts), np.intp, count=n)
        return texts, list(distinct), inverse

    def _embed(self, X: Any, *, expected_dim: int | None) -> npt.NDArray[np.float32]:
        start = time.perf_counter()
        name = type(self).__name__
        texts, unique, inverse = self._distinct(X)
        n = len(texts)
        cache = self._open_cache()
        backend = self._backend()
        identity = backend.identity
        if expected_dim is None:
            expected_dim = backend.expected_dim
        if expected_dim is None and cache is not None:
            # The width this model produced before: rows of another width in the
            # cache are then misses, never served.
            expected_dim = cache.identity_dim(identity)

        keys: list[bytes] = []
        if cache is not None:
            keys = backend.cache_keys(unique)
            found, matrix = cache.get_many(keys, dim=expected_dim)
            missing = np.flatnonzero(~found)
        else:
            matrix = np.empty((len(unique), expected_dim or 0), dtype=np.float32)
            missing = np.arange(len(unique))

        stats: dict[str, object] = {}
        if missing.size:
            if inverse is None:
                rows = missing
            else:  # the first row of the user's input holding each text
                first = np.empty(len(unique), dtype=np.intp)
                first[inverse[::-1]] = np.arange(n - 1, -1, -1, dtype=np.intp)
                rows = first[missing]
            fresh, stats = self._fetch(
                backend,
                [unique[i] for i in missing],
                rows,
                [keys[i] for i in missing] if cache is not None else None,
                cache,
            )
            if cache is not None and expected_dim is None:
                cache.record_identity_dim(identity, fresh.shape[1])
            if matrix.shape[1] == 0 and missing.size == len(unique):
                matrix = fresh
            else:
                if fresh.shape[1] != matrix.shape[1]:
                    raise EmbedTasksError(
                        f"{name} produced {fresh.shape[1]}-d vectors, but "
                        f"{matrix.shape[1]}-d vectors were expected (from fit or "
                        "the cache). The model behind this configuration changed: "
                        "refit, or clear the cache directory."
                    )
                matrix[missing] = fresh
        out = matrix if inverse is None else matrix[inverse]
        self.usage_ = {
            "texts": n,
            "unique_texts": len(unique),
            "cache_hits": len(unique) - int(missing.size),
            "embedded": int(missing.size),
            **stats,
            "seconds": time.perf_counter() - start,
        }
        return out

    def _fetch(
        self,
        backend: Backend,
        texts: list[str],
        rows: npt.NDArray[np.intp],
        keys: Sequence[bytes] | None,
        cache: EmbeddingCache | None,
    ) -> tuple[npt.NDArray[np.float32], dict[str, object]]:
        """Embed ``texts`` (all misses), writing each finished group to the cache."""
        progress = self._make_progress(len(texts))
        identity, name = backend.identity, type(self).__name__

        def store(
            positions: npt.NDArray[np.intp], vectors: npt.NDArray[np.float32]
        ) -> None:
            vectors = checked_vectors(vectors, len(positions), name)
            if cache is not None and keys is not None and len(positions):
                vectors = l2_normalize(vectors)
                cache.put_many([keys[p] for p in positions], vectors, identity=identity)

        try:
            vectors, stats = backend.embed(texts, rows, progress, store)
        finally:
            progress.close()
        vectors = checked_vectors(vectors, len(texts), type(self).__name__)
        return l2_normalize(vectors, copy=False), stats
