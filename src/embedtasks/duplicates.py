"""Near-duplicate groups, de-duplication and train/test leakage.

:class:`NearDuplicates` groups near-copies around a canonical row (the star rule
of :mod:`embedtasks._kernel._groups`: every member within the threshold of
its group's canonical row, so groups never chain unrelated texts), keeps one row
per group, places new records in the fitted groups (old rows keep their ids) and
measures how much of a test set near-duplicates the training set, beside the
share chance alone gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from embedtasks._kernel import (
    group_lowest_similarity,
    l2_normalize,
    match_rows,
    row_keys,
    separating_threshold,
    star_groups,
    top_k,
    unique_rows,
    use_approximate,
)
from embedtasks._validation import (
    N_JOBS,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_embeddings,
    check_is_fitted,
)

__all__ = ["Leakage", "NearDuplicates"]

#: Rows held out for the chance share of :meth:`NearDuplicates.leakage`.
_SAMPLE_ROWS = 1_000
#: Most test rows whose similarities place :meth:`NearDuplicates.leakage`'s valley.
_LEAKAGE_ROWS = 20_000
#: Rows whose nearest similarity sets ``threshold="auto"`` (and, on the
#: approximate path, whose 16 nearest rows measure its recall).
_PROBE_ROWS = 2_000


@dataclass(frozen=True)
class Leakage:
    """What :meth:`NearDuplicates.leakage` found.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per test row (index: its position): ``nearest`` (the most similar
        fitted row), ``group`` (that row's group), ``similarity`` and ``leaked``
        (``similarity >= threshold``).
    summary : dict
        ``n_test``, ``n_leaked``, ``leaked_share``; ``chance_share``: the share of
        a held-out slice of the fitted rows that leaks from the other fitted rows
        by the same rule (what a test set drawn like the training set would
        show); ``excess_share``: ``leaked_share - chance_share``; ``n_chance``
        (rows in that slice); ``threshold`` (the leakage threshold used) and
        ``threshold_rule`` (``"auto"`` or ``"fixed"``).
    """

    frame: Any
    summary: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        s = self.summary
        return (
            f"{s['n_leaked']:,} of {s['n_test']:,} test rows "
            f"({s['leaked_share']:.1%}) near-duplicate a training row (similarity >= "
            f"{s['threshold']:.3f}, {s['threshold_rule']}); chance: "
            f"{s['chance_share']:.1%} (a held-out slice of {s['n_chance']:,} "
            f"training rows); excess: {s['excess_share']:+.1%}"
        )


class NearDuplicates(BaseEstimator):
    """Group near-duplicate rows, keep one per group, and measure leakage.

    Rows are normalised to unit length, so similarities are cosines.

    **Linkage rule (star groups).** Exact copies (identical vectors) always share
    a group. Rows are visited by their number of near-duplicates (rows at or
    above ``threshold``, copies included), most first, ties by the earlier row; a
    row not yet in a group becomes the *canonical* row of a new group and takes
    every row not yet in a group at or above ``threshold`` of it. Then every
    other row joins the most similar canonical row at or above ``threshold``
    (ties: the earlier). So each member is within ``threshold`` of its group's
    canonical row: a chain ``a ~ b ~ c`` never pulls ``a`` and ``c`` together
    unless one of them is close to the centre; two canonical rows are never
    near-duplicates of each other; any two members are at least ``cos(2
    arccos(threshold))`` similar (0.805 at 0.95, 0.28 at 0.8), and
    :attr:`min_similarity_` reports each group's actual lowest.

    Parameters
    ----------
    threshold : "auto" or float, default="auto"
        Cosine similarity at or above which a row is a near-duplicate of a
        canonical row (and, with ``leakage(threshold=None)``, a test row leaks).
        ``"auto"`` derives it from the data (:attr:`threshold_`): the nearest
        similarities of up to 2,000 sampled rows form two modes, unrelated
        neighbours and near-copies; where a valley separates them, the threshold
        is the 98.5th percentile of the rows below the valley (at most 1.5% of
        unrelated rows reach it, in pairs, so about 0.75% of groups join two
        unrelated rows; edited copies of paragraphs, 0.8-0.95 with
        all-MiniLM-L6-v2, stay above it); without a valley (no near-copies, or
        one-line texts whose unrelated neighbours reach 0.95), 0.95. Never above
        0.95. A number fixes it.
    neighbors : {"auto", "exact", "approximate"}, default="auto"
        How pairs above ``threshold`` are found. ``"exact"``: every pair (the
        symmetric scan). ``"approximate"``: rows sharing one of their 2 nearest
        of ~sqrt(n) k-means lists are compared (exact scores; the recall of
        pairs on a sample of rows is measured in :attr:`approximate_recall_`).
        ``"auto"``: exact up to 200,000 distinct rows.
    random_state : int, RandomState instance or None, default=None
        Seeds the approximate path's lists, its recall sample and the slice
        :meth:`leakage` holds out for the chance share.
    n_jobs : int, default=None
        Threads of the pair scan (``None``: every core; negative as joblib
        counts).

    Attributes
    ----------
    groups_ : ndarray of shape (n_samples,), dtype intp
        Each row's group, numbered 0, 1, ... in order of the group's first row;
        a row without a near-duplicate has a group of its own. Pass it as
        ``groups=`` to :class:`~sklearn.model_selection.GroupKFold`.
    keep_ : ndarray of shape (n_samples,), dtype bool
        One row per group: its canonical row (the member with the most
        near-duplicates, ties: the first row; the first of exact copies).
    n_groups_ : int
        Number of groups.
    canonical_ : ndarray of shape (n_groups_,), dtype intp
        Each group's canonical row.
    group_sizes_ : ndarray of shape (n_groups_,), dtype intp
        Rows in each group.
    min_similarity_ : ndarray of shape (n_groups_,), dtype float32
        Each group's lowest similarity between two of its rows (NaN for a group
        of one row).
    similarity_ : ndarray of shape (n_samples,), dtype float32
        Each row's similarity to its group's canonical row.
    threshold_ : float
        The similarity used: ``threshold``, or the one ``"auto"`` derived.
    n_pairs_ : int
        Pairs of distinct vectors at or above ``threshold`` (found).
    approximate_recall_ : float or None
        On the approximate path: the share of the exact pairs at or above
        ``threshold_`` found, on up to 2,000 sampled rows checked exactly (their
        16 nearest rows; NaN if the sample holds no such pair); None on the exact
        path.
    n_features_in_ : int
        Width of the embeddings.

    See Also
    --------
    DiversityReport : Similarity distributions and near-duplicate pairs.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import NearDuplicates
    >>> X = np.array([[1, 0, 0], [0, 1, 0], [1, 0.1, 0], [1, 0, 0], [0, 0, 1]])
    >>> dedupe = NearDuplicates(threshold=0.95).fit(X)
    >>> dedupe.groups_, dedupe.keep_
    (array([0, 1, 0, 0, 2]), array([ True,  True, False, False,  True]))
    >>> dedupe.predict([[0.99, 0.05, 0], [0.5, 0.5, 0.7]])
    array([ 0, -1])
    >>> leak = dedupe.leakage([[1, 0.02, 0], [0, 0.6, 0.8]], threshold=0.95)
    >>> leak.frame
       nearest  group  similarity  leaked
    0        0      0      0.9998    True
    1        4      2      0.8000   False
    """

    _parameter_constraints: dict = {
        "threshold": [Interval(Real, -1, 1, closed="both"), StrOptions({"auto"})],
        "neighbors": [StrOptions({"auto", "exact", "approximate"})],
        "random_state": ["random_state"],
        "n_jobs": [None, *N_JOBS],
    }

    def __init__(self, threshold="auto", *, neighbors="auto", random_state=None,
                 n_jobs=None):  # fmt: skip
        self.threshold = threshold
        self.neighbors = neighbors
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Group the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings; normalised to unit length here.
        y : None
            Ignored.

        Returns
        -------
        self : NearDuplicates
            The fitted estimator.
        """
        X = l2_normalize(check_embeddings(self, X, reset=True))
        self._rng = check_random_state(self.random_state)
        self._X = X
        keys = row_keys(X)
        first, self._row_distinct, counts = unique_rows(X, keys)
        self._distinct = first
        self._keys = keys[first]  # kept for partial_fit and predict
        self._counts = counts
        U = X if first.size == X.shape[0] else X[first]  # all distinct: no copy
        approximate = use_approximate(self.neighbors, first.size)
        auto = self.threshold == "auto"
        if auto or approximate:  # the exact path with a fixed threshold needs none
            probe, best = self._probe(U, 16 if approximate else 1)
        if auto:
            self.threshold_ = separating_threshold(best.scores[:, 0]).threshold
        else:
            self.threshold_ = float(self.threshold)
        found = self._group(U, counts, approximate)
        self._d_label, self._d_sim = found.labels, found.centre_similarity
        self._centre_d = found.centres
        self.n_pairs_ = found.n_pairs
        self.approximate_recall_ = (
            self._recall(U.shape[0], probe, best, found.pairs) if approximate else None
        )
        self._publish(np.arange(found.centres.size))
        return self

    def _group(self, U, counts, approximate):
        return star_groups(
            U,
            self.threshold_,
            weights=counts,
            approximate=approximate,
            random_state=int(self._rng.randint(2**31 - 1)),
            n_jobs=self.n_jobs,
        )

    def _probe(self, U, k):
        """Up to 2,000 sampled distinct rows and their ``k`` most similar others,
        found exactly: their nearest similarity sets ``threshold="auto"``."""
        m = U.shape[0]
        sample = np.sort(self._rng.choice(m, min(m, _PROBE_ROWS), replace=False))
        k = min(k, max(m - 1, 1))
        best = top_k(U[sample], U, k, exclude=sample[:, None], n_jobs=self.n_jobs)
        return sample, best

    def _recall(self, m, sample, best, pairs):
        """Share of the exact pairs, among the probed rows, that the scan found.

        Each probed row's 16 nearest rows were found exactly (a row with more
        near-duplicates than that counts its 16 best).
        """
        r, c = np.nonzero(best.scores >= np.float32(self.threshold_))
        if r.size == 0:
            return float("nan")
        a, b = sample[r], best.indices[r, c]
        key = np.unique(np.minimum(a, b) * m + np.maximum(a, b))
        got = np.unique(pairs[:, 0] * m + pairs[:, 1]) if pairs is not None else []
        return float(np.isin(key, got).mean())

    def _publish(self, changed):
        """Row-level attributes from the distinct rows' groups."""
        self.groups_ = self._d_label[self._row_distinct]
        self.similarity_ = self._d_sim[self._row_distinct]
        self.n_groups_ = int(self._centre_d.size)
        self.canonical_ = self._distinct[self._centre_d]
        self.keep_ = np.zeros(self.groups_.size, dtype=bool)
        self.keep_[self.canonical_] = True
        self.group_sizes_ = np.bincount(self.groups_, minlength=self.n_groups_)
        old = getattr(self, "min_similarity_", np.empty(0, dtype=np.float32))
        lowest = np.full(self.n_groups_, np.nan, dtype=np.float32)
        lowest[: old.size] = old[: self.n_groups_]
        if changed.size:  # distinct rows of changed groups of 2+ rows only
            todo = self.group_sizes_[self._d_label] > 1
            if changed.size < self.n_groups_:
                todo &= np.isin(self._d_label, changed)
            rows = np.flatnonzero(todo)
            relabel = np.full(self.n_groups_, -1, dtype=np.intp)
            relabel[changed] = np.arange(changed.size)
            lowest[changed] = group_lowest_similarity(
                self._X[self._distinct[rows]], relabel[self._d_label[rows]],
                changed.size, weights=self._counts[rows],
            )  # fmt: skip
        self.min_similarity_ = lowest

    # --------------------------------------------------- new rows, leakage
    def _place(self, X):
        """(distinct id or -1, group or -1, similarity to its canonical row)."""
        same = match_rows(self._keys, self._X, X, self._distinct)
        group = np.where(same >= 0, self._d_label[np.maximum(same, 0)], -1)
        sim = np.where(same >= 0, self._d_sim[np.maximum(same, 0)], -np.inf)
        sim = sim.astype(np.float32)
        todo = np.flatnonzero(same < 0)
        if todo.size:
            centres = self._X[self.canonical_]
            best = top_k(X[todo], centres, 1, n_jobs=self.n_jobs)
            ok = best.scores[:, 0] >= np.float32(self.threshold_)
            group[todo[ok]] = best.indices[ok, 0]
            sim[todo] = best.scores[:, 0]
        return same, group, sim

    def predict(self, X):
        """The group each row would join (-1: none), leaving the fit unchanged.

        A row joins the group of its exact copy among the fitted rows, else the
        group of its most similar canonical row at or above ``threshold``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New embeddings.

        Returns
        -------
        ndarray of shape (n_samples,), dtype intp
            Group ids of the fitted groups, or -1 for a row that is new.
        """
        check_is_fitted(self)
        X = l2_normalize(check_embeddings(self, X, reset=False))
        return self._place(X)[1]

    def partial_fit(self, X, y=None):
        """Add rows: they join existing groups or form new ones; old ids stay.

        A new row joins the group of its exact copy among the fitted rows, else
        that of its most similar canonical row at or above ``threshold``; the
        others are grouped among themselves by the same star rule, as new groups
        numbered after the existing ones. Canonical rows never change, so the
        result can differ from :meth:`fit` on all rows at once. Before any fit,
        this is :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New embeddings.
        y : None
            Ignored.

        Returns
        -------
        self : NearDuplicates
            The estimator, now holding the old and the new rows.
        """
        if not hasattr(self, "groups_"):
            return self.fit(X, y)
        check_is_fitted(self)
        self._validate_params()
        X = l2_normalize(check_embeddings(self, X, reset=False))
        same, group, sim = self._place(X)
        n_old, m_old = self._X.shape[0], self._distinct.size
        first, inverse, counts = unique_rows(X)
        row_distinct = np.where(same >= 0, same, -1)
        new_d = np.flatnonzero(same[first] < 0)  # new distinct vectors (in X)
        d_id = np.full(first.size, -1, dtype=np.intp)
        d_id[new_d] = m_old + np.arange(new_d.size)
        row_distinct[same < 0] = d_id[inverse[same < 0]]
        np.add.at(self._counts, same[same >= 0], 1)
        d_group = group[first[new_d]]
        d_sim = sim[first[new_d]]
        alone = np.flatnonzero(d_group < 0)
        changed = np.unique(group[group >= 0])
        new_centres = np.empty(0, dtype=np.intp)
        if alone.size:
            rows = first[new_d[alone]]
            found = self._group(X[rows], counts[new_d[alone]], False)
            d_group[alone] = self.n_groups_ + found.labels
            d_sim[alone] = found.centre_similarity
            new_centres = m_old + alone[found.centres]
            changed = np.concatenate(
                [changed, self.n_groups_ + np.arange(found.centres.size)]
            )
            self.n_pairs_ += found.n_pairs
        self._X = np.concatenate([self._X, X])
        self._distinct = np.concatenate([self._distinct, n_old + first[new_d]])
        self._keys = np.concatenate([self._keys, row_keys(X[first[new_d]])])
        self._counts = np.concatenate([self._counts, counts[new_d]])
        self._row_distinct = np.concatenate([self._row_distinct, row_distinct])
        self._d_label = np.concatenate([self._d_label, d_group])
        self._d_sim = np.concatenate([self._d_sim, d_sim]).astype(np.float32)
        self._centre_d = np.concatenate([self._centre_d, new_centres])
        self._publish(changed)
        return self

    def fit_predict(self, X, y=None):
        """Fit and return :attr:`groups_`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : None
            Ignored.

        Returns
        -------
        ndarray of shape (n_samples,), dtype intp
            Each row's group.
        """
        return self.fit(X).groups_

    def leakage(self, X, *, threshold="auto"):
        """How many rows of a test set near-duplicate the fitted (training) rows.

        Each test row's most similar fitted row is found exactly; the row *leaks*
        if their similarity is at or above the leakage threshold. A random slice
        of the fitted rows (half of them, at most 1,000; seeded by
        ``random_state``) is held out and each of its rows compared with the
        other fitted rows: that is what a test set drawn like the training set,
        with nothing copied, would show.

        - The leakage threshold, by default (``"auto"``), is the 99.9th
          percentile of the nearest similarity of the held-out rows that have no
          near-copy in the fit (groups of one row): a test row leaks when it is
          closer to a training row than unrelated rows of the training set ever
          are. Embedding models differ in how similar unrelated texts look
          (paragraphs: ~0.7 with all-MiniLM-L6-v2; one-line queries: up to
          0.95), and edited copies of paragraphs fall to 0.8, so no fixed value
          serves both. A small training set estimates that percentile poorly,
          so the test rows' own similarities are read too: where they form two
          modes, unseen rows and copies (the valley of
          :attr:`threshold_`'s rule, on up to 20,000 test rows), the threshold
          is at least the 99.5th percentile of the rows below the valley. Where
          neither applies, :attr:`threshold_` is used.
        - The chance share applies the same threshold to the held-out rows.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
            Test embeddings.
        threshold : "auto", float or None, default="auto"
            The leakage threshold: ``"auto"`` (above), a cosine similarity, or
            None for the estimator's :attr:`threshold_`.

        Returns
        -------
        Leakage
            ``.frame`` (one row per test row: ``nearest``, ``group``,
            ``similarity``, ``leaked``) and ``.summary`` (``leaked_share``,
            ``chance_share``, ``excess_share``, ``threshold``...); ``print()``
            gives one line.
        """
        import pandas as pd

        check_is_fitted(self)
        if not (threshold is None or threshold == "auto" or
                isinstance(threshold, Real) and -1 <= threshold <= 1):  # fmt: skip
            raise ValueError(
                f"NearDuplicates.leakage: threshold must be 'auto', None or a "
                f"number in [-1, 1], got {threshold!r}."
            )
        Q = l2_normalize(check_embeddings(self, X, reset=False))
        best = top_k(Q, self._X, 1, n_jobs=self.n_jobs)
        nearest, sims = best.indices[:, 0], best.scores[:, 0]
        held_sims, unrelated = self._held_out()
        level, rule = self._leakage_level(threshold, sims, held_sims[unrelated])
        level = np.float32(level)
        leaked = sims >= level
        frame = pd.DataFrame(
            {
                "nearest": nearest,
                "group": self.groups_[nearest],
                "similarity": sims,
                "leaked": leaked,
            }
        )
        chance = float((held_sims >= level).mean()) if held_sims.size else np.nan
        share = float(leaked.mean()) if leaked.size else float("nan")
        summary = {
            "n_test": int(leaked.size),
            "n_leaked": int(leaked.sum()),
            "leaked_share": share,
            "chance_share": chance,
            "excess_share": share - chance,
            "n_chance": int(held_sims.size),
            "threshold": float(level),
            "threshold_rule": rule,
        }
        return Leakage(frame, summary)

    def _leakage_level(self, threshold, sims, unrelated_sims):
        """(the leakage threshold, ``"auto"`` or ``"fixed"``)."""
        if threshold != "auto":
            return (self.threshold_ if threshold is None else threshold), "fixed"
        if sims.size > _LEAKAGE_ROWS:  # the valley is found on a sample
            rng = check_random_state(self.random_state)
            sims = sims[rng.choice(sims.size, _LEAKAGE_ROWS, replace=False)]
        split = separating_threshold(sims, cap=1.0, quantile=0.995)
        if unrelated_sims.size == 0:
            if split.valley is None:
                return self.threshold_, "fixed"
            return split.threshold, "auto"
        level = float(np.quantile(unrelated_sims, 0.999, method="higher"))
        if split.valley is not None:
            level = max(level, split.threshold)
        return level, "auto"

    def _held_out(self):
        """Nearest similarity of a held-out slice of the fitted rows to the rest,
        and whether each held-out row has no near-copy (a group of one row)."""
        n = self._X.shape[0]
        size = min(_SAMPLE_ROWS, n // 2)
        if size == 0:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=bool)
        rng = check_random_state(self.random_state)
        held = np.sort(rng.choice(n, size, replace=False))
        found = top_k(self._X[held], self._X, 1, exclude=[held] * size,
                      n_jobs=self.n_jobs)  # fmt: skip
        alone = self.group_sizes_[self.groups_[held]] == 1
        return found.scores[:, 0], alone
