"""Top-k results: their type, shards' results merged into one, MMR re-ranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._exact import similarity

__all__ = ["TopK", "merge_top_k", "mmr_rerank"]


class TopK(NamedTuple):
    """Result of :func:`top_k`: both arrays have shape ``(n_queries, k)``.

    ``indices`` are corpus rows by decreasing score (ties: lower index first);
    ``scores`` the matching canonical dot products. Where fewer than ``k`` corpus
    rows are eligible (a small corpus, or exclusions) the row is padded with
    index ``-1`` and score ``-inf``.
    """

    indices: npt.NDArray[np.intp]
    scores: npt.NDArray[np.float32]


def merge_top_k(parts: Sequence[TopK], offsets: Sequence[int], k: int) -> TopK:
    """Merge top-k results of corpus shards into the top-k of the whole corpus.

    ``parts[s]`` was computed against the shard starting at corpus row
    ``offsets[s]``. Scores are canonical, so the merge (by score, ties to the
    lower global row) equals one :func:`top_k` over the whole corpus exactly.

    Examples
    --------
    >>> corpus = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    >>> from embedtasks._kernel import top_k
    >>> q = [[1.0, 0.0]]
    >>> parts = [top_k(q, corpus[:2], 2), top_k(q, corpus[2:], 2)]
    >>> merge_top_k(parts, [0, 2], 2).indices
    array([[0, 3]])
    """
    if len(parts) != len(offsets):
        raise ValueError(
            f"merge_top_k needs one offset per part: {len(parts)} parts, "
            f"{len(offsets)} offsets."
        )
    if not parts:
        raise ValueError("merge_top_k needs at least one part.")
    n_q = parts[0].indices.shape[0]
    idx = np.hstack(
        [
            np.where(p.indices >= 0, p.indices + o, -1)
            for p, o in zip(parts, offsets, strict=True)
        ]
    )
    val = np.hstack([p.scores for p in parts]).astype(np.float32)
    big = np.iinfo(np.intp).max
    order = np.lexsort((np.where(idx >= 0, idx, big), -val), axis=-1)[:, :k]
    out_i = np.full((n_q, k), -1, dtype=np.intp)
    out_s = np.full((n_q, k), -np.inf, dtype=np.float32)
    width = order.shape[1]
    out_i[:, :width] = np.take_along_axis(idx, order, axis=1)
    out_s[:, :width] = np.take_along_axis(val, order, axis=1)
    out_i[~np.isfinite(out_s)] = -1
    return TopK(out_i, out_s)


def mmr_rerank(
    query: npt.ArrayLike,
    candidates: npt.ArrayLike,
    corpus: npt.ArrayLike,
    n_select: int,
    diversity: float,
) -> npt.NDArray[np.intp]:
    """Maximal marginal relevance: pick ``n_select`` candidates, relevant yet varied.

    Each step takes the candidate maximising ``(1 - diversity) * sim(query, c) -
    diversity * max(sim(c, already chosen))``. ``diversity=0`` keeps the relevance
    order; ``diversity=1`` picks the most mutually dissimilar items.

    Returns
    -------
    ndarray of intp
        The chosen corpus indices, in the order they were picked.

    Examples
    --------
    >>> corpus = [[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]]
    >>> mmr_rerank([0.8, 0.6], [0, 1, 2], corpus, n_select=2, diversity=0.0).tolist()
    [1, 0]
    >>> mmr_rerank([0.8, 0.6], [0, 1, 2], corpus, n_select=2, diversity=0.7).tolist()
    [1, 2]
    """
    cand = np.asarray(candidates, dtype=np.intp)
    vectors = np.asarray(corpus, dtype=np.float32)[cand]
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    relevance = similarity(vectors, query)[:, 0]
    pairwise = similarity(vectors, vectors)
    n_select = min(n_select, cand.size)
    chosen: list[int] = []
    redundancy = np.full(cand.size, -np.inf, dtype=np.float32)
    available = np.ones(cand.size, dtype=bool)
    for _ in range(n_select):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = (1.0 - diversity) * relevance - diversity * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))  # argmax takes the first (best-ranked) on ties
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, pairwise[best])
    return cand[np.asarray(chosen, dtype=np.intp)]
