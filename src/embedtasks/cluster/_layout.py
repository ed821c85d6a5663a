"""UMAP's layout of a precomputed neighbour graph, without umap-learn's import.

The same algorithm as umap-learn 0.5 (``metric="cosine"``, ``min_dist`` 0 or 0.1,
``spread=1``, ``negative_sample_rate=5``, ``set_op_mix_ratio=1``, spectral
initialisation; McInnes, Healy & Melville 2018; umap-learn is BSD-3), run on the
exact graph :func:`embedtasks.cluster._reduce.knn_graph` gives it. Why our own copy:

- importing umap-learn costs ~1.5-2.5 s in every fresh process (pynndescent, and
  numba functions compiled at import) and its layout functions are not cached,
  so each process compiled them again (9-14 s);
- here the fuzzy graph is vectorised numpy, and the one jitted function (all
  epochs of stochastic gradient descent, sequential and seeded, so the layout is
  reproducible) keeps its machine code in the embedtasks cache dir.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from embedtasks._cachedir import NUMBA_DIRNAME

#: umap-learn's find_ab_params(spread=1.0, min_dist=...): min_dist 0 packs each
#: cluster tight (best for clustering); 0.1 spreads it out (readable maps).
_AB = {
    0.0: (1.93280839734315, 0.7904949732233831),
    0.1: (1.5769434602697652, 0.8950608778515733),
}
_NEGATIVE_SAMPLE_RATE = 5
#: Above this many rows, start from PCA instead of the spectral layout: ARPACK
#: took 14 s for 20k rows on a busy machine, and on Brown (11,672 rows) PCA gave
#: the same V-measure (0.304 vs 0.303 at min_cluster_size=30; 0.268 vs 0.271 at 58).
SPECTRAL_MAX_ROWS = 10_000
_SGD: dict[str, Any] = {}


def fuzzy_graph(
    indices: npt.NDArray[np.int32], distances: npt.NDArray[np.float32]
) -> sparse.coo_matrix:
    """UMAP's fuzzy simplicial set of a k-NN graph (self in column 0), symmetric."""
    n, k = indices.shape
    d = distances[:, 1:].astype(np.float64)
    positive = np.where(d > 0, d, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    target = np.log2(k)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    shifted = np.maximum(d - rho[:, None], 0.0)
    active = np.ones(n, dtype=bool)
    for _ in range(64):  # binary search for each row's bandwidth, all rows at once
        psum = np.exp(-shifted / mid[:, None]).sum(axis=1)
        active &= np.abs(psum - target) >= 1e-5
        if not active.any():
            break
        high = active & (psum > target)
        low = active & ~high
        hi = np.where(high, mid, hi)
        lo = np.where(low, mid, lo)
        mid = np.where(active, np.where(np.isfinite(hi), (lo + hi) / 2, mid * 2), mid)
    mean_row = d.mean(axis=1)
    floor = np.where(rho > 0, 1e-3 * mean_row, 1e-3 * d.mean())
    sigma = np.maximum(mid, floor)
    weights = np.exp(-shifted / sigma[:, None])
    weights[d - rho[:, None] <= 0] = 1.0
    rows = np.repeat(np.arange(n), k - 1)
    cols = indices[:, 1:].ravel()
    ok = cols >= 0
    P = sparse.csr_matrix((weights.ravel()[ok], (rows[ok], cols[ok])), shape=(n, n))
    P.eliminate_zeros()
    T = P.T.tocsr()
    G = (P + T - P.multiply(T)).tocoo()
    return G


def _spectral_init(G: sparse.coo_matrix, dim: int, seed: int) -> np.ndarray | None:
    """Eigenvectors of the normalised Laplacian (umap-learn's init), or None."""
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import ArpackError, eigsh

    n = G.shape[0]
    if n <= dim + 2 or connected_components(G, directed=False)[0] > 1:
        return None
    sqrt_deg = np.sqrt(np.asarray(G.sum(axis=0)).ravel())
    D = sparse.diags(1.0 / sqrt_deg)
    L = sparse.identity(n) - D @ G.tocsr() @ D
    k = dim + 1
    try:
        values, vectors = eigsh(
            L, k, which="SM", ncv=max(2 * k + 1, int(np.sqrt(n))), tol=1e-4,
            v0=np.ones(n), maxiter=n * 5,
        )  # fmt: skip
    except ArpackError:
        return None
    return np.asarray(vectors[:, np.argsort(values)[1:k]])


def _pca_init(X: np.ndarray, dim: int) -> np.ndarray:
    centred = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(
        centred[:: max(1, X.shape[0] // 5000)], full_matrices=False
    )
    return np.asarray(centred @ vt[:dim].T)


def _sgd_function(cache_dir: Path | None) -> Any:
    """The jitted epochs, compiled once per process (or loaded from cache_dir)."""
    if "f" in _SGD:
        return _SGD["f"]
    import numba  # a core dependency

    function = numba.njit(_epochs, fastmath=True, nogil=True)
    if cache_dir is not None:
        config: Any = numba.config
        previous = config.CACHE_DIR
        config.CACHE_DIR = str(cache_dir / NUMBA_DIRNAME)  # read by enable_caching
        try:
            function.enable_caching()
        except Exception:  # an unwritable folder: compile in each process instead
            pass
        finally:
            config.CACHE_DIR = previous
    _SGD["f"] = function
    return function


def _epochs(
    embedding, head, tail, epochs_per_sample, n_epochs, a, b, seed, negative_rate
):  # pragma: no cover - compiled by numba; the loop of umap-learn's layouts.py
    np.random.seed(seed)  # noqa: NPY002 - numba's own generator, in jitted code
    n_vertices, dim = embedding.shape
    epochs_per_negative = epochs_per_sample / negative_rate
    next_negative = epochs_per_negative.copy()
    next_sample = epochs_per_sample.copy()
    for n in range(n_epochs):
        alpha = 1.0 - n / n_epochs
        for i in range(epochs_per_sample.shape[0]):
            if next_sample[i] > n:
                continue
            j = head[i]
            k = tail[i]
            d2 = 0.0
            for d in range(dim):
                diff = embedding[j, d] - embedding[k, d]
                d2 += diff * diff
            coeff = 0.0
            if d2 > 0.0:
                power = d2**b  # d2 ** (b - 1) is power / d2: one pow, not two
                coeff = -2.0 * a * b * (power / d2) / (a * power + 1.0)
            for d in range(dim):
                g = coeff * (embedding[j, d] - embedding[k, d])
                g = min(4.0, max(-4.0, g))
                embedding[j, d] += g * alpha
                embedding[k, d] -= g * alpha
            next_sample[i] += epochs_per_sample[i]
            n_neg = int((n - next_negative[i]) / epochs_per_negative[i])
            for _ in range(n_neg):
                k = np.random.randint(n_vertices)  # noqa: NPY002
                if k == j:
                    continue
                d2 = 0.0
                for d in range(dim):
                    diff = embedding[j, d] - embedding[k, d]
                    d2 += diff * diff
                coeff = 0.0
                if d2 > 0.0:
                    coeff = 2.0 * b / ((0.001 + d2) * (a * d2**b + 1.0))
                for d in range(dim):
                    g = 4.0
                    if coeff > 0.0:
                        g = min(
                            4.0, max(-4.0, coeff * (embedding[j, d] - embedding[k, d]))
                        )
                    embedding[j, d] += g * alpha
            next_negative[i] += n_neg * epochs_per_negative[i]
    return embedding


def umap_layout(
    X: npt.NDArray[np.float32],
    graph: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]],
    *,
    n_components: int,
    seed: int,
    n_epochs: int,
    cache_dir: Path | None,
    init: np.ndarray | None = None,
    min_dist: float = 0.0,
) -> npt.NDArray[np.float32]:
    """UMAP layout of the rows ``X`` on their neighbour graph, float32.

    ``init``: a starting layout (else the spectral one up to 10,000 rows, PCA
    above, or when the graph is not connected). ``min_dist``: 0.0 or 0.1.
    """
    rng = np.random.default_rng(seed)
    G = fuzzy_graph(*graph)
    G.data[G.data < G.data.max() / n_epochs] = 0.0
    G.eliminate_zeros()
    start = init
    if start is None and X.shape[0] <= SPECTRAL_MAX_ROWS:
        start = _spectral_init(G, n_components, seed)
    if start is None:
        start = _pca_init(X.astype(np.float64), n_components)
    start = np.asarray(start, dtype=np.float64)
    scale = np.abs(start).max()
    embedding = start * (10.0 / scale if scale > 0 else 1.0)
    embedding = embedding + rng.normal(scale=1e-4, size=embedding.shape)
    low, high = embedding.min(axis=0), embedding.max(axis=0)
    embedding = 10.0 * (embedding - low) / np.where(high > low, high - low, 1.0)
    layout: npt.NDArray[np.float32] = np.ascontiguousarray(embedding, np.float32)
    weights = G.data.astype(np.float64)
    epochs_per_sample = n_epochs / (n_epochs * weights / weights.max())
    sgd = _sgd_function(cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's notes on reflected types
        sgd(
            layout,
            G.row.astype(np.int64),
            G.col.astype(np.int64),
            epochs_per_sample,
            int(n_epochs),
            *_AB[min_dist],
            int(seed % (2**31 - 1)),
            float(_NEGATIVE_SAMPLE_RATE),
        )
    return layout
