"""Reductions behind :class:`~embedtasks.EmbeddingClusterer`, and their cache.

- :func:`knn_graph`: each row's exact nearest neighbours from the kernel
  (:func:`embedtasks._kernel.top_k` self-join), in the form umap-learn's
  ``precomputed_knn`` takes (the row itself first, cosine distances), so UMAP
  skips pynndescent.
- the layout of that graph is :func:`embedtasks.cluster._layout.umap_layout`.
- :class:`ReductionCache`: layouts kept in memory (a few) and on disk, keyed by
  the content of the rows and every parameter that shapes the layout, so
  re-clustering with other HDBSCAN settings skips the reduction. A damaged file
  (truncated, edited, another format) fails its checksum and is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from embedtasks._cachedir import CLUSTER_DIRNAME
from embedtasks._kernel import TopK, place_from_neighbours, top_k
from embedtasks.cluster._layout import umap_layout

#: Bumped whenever a change would give a different layout for the same key
#: (2: each row's neighbours among the reference rows are kept beside it).
LAYOUT_VERSION = 2
#: The map spreads each cluster a little (0 packs it into a dot: unreadable).
MAP_MIN_DIST = 0.1
#: Above this many rows the layouts run 2/3 of the epochs.
LARGE_ROWS = 10_000
#: Layouts kept in memory per process (the most recent ones).
_MEMORY_ENTRIES = 8
_MEMORY: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()


def knn_graph(
    X: npt.NDArray[np.float32], n_neighbors: int, n_jobs: int | None = None
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """UMAP's ``precomputed_knn``: self first, then the ``n_neighbors - 1`` nearest.

    Distances are cosine distances ``1 - cos`` of the unit rows ``X``.
    """
    n = X.shape[0]
    nn = top_k(X, X, n_neighbors - 1, self_offset=0, n_jobs=n_jobs)
    indices = np.empty((n, n_neighbors), dtype=np.int32)
    distances = np.zeros((n, n_neighbors), dtype=np.float32)
    indices[:, 0] = np.arange(n)
    indices[:, 1:] = nn.indices
    distances[:, 1:] = np.maximum(0.0, 1.0 - nn.scores)
    return indices, distances


def layout_key(X: npt.NDArray[np.float32], params: dict[str, Any]) -> str:
    """sha256 of the rows' bytes, their shape and the layout parameters."""
    digest = hashlib.sha256()
    header = {"version": LAYOUT_VERSION, "shape": list(X.shape), **params}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(X, dtype=np.float32).data)
    return digest.hexdigest()


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


