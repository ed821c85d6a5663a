"""DriftTest and DriftResult: the estimator and what it returns (see the package)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from embedtasks._kernel import l2_normalize, top_k, train_centroids
from embedtasks._keywords import ctfidf_keywords, topic_names
from embedtasks._validation import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_embeddings,
    check_is_fitted,
    check_texts,
)
from embedtasks.drift._stats import (
    merge_changed,
    newcombe,
    normal_quantile,
    permutation_test,
)

__all__ = ["DriftResult", "DriftTest"]

#: Spherical k-means on the pooled rows: iterations, and sample rows per centre
#: (the centres are trained on a sample, then every row joins its nearest).
_KMEANS_ITERATIONS = 10
#: k-means runs from different starts; the tightest (highest total similarity of
#: the rows to their centres) is kept.
_KMEANS_STARTS = 3
_KMEANS_ROWS_PER_CLUSTER = 100


@dataclass(frozen=True, repr=False)
class DriftResult:
    """What :meth:`DriftTest.test` found. Read :meth:`summary` for a verdict.

    Attributes
    ----------
    p_value : float
        Permutation p-value of the test (the share of label permutations whose
        statistic reaches the observed one, counting the observed labelling).
    statistic : float
        Nearest-neighbour separation: how much larger the share of new rows among
        a new row's neighbours is than among a reference row's (0: alike, 1: no
        row has a neighbour from the other set).
    confidence_interval : tuple of float
        Interval for the statistic at level ``confidence``.
    confidence : float
        Level of the intervals.
    alpha : float
        Significance level of the verdict :attr:`drifted`.
    drifted : bool
        ``p_value < alpha``.
    n_reference, n_new : int
        Rows tested from each set (after subsampling to ``max_samples``).
    n_neighbors : int
        Neighbours per row.
    n_permutations : int
        Label permutations drawn.
    null_mean, null_std : float
        Mean and standard deviation of the statistic over the permutations.
    clusters : pandas.DataFrame
        One row per cluster of the pooled rows, by decreasing ``difference``:
        ``cluster``, ``name``, ``n_reference``, ``n_new``, ``share_reference``,
        ``share_new``, ``difference`` (``share_new - share_reference``),
        ``ci_low``, ``ci_high`` (Newcombe's score interval, Bonferroni-adjusted
        over every cluster examined, merges included, so that all hold together
        at ``confidence``),
        ``change`` (``"grew"``/``"shrank"`` where the interval excludes 0, else
        ``""``) and ``representatives`` (pooled rows nearest the centre, as
        ``("reference" | "new", row)`` pairs).
    examples : pandas.DataFrame
        The new rows least like the reference, most unlike first: ``index`` (row
        of the new set), ``score`` (share of its neighbours that are new rows),
        ``nearest_reference`` (row of the reference set most similar to it),
        ``reference_similarity`` and, with texts, ``text`` and
        ``nearest_reference_text``.
    labels_reference, labels_new : ndarray of int
        Cluster of each row of each set (``-1`` for rows left out by
        ``max_samples``), as in :attr:`clusters`.
    scores_new : ndarray of float
        Share of each new row's neighbours that are new rows (NaN for rows left
        out); by chance about ``n_new / (n_reference + n_new)``.
    """

    p_value: float
    statistic: float
    confidence_interval: tuple[float, float]
    confidence: float
    alpha: float
    n_reference: int
    n_new: int
    n_neighbors: int
    n_permutations: int
    null_mean: float
    null_std: float
    clusters: Any = field(compare=False)
    examples: Any = field(compare=False)
    labels_reference: np.ndarray = field(compare=False)
    labels_new: np.ndarray = field(compare=False)
    scores_new: np.ndarray = field(compare=False)

    @property
    def drifted(self) -> bool:
        """Whether the new set differs from the reference at level ``alpha``."""
        return bool(self.p_value < self.alpha)

    def summary(self, n_clusters: int = 5) -> str:
        """A few lines a person reads: verdict, p-value, effect, what changed."""
        low, high = self.confidence_interval
        verdict = (
            "the new set differs from the reference"
            if self.drifted
            else "no evidence that the new set differs from the reference"
        )
        lines = [
            f"DriftTest: {verdict} (p = {_format_p(self.p_value, self.n_permutations)}"
            f", alpha = {self.alpha:g})",
            f"  separation {self.statistic:.3f}, {self.confidence:.0%} interval "
            f"[{low:.3f}, {high:.3f}] (0 = alike; null mean {self.null_mean:.3f} "
            f"+/- {self.null_std:.3f})",
            f"  {self.n_reference:,} reference rows vs {self.n_new:,} new rows, "
            f"{self.n_neighbors} neighbours each, "
            f"{self.n_permutations:,} permutations",
        ]
        changed = self.clusters[self.clusters["change"] != ""]
        for _, row in changed.head(n_clusters).iterrows():
            lines.append(
                f"  {row['change']:<6} {row['name']}: {row['share_reference']:.1%} -> "
                f"{row['share_new']:.1%} ({row['difference']:+.1%}, interval "
                f"{row['ci_low']:+.1%} to {row['ci_high']:+.1%})"
            )
        if changed.empty:
            lines.append("  no cluster's share changed beyond its interval")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (for JSON): the figures, clusters and examples."""
        return {
            "drifted": self.drifted,
            "p_value": self.p_value,
            "statistic": self.statistic,
            "confidence_interval": list(self.confidence_interval),
            "confidence": self.confidence,
            "alpha": self.alpha,
            "n_reference": self.n_reference,
            "n_new": self.n_new,
            "n_neighbors": self.n_neighbors,
            "n_permutations": self.n_permutations,
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "clusters": _records(self.clusters),
            "examples": _records(self.examples),
        }

    def __repr__(self) -> str:
        return self.summary()


