"""The embedder contract: texts -> float32 (n, d) unit rows, in input order.

:class:`BaseEmbedder` does everything that does not depend on where vectors come
from: it validates the texts (:func:`~embedtasks._validation.check_texts`),
embeds each distinct text once per call, serves what it can from the
:class:`~embedtasks.EmbeddingCache`, asks the subclass only for the misses,
stores them as they arrive, normalises them, and records ``usage_``.

How to subclass
---------------
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

2. Implement ``_cache_identity()``: a JSON-serialisable dict of everything that
   changes the vectors (model name and revision, endpoint, dimensions, prompt,
   ...). It is hashed with each text into the cache key, so two embedders share
   cache rows exactly when their identities are equal.
3. Implement ``_embed_uncached(texts, progress)``: embed a list of distinct,
   non-empty ``str`` and return a float32 array of shape ``(len(texts), d)`` in
   the same order. Call ``progress.update(n)`` as ``n`` more texts are done
   (``progress`` is a tqdm bar or a no-op object; ``progress.disable`` tells
   which). Rows need not be unit length: the base normalises them.
4. Optionally set the class attribute ``_store_every`` (texts per call of
   ``_embed_uncached``; each call's result is written to the cache before the
   next, so a crash loses at most that many), and ``_transient_attributes``
   (names of private attributes that hold live objects, e.g. a loaded model,
   dropped when pickling). A subclass that streams results may instead define
   ``_embed_uncached_stream(texts, progress, store)`` and call
   ``store(positions, vectors)`` for each finished group of texts.
5. Optionally define ``_usage_details()`` returning extra counters (requests,
   tokens, ...) of the last call, merged into ``usage_``.
6. Optionally override ``_cache_keys(identity, texts)`` (e.g. to key texts that
   a ``long_text`` policy changes apart from the others, with
   ``_keys_with_policy(identity, texts, long_rows, policy)``) and
   ``_estimate_uncached(texts)`` (extra figures for :meth:`BaseEmbedder.estimate`).
   While ``_embed_uncached*`` runs, ``self._fetch_rows[i]`` is the row of the
   user's input that ``texts[i]`` came from, for error messages.

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

__all__ = ["BaseEmbedder", "NoProgress"]

Store = Callable[[npt.NDArray[np.intp], npt.NDArray[np.float32]], None]


class NoProgress:
    """A do-nothing stand-in for a tqdm bar (``update``, ``close``, ``disable``)."""

    disable = True

    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""


class BaseEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
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

    _parameter_constraints: dict = {
        "cache_dir": [str, os.PathLike, None],
        "progress": ["boolean", StrOptions({"auto"})],
    }

    #: Texts per call of ``_embed_uncached`` (each call is cached before the next).
    _store_every: int = 4096
    #: Private attributes holding live objects; dropped when pickling.
    _transient_attributes: tuple[str, ...] = ()
    #: Below this many texts to embed, ``progress="auto"`` shows no bar.
    _progress_min_texts: int = 1000

    # -- what subclasses implement ---------------------------------------------
    def _cache_identity(self) -> dict[str, object]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed_uncached(
        self, texts: list[str], progress: Any
    ) -> npt.NDArray[np.float32]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _usage_details(self) -> dict[str, object]:
        return {}

    def _cache_keys(
        self, identity: dict[str, object], texts: Sequence[str]
    ) -> list[bytes]:
        return make_keys(identity, texts)

    @staticmethod
    def _keys_with_policy(
        identity: dict[str, object],
        texts: Sequence[str],
        long_rows: Sequence[int],
        policy: object,
    ) -> list[bytes]:
        """Cache keys where only ``long_rows`` carry a ``long_text`` policy.

        A text the policy does not change (it fits the model) keeps the key, and
        so the cached vector, it has under any policy; ``policy`` (e.g.
        ``["truncate", 8192]``) keys the texts it cuts or chunks apart.
        """
        keys = make_keys(identity, texts)
        if long_rows:
            marked = {**identity, "long_text": policy}
            cut = make_keys(marked, [texts[r] for r in long_rows])
            for row, key in zip(long_rows, cut, strict=True):
                keys[row] = key
        return keys

    def _estimate_uncached(self, texts: list[str]) -> dict[str, object]:
        return {}

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
        identity = self._cache_identity()
        missing = list(unique)
        if cache is not None:
            dims = identity.get("dimensions")
            dim = dims if isinstance(dims, int) else cache.identity_dim(identity)
            found, _ = cache.get_many(self._cache_keys(identity, unique), dim=dim)
            missing = [
                t for t, hit in zip(unique, found.tolist(), strict=True) if not hit
            ]
        return {
            "texts": len(texts),
            "unique_texts": len(unique),
            "cached": len(unique) - len(missing),
            "to_embed": len(missing),
            **(self._estimate_uncached(missing) if missing else {}),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        for name in ("_cache_handle", "_fetch_rows", *self._transient_attributes):
            state.pop(name, None)
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
        identity = self._cache_identity()
        if expected_dim is None:
            dims = identity.get("dimensions")
            expected_dim = dims if isinstance(dims, int) else None
        if expected_dim is None and cache is not None:
            # The width this model produced before: rows of another width in the
            # cache are then misses, never served.
            expected_dim = cache.identity_dim(identity)

        keys: list[bytes] = []
        if cache is not None:
            keys = self._cache_keys(identity, unique)
            found, matrix = cache.get_many(keys, dim=expected_dim)
            missing = np.flatnonzero(~found)
        else:
            matrix = np.empty((len(unique), expected_dim or 0), dtype=np.float32)
            missing = np.arange(len(unique))

        if missing.size:
            if inverse is None:
                self._fetch_rows = missing
            else:  # the first row of the user's input holding each text
                first = np.empty(len(unique), dtype=np.intp)
                first[inverse[::-1]] = np.arange(n - 1, -1, -1, dtype=np.intp)
                self._fetch_rows = first[missing]
            fresh = self._fetch(
                [unique[i] for i in missing],
                [keys[i] for i in missing] if cache is not None else None,
                cache,
                identity,
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
            **(self._usage_details() if missing.size else {}),
            "seconds": time.perf_counter() - start,
        }
        return out

    def _fetch(
        self,
        texts: list[str],
        keys: Sequence[bytes] | None,
        cache: EmbeddingCache | None,
        identity: dict[str, object] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed ``texts`` (all misses), writing each finished group to the cache."""
        progress = self._make_progress(len(texts))
        try:

            def store(
                positions: npt.NDArray[np.intp], vectors: npt.NDArray[np.float32]
            ) -> None:
                if cache is not None and keys is not None and len(positions):
                    vectors = l2_normalize(vectors)
                    cache.put_many(
                        [keys[p] for p in positions], vectors, identity=identity
                    )

            stream = getattr(self, "_embed_uncached_stream", None)
            if stream is not None:
                result = self._checked(stream(texts, progress, store), len(texts))
            else:
                parts = []
                step = max(1, int(self._store_every))
                for s in range(0, len(texts), step):
                    part = self._checked(
                        self._embed_uncached(texts[s : s + step], progress),
                        len(texts[s : s + step]),
                    )
                    store(np.arange(s, s + len(part)), part)
                    parts.append(part)
                result = parts[0] if len(parts) == 1 else np.concatenate(parts)
        finally:
            progress.close()
        return l2_normalize(result, copy=False)

    def _checked(self, vectors: Any, n: int) -> npt.NDArray[np.float32]:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] == 0:
            raise EmbedTasksError(
                f"{type(self).__name__} returned an array of shape {array.shape} "
                f"for {n} texts; expected ({n}, d) with d > 0."
            )
        if not np.isfinite(array).all():
            bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
            raise EmbedTasksError(
                f"{type(self).__name__} returned a non-finite vector for text "
                f"{bad} of this batch; refusing to cache or return it."
            )
        return array