class ReductionCache:
    """Layouts by key: in this process (a few), and in ``cache_dir/cluster``."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.root = cache_dir
        self.folder = None if cache_dir is None else cache_dir / CLUSTER_DIRNAME

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None (absent or damaged: then recompute)."""
        path = self._path(key)
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            arrays = dict(_MEMORY[key])
            if path is not None and not path.is_file():
                self.put(key, arrays)  # computed for another cache_dir
            return arrays
        if path is None or not path.is_file():
            return None
        try:
            blob = io.BytesIO(path.read_bytes())
            with np.load(blob, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            expected = str(arrays.pop("__digest__"))
            if expected != _arrays_digest(arrays):
                return None
        except Exception:  # truncated, not a zip, missing entry: never trusted
            return None
        self._remember(key, arrays)
        return arrays

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Keep ``arrays`` in memory and, atomically, on disk (best effort)."""
        self._remember(key, arrays)
        path = self._path(key)
        if path is None:
            return
        payload = dict(arrays, __digest__=np.array(_arrays_digest(arrays)))
        buffer = io.BytesIO()
        np.savez(buffer, **payload)  # type: ignore[arg-type]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getvalue())
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk costs speed, not results
            warnings.warn(
                f"EmbeddingClusterer could not write its reduction cache to {path} "
                f"({exc}); the reduction will be recomputed next time. Pass "
                "cache_dir=None to stop trying, or a writable folder.",
                RuntimeWarning,
                stacklevel=4,
            )

    @staticmethod
    def _remember(key: str, arrays: dict[str, np.ndarray]) -> None:
        _MEMORY[key] = dict(arrays)
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > _MEMORY_ENTRIES:
            _MEMORY.popitem(last=False)


class Layouts(NamedTuple):
    """The clustered space (None when not asked for) and the 2-D map, float32.

    ``neighbours`` and ``nearest``: see :func:`neighbour_lists`.
    """

    Z: npt.NDArray[np.float32] | None
    map: npt.NDArray[np.float32]
    neighbours: npt.NDArray[np.int32]
    nearest: npt.NDArray[np.float32]


def neighbour_lists(
    X: npt.NDArray[np.float32],
    sample: npt.NDArray[np.intp] | None,
    n_neighbors: int,
    graph: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]] | None = None,
    placed: TopK | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Each row's most similar reference rows (``X[sample]``, all when None).

    Returns ``neighbours`` (n, m): indices into the reference rows, the
    graph's ``m = k - 1`` for a reference row (itself left out), the
    nearest ``m`` for any other row; and ``nearest`` (n,): the similarity of
    the first (for another row, 1 when it equals a reference row). ``graph``
    (:func:`knn_graph` of the reference rows) and ``placed`` (``top_k`` of
    the other rows) are reused when given. Fewer than 3 reference rows: no
    neighbours (m = 0).
    """
    n = X.shape[0]
    X_ref = X if sample is None else X[sample]
    k = min(n_neighbors, X_ref.shape[0] - 1)
    if k < 2:
        return np.empty((n, 0), dtype=np.int32), np.ones(n, dtype=np.float32)
    indices, distances = knn_graph(X_ref, k) if graph is None else graph
    neighbours = np.ascontiguousarray(indices[:, 1:], dtype=np.int32)
    nearest = (1.0 - distances[:, 1]).astype(np.float32)
    if sample is None:
        return neighbours, nearest
    rest = np.ones(n, dtype=bool)
    rest[sample] = False
    if placed is None:
        placed = top_k(X[rest], X_ref, k - 1)
    lists = np.empty((n, k - 1), dtype=np.int32)
    lists[sample], lists[rest] = neighbours, placed.indices[:, : k - 1]
    near = np.ones(n, dtype=np.float32)
    near[sample], near[rest] = nearest, placed.scores[:, 0]
    return lists, near


def pca_map(X: npt.NDArray[Any], seed: int) -> npt.NDArray[np.float32]:
    """2-D PCA of a few rows (too few for a neighbour graph), zero-padded."""
    from sklearn.decomposition import PCA

    out = np.zeros((X.shape[0], 2), dtype=np.float32)
    width = min(2, X.shape[1], X.shape[0])
    if width:
        out[:, :width] = PCA(n_components=width, random_state=seed).fit_transform(X)
    return out


def fit_layouts(
    X: npt.NDArray[np.float32],
    sample: npt.NDArray[np.intp] | None,
    *,
    n_components: int | None,
    n_neighbors: int,
    epochs: tuple[int, int],
    seed: int,
    cache: ReductionCache,
) -> Layouts:
    """UMAP layouts of the unit rows ``X`` (``n_components``-d, and the 2-D map).

    Both are laid out on one exact neighbour graph of the rows ``X[sample]`` (all
    rows when ``sample`` is None); the map starts from the main plane of the
    ``n_components``-d layout (when there is one), so it converges sooner and
    shows the same groups. Rows outside the sample are placed by similarity, once
    for both layouts. Looked up in, and stored to, ``cache`` first.
    """
    params = {
        "n_components": n_components,
        "n_neighbors": n_neighbors,
        "epochs": list(epochs),
        "map_min_dist": MAP_MIN_DIST,
        "seed": seed,
        "sample": None if sample is None else int(sample.size),
    }
    key = layout_key(X, params)
    found = cache.get(key)
    n = X.shape[0]
    width = n_components or 0
    if (
        found is not None
        and found["map"].shape == (n, 2)
        and found.get("nearest", np.empty(0)).shape == (n,)
        and found.get("neighbours", np.empty(0)).shape[:1] == (n,)
    ):
        if width == 0 or found.get("Z", np.empty(0)).shape == (n, width):
            return Layouts(
                found.get("Z") if width else None,
                found["map"],
                found["neighbours"],
                found["nearest"],
            )
    X_ref = X if sample is None else X[sample]
    if X_ref.shape[0] > LARGE_ROWS:  # umap-learn's rule too: 200 epochs above 10k
        epochs = (epochs[0] * 2 // 3, epochs[1] * 2 // 3)
    k = min(n_neighbors, X_ref.shape[0] - 1)
    graph = knn_graph(X_ref, k)
    refs = []
    init = None
    if width:
        Z_ref = umap_layout(
            X_ref, graph, n_components=width, seed=seed, n_epochs=epochs[0],
            cache_dir=cache.root,
        )  # fmt: skip
        refs.append(Z_ref)
        init = pca_map(Z_ref, seed)
    refs.append(
        umap_layout(
            X_ref,
            graph,
            n_components=2,
            seed=seed,
            n_epochs=epochs[1],
            cache_dir=cache.root,
            init=init,
            min_dist=MAP_MIN_DIST,
        )  # fmt: skip
    )
    both = np.hstack(refs)
    found_nn = None
    if sample is not None:
        placed = np.empty((n, both.shape[1]), dtype=np.float32)
        placed[sample] = both
        rest = np.ones(n, dtype=bool)
        rest[sample] = False
        found_nn = top_k(X[rest], X_ref, min(n_neighbors, X_ref.shape[0]))
        placed[rest] = place_from_neighbours(found_nn, both)
        both = placed
    neighbours, nearest = neighbour_lists(X, sample, n_neighbors, graph, found_nn)
    both = np.ascontiguousarray(both, dtype=np.float32)
    layouts = Layouts(
        np.ascontiguousarray(both[:, :width]) if width else None,
        np.ascontiguousarray(both[:, width:]),
        np.ascontiguousarray(neighbours, dtype=np.int32),
        np.ascontiguousarray(nearest, dtype=np.float32),
    )
    arrays = {
        "map": layouts.map,
        "neighbours": layouts.neighbours,
        "nearest": layouts.nearest,
    }
    if layouts.Z is not None:
        arrays["Z"] = layouts.Z
    cache.put(key, arrays)
    return layouts