def _records(frame: Any) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in record.items()})
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _format_p(p_value: float, n_permutations: int) -> str:
    floor = 1.0 / (n_permutations + 1)
    if p_value <= floor:
        return f"<= {floor:.2g}"
    return f"{p_value:.3g}"


class DriftTest(BaseEstimator):
    """Test whether new embeddings come from the same distribution as a reference.

    A permutation test of the nearest-neighbour statistic (see
    :mod:`embedtasks.drift`): exact p-values under the null hypothesis, an
    interval for the effect, the clusters that grew or shrank, and the new rows
    with no reference rows nearby. Rows are normalised to unit length, so
    similarity is the cosine.

    Parameters
    ----------
    n_neighbors : int, default=10
        Neighbours per pooled row. A few (5-20) work best: more neighbours reach
        further from a row and blur small new regions.
    n_permutations : int, default=1000
        Label permutations for the p-value; the smallest p-value reported is
        ``1 / (n_permutations + 1)``.
    n_clusters : "auto" or int, default="auto"
        Clusters of the pooled rows (k-means on the unit vectors) in
        :attr:`DriftResult.clusters`. ``"auto"``: ``sqrt(n_pooled / 20)``
        rounded, between 2 and 30 (a cluster then holds about
        ``sqrt(20 * n_pooled)`` rows: 280 of 4,000, 630 of 20,000), few enough
        to read and for each share to be measured; then neighbouring clusters
        that grew (or shrank) together are merged where the union's change is
        stronger evidence than each part's, so that a new topic k-means cut in
        two comes out as one cluster. An int gives exactly that many.
    n_examples : int, default=10
        New rows listed in :attr:`DriftResult.examples`.
    max_samples : int or None, default=10000
        Rows tested from each set at most (a random subsample beyond); the test
        stays valid, its power grows with the rows tested. None tests every row.
    alpha : float, default=0.05
        Significance level of the verdict :attr:`DriftResult.drifted`.
    confidence : float, default=0.95
        Level of the intervals (effect and cluster shares).
    random_state : int, RandomState instance or None, default=None
        Seeds the subsample, the permutations, the order of the pooled rows and
        k-means; an int makes :meth:`test` reproducible.
    n_jobs : int, default=None
        Threads of the top-k kernel; None uses every core.

    Attributes
    ----------
    reference_ : ndarray of shape (n_reference, n_features)
        The reference rows, unit-normalised float32.
    reference_texts_ : list of str or None
        The reference texts passed to :meth:`fit`.
    n_features_in_ : int
        Width of the embeddings seen in :term:`fit`.

    See Also
    --------
    embedtasks.OutlierScorer : Scores single rows against a training set.
    embedtasks.DiversityReport : Describes one set's similarity distribution.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import DriftTest
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.normal(size=(300, 8))
    >>> same = rng.normal(size=(300, 8))
    >>> shifted = np.vstack([rng.normal(size=(240, 8)),
    ...                      rng.normal(size=(60, 8)) + [4, 0, 0, 0, 0, 0, 0, 0]])
    >>> drift = DriftTest(n_permutations=200, random_state=0).fit(reference)
    >>> drift.test(same).drifted, drift.test(shifted).drifted
    (False, True)
    >>> bool(drift.test(shifted).examples["index"].head(5).ge(240).all())
    True
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "n_permutations": [Interval(Integral, 1, None, closed="left")],
        "n_clusters": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "n_examples": [Interval(Integral, 0, None, closed="left")],
        "max_samples": [Interval(Integral, 2, None, closed="left"), None],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "confidence": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        *,
        n_neighbors=10,
        n_permutations=1000,
        n_clusters="auto",
        n_examples=10,
        max_samples=10_000,
        alpha=0.05,
        confidence=0.95,
        random_state=None,
        n_jobs=None,
    ):
        self.n_neighbors = n_neighbors
        self.n_permutations = n_permutations
        self.n_clusters = n_clusters
        self.n_examples = n_examples
        self.max_samples = max_samples
        self.alpha = alpha
        self.confidence = confidence
        self.random_state = random_state
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, texts=None):
        """Remember the reference set.

        Parameters
        ----------
        X : array-like of shape (n_reference, n_features)
            Reference embeddings.
        y : None
            Ignored.
        texts : sequence of str, optional
            The reference rows' texts, in order: :meth:`test` then names the
            clusters by their keywords and shows texts beside the examples.

        Returns
        -------
        self : DriftTest
            The fitted test.
        """
        X = check_embeddings(self, X, reset=True)
        self.reference_ = l2_normalize(X)
        self.reference_texts_ = None
        if texts is not None:
            self.reference_texts_ = _check_texts(texts, X.shape[0], "fit", "reference")
        return self

    def test(self, X, *, texts=None):
        """Test new embeddings against the reference.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)
            New embeddings (any number of rows; at least 2 in all with the
            reference).
        texts : sequence of str, optional
            The new rows' texts, in order (with texts given to :meth:`fit` too:
            clusters named by keywords, examples with their texts).

        Returns
        -------
        DriftResult
            The verdict, p-value, effect and interval, clusters and examples.
        """
        check_is_fitted(self)
        X_new = l2_normalize(check_embeddings(self, X, reset=False))
        if texts is not None:
            texts = _check_texts(texts, X_new.shape[0], "test", "new")
        if (texts is None) != (self.reference_texts_ is None):
            given = "test()" if texts is not None else "fit()"
            missing = "fit(X, texts=...)" if texts is not None else "test(X, texts=...)"
            raise ValueError(
                f"DriftTest got texts in {given} only: texts name the clusters of "
                f"the pooled rows, so pass both sets' texts ({missing} too) or none."
            )
        rng = np.random.default_rng(
            check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        )
        ref_rows = _subsample(self.reference_.shape[0], self.max_samples, rng)
        new_rows = _subsample(X_new.shape[0], self.max_samples, rng)
        pooled = np.concatenate([self.reference_[ref_rows], X_new[new_rows]])
        n_ref, n_pooled = ref_rows.size, pooled.shape[0]
        if n_pooled < 3:
            raise ValueError(
                f"DriftTest needs at least 3 rows in all to compare two sets, got "
                f"{n_ref} reference and {new_rows.size} new rows."
            )
        is_new = np.arange(n_pooled) >= n_ref
        k = min(self.n_neighbors, n_pooled - 1)
        neighbours = self._neighbour_graph(pooled, k, rng)
        test = permutation_test(neighbours, is_new, self.n_permutations, rng)
        z = normal_quantile(self.confidence)
        half = z * test.std_error
        all_texts = None
        if texts is not None:
            ref_texts = self.reference_texts_
            all_texts = [ref_texts[i] for i in ref_rows] + [texts[i] for i in new_rows]
        clusters, labels = self._clusters(
            pooled, is_new, ref_rows, new_rows, all_texts, rng
        )
        scores = is_new[neighbours[n_ref:]].mean(axis=1)
        examples = self._examples(X_new[new_rows], new_rows, ref_rows, scores, texts)
        labels_reference = np.full(self.reference_.shape[0], -1, dtype=np.intp)
        labels_reference[ref_rows] = labels[:n_ref]
        labels_new = np.full(X_new.shape[0], -1, dtype=np.intp)
        labels_new[new_rows] = labels[n_ref:]
        scores_new = np.full(X_new.shape[0], np.nan)
        scores_new[new_rows] = scores
        return DriftResult(
            p_value=test.p_value,
            statistic=test.statistic,
            confidence_interval=(test.statistic - half, test.statistic + half),
            confidence=float(self.confidence),
            alpha=float(self.alpha),
            n_reference=int(n_ref),
            n_new=int(new_rows.size),
            n_neighbors=int(k),
            n_permutations=int(self.n_permutations),
            null_mean=test.null_mean,
            null_std=test.null_std,
            clusters=clusters,
            examples=examples,
            labels_reference=labels_reference,
            labels_new=labels_new,
            scores_new=scores_new,
        )

    # ------------------------------------------------------------ pieces
    def _neighbour_graph(self, pooled, k, rng):
        """Each pooled row's ``k`` nearest other rows, in a label-blind order.

        The rows are searched in a random order, so that ties (exact copies) are
        broken by that order and never by which set a row came from.
        """
        order = rng.permutation(pooled.shape[0])
        found = top_k(
            pooled[order], pooled[order], k, self_offset=0, n_jobs=self.n_jobs
        ).indices
        neighbours = np.empty_like(found)
        neighbours[order] = order[found]
        return neighbours

    def _clusters(self, pooled, is_new, ref_rows, new_rows, texts, rng):
        import pandas as pd

        n_pooled = pooled.shape[0]
        n_clusters = self.n_clusters
        if n_clusters == "auto":
            n_clusters = int(np.clip(round(math.sqrt(n_pooled / 20)), 2, 30))
        n_clusters = min(n_clusters, n_pooled)
        best = None
        for seed in rng.integers(np.iinfo(np.int32).max, size=_KMEANS_STARTS):
            centres = train_centroids(
                pooled,
                n_clusters,
                sample=min(n_pooled, _KMEANS_ROWS_PER_CLUSTER * n_clusters),
                n_iter=_KMEANS_ITERATIONS,
                random_state=int(seed),
                init="k-means++",
            )
            nearest = top_k(pooled, centres, 1)
            fit = float(nearest.scores.sum(dtype=np.float64))  # higher: tighter
            if best is None or fit > best[0]:
                best = (fit, centres, nearest.indices[:, 0])
        _, centres, labels = best
        n_examined = centres.shape[0]
        if self.n_clusters == "auto":
            labels, centres, n_examined = merge_changed(pooled, labels, is_new)
        n_found = centres.shape[0]
        counts_new = np.bincount(labels[is_new], minlength=n_found)
        counts_ref = np.bincount(labels[~is_new], minlength=n_found)
        # Bonferroni over every cluster whose growth was looked at (merges too)
        z = normal_quantile(1 - (1 - self.confidence) / n_examined)
        diff, low, high = newcombe(
            counts_new, is_new.sum(), counts_ref, (~is_new).sum(), z
        )
        keywords = None
        if texts is not None:
            keywords = ctfidf_keywords(texts, labels, n_found, 8, "english")
        n_ref = ref_rows.size
        source = np.concatenate([ref_rows, new_rows])
        representatives = []
        for c in range(n_found):
            members = np.flatnonzero(labels == c)
            best = top_k(centres[c : c + 1], pooled[members], min(3, members.size))
            rows = members[best.indices[0][best.indices[0] >= 0]]
            representatives.append(
                [("new" if r >= n_ref else "reference", int(source[r])) for r in rows]
            )
        frame = pd.DataFrame(
            {
                "cluster": np.arange(n_found),
                "name": topic_names(n_found, keywords),
                "n_reference": counts_ref,
                "n_new": counts_new,
                "share_reference": counts_ref / max(1, (~is_new).sum()),
                "share_new": counts_new / max(1, is_new.sum()),
                "difference": diff,
                "ci_low": low,
                "ci_high": high,
                "change": np.where(low > 0, "grew", np.where(high < 0, "shrank", "")),
                "representatives": representatives,
            }
        )
        if keywords is not None:
            frame["keywords"] = keywords
        frame = frame.sort_values(
            ["difference", "cluster"], ascending=[False, True], kind="stable"
        ).reset_index(drop=True)
        return frame, labels

    def _examples(self, X_new, new_rows, ref_rows, score, texts):
        import pandas as pd

        columns = ["index", "score", "nearest_reference", "reference_similarity"]
        n_take = min(self.n_examples, new_rows.size)
        if n_take == 0 or ref_rows.size == 0:
            return pd.DataFrame({c: [] for c in columns})
        # the candidates: every row scoring at least the n_take-th best score
        cutoff = np.sort(score)[::-1][n_take - 1]
        candidates = np.flatnonzero(score >= cutoff)
        nearest = top_k(X_new[candidates], self.reference_[ref_rows], 1)
        similarity = nearest.scores[:, 0]
        order = np.lexsort((candidates, similarity, -score[candidates]))[:n_take]
        chosen = candidates[order]
        frame = pd.DataFrame(
            {
                "index": new_rows[chosen],
                "score": score[chosen],
                "nearest_reference": ref_rows[nearest.indices[order, 0]],
                "reference_similarity": similarity[order],
            }
        )
        if texts is not None:
            frame["text"] = [texts[i] for i in frame["index"]]
            ref_texts = self.reference_texts_
            frame["nearest_reference_text"] = [
                ref_texts[i] for i in frame["nearest_reference"]
            ]
        return frame


def _subsample(n: int, max_samples: int | None, rng: np.random.Generator):
    if max_samples is None or n <= max_samples:
        return np.arange(n, dtype=np.intp)
    return np.sort(rng.choice(n, size=max_samples, replace=False)).astype(np.intp)


def _check_texts(texts, n_rows, method, which):
    texts = check_texts(texts, estimator_name=f"DriftTest.{method}")
    if len(texts) != n_rows:
        raise ValueError(
            f"DriftTest.{method} got {len(texts)} texts for {n_rows} {which} rows; "
            "pass one text per row, in the order of X."
        )
    return texts
