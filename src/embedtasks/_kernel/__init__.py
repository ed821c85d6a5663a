"""The one similarity kernel: every estimator compares vectors through it.

Normalisation, exact tiled top-k and threshold search, the symmetric all-pairs
scan, pairwise and group statistics, chunk pooling, MMR and placement by
similarity live here and nowhere else. It knows only numpy: no scikit-learn, no
I/O.

**Determinism.** Every score is *canonical*: the float64 products of the float32
inputs (exact), added in a fixed pairwise tree, rounded once to float32. BLAS is
used to find candidates quickly, under a rigorous bound on its rounding, and the
few candidates per query are rescored canonically. So a query gets the same
neighbours and the same score bits alone or in any batch, in any order, on any
number of threads or Dask partitions, and on any CPU or BLAS kernel
(``OPENBLAS_CORETYPE`` included).

Modules: ``_exact`` (canonical arithmetic, normalisation, group reductions),
``_topk`` (top-k, thresholds, the one tile-size rule), ``_merge`` (shard results
merged, MMR), ``_pairs`` (the
symmetric scan and all-pairs statistics), ``_screen`` (exact integer products
that pick candidates in large searches), ``_place`` (placing new rows by
similarity), ``_store`` (which storage answers: in memory, mapped, int8,
faiss, Dask shards; :func:`build_store` decides once), ``_groups``
(near-duplicate groups: exact copies, the star rule, lowest similarity).
"""

from __future__ import annotations

from embedtasks._kernel._approx import (
    APPROXIMATE_ABOVE,
    approximate_scan,
    approximate_top_k,
    train_centroids,
    use_approximate,
)
from embedtasks._kernel._corpus import (
    Dense,
    Quantized,
    as_corpus,
    find_mmap,
    mapped_file,
    quantize,
    stream_norms,
)
from embedtasks._kernel._exact import (
    group_mean_direction,
    group_sum,
    l2_normalize,
    n_threads,
    pair_dots,
    pair_dots_indexed,
    pool_chunks,
    quadratic_form,
    row_norms,
    similarity,
    softmax,
)
from embedtasks._kernel._groups import (
    MAX_GROUP_PAIRS,
    StarGroups,
    group_lowest_similarity,
    lowest_similarity,
    match_rows,
    row_keys,
    separating_threshold,
    star_groups,
    unique_rows,
)
from embedtasks._kernel._merge import merge_top_k, mmr_rerank
from embedtasks._kernel._pairs import (
    NeighbourScan,
    cross_scan,
    gram,
    group_mean_similarity,
    mean_std_from_moments,
    neighbour_scan,
    pairwise_mean_std,
    sample_pair_similarities,
    vendi_from_gram,
    vendi_score,
)
from embedtasks._kernel._place import (
    DEFAULT_PLACEMENT_TEMPERATURE,
    place_by_similarity,
    place_from_neighbours,
)
from embedtasks._kernel._screen import (
    MIN_SCREEN_QUERIES,
    MIN_SCREEN_ROWS,
    Screen,
    build_screen,
    screen_available,
)
from embedtasks._kernel._shard import ShardedCorpus, is_dask_array
from embedtasks._kernel._store import Store, build_store, is_mapped
from embedtasks._kernel._topk import (
    DEFAULT_MEMORY_BUDGET,
    TopK,
    above_threshold,
    corpus_norm,
    exclusion_pairs,
    tile_shape,
    top_k,
    top_k_rescored,
)

__all__ = [
    "ShardedCorpus",
    "Store",
    "APPROXIMATE_ABOVE",
    "MAX_GROUP_PAIRS",
    "StarGroups",
    "group_lowest_similarity",
    "lowest_similarity",
    "match_rows",
    "row_keys",
    "separating_threshold",
    "star_groups",
    "unique_rows",
    "DEFAULT_MEMORY_BUDGET",
    "MIN_SCREEN_QUERIES",
    "MIN_SCREEN_ROWS",
    "Dense",
    "Screen",
    "build_screen",
    "build_store",
    "screen_available",
    "Quantized",
    "DEFAULT_PLACEMENT_TEMPERATURE",
    "NeighbourScan",
    "TopK",
    "above_threshold",
    "approximate_scan",
    "approximate_top_k",
    "as_corpus",
    "corpus_norm",
    "cross_scan",
    "exclusion_pairs",
    "find_mmap",
    "gram",
    "group_mean_direction",
    "group_mean_similarity",
    "group_sum",
    "is_dask_array",
    "is_mapped",
    "l2_normalize",
    "mapped_file",
    "mean_std_from_moments",
    "merge_top_k",
    "mmr_rerank",
    "n_threads",
    "neighbour_scan",
    "pair_dots",
    "pair_dots_indexed",
    "pairwise_mean_std",
    "place_by_similarity",
    "place_from_neighbours",
    "pool_chunks",
    "quadratic_form",
    "quantize",
    "row_norms",
    "sample_pair_similarities",
    "similarity",
    "softmax",
    "stream_norms",
    "tile_shape",
    "use_approximate",
    "top_k",
    "top_k_rescored",
    "train_centroids",
    "vendi_from_gram",
    "vendi_score",
]
