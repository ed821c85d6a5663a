"""How varied is a corpus? Similarity distributions, near-duplicates, Vendi score.

One mean similarity hides both duplicates and clusters. :class:`DiversityReport`
fits on embeddings and keeps the whole picture: the distribution of pairwise
similarities (exact mean and spread in O(n*d^2); quantiles and histogram from every
pair, or a uniform sample of pairs when there are too many), each row's
nearest-neighbour similarity (an exact blocked pass), every near-duplicate pair
above a threshold, and the Vendi score (the effective number of distinct items),
for the whole corpus and for each group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from embedtasks._kernel import (
    approximate_scan,
    build_store,
    group_mean_similarity,
    is_dask_array,
    use_approximate,
)
from embedtasks._optional import import_optional
from embedtasks._validation import (
    CorpusMixin,
    Integral,
    Interval,
    Real,
    RealsIn,
    StrOptions,
    _fit_context,
    check_is_fitted,
)

__all__ = ["DiversityReport"]


class DiversityReport(CorpusMixin, BaseEstimator):
    """Summarise the similarity structure of a set of embeddings.

    ``fit(X)`` computes the report; its results are fitted attributes, and
    :meth:`to_frame` / :meth:`plot` present them. Rows are normalised to unit
    length, so similarities are cosines.

    Parameters
    ----------
    duplicate_threshold : float, default=0.95
        Pairs at least this similar are reported as near-duplicates.
    quantiles : tuple of float, default=(0.05, 0.25, 0.5, 0.75, 0.95)
        Quantiles of the pairwise and nearest-neighbour similarity distributions.
    n_bins : int, default=40
        Histogram bins over [-1, 1].
    max_pairs : int, default=1_000_000
        Pairwise quantiles and histogram use every pair when there are at most
        this many, otherwise every pair among a random subset of rows chosen to
        give about this many pairs (the mean and standard deviation are always
        exact).
    max_duplicate_pairs : int, default=10_000
        At most this many near-duplicate pairs are kept (the most similar); their
        total is counted exactly in ``n_duplicate_pairs_`` (on the approximate
        path: the pairs found, up to this cap).
    neighbors : {"auto", "exact", "approximate"}, default="auto"
        How nearest neighbours and near-duplicates are found. ``"exact"``: the
        symmetric scan of every pair (quadratic: about 2x the matrix-multiply
        bound, ~20 s for 100k x 384 on 2 cores). ``"approximate"``: rows are
        grouped by their 2 nearest of ~sqrt(n) k-means centroids and each group
        is scanned exactly; recall of near-duplicate pairs >= 0.99 on a million
        rows in under 2 minutes (``benchmarks/bench_scale.py``). ``"auto"``:
        exact up to 200,000 rows.
    random_state : int, RandomState instance or None, default=None
        Seeds the sample of pairs and the approximate path's centroids.

    Attributes
    ----------
    n_samples_ : int
        Rows seen in :term:`fit`.
    mean_similarity_ : float
        Mean cosine similarity over all pairs of distinct rows (exact).
    std_similarity_ : float
        Standard deviation of those similarities (exact).
    similarity_quantiles_ : ndarray of shape (n_quantiles,)
        Quantiles of the pairwise similarities.
    similarity_histogram_ : ndarray of shape (n_bins,)
        Share of pairs in each bin of :attr:`bin_edges_`.
    pairs_exact_ : bool
        Whether the quantiles and histogram used every pair (else a sample).
    nn_similarity_ : ndarray of shape (n_samples_,), dtype float32
        Each row's similarity to its nearest other row.
    nn_indices_ : ndarray of shape (n_samples_,)
        The index of that nearest other row.
    nn_quantiles_ : ndarray of shape (n_quantiles,)
        Quantiles of :attr:`nn_similarity_`.
    nn_histogram_ : ndarray of shape (n_bins,)
        Share of rows in each bin of :attr:`bin_edges_`.
    bin_edges_ : ndarray of shape (n_bins + 1,)
        Edges of both histograms.
    duplicate_pairs_ : ndarray of shape (n_kept, 2)
        Near-duplicate pairs ``(i, j)`` with ``i < j``, most similar first.
    duplicate_similarities_ : ndarray of shape (n_kept,), dtype float32
        Their similarities.
    n_duplicate_pairs_ : int
        Number of near-duplicate pairs (all of them, even past the cap).
    vendi_score_ : float
        Effective number of distinct rows, between 1 and ``n_samples_``.
    groups_ : ndarray or None
        Sorted distinct group labels, when ``groups`` was given.
    group_similarity_ : ndarray of shape (n_groups, n_groups) or None
        Mean similarity between rows of two groups (diagonal: within a group,
        distinct pairs only; NaN for a group of one row).
    n_features_in_ : int
        Width of the embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import DiversityReport
    >>> X = np.eye(4)[[0, 0, 1, 2, 3, 3]]  # rows 0/1 and 4/5 are copies
    >>> report = DiversityReport().fit(X, groups=["a", "a", "a", "b", "b", "b"])
    >>> round(report.vendi_score_, 3), report.duplicate_pairs_.tolist()
    (3.78, [[0, 1], [4, 5]])
    >>> report.to_frame()[["n_samples", "mean_similarity", "vendi_score"]].round(2)
         n_samples  mean_similarity  vendi_score
    all          6             0.13         3.78
    a            3             0.33         1.89
    b            3             0.33         1.89
    """

    _parameter_constraints: dict = {
        "duplicate_threshold": [Interval(Real, -1, 1, closed="both")],
        "quantiles": [RealsIn(0, 1)],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "max_pairs": [Interval(Integral, 1, None, closed="left")],
        "max_duplicate_pairs": [Interval(Integral, 0, None, closed="left")],
        "neighbors": [StrOptions({"auto", "exact", "approximate"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        duplicate_threshold=0.95,
        quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
        n_bins=40,
        max_pairs=1_000_000,
        max_duplicate_pairs=10_000,
        neighbors="auto",
        random_state=None,
    ):
        self.duplicate_threshold = duplicate_threshold
        self.quantiles = quantiles
        self.n_bins = n_bins
        self.max_pairs = max_pairs
        self.max_duplicate_pairs = max_duplicate_pairs
        self.neighbors = neighbors
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, groups=None):
        """Compute the report.

        Parameters
        ----------
        X : array-like or dask.array of shape (n_samples, n_features)
            Embeddings (at least 2 rows); normalised to unit length here. A dask
            array stays sharded on the Dask workers (no ``groups``); see the
            scale-out guide for which statistics are then exact.
        y : None
            Ignored; present for API consistency.
        groups : array-like of shape (n_samples,), optional
            A group label per row (source, class, period...): each group also
            gets its own statistics (see :meth:`to_frame`).

        Returns
        -------
        self : DiversityReport
            The fitted report.
        """
        if is_dask_array(X) and groups is not None:
            raise ValueError(
                "DiversityReport.fit on a dask array does not take groups yet: "
                "fit one report per group (X[mask]) or fit on X.compute()."
            )
        X = self._fit_corpus(X, min_rows=2)
        quantiles = np.asarray(self.quantiles, dtype=np.float64).ravel()
        rng = check_random_state(self.random_state)
        self.bin_edges_ = np.linspace(-1.0, 1.0, self.n_bins + 1)
        overall = self._profile(X, quantiles, rng)
        self.n_samples_ = X.shape[0]
        for key, value in overall.items():
            setattr(self, f"{key}_", value)
        self._rows = [("all", overall)]
        self.groups_, self.group_similarity_ = None, None
        if groups is not None:
            self._fit_groups(X, groups, quantiles, rng)
        return self

    def _fit_groups(self, X, groups, quantiles, rng):
        values = np.asarray(groups)
        if values.ndim != 1 or values.shape[0] != X.shape[0]:
            raise ValueError(
                f"groups must hold one label per row of X: got shape {values.shape} "
                f"for {X.shape[0]} rows."
            )
        try:
            self.groups_, inverse = np.unique(values, return_inverse=True)
        except TypeError as exc:
            raise TypeError(
                "groups must be labels of one comparable type (all str or all int); "
                f"got {sorted({type(v).__name__ for v in values})}."
            ) from exc
        self.group_similarity_ = group_mean_similarity(X, inverse, self.groups_.size)
        for g, name in enumerate(self.groups_):
            rows = np.flatnonzero(inverse == g)
            self._rows.append((name, self._profile(X[rows], quantiles, rng)))

    def _profile(self, X, quantiles, rng) -> dict[str, Any]:
        """Every statistic of the report for one set of unit rows."""
        n = X.shape[0]
        nan_q = np.full(quantiles.size, np.nan)
        empty_hist = np.zeros(self.n_bins)
        if n < 2:  # a group of one row: no pairs, no neighbour
            return {
                "mean_similarity": np.nan,
                "std_similarity": np.nan,
                "similarity_quantiles": nan_q,
                "similarity_histogram": empty_hist,
                "pairs_exact": True,
                "nn_similarity": np.full(n, np.nan, dtype=np.float32),
                "nn_indices": np.full(n, -1, dtype=np.intp),
                "nn_quantiles": nan_q,
                "nn_histogram": empty_hist,
                "duplicate_pairs": np.empty((0, 2), dtype=np.intp),
                "duplicate_similarities": np.empty(0, dtype=np.float32),
                "n_duplicate_pairs": 0,
                "vendi_score": float(n),
            }
        store = build_store(X)  # in memory, or the shards of a dask array
        mean, std = store.mean_std()
        n_pairs = n * (n - 1) // 2
        exact = n_pairs <= self.max_pairs
        # A sharded corpus is scanned exactly, shard by shard.
        if isinstance(X, np.ndarray) and use_approximate(self.neighbors, n):
            scan = approximate_scan(
                X,
                self.duplicate_threshold,
                self.max_duplicate_pairs,
                random_state=int(rng.randint(2**31 - 1)),
            )
        else:
            scan = store.scan(
                self.duplicate_threshold, self.max_duplicate_pairs, keep_all=exact
            )
        pair_sims = scan.pair_sims
        if pair_sims is None:
            pair_sims = store.sample_pairs(self.max_pairs, rng)
        return {
            "mean_similarity": mean,
            "std_similarity": std,
            "similarity_quantiles": np.quantile(pair_sims, quantiles),
            "similarity_histogram": self._histogram(pair_sims),
            "pairs_exact": exact,
            "nn_similarity": scan.nn_sim,
            "nn_indices": scan.nn_idx,
            "nn_quantiles": np.quantile(scan.nn_sim, quantiles),
            "nn_histogram": self._histogram(scan.nn_sim),
            "duplicate_pairs": scan.pairs,
            "duplicate_similarities": scan.pair_scores,
            "n_duplicate_pairs": scan.n_pairs,
            "vendi_score": store.vendi(),
        }

    def _histogram(self, values):
        counts, _ = np.histogram(np.clip(values, -1, 1), bins=self.bin_edges_)
        return counts / max(values.size, 1)

    def to_frame(self):
        """The report as a DataFrame: one row for all data, then one per group.

        Returns
        -------
        pandas.DataFrame
            Index ``"all"`` then the group labels; columns ``n_samples``,
            ``mean_similarity``, ``std_similarity``, ``similarity_pXX`` (pairwise
            quantiles), ``nn_similarity_mean``, ``nn_similarity_pXX``,
            ``n_duplicate_pairs``, ``duplicate_share`` (rows with a near-duplicate),
            ``vendi_score`` and ``vendi_share`` (Vendi score / rows: 1 when every
            row is distinct).
        """
        import pandas as pd

        check_is_fitted(self)
        quantiles = np.asarray(self.quantiles, dtype=np.float64).ravel()
        names = [f"p{100 * q:g}".replace(".", "_") for q in quantiles]
        records = []
        for _, stats in self._rows:
            n = stats["nn_similarity"].size
            record = {
                "n_samples": n,
                "mean_similarity": stats["mean_similarity"],
                "std_similarity": stats["std_similarity"],
            }
            for name, value in zip(names, stats["similarity_quantiles"], strict=True):
                record[f"similarity_{name}"] = value
            nn = stats["nn_similarity"]
            record["nn_similarity_mean"] = float(nn.mean()) if n > 1 else np.nan
            for name, value in zip(names, stats["nn_quantiles"], strict=True):
                record[f"nn_similarity_{name}"] = value
            record["n_duplicate_pairs"] = stats["n_duplicate_pairs"]
            record["duplicate_share"] = (
                float((nn >= self.duplicate_threshold).mean()) if n > 1 else 0.0
            )
            record["vendi_score"] = stats["vendi_score"]
            record["vendi_share"] = stats["vendi_score"] / n
            records.append(record)
        return pd.DataFrame(records, index=[name for name, _ in self._rows])

    def plot(self, *, ax=None, max_groups=8):
        """Histograms of pairwise and nearest-neighbour similarity, per group.

        Readable at any number of groups: the ``max_groups`` largest are drawn
        (largest first, colours from the perceptual *viridis* map), the others
        pooled into one "other" line, the whole corpus in black; the x-axis spans
        the similarities that occur, and the legend sits beside the panels.

        Parameters
        ----------
        ax : sequence of two matplotlib Axes, optional
            Where to draw; a new figure with two panels by default.
        max_groups : int, default=8
            Groups drawn on their own; the rest are pooled as "other".

        Returns
        -------
        matplotlib.figure.Figure
            The figure holding the two panels.
        """
        check_is_fitted(self)
        plt = import_optional(
            "matplotlib.pyplot", extra="plot", purpose="DiversityReport.plot()"
        )
        if ax is None:
            fig, ax = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
        else:
            fig = ax[0].figure
        centres = (self.bin_edges_[:-1] + self.bin_edges_[1:]) / 2
        lines = _plot_lines(self._rows, max(int(max_groups), 0))
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(lines), 1)))
        for i, (label, pairs, nn, kind) in enumerate(lines):
            style: dict[str, Any] = {"label": label, "linewidth": 1.4}
            if kind == "all":
                style.update(color="black", linewidth=2.2)
            elif kind == "other":
                style.update(color="grey", linestyle=":")
            else:
                style.update(color=colours[i])
            ax[0].plot(centres, pairs, **style)
            ax[1].plot(centres, nn, **style)
        ax[0].set(title="Pairwise similarity", xlabel="cosine", ylabel="share")
        ax[1].set(title="Nearest-neighbour similarity", xlabel="cosine")
        ax[1].axvline(
            self.duplicate_threshold,
            color="grey",
            linestyle="--",
            label="duplicate threshold",
        )
        width = self.bin_edges_[1] - self.bin_edges_[0]
        for panel, column in ((ax[0], 1), (ax[1], 2)):
            shares = np.array([line[column] for line in lines])
            used = np.flatnonzero(shares.sum(axis=0) > 0)
            if used.size:
                low, high = self.bin_edges_[used[0]], self.bin_edges_[used[-1] + 1]
                if panel is ax[1]:
                    low = min(low, self.duplicate_threshold)
                    high = max(high, self.duplicate_threshold)
                panel.set_xlim(max(-1.0, low - width), min(1.0, high + width))
        ax[1].legend(
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            fontsize="small",
            frameon=False,
        )
        return fig


def _plot_lines(rows, max_groups):
    """(label, pair histogram, nn histogram, kind) for each line of the plot.

    The corpus first, then the ``max_groups`` largest groups, then the others
    pooled: their histograms averaged, weighted by pairs and rows.
    """
    (name, overall), groups = rows[0], rows[1:]
    lines = [(f"{name} ({overall['nn_similarity'].size:,})", *_hists(overall), "all")]
    groups = sorted(groups, key=lambda item: -item[1]["nn_similarity"].size)
    for label, stats in groups[:max_groups]:
        lines.append((f"{label} ({stats['nn_similarity'].size:,})", *_hists(stats), ""))
    rest = groups[max_groups:]
    if rest:
        sizes = np.array([stats["nn_similarity"].size for _, stats in rest], float)
        pair_w = sizes * (sizes - 1) / 2
        pairs = np.array([_hists(stats)[0] for _, stats in rest])
        nn = np.array([_hists(stats)[1] for _, stats in rest])
        pooled_pairs = pair_w @ pairs / max(pair_w.sum(), 1.0)
        pooled_nn = sizes @ nn / max(sizes.sum(), 1.0)
        label = f"other {len(rest)} groups ({int(sizes.sum()):,})"
        lines.append((label, pooled_pairs, pooled_nn, "other"))
    return lines


def _hists(stats):
    return stats["similarity_histogram"], stats["nn_histogram"]
